"""The ``gpuzarr`` command: ``gpuzarr info PATH`` and ``gpuzarr demo``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from gpuzarr.api import open as open_node
from gpuzarr.api import open_group
from gpuzarr.array import Array
from gpuzarr.codecs import Codec, ShardingCodec
from gpuzarr.config import config
from gpuzarr.group import Group, same_format_members
from gpuzarr.metadata.dtypes import is_ml_dtype

__all__ = ["main"]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _describe_codecs(codecs: Sequence[Codec]) -> str:
    """A codec chain as ``bytes(endian=little) -> zstd(level=0)``; shards show their inner chains."""
    parts = []
    for codec in codecs:
        if isinstance(codec, ShardingCodec):
            parts.append(
                f"sharding_indexed(inner: {_describe_codecs(codec.codecs)}; "
                f"index: {_describe_codecs(codec.index_codecs)} at {codec.index_location})"
            )
            continue
        doc = codec.to_json()
        cfg = doc.get("configuration") or {}
        args = ",".join(f"{k}={v}" for k, v in cfg.items() if k not in ("filters",) and v not in (None, [], {}))
        parts.append(f"{doc.get('name', codec.name)}({args})" if args else doc.get("name", codec.name))
    return " -> ".join(parts)


def _codec_names(array: Array) -> str:
    return _describe_codecs(array.codecs)


def _plain(value: object) -> object:
    """A NumPy scalar as the Python value it holds (``0.0``, not ``np.float32(0.0)``)."""
    # datetimes and raw bytes keep their NumPy repr, which says what they are (ml_dtypes'
    # types are NumPy kind "V" too, but their items are numbers)
    if isinstance(value, np.generic) and (value.dtype.kind not in "MmV" or is_ml_dtype(value.dtype)):
        return value.item()
    return value


def describe_array(array: Array, indent: str = "") -> list[str]:
    """Lines describing one array for ``gpuzarr info``."""
    stored = array.nbytes_stored()
    logical = array.nbytes
    ratio = f" (ratio {logical / stored:.2f}x)" if stored and logical else ""
    lines = [
        f"{indent}{array.name}  array  v{array.zarr_format}",
        f"{indent}  shape    {array.shape}",
        f"{indent}  dtype    {array.metadata.data_type.name}",
        *(
            [
                f"{indent}  chunks   {array.chunks}  ({array.nchunks} in grid, inside shards)",
                f"{indent}  shards   {array.shards}  ({array.nshards} in grid, {array.nchunks_initialized} stored)",
            ]
            if array.shards
            else [f"{indent}  chunks   {array.chunks}  ({array.nchunks} in grid, {array.nchunks_initialized} stored)"]
        ),
        f"{indent}  codecs   {_codec_names(array)}",
        f"{indent}  fill     {_plain(array.fill_value)!r}",
        f"{indent}  bytes    logical {_human(logical)}, stored {_human(stored)}{ratio}",
    ]
    if array.dimension_names:
        lines.append(f"{indent}  dims     {array.dimension_names}")
    return lines


def _same_members(first: Sequence[tuple[str, Array | Group]], second: Sequence[tuple[str, Array | Group]]) -> bool:
    """Whether two listings name the same members with the same metadata."""

    def described(members: Sequence[tuple[str, Array | Group]]) -> dict[str, object]:
        # A group's own consolidated metadata is no part of what a listing says of it (a
        # consolidated entry for a subgroup may carry an empty one its zarr.json lacks);
        # attributes are (v2 keeps them out of the array document).
        return {
            name: (
                member.zarr_format,
                {"node_type": "group"} if isinstance(member, Group) else member.metadata.to_json(),
                member.metadata.attributes,
            )
            for name, member in members
        }

    return described(first) == described(second)


def info(path: str) -> str:
    """The report ``gpuzarr info PATH`` prints."""
    node = open_node(path, mode="r")
    if isinstance(node, Array):
        return "\n".join(describe_array(node))
    assert isinstance(node, Group)
    note = ""
    members = node.members(max_depth=None)
    if node.metadata.consolidated is not None:
        # List what the store holds: consolidated metadata is a snapshot that later
        # changes leave behind. Say whether it still agrees (on the members it can hold:
        # those of the group's format).
        members_stored = open_group(path, mode="r", use_consolidated=False).members(max_depth=None)
        consolidable = same_format_members(list(members_stored), node.zarr_format)
        note = "  (consolidated)" if _same_members(members, consolidable) else (
            "  (consolidated metadata is stale: it differs from the store, which is listed here)"
        )
        members = members_stored
    lines = [f"{node.name}  group  v{node.zarr_format}{note}"]
    if node.attrs:
        lines.append(f"  attributes: {sorted(node.attrs)}")
    for name, member in members:
        depth = name.count("/") + 1
        indent = "  " * depth
        if isinstance(member, Array):
            lines.extend(describe_array(member, indent))
        else:
            lines.append(f"{indent}{member.name}  group")
    return "\n".join(lines)


def demo(size_mib: int = 64, repeats: int = 3) -> str:
    """Write a sample dataset to a temporary directory, read it back, report throughput."""
    n = size_mib * 2**20 // 4
    side = int(np.sqrt(n))
    rng = np.random.default_rng(42)
    # A smooth field with noise: compresses like real measurements, not like zeros.
    y = np.linspace(0, 8 * np.pi, side, dtype=np.float32)
    data = (np.sin(y)[:, None] * np.cos(y)[None, :] + rng.normal(0, 0.01, (side, side))).astype(np.float32)
    lines = [f"gpuzarr demo: {side}x{side} float32 ({_human(data.nbytes)}), device cpu, {config.threads} threads"]
    with tempfile.TemporaryDirectory(prefix="gpuzarr-demo-") as tmp:
        group = open_group(f"{tmp}/demo.zarr", mode="w")
        blosc_lz4 = {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}}
        for label, compressors in (("zstd", "auto"), ("blosc-lz4", blosc_lz4)):
            array = group.create_array(label, shape=data.shape, dtype="f4", chunks=(512, 512), compressors=compressors)
            t0 = time.perf_counter()
            array[...] = data
            write_s = time.perf_counter() - t0
            out = np.empty_like(data)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                array.read(out=out)
                times.append(time.perf_counter() - t0)
            if not np.array_equal(out, data):
                raise RuntimeError(f"demo: {label} read back different data")
            read_s = float(np.median(times))
            lines.append(
                f"  {label:10s} write {data.nbytes / write_s / 1e9:6.2f} GB/s"
                f"   read {data.nbytes / read_s / 1e9:6.2f} GB/s"
                f"   stored {_human(array.nbytes_stored())}"
            )
        lines.append(info(f"{tmp}/demo.zarr"))
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a zero or negative size has no demo to run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuzarr`` command."""
    parser = argparse.ArgumentParser(prog="gpuzarr", description="Zarr arrays on CPU and GPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="describe a Zarr array or hierarchy")
    p_info.add_argument("path", help="directory or .zip store")
    p_demo = sub.add_parser("demo", help="write and read a sample dataset, print throughput")
    p_demo.add_argument("--size-mib", type=_positive_int, default=64, help="dataset size (default 64 MiB)")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info(args.path))
        else:
            print(demo(args.size_mib))
    except BrokenPipeError:
        # The reader stopped early (`gpuzarr info ... | head`): nothing to report. Point
        # stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (KeyError, ValueError, OSError, ImportError) as exc:
        # (ImportError: a URL whose filesystem package is missing, "s3://" without s3fs)
        print(f"gpuzarr: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
