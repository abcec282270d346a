"""``python -m benchmarks <suite> [options]``; see benchmarks/README.md.

* ``cpu``: every dataset x access pattern x peer on the CPU (reads, writes, ceilings, memory);
* ``gpu``: reads into device memory (skips cleanly without CuPy or a GPU);
* ``read``: the original full-read benchmark's options, run as the ``cpu`` suite with the
  ``full`` pattern only;
* ``report``: rebuild ``benchmarks/results/README.md`` and its plots from the results files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import publish, suite
from benchmarks.datasets import CODECS, DEFAULT_DATA_DIR, format_size, parse_list

_LEGACY_CODECS = {"zstd": "zstd", "blosc-lz4-shuffle": "blosc-lz4-shuffle", "gzip": "gzip", "raw": "none"}


def _add_read_arguments(parser: argparse.ArgumentParser) -> None:
    """The original ``read`` benchmark's options (kept so old command lines still work)."""
    parser.add_argument("--size-mib", type=int, default=128, help="decoded size of each array (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per reader (default 5)")
    parser.add_argument(
        "--datasets",
        default=",".join(_LEGACY_CODECS),
        help=f"codecs (default {','.join(_LEGACY_CODECS)}; also {','.join(c for c in CODECS if c != 'none')})",
    )
    parser.add_argument("--formats", default="v3,v2", help="zarr formats (default v3,v2)")
    parser.add_argument("--peers", default="gpuzarr,zarr-python,zarrs,tensorstore", help="readers")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceilings")
    parser.add_argument("--threads", type=int, default=None, help="threads for every library (default: their own)")
    parser.add_argument("--quiet-cpus", type=float, default=0.25, help="see the cpu suite")
    parser.add_argument("--quiet-wait", type=float, default=3.0, help="see the cpu suite")
    parser.add_argument("--retakes", type=int, default=3, help="see the cpu suite")
    parser.add_argument("--quiet-budget", type=float, default=300.0, help="see the cpu suite")
    parser.add_argument("--columns", type=int, default=4096, help="array columns (default 4096)")
    parser.add_argument("--chunk-rows", type=int, default=64, help="rows per chunk (default 64: 1 MiB chunks)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where datasets are cached")
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines file to append to")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots and markdown report")


def _read_as_cpu(args: argparse.Namespace) -> int:
    """Run the legacy ``read`` options as the cpu suite's ``full`` pattern on f32 datasets."""
    try:
        codecs = [_LEGACY_CODECS.get(c, c) for c in parse_list(args.datasets, [*_LEGACY_CODECS, *CODECS], "dataset")]
        formats = parse_list(args.formats, ["v3", "v2"], "format")
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    chunk = format_size(args.chunk_rows * args.columns * 4)
    args.datasets = ",".join(f"f32-{c}-{chunk}-{f}" for f in formats for c in codecs)
    args.quick = False
    args.kinds = args.codecs = args.chunks = None
    args.formats = None
    args.sharding = "any"
    args.patterns = "full"
    args.memory = False
    args.write_repeats = None
    args.deletion_settle = None
    args.windows = suite.DEFAULT_WINDOWS
    args.list = False
    args.suite = "cpu"
    return suite.main(args, suite.CPU)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per suite, plus ``read`` and ``report``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="gpuzarr vs peer Zarr libraries")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    for config, text in (
        (suite.CPU, "CPU suite: reads, writes, ceilings and memory over a matrix of datasets"),
        (suite.GPU, "GPU suite: reads into device memory (skips cleanly without CuPy or a CUDA GPU)"),
    ):
        p = sub.add_parser(config.name, help=text, description=text + "; see benchmarks/README.md.")
        suite.add_arguments(p, config)
        p.set_defaults(run=lambda a, c=config: suite.main(a, c), suite=config.name)
    read = sub.add_parser(
        "read",
        help="the original full-read benchmark (alias: cpu suite, full reads of f32 datasets)",
        description="Full reads of float32 datasets, by codec and format: the cpu suite's 'full' pattern.",
    )
    _add_read_arguments(read)
    read.set_defaults(run=_read_as_cpu)
    report = sub.add_parser(
        "report",
        help="rebuild benchmarks/results/README.md and plots from the results files",
        description="Target table, details, memory and plots of the latest complete run per suite.",
    )
    publish.add_arguments(report)
    report.set_defaults(run=publish.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen suite or command."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
