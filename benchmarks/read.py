"""The full-read benchmark: every reader reads every dataset whole into host memory."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.datasets import CODECS, DEFAULT_DATA_DIR, Dataset, FieldParams, ensure_dataset, parse_list
from benchmarks.env import collect_environment, loadavg
from benchmarks.readers import DEFAULT_PEERS, READERS, Reader, make_readers
from benchmarks.report import append_jsonl, dataset_table, make_records, summary_tables
from benchmarks.timing import Outcome, Quiet, run_round_robin

__all__ = ["add_arguments", "main"]

_RESULTS_DIR = Path(__file__).resolve().parent / "results"
_FORMATS = {"v3": 3, "v2": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``read`` subcommand's options."""
    parser.add_argument("--size-mib", type=int, default=128, help="decoded size of each array (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per reader (default 5)")
    parser.add_argument(
        "--datasets", default=",".join(CODECS), help=f"codec configurations (default {','.join(CODECS)})"
    )
    parser.add_argument("--formats", default="v3,v2", help="zarr formats (default v3,v2)")
    parser.add_argument(
        "--peers",
        default=",".join(DEFAULT_PEERS),
        help=f"readers (default {','.join(DEFAULT_PEERS)}; also: "
        + ", ".join(n for n in READERS if n not in DEFAULT_PEERS and n != "file-bytes")
        + ")",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the file-bytes ceiling")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for gpuzarr, zarrs, tensorstore, the ceiling and zarr-python's thread pool "
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
        "--quiet-wait",
        type=float,
        default=3.0,
        help="longest wait for quiet before each measurement, seconds (default 3; 0: never wait)",
    )
    parser.add_argument(
        "--retakes",
        type=int,
        default=3,
        help="retake a disturbed measurement up to this many times (default 3; 0: never)",
    )
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=300.0,
        help="seconds the whole run may spend waiting for quiet and on discarded measurements (default 300)",
    )
    parser.add_argument("--columns", type=int, default=4096, help="array columns (default 4096)")
    parser.add_argument("--chunk-rows", type=int, default=64, help="rows per chunk (default 64: 1 MiB chunks)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where datasets are cached")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON-lines file to append to (default benchmarks/results/cpu-read-<date>.jsonl)",
    )


def _log(msg: str) -> None:
    print(msg, flush=True)


