"""Human-readable tables and JSON-lines records of benchmark outcomes."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.datasets import CODECS, Dataset
from benchmarks.readers import Reader
from benchmarks.timing import Outcome

__all__ = ["BASELINE", "append_jsonl", "dataset_table", "make_records", "ratio", "summary_tables"]

#: The reader every ratio is taken against: ratio = baseline time / this reader's time.
BASELINE = "gpuzarr"

_GB = 1e9


def ratio(baseline: Outcome | None, other: Outcome, attr: str = "total_s", stat: str = "median") -> float | None:
    """``baseline median / other median`` (or ``stat="minimum"``); < 1: the baseline (gpuzarr) is faster."""
    if baseline is None or baseline.status != "ok" or other.status != "ok":
        return None
    b, o = getattr(baseline, stat)(attr), getattr(other, stat)(attr)
    if b is None or not o:
        return None
    return b / o


def _label(reader: Reader) -> str:
    return f"{reader.name} (ceiling)" if reader.is_reference else reader.name


def _num(value: float | None, fmt: str) -> str:
    """``value`` formatted with ``fmt`` (e.g. ``"8.4f"``), or a dash of the same width."""
    if value is None:
        width = fmt.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 1)
    return format(value, fmt)


def _median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def dataset_table(
    ds: Dataset, readers: Sequence[Reader], outcomes: dict[str, Outcome], *, disturbed_cpus: float = 0.25
) -> str:
    """One dataset's results: a row per reader."""
    rows, cols = ds.shape
    crows, ccols = ds.params.chunks
    chunk_mib = crows * ccols * ds.dtype.itemsize / 2**20
    head = (
        f"{ds.label}: {rows}x{cols} {ds.dtype}, {ds.n_chunks} chunks of {crows}x{ccols} ({chunk_mib:g} MiB); "
        f"{ds.nbytes / 2**20:.1f} MiB decoded, {ds.stored_bytes / 2**20:.1f} MiB stored "
        f"({ds.compression_ratio:.2f}x); {CODECS[ds.codec].description}"
    )
    header = (
        f"  {'reader':<22} {'open+read s':>11} {'open s':>7} {'read s':>7} {'GB/s':>6} {'min s':>7} "
        f"{'spread':>7} {'cpu s':>6} {'others':>6} {'disturbed':>9} {'gpuzarr/this':>12} {'(read only)':>11}"
    )
    lines = [head, header]
    base = outcomes.get(BASELINE)
    for reader in readers:
        oc = outcomes.get(reader.name)
        if oc is None:
            continue
        if oc.status not in ("ok",) or not oc.samples:
            lines.append(f"  {_label(reader):<22} {oc.status.upper()}: {oc.note or 'no timed samples'}")
            continue
        med = oc.median()
        spread = oc.spread()
        others = _median_of([smp.others_cpus for smp in oc.samples])
        disturbed = f"{oc.disturbed(disturbed_cpus)}/{len(oc.samples)}"
        lines.append(
            f"  {_label(reader):<22} {_num(med, '11.4f')} {_num(oc.median('open_s'), '7.4f')} "
            f"{_num(oc.median('read_s'), '7.4f')} {_num(ds.nbytes / _GB / med if med else None, '6.2f')} "
            f"{_num(oc.minimum(), '7.4f')} {_num(spread * 100 if spread is not None else None, '6.1f')}% "
            f"{_num(oc.median('cpu_s'), '6.3f')} {_num(others, '6.2f')} {disturbed:>9} "
            f"{_num(ratio(base, oc), '12.2f')} {_num(ratio(base, oc, 'read_s'), '11.2f')}"
        )
    return "\n".join(lines)


