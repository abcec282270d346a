"""``python -m benchmarks <benchmark> [options]``; see benchmarks/README.md."""

from __future__ import annotations

import argparse
import sys

from benchmarks import read


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per benchmark."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="gpuzarr vs peer Zarr readers")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    read_parser = sub.add_parser(
        "read",
        help="full reads of whole arrays into host memory",
        description="Every reader reads each generated array whole into memory; see benchmarks/README.md.",
    )
    read.add_arguments(read_parser)
    read_parser.set_defaults(run=read.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen benchmark."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