def _header(env: dict[str, Any], params: dict[str, Any], readers: list[Reader], notes: list[str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    git = env["git"]
    lines = [
        f"gpuzarr full-read benchmark  {env['date_utc']}",
        f"machine: {env['cpu_model']}, {env['cpu_count']} CPUs (affinity {env['cpu_affinity']}), "
        f"{(env['mem_total_bytes'] or 0) / 2**30:.0f} GiB RAM, {env['platform']}",
        f"python {env['python']}; {versions}",
        f"gpuzarr code: git {str(git['commit'])[:12]}{' (dirty tree)' if git['dirty'] else ''}, "
        f"source sha256 {env['gpuzarr_source_sha256_16']}; load average at start {env['loadavg_start']}",
        f"parameters: {params['size_mib']} MiB per array, {params['repeats']} timed repetitions after 1 warm-up, "
        f"readers rotated round-robin; threads={params['threads'] or 'library defaults'}",
        f"quiet: before each measurement wait up to {params['quiet_wait_s']:g} s for other processes to use "
        f"< {params['quiet_cpus']:g} CPUs; retake a measurement they disturbed up to {params['retakes']} times; "
        f"budget {params['quiet_budget_s']:g} s",
        f"       'others' = CPUs other processes used during a kept sample; 'disturbed' = kept samples where "
        f"that was >= {params['quiet_cpus']:g}",
        "readers:",
    ]
    lines += [f"  {r.name:<18} {r.description}" for r in readers]
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the full-read benchmark; print the tables and append JSON records."""
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    try:
        codecs = parse_list(args.datasets, list(CODECS), "dataset")
        formats = [_FORMATS[f] for f in parse_list(args.formats, list(_FORMATS), "format")]
        peers = parse_list(args.peers, list(READERS), "peer")
        field = FieldParams(size_mib=args.size_mib, columns=args.columns, chunk_rows=args.chunk_rows, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.threads:
        # zarr-python creates its thread pool once, at first use, from this setting.
        import zarr

        zarr.config.set({"threading.max_workers": args.threads})

    all_readers = make_readers(peers, args.threads, ceiling=not args.no_ceiling)
    readers: list[Reader] = []
    notes: list[str] = []
    skipped: dict[str, str] = {}
    for reader in all_readers:
        reason = reader.unavailable()
        if reason:
            skipped[reader.name] = reason
            notes.append(f"{reader.name} SKIPPED: {reason}")
        else:
            readers.append(reader)
    if "gpuzarr" not in [r.name for r in readers]:
        notes.append("gpuzarr is not among the readers run: no ratios")
    if "gpuzarr" in skipped:
        _log(f"WARNING: gpuzarr cannot be measured: {skipped['gpuzarr']}")

    run_id = uuid.uuid4().hex[:12]
    params = {
        "size_mib": args.size_mib,
        "repeats": args.repeats,
        "warmup": 1,
        "datasets": codecs,
        "formats": [f"v{f}" for f in formats],
        "peers": peers,
        "ceiling": not args.no_ceiling,
        "threads": args.threads,
        "quiet_cpus": args.quiet_cpus,
        "quiet_wait_s": args.quiet_wait,
        "retakes": args.retakes,
        "quiet_budget_s": args.quiet_budget,
        "shape": list(field.shape),
        "chunks": list(field.chunks),
        "dtype": field.dtype,
        "seed": field.seed,
        "order": "round-robin, rotated each repetition",
        "timed": "open (fresh handle) and read separately; open+read is what users wait for",
        "argv": sys.argv,
    }
    out = args.out or _RESULTS_DIR / f"cpu-read-{_dt.date.today().isoformat()}.jsonl"

    _log(f"preparing datasets in {args.data_dir} ...")
    t0 = time.perf_counter()
    datasets: list[Dataset] = [
        ensure_dataset(field, codec, fmt, args.data_dir, log=_log) for fmt in formats for codec in codecs
    ]
    os.sync()  # flush freshly written chunks now, not during the timings
    _log(f"datasets ready in {time.perf_counter() - t0:.1f} s")

    env = collect_environment()
    _log("")
    _log(_header(env, params, readers, notes))

    quiet = Quiet(cpus=args.quiet_cpus, wait_s=args.quiet_wait, retakes=args.retakes, budget_s=args.quiet_budget)
    results: list[tuple[Dataset, dict[str, Outcome]]] = []
    for ds in datasets:
        _log("")
        _log(f"running {ds.label} ...")
        outcomes = run_round_robin(readers, ds, args.repeats, quiet=quiet, log=_log)
        for name, reason in skipped.items():
            outcomes[name] = Outcome(name, status="unavailable", note=reason)
        results.append((ds, outcomes))
        _log(dataset_table(ds, readers, outcomes, disturbed_cpus=args.quiet_cpus))
        env_now = {**env, "loadavg_after_dataset": loadavg()}
        append_jsonl(
            out,
            make_records(
                benchmark="cpu-read",
                run_id=run_id,
                ds=ds,
                readers=all_readers,
                outcomes=outcomes,
                params=params,
                env=env_now,
            ),
        )

    _log("")
    _log(summary_tables(results, readers))
    _log("")
    _log(
        f"load average at end {loadavg()}; waited for quiet / discarded measurements: {quiet.spent_s:.0f} s of "
        f"{quiet.budget_s:g} s budget, {quiet.discarded} measurements retaken"
    )
    _log(f"results appended to {out} (run_id {run_id})")
    failed = [(ds.label, oc) for ds, ocs in results for oc in ocs.values() if oc.status in ("error", "mismatch")]
    for label, oc in failed:
        _log(f"\n{oc.status.upper()} {oc.reader} on {label}: {oc.note}")
        if oc.traceback:
            _log(oc.traceback.rstrip())
    return 1 if "gpuzarr" in skipped or any(oc.reader == "gpuzarr" for _, oc in failed) else 0
