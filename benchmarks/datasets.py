"""Benchmark datasets: realistic float32 fields and int16 images, written by zarr-python.

Every reader reads the very same bytes: arrays are written once, by zarr-python (the
reference implementation), into a data directory whose name encodes every parameter
that affects the bytes. A directory is reused only when its ``manifest.json`` (written
last, after a successful write) matches the requested parameters, so an interrupted
generation is redone rather than half-used.

The source values are kept next to the arrays as ``source-*.npy`` so results are
verified against exactly what was written (regenerating them could differ in the last
ulp across NumPy builds).

A dataset is named by its axes, ``{kind}-{codec}-{chunk}[-s{shard}]-v{format}``:

* kind: ``f32`` (a float32 field, whole-row chunks) or ``i16`` (an int16 image, 2-D tiles);
* codec: one of :data:`CODECS` (``none``, ``zstd``, ``blosc-lz4-shuffle``,
  ``blosc-zstd-bitshuffle``, ``gzip``);
* chunk: decoded bytes per chunk (the *inner* chunk when sharded): ``64k``, ``1m``, ``8m``, ``64m``;
* shard: decoded bytes per shard (``s4m``, ``s16m``), Zarr v3 only;
* format: ``v2`` or ``v3``.

e.g. ``f32-zstd-64k-s4m-v3``: a float32 field as 64 KiB zstd inner chunks in 4 MiB shards.
:func:`select_datasets` turns ``--datasets`` (ids, globs over :func:`universe`, aliases
such as ``sharded-64k``, or ``default``) into specs.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "ALIASES",
    "CHUNK_SIZES",
    "CODECS",
    "DEFAULT_DATA_DIR",
    "FORMATS",
    "GENERATOR_VERSION",
    "KINDS",
    "METADATA_FILES",
    "SHARDINGS",
    "CodecSpec",
    "Dataset",
    "DatasetSpec",
    "Kind",
    "chunk_files",
    "ensure_dataset",
    "ensure_source",
    "format_size",
    "parse_list",
    "parse_size",
    "select_datasets",
    "stable_seed",
    "universe",
]

#: Bump when a generator formula or the write procedure changes: old directories are then not reused.
GENERATOR_VERSION = 1

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

#: Store keys that are metadata, not chunks (v2 and v3).
METADATA_FILES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata", "manifest.json"})

#: Rows generated per block of the source values (the noise is seeded per block: keep it fixed).
_SOURCE_BLOCK_ROWS = 512

ZarrFormat = Literal[2, 3]
FORMATS: dict[str, ZarrFormat] = {"v3": 3, "v2": 2}


# --------------------------------------------------------------------------------------
# sizes


_SIZE_RE = re.compile(r"^(\d+)([kmg]?)$")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str) -> int:
    """``"64k"`` -> 65536, ``"1m"`` -> 1048576, ``"512"`` -> 512 (bytes; binary units)."""
    match = _SIZE_RE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. 64k, 1m, 8m)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_size(nbytes: int) -> str:
    """Inverse of :func:`parse_size` for whole units: 65536 -> ``"64k"``."""
    for suffix in ("g", "m", "k"):
        unit = _UNITS[suffix]
        if nbytes >= unit and nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)


#: Chunk sizes of the dataset universe (decoded bytes per chunk or inner chunk).
CHUNK_SIZES = ("64k", "1m", "8m", "64m")
#: Sharded layouts of the dataset universe: (inner chunk, shard), decoded bytes.
SHARDINGS = (("64k", "4m"), ("1m", "16m"))


# --------------------------------------------------------------------------------------
# value generators


@dataclass(frozen=True)
class Kind:
    """What the values are and how chunks tile the array."""

    name: str
    dtype: str
    layout: Literal["rows", "tiles"]
    default_columns: int
    description: str
    make_block: Callable[[DatasetSpec, int, int], np.ndarray]
    key_prefix: str

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return np.dtype(self.dtype).itemsize


def _field_block(spec: DatasetSpec, row_start: int, row_stop: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of the float32 field: smooth 2-D waves plus small noise, rounded.

    Like a physical field (temperature, pressure): neighbouring values are close, and
    values are quantised to 3 decimals, as real data often is. It compresses about
    2.5-3.5x with zstd/gzip and ~1.4x with blosc-lz4+shuffle; it is neither zeros nor
    noise. The noise is seeded by ``(seed, row_start)``.
    """
    rows, cols = spec.shape
    y = (np.arange(row_start, row_stop, dtype=np.float64) / rows)[:, None]
    x = (np.arange(cols, dtype=np.float64) / cols)[None, :]
    smooth = np.sin(2 * np.pi * (3 * x + 0.5 * y)) * np.cos(2 * np.pi * (2 * y - x)) + x * y
    rng = np.random.default_rng([spec.seed, row_start])
    noise = rng.standard_normal(smooth.shape) * 1e-3
    return np.round(smooth + noise, 3).astype(spec.dtype)


