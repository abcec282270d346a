"""The ``cpu`` and ``gpu`` suites: every dataset x pattern x peer, verified, timed, reported.

``python -m benchmarks cpu`` runs the default matrix (:data:`CPU_MATRIX`), which covers
every axis of the dataset universe at least once without running its full cartesian
product; ``--datasets`` (ids, aliases, globs, ``all``) and the axis filters run any
other combination. Per dataset, every pattern runs with every subject that supports it
(readers for read patterns, writers for write patterns, plus the ceilings), through
:func:`benchmarks.timing.run_round_robin`; then, on the CPU suite, each reader's peak
memory for a full read is measured in a subprocess (:mod:`benchmarks.memory`).

Results go to a JSON-lines file (one record per dataset, pattern and subject), the
console (a table per dataset and pattern, summary matrices, the target table), and a
markdown report with PNG plots per run (``benchmarks/results/reports/<suite>-<run>/``).
A complete default-matrix run also refreshes ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.datasets import (
    ALIASES,
    CODECS,
    DEFAULT_DATA_DIR,
    FORMATS,
    KINDS,
    Dataset,
    DatasetSpec,
    ensure_dataset,
    format_size,
    parse_list,
    select_datasets,
)
from benchmarks.env import collect_environment, loadavg
from benchmarks.patterns import DEFAULT_WINDOWS, PATTERNS, READ_PATTERNS, WRITE_PATTERNS, make_task
from benchmarks.readers import CEILINGS, DEFAULT_PEERS, READERS, Reader, Subject, make_readers
from benchmarks.report import (
    append_jsonl,
    dataset_table,
    make_records,
    markdown_report,
    memory_records,
    summary_tables,
    target_table_text,
)
from benchmarks.timing import ORDER_TEXT, Outcome, Quiet, run_round_robin
from benchmarks.writers import DEFAULT_WRITERS, DELETION_SETTLE_S, WRITE_CEILINGS, WRITERS, Trash, Writer

__all__ = ["CPU", "CPU_MATRIX", "GPU", "GPU_MATRIX", "QUICK_MATRIX", "SuiteConfig", "add_arguments", "main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The default CPU matrix: each axis value at least once (see benchmarks/README.md).
CPU_MATRIX = (
    "f32-zstd-1m-v3",  # the baseline: zstd, 1 MiB chunks, v3
    "f32-zstd-1m-v2",  # format v2 (same bytes otherwise)
    "f32-none-1m-v3",  # no codec: pure I/O and copy
    "f32-blosc-lz4-shuffle-1m-v2",  # blosc lz4 + byte shuffle
    "f32-gzip-1m-v3",  # gzip
    "f32-zstd-64k-v3",  # small chunks: per-chunk overhead
    "f32-zstd-8m-v2",  # large chunks: parallelism within few chunks
    "f32-zstd-64k-s4m-v3",  # sharded-64k: the case of issue 3
    "i16-zstd-1m-s16m-v3",  # sharded, 1 MiB inner in 16 MiB shards; int16 image tiles
    "i16-blosc-zstd-bitshuffle-1m-v3",  # int16 image, blosc zstd + bitshuffle
)
#: ``--quick``: the baseline, the sharded index case and an int16 v2 dataset, small.
QUICK_MATRIX = ("f32-zstd-1m-v3", "f32-zstd-64k-s4m-v3", "i16-blosc-zstd-bitshuffle-1m-v2")
#: The default GPU matrix: larger chunks too (64 MiB), both sharded layouts.
GPU_MATRIX = (
    "f32-none-8m-v3",
    "f32-zstd-1m-v3",
    "f32-zstd-8m-v3",
    "f32-zstd-64m-v3",
    "f32-zstd-64k-s4m-v3",
    "f32-zstd-1m-s16m-v3",
    "f32-gzip-8m-v3",
    "f32-blosc-lz4-shuffle-8m-v2",
    "i16-blosc-zstd-bitshuffle-8m-v3",
    "i16-zstd-64m-v2",
)
GPU_QUICK_MATRIX = ("f32-zstd-8m-v3", "f32-zstd-64k-s4m-v3")


@dataclass(frozen=True)
class SuiteConfig:
    """What a suite runs by default and with what."""

    name: str
    readers: dict[str, type[Reader]]
    read_ceilings: dict[str, type[Reader]]
    writers: dict[str, type[Writer]]
    write_ceilings: dict[str, type[Writer]]
    default_peers: tuple[str, ...]
    patterns: tuple[str, ...]
    matrix: tuple[str, ...]
    quick_matrix: tuple[str, ...]
    size_mib: int
    quick_size_mib: int
    repeats: int
    quick_repeats: int
    write_repeats: int
    memory: bool
    #: Why the whole suite cannot run here, or None.
    unavailable: Callable[[], str | None]


def _no_reason() -> str | None:
    return None


CPU = SuiteConfig(
    name="cpu",
    readers=READERS,
    read_ceilings=CEILINGS,
    writers=WRITERS,
    write_ceilings=WRITE_CEILINGS,
    default_peers=tuple(dict.fromkeys(DEFAULT_PEERS + DEFAULT_WRITERS)),
    patterns=tuple(PATTERNS),
    matrix=CPU_MATRIX,
    quick_matrix=QUICK_MATRIX,
    size_mib=128,
    quick_size_mib=32,
    repeats=5,
    quick_repeats=3,
    write_repeats=3,
    memory=True,
    unavailable=_no_reason,
)


def _gpu_config() -> SuiteConfig:
    from benchmarks.gpu import GPU_CEILINGS, GPU_DEFAULT_PEERS, GPU_READERS, GPU_WRITERS, gpu_unavailable

    return SuiteConfig(
        name="gpu",
        readers=GPU_READERS,
        read_ceilings=GPU_CEILINGS,
        writers=GPU_WRITERS,
        write_ceilings={},
        default_peers=GPU_DEFAULT_PEERS,
        patterns=tuple(PATTERNS),
        matrix=GPU_MATRIX,
        quick_matrix=GPU_QUICK_MATRIX,
        size_mib=512,
        quick_size_mib=128,
        repeats=5,
        quick_repeats=3,
        write_repeats=3,
        memory=False,
        unavailable=gpu_unavailable,
    )


GPU = _gpu_config()
SUITES = {"cpu": CPU, "gpu": GPU}


# --------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser, config: SuiteConfig) -> None:
    """The options of a suite subcommand."""
    names = [*config.readers, *config.writers]
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: datasets {','.join(config.quick_matrix)} at {config.quick_size_mib} MiB, "
        f"{config.quick_repeats} repetitions",
    )
    parser.add_argument(
        "--datasets",
        default=None,
        help="comma-separated dataset ids (f32-zstd-1m-v3), aliases ("
        + ", ".join(["default", "quick", "all", *ALIASES])
        + "), or globs over all ids ('i16-*-v2'); default: the default matrix ('default')",
    )
    parser.add_argument("--kinds", default=None, help=f"keep only these kinds ({','.join(KINDS)})")
    parser.add_argument("--codecs", default=None, help=f"keep only these codecs ({','.join(CODECS)})")
    parser.add_argument(
        "--chunks", default=None, help="keep only these chunk sizes (64k,1m,8m,64m; inner when sharded)"
    )
    parser.add_argument("--formats", default=None, help="keep only these formats (v2,v3)")
    parser.add_argument(
        "--sharding", choices=("any", "sharded", "unsharded"), default="any", help="keep sharded or unsharded datasets"
    )
    parser.add_argument(
        "--patterns",
        default=",".join(config.patterns),
        help=f"access patterns (default {','.join(config.patterns)})",
    )
    parser.add_argument(
        "--peers",
        default=",".join(config.default_peers),
        help=f"readers and writers (default {','.join(config.default_peers)}; "
        f"known: {', '.join(dict.fromkeys(names))})",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceilings")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=config.memory,
        help=f"measure each reader's peak memory for a full read, in a subprocess (default {config.memory})",
    )
    parser.add_argument(
        "--size-mib", type=int, default=None, help=f"decoded size of each array (default {config.size_mib})"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"timed repetitions per subject (default {config.repeats})"
    )
    parser.add_argument(
        "--write-repeats", type=int, default=None, help="timed repetitions for writes (default: --repeats, at most 3)"
    )
    parser.add_argument(
        "--windows", type=int, default=DEFAULT_WINDOWS, help=f"windows per batch (default {DEFAULT_WINDOWS})"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the values and of the window positions (default 0)"
    )
    parser.add_argument("--columns", type=int, default=None, help="array width (default: 4096 for f32, 8192 for i16)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for gpuzarr, zarrs, tensorstore, the ceilings and zarr-python's thread pool "
        "(default: each library's own default)",
    )
    parser.add_argument(
        "--quiet-cpus",
        type=float,
        default=0.25,
        help="before each measurement wait for other processes to use fewer CPUs than this (default 0.25); "
        "samples taken while others used more are counted as 'disturbed'",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=3.0, help="longest wait for quiet before each measurement, s (default 3)"
    )
    parser.add_argument(
        "--retakes", type=int, default=3, help="retake a disturbed measurement up to N times (default 3)"
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=300.0,
        help="seconds the whole run may spend waiting for quiet and on discarded measurements (default 300)",
    )
    parser.add_argument(
        "--deletion-settle",
        type=float,
        default=None,
        help="before a write cell, wait until the outputs deleted after the last dataset are this many seconds "
        f"old, s (default {DELETION_SETTLE_S:g}, 0 with --quick; see benchmarks/writers.py)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where datasets are cached")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON-lines file to append to (default results/{config.name}-<date>.jsonl)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots and markdown report")
    parser.add_argument("--list", action="store_true", help="print the datasets that would run, and exit")


def _log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Plan:
    """The resolved command line: what to run."""

    specs: list[DatasetSpec]
    patterns: list[str]
    peers: list[str]
    matrix: str
    size_mib: int
    repeats: int
    write_repeats: int


def resolve(args: argparse.Namespace, config: SuiteConfig) -> Plan:
    """Turn the options into a plan; raises ValueError on bad input."""
    size = args.size_mib or (config.quick_size_mib if args.quick else config.size_mib)
    repeats = args.repeats or (config.quick_repeats if args.quick else config.repeats)
    if repeats < 1:
        raise ValueError("--repeats must be at least 1")
    text = args.datasets or ("quick" if args.quick else "default")
    named = {"default": config.matrix, "quick": config.quick_matrix}
    filters = {
        "kinds": parse_list(args.kinds, list(KINDS), "kind") if args.kinds else None,
        "codecs": [c.strip() for c in args.codecs.split(",")] if args.codecs else None,
        "chunks": [c.strip() for c in args.chunks.split(",")] if args.chunks else None,
        "formats": parse_list(args.formats, list(FORMATS), "format") if args.formats else None,
        "sharded": {"any": None, "sharded": True, "unsharded": False}[args.sharding],
    }
    specs = select_datasets(text, named=named, size_mib=size, seed=args.seed, columns=args.columns, **filters)
    if not specs:
        raise ValueError(f"no dataset left after --datasets {text!r} and the filters")
    patterns = parse_list(args.patterns, list(config.patterns), "pattern")
    peers = parse_list(args.peers, list(dict.fromkeys([*config.readers, *config.writers])), "peer")
    # (A subset of the patterns is not the default matrix either: the results README
    # shows the latest default run, which must hold every pattern.)
    filtered = any(v is not None for v in filters.values()) or patterns != list(config.patterns)
    matrix = text if text in named and not filtered else "custom"
    write_repeats = args.write_repeats or min(repeats, config.write_repeats)
    if write_repeats < 1:
        raise ValueError("--write-repeats must be at least 1")
    return Plan(specs, patterns, peers, matrix, size, repeats, write_repeats)


def _header(
    config: SuiteConfig, env: dict[str, Any], params: dict[str, Any], subjects: list[Subject], notes: list[str]
) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    git = env["git"]
    gpus = f"; GPU: {'; '.join(env['gpus'])}" if env.get("gpus") else ""
    lines = [
        f"gpuzarr {config.name} benchmark suite  {env['date_utc']}  (run {params['run_id']})",
        f"machine: {env['cpu_model']}, {env['cpu_count']} CPUs (affinity {env['cpu_affinity']}), "
        f"{(env['mem_total_bytes'] or 0) / 2**30:.0f} GiB RAM{gpus}, {env['platform']}",
        f"python {env['python']}; {versions}",
        f"gpuzarr code: git {str(git['commit'])[:12]}{' (dirty tree)' if git['dirty'] else ''}, "
        f"source sha256 {env['gpuzarr_source_sha256_16']}; load average at start {env['loadavg_start']}",
        f"parameters: {params['size_mib']} MiB per array; {params['repeats']} timed repetitions "
        f"({params['write_repeats']} for writes) after 1 verified warm-up, subjects interleaved in a Williams design; "
        f"threads={params['threads'] or 'library defaults'}; matrix {params['matrix']}",
        f"patterns: {', '.join(params['patterns'])}",
        f"quiet: before each measurement wait up to {params['quiet_wait_s']:g} s for other processes to use "
        f"< {params['quiet_cpus']:g} CPUs; retake a measurement they disturbed up to {params['retakes']} times; "
        f"budget {params['quiet_budget_s']:g} s",
        "subjects:",
    ]
    lines += [f"  {s.label:<26} {s.description}" for s in subjects]
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def _available(subjects: list[Any], notes: list[str], skipped: dict[str, str]) -> list[Any]:
    kept = []
    for subject in subjects:
        reason = subject.unavailable()
        if reason:
            skipped[subject.name] = reason
            notes.append(f"{subject.name} SKIPPED: {reason}")
        else:
            kept.append(subject)
    return kept


def _plan_text(plan: Plan, datasets: list[DatasetSpec]) -> str:
    lines = [f"{len(datasets)} datasets x {len(plan.patterns)} patterns ({', '.join(plan.patterns)}):"]
    for s in datasets:
        shards = f", shards {s.shards[0]}x{s.shards[1]}" if s.shards else ""
        lines.append(
            f"  {s.id:<34} {s.shape[0]}x{s.shape[1]} {s.dtype}, chunks {s.chunks[0]}x{s.chunks[1]} "
            f"({format_size(s.chunk_bytes)}){shards}; {CODECS[s.codec].description}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace, config: SuiteConfig | None = None) -> int:
    """Run a suite; print the tables, append JSON records, write plots and the markdown report."""
    config = config or SUITES[args.suite]
    try:
        plan = resolve(args, config)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.list:
        _log(_plan_text(plan, plan.specs))
        return 0
    reason = config.unavailable()
    if reason:
        _log(f"{config.name} suite SKIPPED: {reason}")
        _log("(nothing was measured; the suite needs that to run. The cpu suite runs anywhere.)")
        return 0
    if args.threads:
        # zarr-python creates its thread pool once, at first use, from this setting.
        import zarr

        zarr.config.set({"threading.max_workers": args.threads})

    t_start = time.perf_counter()
    notes: list[str] = []
    skipped_readers: dict[str, str] = {}
    skipped_writers: dict[str, str] = {}
    ceiling = not args.no_ceiling
    readers = make_readers(
        plan.peers, args.threads, ceiling=ceiling, registry=config.readers, ceilings=config.read_ceilings
    )
    scratch = args.data_dir / "scratch"
    settle_s = args.deletion_settle if args.deletion_settle is not None else (0.0 if args.quick else DELETION_SETTLE_S)
    trash = Trash(scratch, settle_s)
    trash.empty()  # (what a run cut short left there; the reads before the first write let it settle)
    settled_s = 0.0
    writers: list[Writer] = [cls(args.threads, scratch) for n, cls in config.writers.items() if n in plan.peers]
    if ceiling:
        writers += [cls(args.threads, scratch) for cls in config.write_ceilings.values()]
    want_reads = any(p in READ_PATTERNS for p in plan.patterns)
    want_writes = any(p in WRITE_PATTERNS for p in plan.patterns)
    readers = _available(readers, notes, skipped_readers) if want_reads else []
    writers = _available(writers, notes, skipped_writers) if want_writes else []
    for skipped in (skipped_readers, skipped_writers):
        if "gpuzarr" in skipped:
            _log(f"WARNING: gpuzarr cannot be measured: {skipped['gpuzarr']}")

    run_id = uuid.uuid4().hex[:12]
    params: dict[str, Any] = {
        "run_id": run_id,
        "suite": config.name,
        "matrix": plan.matrix,
        "quick": bool(args.quick),
        "datasets": [s.id for s in plan.specs],
        "patterns": plan.patterns,
        "peers": plan.peers,
        "ceiling": ceiling,
        "memory": bool(args.memory),
        "size_mib": plan.size_mib,
        "repeats": plan.repeats,
        "write_repeats": plan.write_repeats,
        "warmup": 1,
        "windows": args.windows,
        "seed": args.seed,
        "threads": args.threads,
        "quiet_cpus": args.quiet_cpus,
        "quiet_wait_s": args.quiet_wait,
        "retakes": args.retakes,
        "quiet_budget_s": args.quiet_budget,
        "deletion_settle_s": settle_s,
        "order": ORDER_TEXT,
        "timed": "open (fresh handle or create) and run (read or write) separately; open+run is what users wait for",
        "argv": [Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]],
    }
    date = _dt.date.today().isoformat()
    out = args.out or RESULTS_DIR / f"{config.name}-{date}.jsonl"

    _log(_plan_text(plan, plan.specs))
    _log(f"preparing datasets in {args.data_dir} ...")
    t0 = time.perf_counter()
    datasets: list[Dataset] = [ensure_dataset(s, args.data_dir, log=_log) for s in plan.specs]
    os.sync()  # flush freshly written chunks now, not during the timings
    _log(f"datasets ready in {time.perf_counter() - t0:.1f} s")

    env = collect_environment()
    if config.name == "gpu":
        from benchmarks.gpu import gpu_description, gpu_versions

        env["gpu_device"] = gpu_description()
        env["gpu_versions"] = gpu_versions()
    _log("")
    _log(_header(config, env, params, [*readers, *writers], notes))

    quiet = Quiet(cpus=args.quiet_cpus, wait_s=args.quiet_wait, retakes=args.retakes, budget_s=args.quiet_budget)
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str, Outcome]] = []
    try:
        for ds in datasets:
            t_ds = time.perf_counter()
            source = np.array(ds.load_source())  # in memory: expected values and the values writers write
            for pattern in plan.patterns:
                task = make_task(pattern, ds.spec, seed=args.seed, windows=args.windows)
                subjects: list[Subject] = list(writers if task.is_write else readers)
                if not subjects:
                    continue
                _log("")
                _log(f"running {ds.label} / {pattern} ...")
                if task.is_write:
                    waited = trash.settle()
                    settled_s += waited
                    if waited:
                        _log(f"  (waited {waited:.0f} s for the last deleted outputs to be {settle_s:g} s old)")
                repeats = plan.write_repeats if task.is_write else plan.repeats
                outcomes = run_round_robin(subjects, ds, task, repeats, source=source, quiet=quiet, log=_log)
                skipped = skipped_writers if task.is_write else skipped_readers
                for name, why in skipped.items():
                    outcomes[name] = Outcome(name, status="unavailable", note=why)
                _log(dataset_table(ds, task, subjects, outcomes, disturbed_cpus=args.quiet_cpus))
                failures += [(ds.label, pattern, oc) for oc in outcomes.values() if oc.status in ("error", "mismatch")]
                new = make_records(
                    suite=config.name,
                    run_id=run_id,
                    ds=ds,
                    task=task,
                    subjects=[*subjects, *(_Placeholder(n, why) for n, why in skipped.items())],
                    outcomes=outcomes,
                    params=params,
                    env={**env, "loadavg_after": loadavg()},
                )
                append_jsonl(out, new)
                records += new
            del source
            trash.empty()  # (the next dataset's reads give the deletion time to settle)
            if args.memory and readers:
                records += _memory_pass(config, ds, readers, skipped_readers, args, run_id, params, env, out)
            _log(
                f"{ds.label} done in {time.perf_counter() - t_ds:.0f} s "
                f"(run so far {time.perf_counter() - t_start:.0f} s)"
            )
    finally:
        for subject in [*readers, *writers]:
            subject.close()
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)

    _log("")
    _log(summary_tables(records))
    _log("")
    _log(target_table_text(records))
    _log("")
    _log(
        f"load average at end {loadavg()}; waited for quiet / discarded measurements: {quiet.spent_s:.0f} s of "
        f"{quiet.budget_s:g} s budget, {quiet.discarded} measurements retaken; "
        f"waited {settled_s:.0f} s for deleted outputs to settle; "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    _log(f"results appended to {out} (run_id {run_id})")
    if not args.no_plots:
        _write_reports(records, config, run_id, date, complete=plan.matrix == "default" and not args.quick)
    for label, pattern, oc in failures:
        _log(f"\n{oc.status.upper()} {oc.reader} on {label} / {pattern}: {oc.note}")
        if oc.traceback:
            _log(oc.traceback.rstrip())
    gpuzarr_failed = any(oc.reader == "gpuzarr" for _, _, oc in failures)
    gpuzarr_missing = config.name == "cpu" and ("gpuzarr" in skipped_readers or "gpuzarr" in skipped_writers)
    return 1 if gpuzarr_missing or gpuzarr_failed else 0


class _Placeholder(Subject):
    """Stands in for an unavailable subject so that its record says why."""

    description = "unavailable"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(None)
        self.name = name  # type: ignore[misc]
        self.why = why

    def settings(self) -> dict[str, Any]:
        return {}

    def open(self, ds: Dataset, task: Any) -> Any:  # pragma: no cover - never timed
        raise RuntimeError(self.why)

    def run(self, handle: Any, ds: Dataset, task: Any) -> Any:  # pragma: no cover - never timed
        raise RuntimeError(self.why)

    def verify(self, result: Any, ds: Dataset, task: Any, expected: Any) -> str | None:  # pragma: no cover
        return self.why


def _memory_pass(
    config: SuiteConfig,
    ds: Dataset,
    readers: list[Reader],
    skipped: dict[str, str],
    args: argparse.Namespace,
    run_id: str,
    params: dict[str, Any],
    env: dict[str, Any],
    out: Path,
) -> list[dict[str, Any]]:
    from benchmarks.memory import MemoryResult, measure_memory

    _log("")
    _log(f"memory of a full read, {ds.label} (fresh process per reader; result {ds.nbytes / 2**20:.0f} MiB):")
    results = []
    for reader in readers:
        if reader.is_reference:
            continue
        res = measure_memory(reader.name, ds.spec, args.data_dir, threads=args.threads, suite=config.name)
        results.append(res)
        if res.status == "ok" and res.used_bytes is not None and res.overhead_bytes is not None:
            _log(
                f"  {reader.name:<18} peak - baseline {res.used_bytes / 2**20:7.1f} MiB, "
                f"staging overhead {res.overhead_bytes / 2**20:7.1f} MiB (read {res.read_s:.3f} s)"
            )
        else:
            _log(f"  {reader.name:<18} {res.status.upper()}: {res.note}")
    for name, why in skipped.items():
        if name in config.readers:
            results.append(MemoryResult(name, "unavailable", why))
    recs = memory_records(suite=config.name, run_id=run_id, ds=ds, results=results, params=params, env=env)
    append_jsonl(out, recs)
    return recs


def _write_reports(
    records: list[dict[str, Any]], config: SuiteConfig, run_id: str, date: str, *, complete: bool
) -> None:
    from benchmarks.plots import plot_run

    run_dir = RESULTS_DIR / "reports" / f"{config.name}-{date}-{run_id}"
    plots, note = plot_run(records, run_dir)
    md = markdown_report(
        records,
        plots={k: str(p.relative_to(run_dir)) for k, p in plots.items()},
        note=note,
        title=f"gpuzarr {config.name} benchmark, run {run_id}",
    )
    (run_dir / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "README.md").write_text(md)
    _log(f"report and plots: {run_dir}/ ({len(plots)} PNGs){'; ' + note if note else ''}")
    if complete:
        from benchmarks.publish import write_results_readme

        path = write_results_readme(records)
        _log(f"refreshed {path}")
