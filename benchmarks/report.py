"""Human-readable tables, JSON-lines records, the target table and the markdown report.

Everything after the measurements works from the JSON records (one per dataset,
pattern and subject; see :func:`make_records`), so ``python -m benchmarks report``
rebuilds the same tables and plots from a results file alone.

The *target* (the project's CPU performance goal) is checked per dataset and pattern:

* reads (``full`` and ``windows``): gpuzarr's median time / the faster median of
  tensorstore and zarrs in the same run, must be <= 1.0;
* writes (``write-full``, ``write-partial``): gpuzarr's median / tensorstore's, <= 1.0.

``region`` and ``strided`` ratios are shown for information, not part of the target.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.datasets import Dataset
from benchmarks.patterns import PATTERNS, Task
from benchmarks.readers import Subject
from benchmarks.timing import ORDER_TEXT, Outcome

__all__ = [
    "BASELINE",
    "READ_RIVALS",
    "TARGET_PATTERNS",
    "WRITE_RIVALS",
    "TargetRow",
    "append_jsonl",
    "dataset_table",
    "load_records",
    "make_records",
    "markdown_report",
    "memory_records",
    "ratio",
    "select_run",
    "summary_tables",
    "target_rows",
    "target_table_text",
]

#: The subject every ratio is taken against: ratio = baseline time / other time.
BASELINE = "gpuzarr"
#: gpuzarr with its pool of freed results' memory off (shown beside it, not a target).
FRESH = "gpuzarr-fresh"
#: Reads: gpuzarr against the faster of these.
READ_RIVALS = ("tensorstore", "zarrs")
#: Writes: gpuzarr against this.
WRITE_RIVALS = ("tensorstore",)
#: Patterns whose ratio is part of the target (<= 1.0).
TARGET_PATTERNS = ("full", "windows", "write-full", "write-partial")

_GB = 1e9
_MIB = 2**20
_DASH = "\u2013"  # en dash: an empty table cell


def ratio(baseline: Outcome | None, other: Outcome | None, attr: str = "total_s", stat: str = "median") -> float | None:
    """``baseline median / other median`` (or ``stat="minimum"``); < 1: the baseline (gpuzarr) is faster."""
    if baseline is None or other is None or not baseline.timed or not other.timed:
        return None
    b, o = getattr(baseline, stat)(attr), getattr(other, stat)(attr)
    if b is None or not o:
        return None
    return b / o


def _num(value: float | None, fmt: str) -> str:
    """``value`` formatted with ``fmt`` (e.g. ``"8.4f"``), or a dash of the same width."""
    if value is None:
        width = fmt.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 1)
    return format(value, fmt)


def _median_of(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _dataset_head(ds: Dataset) -> str:
    spec = ds.spec
    rows, cols = ds.shape
    crows, ccols = spec.chunks
    shards = f" in {spec.shards[0]}x{spec.shards[1]} shards" if spec.shards else ""
    return (
        f"{ds.label}: {rows}x{cols} {ds.dtype}, chunks {crows}x{ccols}{shards}, {ds.n_objects} stored objects; "
        f"{ds.nbytes / _MIB:.1f} MiB decoded, {ds.stored_bytes / _MIB:.1f} MiB stored ({ds.compression_ratio:.2f}x)"
    )


def dataset_table(
    ds: Dataset,
    task: Task,
    subjects: Sequence[Subject],
    outcomes: dict[str, Outcome],
    *,
    disturbed_cpus: float = 0.25,
) -> str:
    """One dataset and pattern: a row per subject."""
    head = f"{_dataset_head(ds)}\n  pattern {task.pattern}: {task.description}"
    head += f"; {task.work_bytes / _MIB:.1f} MiB of chunks {'encoded' if task.is_write else 'decoded'}"
    header = (
        f"  {'subject':<26} {'open+run s':>10} {'open s':>8} {'run s':>8} {'GB/s':>6} {'min s':>8} "
        f"{'spread':>7} {'cpu s':>6} {'others':>6} {'disturbed':>9} {'gpuzarr/this':>12} {'(run only)':>10}"
    )
    if task.is_write:
        header += f" {'stored MiB':>10}"
    lines = [head, header]
    base = outcomes.get(BASELINE)
    for subject in subjects:
        oc = outcomes.get(subject.name)
        if oc is None or (oc.status == "unsupported" and subject.is_reference):
            continue
        if not oc.timed:
            lines.append(f"  {subject.label:<26} {oc.status.upper()}: {oc.note or 'no timed samples'}")
            continue
        med = oc.median()
        spread = oc.spread()
        others = _median_of(smp.others_cpus for smp in oc.samples)
        disturbed = f"{oc.disturbed(disturbed_cpus)}/{len(oc.samples)}"
        line = (
            f"  {subject.label:<26} {_num(med, '10.4f')} {_num(oc.median('open_s'), '8.4f')} "
            f"{_num(oc.median('run_s'), '8.4f')} {_num(task.work_bytes / _GB / med if med else None, '6.2f')} "
            f"{_num(oc.minimum(), '8.4f')} {_num(spread * 100 if spread is not None else None, '6.1f')}% "
            f"{_num(oc.median('cpu_s'), '6.3f')} {_num(others, '6.2f')} {disturbed:>9} "
            f"{_num(ratio(base, oc), '12.2f')} {_num(ratio(base, oc, 'run_s'), '10.2f')}"
        )
        if task.is_write:
            stored = oc.extra.get("stored_bytes")
            line += f" {_num(stored / _MIB if stored else None, '10.1f')}"
        lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# records


def make_records(
    *,
    suite: str,
    run_id: str,
    ds: Dataset,
    task: Task,
    subjects: Sequence[Subject],
    outcomes: dict[str, Outcome],
    params: dict[str, Any],
    env: dict[str, Any],
) -> list[dict[str, Any]]:
    """One self-contained JSON record per subject: raw times, medians, ratios, settings, environment."""
    base = outcomes.get(BASELINE)
    records = []
    for subject in subjects:
        oc = outcomes.get(subject.name)
        if oc is None:
            continue
        ok = oc.timed
        med = oc.median() if ok else None
        records.append(
            {
                "suite": suite,
                "benchmark": suite,
                "run_id": run_id,
                "dataset": ds.describe(),
                "pattern": task.pattern,
                "task": task.describe(),
                "subject": subject.name,
                "reader": subject.name,
                "subject_kind": "ceiling" if subject.is_reference else task.kind,
                "reader_is_reference": subject.is_reference,
                "reader_description": subject.description,
                "reader_version": _safe(subject.version),
                "reader_settings": _safe(subject.settings),
                "status": oc.status,
                "note": oc.note,
                "traceback": oc.traceback,
                "repeats": len(oc.samples),
                "warmup_open_s": oc.warmup.open_s if oc.warmup else None,
                "warmup_run_s": oc.warmup.run_s if oc.warmup else None,
                "open_s": [s.open_s for s in oc.samples],
                "run_s": [s.run_s for s in oc.samples],
                "total_s": [s.total_s for s in oc.samples],
                "cpu_s": [s.cpu_s for s in oc.samples],
                "others_cpu_s": [s.others_cpu_s for s in oc.samples],
                "quiet_waited_s": [s.waited_s for s in oc.samples],
                "retakes": [s.retakes for s in oc.samples],
                "disturbed": oc.disturbed(params.get("quiet_cpus", 0.25)) if ok else None,
                "median_total_s": med,
                "median_open_s": oc.median("open_s") if ok else None,
                "median_run_s": oc.median("run_s") if ok else None,
                "min_total_s": oc.minimum() if ok else None,
                "max_total_s": oc.maximum() if ok else None,
                "gbps_work": task.work_bytes / _GB / med if med else None,
                "gbps_out": task.out_bytes / _GB / med if med else None,
                f"ratio_{BASELINE}_over_this_total": ratio(base, oc),
                f"ratio_{BASELINE}_over_this_run": ratio(base, oc, "run_s"),
                f"ratio_{BASELINE}_over_this_min_total": ratio(base, oc, stat="minimum"),
                "stored_bytes": oc.extra.get("stored_bytes"),
                "params": params,
                "env": env,
            }
        )
    return records


def memory_records(
    *,
    suite: str,
    run_id: str,
    ds: Dataset,
    results: Sequence[Any],
    params: dict[str, Any],
    env: dict[str, Any],
) -> list[dict[str, Any]]:
    """One record per reader's memory probe (``pattern`` = ``memory``)."""
    return [
        {
            "suite": suite,
            "benchmark": suite,
            "run_id": run_id,
            "dataset": ds.describe(),
            "pattern": "memory",
            "subject": r.reader,
            "reader": r.reader,
            "subject_kind": "memory",
            "reader_is_reference": False,
            **r.as_dict(),
            "params": params,
            "env": env,
        }
        for r in results
    ]


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


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every suite record in ``paths`` (records of the older ``read``-only format are skipped)."""
    records = []
    for path in paths:
        with Path(path).open() as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if "suite" in rec and "pattern" in rec:
                    records.append(rec)
    return records


def select_run(
    records: Sequence[dict[str, Any]], suite: str, *, run_id: str | None = None, complete: bool = True
) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one run: ``run_id``, else the latest run of ``suite`` (by start date).

    With ``complete``, the latest run of the default matrix (not ``--quick``, no
    ``--datasets`` filter, every pattern) is preferred; if there is none, the latest run of any kind.
    Returns the records and a note saying which was chosen and why.
    """
    mine = [r for r in records if r.get("suite") == suite]
    if run_id is not None:
        picked = [r for r in mine if r["run_id"] == run_id]
        return picked, (None if picked else f"no records of run {run_id}")
    runs: dict[str, str] = {}
    full: set[str] = set()
    for r in mine:
        runs[r["run_id"]] = max(runs.get(r["run_id"], ""), r["env"].get("date_utc", ""))
        params = r["params"]
        # (Runs before the suite marked a subset of the patterns "custom" say "default".)
        every_pattern = set(params.get("patterns") or PATTERNS) >= set(PATTERNS)
        if params.get("matrix") == "default" and not params.get("quick") and every_pattern:
            full.add(r["run_id"])
    if not runs:
        return [], f"no {suite} results"
    pool = [rid for rid in runs if rid in full] if complete and full else list(runs)
    latest = max(pool, key=lambda rid: runs[rid])
    note = None
    if complete and not full:
        note = "no complete default-matrix run found; showing the latest run"
    return [r for r in mine if r["run_id"] == latest], note