#: 12-bit sensor: values in [0, 4095], a dark level of 100 counts.
_SENSOR_MAX = 4095
_DARK_LEVEL = 100.0


def _blobs(spec: DatasetSpec) -> np.ndarray:
    """The image's blobs, one row each: (centre row, centre column, sigma, amplitude)."""
    rows, cols = spec.shape
    rng = np.random.default_rng([spec.seed, 0xB10B])
    n = max(1, rows * cols // 20_000)
    return np.column_stack(
        [
            rng.uniform(0, rows, n),
            rng.uniform(0, cols, n),
            np.exp(rng.uniform(np.log(4.0), np.log(64.0), n)),
            rng.uniform(100.0, 2500.0, n),
        ]
    )


def _image_block(spec: DatasetSpec, row_start: int, row_stop: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of the int16 image: Gaussian blobs on a dark level, sensor noise.

    Like a microscope or detector frame: a dark level of 100 counts, a few thousand
    Gaussian spots (sigma 4-64 px, 100-2500 counts), photon (Poisson) noise plus read
    noise (sigma 2), clipped to a 12-bit range [0, 4095]. Compresses ~2x with zstd;
    byte/bit shuffling helps because the high bits are mostly zero. Noise is seeded by
    ``(seed, row_start)``.
    """
    cols = spec.shape[1]
    signal = np.full((row_stop - row_start, cols), _DARK_LEVEL, dtype=np.float64)
    blobs = _blobs(spec)
    reach = 3.5 * blobs[:, 2]
    hit = (blobs[:, 0] + reach >= row_start) & (blobs[:, 0] - reach < row_stop)
    for cy, cx, sigma, amp in blobs[hit]:
        r = 3.5 * sigma
        r0, r1 = max(row_start, math.floor(cy - r)), min(row_stop, math.ceil(cy + r) + 1)
        c0, c1 = max(0, math.floor(cx - r)), min(cols, math.ceil(cx + r) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        gy = np.exp(-0.5 * ((np.arange(r0, r1) - cy) / sigma) ** 2)
        gx = np.exp(-0.5 * ((np.arange(c0, c1) - cx) / sigma) ** 2)
        signal[r0 - row_start : r1 - row_start, c0:c1] += amp * np.outer(gy, gx)
    rng = np.random.default_rng([spec.seed, row_start])
    counts = rng.poisson(signal) + np.round(rng.standard_normal(signal.shape) * 2.0)
    return np.clip(counts, 0, _SENSOR_MAX).astype(spec.dtype)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "f32",
            "float32",
            "rows",
            4096,
            "float32 field: smooth 2-D waves + noise (sigma 0.001), rounded to 3 decimals; whole-row chunks",
            _field_block,
            "float32",
        ),
        Kind(
            "i16",
            "int16",
            "tiles",
            8192,
            "int16 image: Gaussian blobs on a dark level + Poisson and read noise, 12-bit range; 2-D tile chunks",
            _image_block,
            "image-int16",
        ),
    )
}


# --------------------------------------------------------------------------------------
# codecs


@dataclass(frozen=True)
class CodecSpec:
    """One codec configuration, spelled for zarr-python (objects) and as JSON for v3 and v2."""

    name: str
    description: str
    v3_json: Callable[[np.dtype], list[dict[str, Any]]]
    v2_json: Callable[[np.dtype], dict[str, Any] | None]

    def json(self, zarr_format: ZarrFormat, dtype: np.dtype) -> list[dict[str, Any]] | None:
        """``compressors=`` as JSON: v3 codec documents, or a v2 numcodecs config (None: uncompressed)."""
        if zarr_format == 3:
            return self.v3_json(dtype) or None
        v2 = self.v2_json(dtype)
        return [v2] if v2 is not None else None

    def zarr_python(self, zarr_format: ZarrFormat, dtype: np.dtype) -> Any:
        """The ``compressors=`` argument for ``zarr.create_array`` (codec objects)."""
        if zarr_format == 3:
            from zarr.registry import get_codec_class

            return [get_codec_class(c["name"]).from_dict(c) for c in self.v3_json(dtype)] or None
        import numcodecs

        v2 = self.v2_json(dtype)
        return [numcodecs.get_codec(dict(v2))] if v2 is not None else None

    def v3_codecs(self, dtype: np.dtype) -> list[dict[str, Any]]:
        """The complete v3 ``codecs`` list: the little-endian ``bytes`` serializer, then compressors."""
        return [{"name": "bytes", "configuration": {"endian": "little"}}, *self.v3_json(dtype)]


def _blosc(cname: str, shuffle: str) -> CodecSpec:
    shuffle_v2 = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[shuffle]
    return CodecSpec(
        f"blosc-{cname}-{shuffle}",
        f"blosc {cname}, clevel 5, {'byte shuffle' if shuffle == 'shuffle' else shuffle}, typesize = itemsize",
        lambda dt: [
            {
                "name": "blosc",
                "configuration": {
                    "cname": cname,
                    "clevel": 5,
                    "shuffle": shuffle,
                    "typesize": int(np.dtype(dt).itemsize),
                    "blocksize": 0,
                },
            }
        ],
        lambda dt: {"id": "blosc", "cname": cname, "clevel": 5, "shuffle": shuffle_v2, "blocksize": 0},
    )


#: The codec configurations, by the name used in dataset ids.
CODECS: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec("none", "uncompressed (bytes codec only)", lambda dt: [], lambda dt: None),
        CodecSpec(
            "zstd",
            "zstd level 0 (zarr default; libzstd level 3), no checksum",
            lambda dt: [{"name": "zstd", "configuration": {"level": 0, "checksum": False}}],
            lambda dt: {"id": "zstd", "level": 0},
        ),
        _blosc("lz4", "shuffle"),
        _blosc("zstd", "bitshuffle"),
        CodecSpec(
            "gzip",
            "gzip level 5",
            lambda dt: [{"name": "gzip", "configuration": {"level": 5}}],
            lambda dt: {"id": "gzip", "level": 5},
        ),
    )
}

#: Older names still accepted on the command line.
_CODEC_ALIASES = {"raw": "none"}


# --------------------------------------------------------------------------------------
# dataset specs


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a dataset's bytes: kind, codec, chunking, format, size, seed."""

    kind: str
    codec: str
    chunk_bytes: int
    shard_bytes: int | None = None
    zarr_format: ZarrFormat = 3
    size_mib: int = 128
    seed: int = 0
    columns: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; known: {', '.join(CODECS)}")
        if self.shard_bytes is not None and self.zarr_format != 3:
            raise ValueError(f"{self.id}: sharding exists in Zarr v3 only")
        self._check_geometry()

    # -- naming ---------------------------------------------------------------------

    @property
    def id(self) -> str:
        """``f32-zstd-64k-s4m-v3``: the name used on the command line and in results."""
        shard = f"-s{format_size(self.shard_bytes)}" if self.shard_bytes else ""
        return f"{self.kind}-{self.codec}-{format_size(self.chunk_bytes)}{shard}-v{self.zarr_format}"

    @classmethod
    def parse(cls, text: str, **defaults: Any) -> DatasetSpec:
        """The spec named by ``text`` (see :attr:`id`); ``defaults`` set size, seed, columns."""
        match = re.match(r"^([a-z0-9]+)-(.+)-(\d+[kmg]?)(?:-s(\d+[kmg]?))?-v([23])$", text.strip().lower())
        if match is None:
            raise ValueError(f"not a dataset id: {text!r} (expected e.g. f32-zstd-1m-v3, f32-zstd-64k-s4m-v3)")
        kind, codec, chunk, shard, fmt = match.groups()
        codec = _CODEC_ALIASES.get(codec, codec)
        return cls(
            kind=kind,
            codec=codec,
            chunk_bytes=parse_size(chunk),
            shard_bytes=parse_size(shard) if shard else None,
            zarr_format=int(fmt),  # type: ignore[arg-type]
            **defaults,
        )

    # -- geometry ---------------------------------------------------------------------

    @property
    def kind_info(self) -> Kind:
        """The :class:`Kind` of the values."""
        return KINDS[self.kind]

    @property
    def dtype(self) -> np.dtype:
        """Element type."""
        return np.dtype(self.kind_info.dtype)

    @property
    def width(self) -> int:
        """Columns of the array."""
        return self.columns or self.kind_info.default_columns

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``: ``size_mib`` MiB of decoded values."""
        row_bytes = self.width * self.dtype.itemsize
        return (self.size_mib * 2**20 // row_bytes, self.width)

    def _block(self, nbytes: int) -> tuple[int, int]:
        """The 2-D block shape holding ``nbytes`` decoded bytes in this kind's layout."""
        elements, rest = divmod(nbytes, self.dtype.itemsize)
        if rest:
            raise ValueError(f"{self.id}: {nbytes} bytes is not a whole number of {self.dtype} elements")
        if self.kind_info.layout == "rows":
            rows, rest = divmod(elements, self.width)
            if rest or rows == 0:
                raise ValueError(f"{self.id}: {format_size(nbytes)} is not a whole number of {self.width}-wide rows")
            return (rows, self.width)
        # tiles: as square as powers of two allow, wider than tall
        if elements & (elements - 1):
            raise ValueError(f"{self.id}: tiles need a power-of-two element count, {format_size(nbytes)} is not")
        height = 2 ** ((elements.bit_length() - 1) // 2)
        width = elements // height
        if width > self.width:  # a tile wider than the array: whole rows
            width, height = self.width, elements // self.width
        return (height, width)

    @property
    def chunks(self) -> tuple[int, int]:
        """Shape of a chunk: the decode unit (the inner chunk when sharded)."""
        return self._block(self.chunk_bytes)

    @property
    def shards(self) -> tuple[int, int] | None:
        """Shape of a shard, or None."""
        return self._block(self.shard_bytes) if self.shard_bytes else None

    @property
    def storage_chunks(self) -> tuple[int, int]:
        """Shape of one stored object: the shard when sharded, else the chunk."""
        return self.shards or self.chunks

    def _check_geometry(self) -> None:
        rows, cols = self.shape
        if rows == 0 or rows * cols * self.dtype.itemsize != self.size_mib * 2**20:
            raise ValueError(f"{self.id}: {self.size_mib} MiB is not a whole number of {self.width}-wide rows")
        for what, block in (("chunk", self.chunks), ("shard", self.shards)):
            if block is None:
                continue
            if rows % block[0] or cols % block[1]:
                raise ValueError(
                    f"{self.id}: a {self.size_mib} MiB array of shape {self.shape} is not a whole number of "
                    f"{block[0]}x{block[1]} {what}s"
                )
        if self.shards is not None and (self.shards[0] % self.chunks[0] or self.shards[1] % self.chunks[1]):
            raise ValueError(f"{self.id}: shard {self.shards} is not a whole number of chunks {self.chunks}")

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes."""
        return self.size_mib * 2**20

    @property
    def n_units(self) -> int:
        """Decode units (chunks, or inner chunks when sharded)."""
        rows, cols = self.shape
        return (rows // self.chunks[0]) * (cols // self.chunks[1])

    @property
    def n_objects(self) -> int:
        """Stored objects (chunk or shard files)."""
        rows, cols = self.shape
        s = self.storage_chunks
        return (rows // s[0]) * (cols // s[1])

    # -- keys ---------------------------------------------------------------------------

    @property
    def source_key(self) -> str:
        """File-name-safe string that changes whenever the generated values would."""
        rows, cols = self.shape
        return f"{self.kind_info.key_prefix}-{rows}x{cols}-seed{self.seed}-g{GENERATOR_VERSION}"

    @property
    def dir_name(self) -> str:
        """Directory name: every parameter that affects the bytes."""
        rows, cols = self.shape
        return f"{self.id}-{rows}x{cols}-seed{self.seed}-g{GENERATOR_VERSION}.zarr"

    def describe(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {
            "id": self.id,
            "kind": self.kind,
            "kind_description": self.kind_info.description,
            "codec": self.codec,
            "codec_description": CODECS[self.codec].description,
            "zarr_format": self.zarr_format,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "chunks": list(self.chunks),
            "chunk_bytes": self.chunk_bytes,
            "shards": list(self.shards) if self.shards else None,
            "shard_bytes": self.shard_bytes,
            "size_mib": self.size_mib,
            "seed": self.seed,
            "generator_version": GENERATOR_VERSION,
        }


def universe(*, chunk_sizes: Sequence[str] = CHUNK_SIZES, **defaults: Any) -> list[DatasetSpec]:
    """Every combination of kind x codec x chunking x format (sharding v3 only) that fits the size."""
    layouts: list[tuple[int, int | None]] = [(parse_size(c), None) for c in chunk_sizes]
    layouts += [(parse_size(c), parse_size(s)) for c, s in SHARDINGS]
    specs = []
    for kind in KINDS:
        for codec in CODECS:
            for chunk, shard in layouts:
                for fmt in (3, 2):
                    if shard is not None and fmt != 3:
                        continue
                    try:
                        specs.append(DatasetSpec(kind, codec, chunk, shard, fmt, **defaults))  # type: ignore[arg-type]
                    except ValueError:
                        continue  # does not fit this size (e.g. 64 MiB chunks of a 32 MiB array)
    return specs


#: Names for datasets and groups of them, usable in ``--datasets``.
ALIASES: dict[str, tuple[str, ...]] = {
    # The case issue 3 asks for: 128 MiB float32, 64 KiB zstd inner chunks in 4 MiB shards.
    "sharded-64k": ("f32-zstd-64k-s4m-v3",),
    "sharded-1m": ("f32-zstd-1m-s16m-v3",),
}


def select_datasets(
    text: str,
    *,
    named: dict[str, Sequence[str]] | None = None,
    kinds: Sequence[str] | None = None,
    codecs: Sequence[str] | None = None,
    chunks: Sequence[str] | None = None,
    formats: Sequence[str] | None = None,
    sharded: bool | None = None,
    **defaults: Any,
) -> list[DatasetSpec]:
    """The specs ``--datasets`` names, narrowed by the axis filters, in the order given.

    ``text`` is comma-separated; each item is a dataset id (``f32-zstd-1m-v3``), an
    alias (:data:`ALIASES`, plus ``named`` such as ``default``), ``all``, or a glob over
    the universe's ids (``'i16-*-v3'``, ``'*-s*'``). Filters keep only specs whose kind,
    codec, chunk size (``64k``; the inner chunk when sharded), format (``v2``) or
    shardedness match.
    """
    groups: dict[str, Sequence[str]] = {**ALIASES, **(named or {})}
    every = universe(**defaults)
    ids = [s.id for s in every]
    picked: list[DatasetSpec] = []
    for item in (t.strip().lower() for t in text.split(",")):
        if not item:
            continue
        if item == "all":
            found = list(every)
        elif item in groups:
            found = [DatasetSpec.parse(i, **defaults) for i in groups[item]]
        elif any(ch in item for ch in "*?["):
            found = [s for s, i in zip(every, ids, strict=True) if fnmatch.fnmatchcase(i, item)]
            if not found:
                raise ValueError(f"--datasets {item!r} matches no dataset; e.g. {', '.join(ids[:3])}")
        else:
            found = [DatasetSpec.parse(item, **defaults)]
        picked += [s for s in found if s not in picked]
    chunk_bytes = {parse_size(c) for c in chunks} if chunks else None
    codec_names = {_CODEC_ALIASES.get(c, c) for c in codecs} if codecs else None
    return [
        s
        for s in picked
        if (not kinds or s.kind in kinds)
        and (codec_names is None or s.codec in codec_names)
        and (chunk_bytes is None or s.chunk_bytes in chunk_bytes)
        and (not formats or f"v{s.zarr_format}" in formats)
        and (sharded is None or (s.shard_bytes is not None) == sharded)
    ]


# --------------------------------------------------------------------------------------
# generation


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _source_params(spec: DatasetSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "dtype": spec.dtype.name,
        "shape": list(spec.shape),
        "seed": spec.seed,
        "generator_version": GENERATOR_VERSION,
        "block_rows": _SOURCE_BLOCK_ROWS,
    }


def ensure_source(spec: DatasetSpec, data_dir: Path, *, log: Callable[[str], None] = print) -> Path:
    """The ``.npy`` file holding the values of ``spec``'s kind, size and seed, generated unless present."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"source-{spec.source_key}.npy"
    done = path.with_suffix(".json")
    wanted = _source_params(spec)
    if path.exists() and done.exists():
        have = json.loads(done.read_text())
        if have == wanted or _legacy_field_source(have, spec):
            return path
    t0 = time.perf_counter()
    tmp = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=spec.dtype, shape=spec.shape)
    for start in range(0, spec.shape[0], _SOURCE_BLOCK_ROWS):
        stop = min(start + _SOURCE_BLOCK_ROWS, spec.shape[0])
        out[start:stop] = spec.kind_info.make_block(spec, start, stop)
    out.flush()
    del out
    os.replace(tmp, path)
    _write_json(done, wanted)
    log(f"  generated source values {path.name} in {time.perf_counter() - t0:.1f} s")
    return path


def _legacy_field_source(have: dict[str, Any], spec: DatasetSpec) -> bool:
    """Whether ``have`` describes a field source written by the first version of this module.

    That version stored ``FieldParams`` (size_mib, columns, chunk_rows, seed, dtype) and
    generated in blocks of ``8 * chunk_rows`` rows; with 64-row chunks that is the same
    512-row split, hence the same values.
    """
    return (
        spec.kind == "f32"
        and have.get("chunk_rows", 0) * 8 == _SOURCE_BLOCK_ROWS
        and have.get("size_mib") == spec.size_mib
        and have.get("columns") == spec.width
        and have.get("seed") == spec.seed
        and have.get("dtype") == spec.dtype.name
    )


@dataclass(frozen=True)
class Dataset:
    """A generated array on disk and what is known about it."""

    spec: DatasetSpec
    path: Path
    source_path: Path
    stored_bytes: int
    n_objects: int
    chunk_paths: tuple[Path, ...] = field(repr=False)

    # -- convenience views of the spec ---------------------------------------------------

    @property
    def name(self) -> str:
        """The dataset id (``f32-zstd-1m-v3``)."""
        return self.spec.id

    @property
    def label(self) -> str:
        """Same as :attr:`name`."""
        return self.spec.id

    @property
    def zarr_format(self) -> ZarrFormat:
        """2 or 3."""
        return self.spec.zarr_format

    @property
    def codec(self) -> str:
        """Codec name (a key of :data:`CODECS`)."""
        return self.spec.codec

    @property
    def shape(self) -> tuple[int, int]:
        """Array shape."""
        return self.spec.shape

    @property
    def dtype(self) -> np.dtype:
        """Array data type."""
        return self.spec.dtype

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes."""
        return self.spec.nbytes

    @property
    def n_chunks(self) -> int:
        """Stored objects (chunk or shard files)."""
        return self.n_objects

    @property
    def compression_ratio(self) -> float:
        """Decoded bytes / stored bytes."""
        return self.nbytes / self.stored_bytes

    def load_source(self) -> np.ndarray:
        """The values that were written (memory-mapped, read-only)."""
        return np.load(self.source_path, mmap_mode="r")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the results file."""
        return {
            **self.spec.describe(),
            "name": self.name,
            "path": str(self.path),
            "n_objects": self.n_objects,
            "n_units": self.spec.n_units,
            "logical_bytes": self.nbytes,
            "stored_bytes": self.stored_bytes,
            "compression_ratio": round(self.compression_ratio, 4),
        }


def chunk_files(array_dir: Path) -> list[Path]:
    """Every stored chunk or shard file below ``array_dir`` (metadata files excluded), sorted."""
    found = []
    for root, _dirs, files in os.walk(array_dir):
        for name in files:
            if name not in METADATA_FILES and not name.endswith(".tmp"):
                found.append(Path(root) / name)
    return sorted(found)


def _write_with_zarr_python(spec: DatasetSpec, path: Path, source: np.ndarray) -> None:
    import zarr

    arr = zarr.create_array(
        store=str(path),
        shape=spec.shape,
        chunks=spec.chunks,
        shards=spec.shards,
        dtype=spec.dtype,
        compressors=CODECS[spec.codec].zarr_python(spec.zarr_format, spec.dtype),
        filters=None,
        fill_value=0,
        zarr_format=spec.zarr_format,
        overwrite=True,
    )
    # Whole stored objects per write (no read-modify-write), about 64 MiB at a time.
    rows = spec.storage_chunks[0]
    slab = rows * max(1, (64 * 2**20) // (rows * spec.shape[1] * spec.dtype.itemsize))
    for start in range(0, spec.shape[0], slab):
        arr[start : start + slab] = source[start : start + slab]


def ensure_dataset(
    spec: DatasetSpec,
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    log: Callable[[str], None] = print,
    generate: bool = True,
) -> Dataset:
    """The dataset for ``spec``, written with zarr-python unless a complete one exists.

    ``generate=False`` raises instead of writing (a measuring subprocess must not write).
    """
    import zarr

    source_path = ensure_source(spec, data_dir, log=log) if generate else data_dir / f"source-{spec.source_key}.npy"
    path = data_dir / spec.dir_name
    manifest_path = path / "manifest.json"
    wanted = {"spec": spec.describe(), "source": source_path.name}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if manifest is None or {k: manifest.get(k) for k in wanted} != wanted:
        if not generate:
            raise FileNotFoundError(f"{path}: dataset missing or incomplete (run the suite once to generate it)")
        if path.exists():
            shutil.rmtree(path)
        t0 = time.perf_counter()
        _write_with_zarr_python(spec, path, np.load(source_path, mmap_mode="r"))
        files = chunk_files(path)
        if len(files) != spec.n_objects:
            raise RuntimeError(f"{path}: expected {spec.n_objects} stored objects, zarr-python wrote {len(files)}")
        _write_json(
            manifest_path,
            {
                **wanted,
                "written_by": f"zarr-python {zarr.__version__}",
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        log(f"  wrote {spec.id} ({path.name}) with zarr-python in {time.perf_counter() - t0:.1f} s")
    files = chunk_files(path)
    if len(files) != spec.n_objects:
        raise RuntimeError(f"{path}: expected {spec.n_objects} stored objects, found {len(files)}")
    return Dataset(
        spec=spec,
        path=path,
        source_path=source_path,
        stored_bytes=sum(f.stat().st_size for f in files),
        n_objects=len(files),
        chunk_paths=tuple(files),
    )


def stable_seed(*parts: object) -> int:
    """A seed derived from ``parts`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32(repr(parts).encode())


def parse_list(text: str, known: Sequence[str], what: str) -> list[str]:
    """Split a comma-separated option and check every item is known."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return items
