"""PNG plots of one run: throughput per dataset and pattern, peers side by side, ceilings marked.

One figure per pattern (and one for memory), datasets as rows, a horizontal bar per
subject: GB/s of decoded chunk bytes per median open+run (``region``: milliseconds,
lower is better). Thin whiskers span the slowest to the fastest repetition; ceilings
(same run) are vertical ticks across each dataset's group. A subject that was not
timed (unsupported, error, mismatch) gets a short grey note where its bar would be.

matplotlib is imported lazily with the Agg backend (no display needed); without it the
plots are skipped with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.patterns import PATTERN_SUMMARY

__all__ = ["COLORS", "plot_run"]

#: One colour per subject, the same in every figure.
COLORS = {
    "gpuzarr": "#d62728",
    "gpuzarr-fresh": "#e377c2",
    "gpuzarr-prealloc": "#ff9896",
    "zarr-python": "#1f77b4",
    "zarrs": "#ff7f0e",
    "tensorstore": "#2ca02c",
    "kvikio": "#9467bd",
}
_CEILING_STYLE = {
    "file-bytes": {"color": "#7f7f7f", "linestyle": (0, (2, 1.5))},
    "file-bytes+output": {"color": "black", "linestyle": "-"},
    "file-write": {"color": "black", "linestyle": "-"},
    "h2d": {"color": "#7f7f7f", "linestyle": (0, (2, 1.5))},
    "nvcomp-decode": {"color": "black", "linestyle": "-"},
}
#: Ceilings that bound what a reader can reach (the axis always shows them); others may be clipped.
_TIGHT_CEILINGS = frozenset({"file-bytes+output", "nvcomp-decode"})
_PATTERN_ORDER = ("full", "windows", "region", "strided", "write-full", "write-partial")
_MIB = 2**20


def _value(rec: dict[str, Any], pattern: str, stat: str) -> float | None:
    """GB/s (or ms for ``region``) of a record at its median, fastest or slowest repetition."""
    key = {"median": "median_total_s", "min": "min_total_s", "max": "max_total_s"}[stat]
    t = rec.get(key)
    if not t:
        return None
    if pattern == "region":
        return t * 1e3
    return rec["task"]["work_bytes"] / 1e9 / t


def _subtitle(records: Sequence[dict[str, Any]], method: str | None = None) -> str:
    first = records[0]
    env = first["env"]
    gpu = f", {env['gpus'][0]}" if env.get("gpus") else ""
    commit = str((env.get("git") or {}).get("commit"))[:10]
    if method is None:
        params = first["params"]
        method = f"median of {params.get('repeats')} (writes {params.get('write_repeats')}) after a verified warm-up"
    return (
        f"{first['suite']} suite, run {first['run_id']} ({env.get('date_utc')}), {env.get('cpu_model')} "
        f"x{env.get('cpu_count')}{gpu}; gpuzarr {commit}; {method}"
    )


def _pattern_figure(records: Sequence[dict[str, Any]], pattern: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    recs = [r for r in records if r["pattern"] == pattern]
    datasets = list(dict.fromkeys(r["dataset"]["id"] for r in recs))
    subjects = list(dict.fromkeys(r["subject"] for r in recs if not r.get("reader_is_reference")))
    ceilings = list(dict.fromkeys(r["subject"] for r in recs if r.get("reader_is_reference") and r["status"] == "ok"))
    by = {(r["dataset"]["id"], r["subject"]): r for r in recs}
    n, k = len(datasets), max(1, len(subjects))
    bar = 0.8 / k
    fig_h = 1.4 + n * (0.28 * k + 0.35)
    fig, ax = plt.subplots(figsize=(11, fig_h))
    xmax = 0.0
    ceiling_marks: list[tuple[int, str, float]] = []
    labelled: set[str] = set()

    def label(name: str) -> str | None:
        if name in labelled:
            return None
        labelled.add(name)
        return name

    for i, d in enumerate(datasets):
        for j, name in enumerate(subjects):
            y = i + (j - (k - 1) / 2) * bar
            rec = by.get((d, name))
            if rec is None:
                continue
            med = _value(rec, pattern, "median") if rec["status"] == "ok" else None
            if med is None:
                ax.text(0, y, f"  {name}: {rec['status']}", va="center", ha="left", fontsize=7, color="#777777")
                continue
            lo, hi = _value(rec, pattern, "max"), _value(rec, pattern, "min")
            if pattern == "region":
                lo, hi = hi, lo  # ms: the fastest repetition is the smallest value
            ax.barh(y, med, height=bar * 0.9, color=COLORS.get(name, "#8c564b"), label=label(name))
            if lo is not None and hi is not None:
                ax.plot([lo, hi], [y, y], color="#333333", linewidth=0.8)
            ax.text(max(med, lo or 0, hi or 0), y, f" {med:.2f}", va="center", ha="left", fontsize=7)
            xmax = max(xmax, med, hi or 0)
        for name in ceilings:
            rec = by.get((d, name))
            value = _value(rec, pattern, "median") if rec and rec["status"] == "ok" else None
            if value is not None:
                ceiling_marks.append((i, name, value))
    # Axis: the bars and the tight ceilings; a loose ceiling far beyond is drawn at the edge, labelled.
    tight = [v for _, name, v in ceiling_marks if name in _TIGHT_CEILINGS]
    limit = max([xmax, *tight]) * 1.2 if xmax or tight else 1.0
    for i, name, value in ceiling_marks:
        style = _CEILING_STYLE.get(name, {"color": "black", "linestyle": "-"})
        shown = min(value, limit * 0.97)
        ax.plot([shown, shown], [i - 0.45, i + 0.45], linewidth=2, label=label(f"{name} (ceiling)"), **style)
        if value > shown:
            ax.text(shown, i - 0.47, f"{value:.1f} \u2192", ha="right", va="bottom", fontsize=7, color=style["color"])
    ax.set_yticks(range(n))
    ax.set_yticklabels(datasets, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, limit)
    unit = (
        "ms: median open+run (lower is better)"
        if pattern == "region"
        else "GB/s: decoded chunk bytes / median open+run (higher is better)"
    )
    ax.set_xlabel(unit + "; whiskers: slowest to fastest repetition", fontsize=8)
    ax.set_title(f"{pattern}: {PATTERN_SUMMARY.get(pattern, '')}\n{_subtitle(records)}", fontsize=8.5, loc="left")
    ax.grid(axis="x", linewidth=0.3, alpha=0.6)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _memory_figure(records: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    mem = [r for r in records if r["pattern"] == "memory"]
    datasets = list(dict.fromkeys(r["dataset"]["id"] for r in mem))
    readers = list(dict.fromkeys(r["subject"] for r in mem))
    by = {(r["dataset"]["id"], r["subject"]): r for r in mem}
    n, k = len(datasets), max(1, len(readers))
    bar = 0.8 / k
    fig, ax = plt.subplots(figsize=(11, 1.4 + n * (0.28 * k + 0.35)))
    xmax = 0.0
    labelled: set[str] = set()
    for i, d in enumerate(datasets):
        for j, name in enumerate(readers):
            y = i + (j - (k - 1) / 2) * bar
            rec = by.get((d, name))
            if rec is None:
                continue
            if rec["status"] != "ok" or rec.get("overhead_bytes") is None:
                ax.text(0, y, f"  {name}: {rec['status']}", va="center", fontsize=7, color="#777777")
                continue
            value = rec["overhead_bytes"] / _MIB
            first = name not in labelled
            labelled.add(name)
            ax.barh(y, value, height=bar * 0.9, color=COLORS.get(name, "#8c564b"), label=name if first else None)
            ax.text(max(value, 0), y, f" {value:.0f}", va="center", fontsize=7)
            xmax = max(xmax, value)
    ax.set_yticks(range(n))
    ax.set_yticklabels(datasets, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(min(0, ax.get_xlim()[0]), xmax * 1.15 if xmax > 0 else 1)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("MiB: peak RSS during one full read - RSS before - result size (staging overhead)", fontsize=8)
    method = "one full read per reader, each in a fresh process"
    ax.set_title(f"memory: staging overhead of a full read\n{_subtitle(records, method)}", fontsize=8.5, loc="left")
    ax.grid(axis="x", linewidth=0.3, alpha=0.6)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(records: Sequence[dict[str, Any]], out_dir: Path, prefix: str = "") -> tuple[dict[str, Path], str | None]:
    """Write one PNG per pattern (and memory) of ``records`` into ``out_dir``.

    Returns ``{caption: path}`` and a note (why nothing was plotted, or None).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return {}, "matplotlib is not installed (pip install -e '.[bench]'): no plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    patterns = [p for p in _PATTERN_ORDER if any(r["pattern"] == p for r in records)]
    for pattern in patterns:
        path = out_dir / f"{prefix}{pattern}.png"
        _pattern_figure(records, pattern, path)
        written[f"{pattern}"] = path
    if any(r["pattern"] == "memory" for r in records):
        path = out_dir / f"{prefix}memory.png"
        _memory_figure(records, path)
        written["memory (staging overhead of a full read)"] = path
    return written, None