# --------------------------------------------------------------------------------------
# target table


@dataclass
class TargetRow:
    """gpuzarr against the faster rival on one dataset and pattern."""

    dataset: str
    pattern: str
    gpuzarr_s: float | None
    rival: str | None
    rival_s: float | None
    ratio: float | None
    ratio_min: float | None
    others: dict[str, float | None]
    note: str | None = None
    #: Rounds in which gpuzarr was at least as fast as the rival, and rounds compared.
    rounds_won: tuple[int, int] | None = None

    @property
    def in_target(self) -> bool:
        """Whether this pattern is part of the target."""
        return self.pattern in TARGET_PATTERNS

    @property
    def met(self) -> bool | None:
        """Whether gpuzarr's median is at most the rival's (None when it cannot be told)."""
        return None if self.ratio is None else self.ratio <= 1.0


def _by(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["pattern"] == "memory":
            continue
        table.setdefault((r["dataset"]["id"], r["pattern"]), {})[r["subject"]] = r
    return table


def _ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec.get("status") == "ok" and rec.get("median_total_s") is not None


def target_rows(records: Sequence[dict[str, Any]]) -> list[TargetRow]:
    """One row per dataset and pattern of the run, in run order."""
    rows = []
    for (dataset, pattern), subjects in _by(records).items():
        rivals = WRITE_RIVALS if pattern.startswith("write") else READ_RIVALS
        base = subjects.get(BASELINE)
        candidates = [(name, subjects[name]) for name in rivals if _ok(subjects.get(name))]
        others = {
            name: rec.get("median_total_s")
            for name, rec in subjects.items()
            if name != BASELINE and rec.get("status") == "ok"
        }
        note = None
        if not _ok(base):
            note = f"gpuzarr {base['status']}: {base.get('note')}" if base else "gpuzarr not run"
        missing = [f"{n} {subjects[n]['status']}" for n in rivals if n in subjects and not _ok(subjects[n])]
        if missing:
            note = "; ".join(filter(None, [note, ", ".join(missing)]))
        if not candidates or not _ok(base):
            rows.append(
                TargetRow(
                    dataset,
                    pattern,
                    base and base.get("median_total_s"),
                    None,
                    None,
                    None,
                    None,
                    others,
                    note or "no rival measured",
                )
            )
            continue
        rival, rec = min(candidates, key=lambda item: item[1]["median_total_s"])
        fastest_min = min(c[1]["min_total_s"] for c in candidates)
        assert base is not None
        ours, theirs = base.get("total_s") or [], rec.get("total_s") or []
        # (Repetition i of each subject ran in round i; lists of unequal length do not pair.)
        paired = list(zip(ours, theirs, strict=True)) if len(ours) == len(theirs) else []
        rows.append(
            TargetRow(
                dataset,
                pattern,
                base["median_total_s"],
                rival,
                rec["median_total_s"],
                base["median_total_s"] / rec["median_total_s"],
                base["min_total_s"] / fastest_min,
                others,
                note,
                (sum(mine <= rivals for mine, rivals in paired), len(paired)) if paired else None,
            )
        )
    return rows


def _cell(row: TargetRow | None, *, marks: bool = True) -> str:
    if row is None:
        return ""
    if row.ratio is None:
        return "n/a"
    text = f"{row.ratio:.2f}"
    if marks and row.in_target:
        text += " ✓" if row.met else " ✗"
    return text


def target_table_text(records: Sequence[dict[str, Any]]) -> str:
    """The target matrix as plain text (datasets x patterns) with a summary line."""
    rows = target_rows(records)
    patterns = [p for p in _PATTERN_ORDER if any(r.pattern == p for r in rows)]
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    cell = {(r.dataset, r.pattern): r for r in rows}
    width = max([len(d) for d in datasets] + [8])
    lines = [
        "gpuzarr median time / faster of (tensorstore, zarrs) for reads, / tensorstore for writes "
        "(<= 1.00: target met; region and strided are for information)",
        f"  {'dataset':<{width}}" + "".join(f"{p:>15}" for p in patterns),
    ]
    for d in datasets:
        lines.append(f"  {d:<{width}}" + "".join(f"{_cell(cell.get((d, p))):>15}" for p in patterns))
    lines.append(_target_summary(rows))
    return "\n".join(lines)


def _target_summary(rows: Sequence[TargetRow]) -> str:
    scored = [r for r in rows if r.in_target]
    met = [r for r in scored if r.met]
    unknown = [r for r in scored if r.met is None]
    missed = [r for r in scored if r.met is False]
    text = f"target: {len(met)} of {len(scored)} cells met"
    if missed:
        text += "; missed: " + ", ".join(f"{r.dataset} {r.pattern} ({r.ratio:.2f})" for r in missed)
    if unknown:
        text += "; not measurable: " + ", ".join(f"{r.dataset} {r.pattern}" for r in unknown)
    return text


_PATTERN_ORDER = ("full", "windows", "region", "strided", "write-full", "write-partial")


# --------------------------------------------------------------------------------------
# summary matrices (console)


def summary_tables(records: Sequence[dict[str, Any]]) -> str:
    """Per pattern: GB/s per subject and gpuzarr/subject ratios, datasets as rows."""
    blocks = []
    by = _by(records)
    patterns = [p for p in _PATTERN_ORDER if any(k[1] == p for k in by)]
    for pattern in patterns:
        keys = [k for k in by if k[1] == pattern]
        names = list(dict.fromkeys(n for k in keys for n in by[k]))
        labels = [f"{k[0]}" for k in keys]
        lw = max([len(x) for x in labels] + [8])
        widths = [max(9, len(n) + 2) for n in names]
        head = f"  {'dataset':<{lw}}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))
        unit = "ms (median open+run; lower is better)" if pattern == "region" else "GB/s of decoded chunk bytes"
        g_lines = [f"[{pattern}] {unit}", head]
        r_lines = [f"[{pattern}] {BASELINE} time / subject time (median; < 1: {BASELINE} faster)", head]
        for key, label in zip(keys, labels, strict=True):
            g_cells, r_cells = [], []
            for name, width in zip(names, widths, strict=True):
                rec = by[key].get(name)
                if not _ok(rec):
                    g_cells.append("-".rjust(width))
                    r_cells.append("-".rjust(width))
                    continue
                assert rec is not None
                value = rec["median_total_s"] * 1e3 if pattern == "region" else rec["gbps_work"]
                g_cells.append(_num(value, f"{width}.2f"))
                r_cells.append(_num(rec.get(f"ratio_{BASELINE}_over_this_total"), f"{width}.2f"))
            g_lines.append(f"  {label:<{lw}}" + "".join(g_cells))
            r_lines.append(f"  {label:<{lw}}" + "".join(r_cells))
        blocks.append("\n".join(g_lines) + "\n\n" + "\n".join(r_lines))
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------------------
# markdown


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _fmt_s(value: float | None) -> str:
    if value is None:
        return _DASH
    return f"{value * 1e3:.2f} ms" if value < 0.1 else f"{value:.3f} s"


def markdown_report(
    records: Sequence[dict[str, Any]],
    *,
    plots: dict[str, str] | None = None,
    note: str | None = None,
    title: str = "gpuzarr benchmark results",
) -> str:
    """The report of one run as markdown: context, target table, details, memory, problems, plots."""
    if not records:
        return f"# {title}\n\nNo results.\n"
    first = records[0]
    env, params = first["env"], first["params"]
    suite = first["suite"]
    git = env.get("git") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)
    lines = [
        f"# {title}",
        "",
        f"* **run** `{first['run_id']}` ({suite} suite), started {env.get('date_utc')}; "
        f"command: `{' '.join(params.get('argv') or [])}`",
        f"* **machine**: {env.get('cpu_model')}, {env.get('cpu_count')} CPUs, "
        f"{(env.get('mem_total_bytes') or 0) / 2**30:.0f} GiB RAM"
        + (f"; GPU: {'; '.join(env['gpus'])}" if env.get("gpus") else "; no GPU")
        + f"; {env.get('platform')}",
        f"* **code**: git `{str(git.get('commit'))[:12]}`{' (dirty tree)' if git.get('dirty') else ''}, "
        f"gpuzarr source sha256 `{env.get('gpuzarr_source_sha256_16')}`",
        f"* **software**: python {env.get('python')}; {versions}",
        f"* **method**: {params.get('repeats')} timed repetitions (writes: {params.get('write_repeats')}) after "
        f"one verified warm-up, subjects {_order_text(params)}, medians of open+run; hot page cache; "
        f"load average at start {env.get('loadavg_start')}",
    ]
    if note:
        lines.append(f"* **note**: {note}")
    rows = target_rows(records)
    patterns = [p for p in _PATTERN_ORDER if any(r.pattern == p for r in rows)]
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    cell = {(r.dataset, r.pattern): r for r in rows}
    lines += [
        "",
        "## Target: gpuzarr vs the fastest peer",
        "",
        "gpuzarr's median time divided by the faster median of **tensorstore and zarrs** (reads) or by "
        "**tensorstore** (writes), same run. **≤ 1.00 (✓): gpuzarr is at least as fast.** Target cells: "
        "`full`, `windows`, `write-full`, `write-partial`; `region` and `strided` are for information.",
        "",
        f"**{_target_summary(rows)}**",
        "",
    ]
    lines += _md_table(["dataset", *patterns], ([d, *(_cell(cell.get((d, p))) for p in patterns)] for d in datasets))
    lines += [
        "",
        "### Details",
        "",
        "Median open+run per subject. gpuzarr backs results of 1 MiB and more with the memory of results freed "
        "earlier (`config.result_pool_bytes`), as a read in a loop finds it; *gpuzarr-fresh* is the same read with "
        "that off, every result fresh memory as the peers' are, and *ratio (fresh)* its time over the rival's "
        "(for information). *ratio (min)* uses each subject's fastest repetition instead, which other "
        "load can only slow down: a verdict that holds in both columns is robust to noise. *Rounds won*: in how "
        "many rounds gpuzarr was at least as fast as the rival (each round times every subject once, back to "
        "back): near half of them means the two are within this machine's noise of each other.",
        "",
    ]
    names = ["gpuzarr", "tensorstore", "zarrs", "zarr-python"]
    fresh = [FRESH] if any(r.others.get(FRESH) is not None for r in rows) else []
    detail_rows = []
    for r in rows:
        times = {BASELINE: r.gpuzarr_s, **r.others}
        fresh_s = r.others.get(FRESH)
        detail_rows.append(
            [
                r.dataset,
                r.pattern,
                *(_fmt_s(times.get(n)) for n in names + fresh),
                r.rival or _DASH,
                _DASH if r.ratio is None else f"{r.ratio:.2f}",
                *(
                    [_DASH if fresh_s is None or not r.rival_s else f"{fresh_s / r.rival_s:.2f}"]
                    if fresh
                    else []
                ),
                _DASH if r.ratio_min is None else f"{r.ratio_min:.2f}",
                _DASH if r.rounds_won is None else f"{r.rounds_won[0]}/{r.rounds_won[1]}",
                ("✓" if r.met else "✗") if r.in_target and r.met is not None else "",
                r.note or "",
            ]
        )
    lines += _md_table(
        [
            "dataset",
            "pattern",
            *names,
            *fresh,
            "rival",
            "ratio",
            *(["ratio (fresh)"] if fresh else []),
            "ratio (min)",
            "rounds won",
            "target",
            "notes",
        ],
        detail_rows,
        "ll" + "r" * (4 + len(fresh)) + "l" + "r" * (3 + len(fresh)) + "cl",
    )
    lines += _ceiling_section(records)
    lines += _memory_section(records)
    lines += _problems_section(records)
    if plots:
        lines += ["", "## Plots", ""]
        for caption, path in plots.items():
            lines += [f"### {caption}", "", f"![{caption}]({path})", ""]
    lines += [
        "",
        f"Raw data: every repetition of every subject is in the JSON-lines results file (`run_id` {first['run_id']}).",
        "",
    ]
    return "\n".join(lines)