def summary_tables(
    results: Sequence[tuple[Dataset, dict[str, Outcome]]],
    readers: Sequence[Reader],
) -> str:
    """Two matrices over all datasets: GB/s per reader, and gpuzarr time / reader time."""
    names = [r.name for r in readers]
    widths = [max(9, len(n) + 2) for n in names]
    labels = [f"{ds.label} ({ds.compression_ratio:.2f}x)" for ds, _ in results]
    lw = max(8, *(len(label) for label in labels)) if labels else 8
    head = f"  {'dataset':<{lw}}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))
    gbps_lines = ["GB/s (decoded bytes / median open+read time; higher is better)", head]
    ratio_lines = [
        f"{BASELINE} time / reader time (median open+read; < 1: {BASELINE} faster, > 1: {BASELINE} slower)",
        head,
    ]
    min_lines = [
        f"{BASELINE} time / reader time, fastest repetition of each (less sensitive to other load)",
        head,
    ]
    for (ds, outcomes), label in zip(results, labels, strict=True):
        base = outcomes.get(BASELINE)
        g_cells, r_cells, m_cells = [], [], []
        for name, width in zip(names, widths, strict=True):
            oc = outcomes.get(name)
            med = oc.median() if oc is not None and oc.status == "ok" else None
            g_cells.append(_num(ds.nbytes / _GB / med if med else None, f"{width}.2f"))
            r_cells.append(_num(ratio(base, oc) if oc is not None else None, f"{width}.2f"))
            m_cells.append(_num(ratio(base, oc, stat="minimum") if oc is not None else None, f"{width}.2f"))
        gbps_lines.append(f"  {label:<{lw}}" + "".join(g_cells))
        ratio_lines.append(f"  {label:<{lw}}" + "".join(r_cells))
        min_lines.append(f"  {label:<{lw}}" + "".join(m_cells))
    return "\n\n".join("\n".join(block) for block in (gbps_lines, ratio_lines, min_lines))


def make_records(
    *,
    benchmark: str,
    run_id: str,
    ds: Dataset,
    readers: Sequence[Reader],
    outcomes: dict[str, Outcome],
    params: dict[str, Any],
    env: dict[str, Any],
) -> list[dict[str, Any]]:
    """One self-contained JSON record per reader: raw times, medians, ratios, settings, environment."""
    base = outcomes.get(BASELINE)
    records = []
    for reader in readers:
        oc = outcomes.get(reader.name)
        if oc is None:
            continue
        med = oc.median() if oc.status == "ok" else None
        med_read = oc.median("read_s") if oc.status == "ok" else None
        records.append(
            {
                "benchmark": benchmark,
                "run_id": run_id,
                "dataset": ds.describe(),
                "reader": reader.name,
                "reader_description": reader.description,
                "reader_is_reference": reader.is_reference,
                "reader_version": _safe(reader.version),
                "reader_settings": _safe(reader.settings),
                "status": oc.status,
                "note": oc.note,
                "traceback": oc.traceback,
                "repeats": len(oc.samples),
                "warmup_open_s": oc.warmup.open_s if oc.warmup else None,
                "warmup_read_s": oc.warmup.read_s if oc.warmup else None,
                "open_s": [s.open_s for s in oc.samples],
                "read_s": [s.read_s for s in oc.samples],
                "total_s": [s.total_s for s in oc.samples],
                "cpu_s": [s.cpu_s for s in oc.samples],
                "others_cpu_s": [s.others_cpu_s for s in oc.samples],
                "quiet_waited_s": [s.waited_s for s in oc.samples],
                "retakes": [s.retakes for s in oc.samples],
                "median_total_s": med,
                "median_open_s": oc.median("open_s") if oc.status == "ok" else None,
                "median_read_s": med_read,
                "min_total_s": oc.minimum() if oc.status == "ok" else None,
                "max_total_s": oc.maximum() if oc.status == "ok" else None,
                "gbps_total": ds.nbytes / _GB / med if med else None,
                "gbps_read": ds.nbytes / _GB / med_read if med_read else None,
                f"ratio_{BASELINE}_over_this_total": ratio(base, oc),
                f"ratio_{BASELINE}_over_this_read": ratio(base, oc, "read_s"),
                f"ratio_{BASELINE}_over_this_min_total": ratio(base, oc, stat="minimum"),
                "params": params,
                "env": env,
            }
        )
    return records


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception as exc:  # a settings probe must never lose the results
        return f"unavailable: {type(exc).__name__}: {exc}"


def append_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records, one JSON document per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