def _ceiling_section(records: Sequence[dict[str, Any]]) -> list[str]:
    by = _by(records)
    keys = [k for k in by if k[1] == "full"]
    ceilings = list(dict.fromkeys(n for k in keys for n, r in by[k].items() if r.get("reader_is_reference")))
    if not keys or not ceilings:
        return []
    readers = [n for n in dict.fromkeys(n for k in keys for n in by[k]) if n not in ceilings]
    lines = [
        "",
        "## Full reads: throughput and ceilings",
        "",
        "GB/s = decoded bytes / median open+run. Ceilings (same run, same files): "
        + "; ".join(f"**{c}**: {next(by[k][c]['reader_description'] for k in keys if c in by[k])}" for c in ceilings)
        + ". The last column is gpuzarr's time over the realistic ceiling's (1.00 = as fast as fetching the "
        "bytes and filling the output at memcpy speed).",
        "",
    ]
    real = "file-bytes+output" if "file-bytes+output" in ceilings else ceilings[0]
    rows = []
    for key in keys:
        cells = [key[0]]
        for n in [*readers, *ceilings]:
            rec = by[key].get(n)
            cells.append(f"{rec['gbps_work']:.2f}" if _ok(rec) else (rec or {}).get("status", _DASH))
        base, ceil = by[key].get(BASELINE), by[key].get(real)
        cells.append(f"{base['median_total_s'] / ceil['median_total_s']:.2f}" if _ok(base) and _ok(ceil) else _DASH)
        rows.append(cells)
    lines += _md_table(["dataset", *readers, *(f"{c} (ceiling)" for c in ceilings), f"gpuzarr / {real}"], rows)
    beaten = [
        f"{n} on {key[0]} ({_fmt_s(by[key][n]['median_total_s'])} vs {_fmt_s(by[key][real]['median_total_s'])})"
        for key in keys
        for n in readers
        if _ok(by[key].get(n))
        and _ok(by[key].get(real))
        and by[key][n]["median_total_s"] < by[key][real]["median_total_s"]
    ]
    if beaten:
        lines += [
            "",
            f"Faster than the {real} ceiling (noise, or a reader that found a cheaper way to land the bytes; "
            f"compare the min-based numbers in the raw data): {'; '.join(beaten)}.",
        ]
    return lines


def _memory_section(records: Sequence[dict[str, Any]]) -> list[str]:
    mem = [r for r in records if r["pattern"] == "memory"]
    if not mem:
        return []
    datasets = list(dict.fromkeys(r["dataset"]["id"] for r in mem))
    readers = list(dict.fromkeys(r["subject"] for r in mem))
    cell = {(r["dataset"]["id"], r["subject"]): r for r in mem}
    method = next((r.get("method") for r in mem if r.get("method")), "")
    lines = [
        "",
        "## Memory: peak of a full read",
        "",
        "Each reader reads the whole array once in a fresh process. Cells: **staging overhead** = peak RSS during "
        "the read - RSS before it - the result's size, in MiB (0: nothing held beyond the result); in brackets "
        f"peak - before, result included. Method: {method}.",
        "",
    ]

    def fmt(rec: dict[str, Any] | None) -> str:
        if rec is None:
            return ""
        if rec.get("status") != "ok" or rec.get("overhead_bytes") is None:
            return rec.get("status", "?")
        return f"{rec['overhead_bytes'] / _MIB:.0f} ({rec['used_bytes'] / _MIB:.0f})"

    out_mib = {r["dataset"]["id"]: r["output_bytes"] / _MIB for r in mem if r.get("output_bytes")}
    lines += _md_table(
        ["dataset (result MiB)", *readers],
        (
            [f"{d} ({out_mib[d]:.0f})" if d in out_mib else d, *(fmt(cell.get((d, n))) for n in readers)]
            for d in datasets
        ),
    )
    return lines


def _problems_section(records: Sequence[dict[str, Any]]) -> list[str]:
    bad = [
        r
        for r in records
        if r.get("status") not in ("ok", None)
        and not (r.get("status") == "unsupported" and r.get("reader_is_reference"))
    ]
    if not bad:
        return ["", "## Problems", "", "None: every subject that ran was verified against the source.", ""]
    lines = ["", "## Problems and limitations", ""]
    lines += _md_table(
        ["dataset", "pattern", "subject", "status", "note"],
        (
            [r["dataset"]["id"], r["pattern"], r["subject"], r["status"], (r.get("note") or "").replace("|", "/")]
            for r in bad
        ),
        "lllll",
    )
    return lines


def _order_text(params: dict[str, Any]) -> str:
    """How a run ordered its subjects in each round (runs before the balanced design
    rotated a fixed cyclic order)."""
    if params.get("order") == ORDER_TEXT:
        return "interleaved in a Williams design (each in every position, after every other, equally often)"
    return "rotated round-robin"
