"""Benchmark datasets: a realistic float32 field, written by zarr-python with each codec.

Every reader reads the very same bytes: arrays are written once, by zarr-python (the
reference implementation), into a data directory whose name encodes every parameter
that affects the bytes. A directory is reused only when its ``manifest.json`` (written
last, after a successful write) matches the requested parameters, so an interrupted
generation is redone rather than half-used.

The source values are kept next to the arrays as ``source-*.npy`` so readers are
verified against exactly what was written (regenerating them could differ in the last
ulp across NumPy builds).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "CODECS",
    "DEFAULT_DATA_DIR",
    "GENERATOR_VERSION",
    "METADATA_FILES",
    "CodecSpec",
    "Dataset",
    "FieldParams",
    "chunk_files",
    "ensure_dataset",
    "ensure_source",
    "make_field_block",
    "parse_list",
]

#: Bump when the field formula or the write procedure changes: old directories are then not reused.
GENERATOR_VERSION = 1

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

#: Store keys that are metadata, not chunks (v2 and v3).
METADATA_FILES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata", "manifest.json"})

ZarrFormat = Literal[2, 3]


@dataclass(frozen=True)
class FieldParams:
    """Shape, chunking and seed of the synthetic field."""

    size_mib: int = 128
    columns: int = 4096
    chunk_rows: int = 64
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        row_bytes = self.columns * np.dtype(self.dtype).itemsize
        if (self.size_mib * 2**20) % (row_bytes * self.chunk_rows):
            raise ValueError(
                f"size {self.size_mib} MiB is not a whole number of ({self.chunk_rows}, {self.columns}) "
                f"{self.dtype} chunks"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """Array shape: ``(rows, columns)``."""
        rows = self.size_mib * 2**20 // (self.columns * np.dtype(self.dtype).itemsize)
        return (rows, self.columns)

    @property
    def chunks(self) -> tuple[int, int]:
        """Chunk shape: whole rows, ``chunk_rows`` of them."""
        return (self.chunk_rows, self.columns)

    @property
    def nbytes(self) -> int:
        """Decoded size of the array in bytes."""
        return self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize

    @property
    def key(self) -> str:
        """A file-name-safe string that changes whenever the generated values would."""
        rows, cols = self.shape
        return f"{self.dtype}-{rows}x{cols}-seed{self.seed}-g{GENERATOR_VERSION}"


def make_field_block(params: FieldParams, row_start: int, row_stop: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of the field: smooth 2-D waves plus small noise, rounded.

    Like a physical field (temperature, pressure): neighbouring values are close, and
    values are quantised to 3 decimals, as real data often is. It compresses about
    2.5-3.5x with zstd/gzip and ~1.4x with blosc-lz4+shuffle; it is neither zeros nor
    noise. The noise is seeded by ``(seed, row_start)``, so values depend on the block
    split; :func:`ensure_source` always uses the same one.
    """
    rows, cols = params.shape
    y = (np.arange(row_start, row_stop, dtype=np.float64) / rows)[:, None]
    x = (np.arange(cols, dtype=np.float64) / cols)[None, :]
    smooth = np.sin(2 * np.pi * (3 * x + 0.5 * y)) * np.cos(2 * np.pi * (2 * y - x)) + x * y
    rng = np.random.default_rng([params.seed, row_start])
    noise = rng.standard_normal(smooth.shape) * 1e-3
    return np.round(smooth + noise, 3).astype(params.dtype)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def ensure_source(params: FieldParams, data_dir: Path, *, log: Callable[[str], None] = print) -> Path:
    """The ``.npy`` file holding the field's values, generated unless already present."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"source-{params.key}.npy"
    done = path.with_suffix(".json")
    if path.exists() and done.exists() and json.loads(done.read_text()) == asdict(params):
        return path
    t0 = time.perf_counter()
    tmp = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=params.dtype, shape=params.shape)
    block = 8 * params.chunk_rows
    for start in range(0, params.shape[0], block):
        stop = min(start + block, params.shape[0])
        out[start:stop] = make_field_block(params, start, stop)
    out.flush()
    del out
    os.replace(tmp, path)
    _write_json(done, asdict(params))
    log(f"  generated source values {path.name} in {time.perf_counter() - t0:.1f} s")
    return path


@dataclass(frozen=True)
class CodecSpec:
    """One codec configuration, spelled for zarr-python v3 and v2."""

    name: str
    description: str
    v3: Callable[[], Any]
    v2: Callable[[], Any]

    def compressors(self, zarr_format: ZarrFormat) -> Any:
        """The ``compressors=`` argument for ``zarr.create_array``."""
        return self.v3() if zarr_format == 3 else self.v2()


def _zstd_v3() -> Any:
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=0, checksum=False)]


def _zstd_v2() -> Any:
    from numcodecs import Zstd

    return [Zstd(level=0)]


def _blosc_v3() -> Any:
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=4, blocksize=0)]


def _blosc_v2() -> Any:
    from numcodecs import Blosc

    return [Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE, blocksize=0)]


def _gzip_v3() -> Any:
    from zarr.codecs import GzipCodec

    return [GzipCodec(level=5)]


def _gzip_v2() -> Any:
    from numcodecs import GZip

    return [GZip(level=5)]


def _none() -> Any:
    return None


#: The codec configurations the read benchmark knows, by ``--datasets`` name.
CODECS: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec("zstd", "zstd level 0 (zarr default; libzstd level 3), no checksum", _zstd_v3, _zstd_v2),
        CodecSpec("blosc-lz4-shuffle", "blosc lz4, clevel 5, byte shuffle, typesize 4", _blosc_v3, _blosc_v2),
        CodecSpec("gzip", "gzip level 5", _gzip_v3, _gzip_v2),
        CodecSpec("raw", "uncompressed (bytes codec only)", _none, _none),
    )
}


@dataclass(frozen=True)
class Dataset:
    """A generated array on disk and what is known about it."""

    name: str
    zarr_format: ZarrFormat
    path: Path
    source_path: Path
    params: FieldParams
    codec: str
    stored_bytes: int
    n_chunks: int
    chunk_paths: tuple[Path, ...] = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Array shape."""
        return self.params.shape

    @property
    def dtype(self) -> np.dtype:
        """Array data type."""
        return np.dtype(self.params.dtype)

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes."""
        return self.params.nbytes

    @property
    def compression_ratio(self) -> float:
        """Decoded bytes / stored chunk bytes."""
        return self.nbytes / self.stored_bytes

    @property
    def label(self) -> str:
        """``v3/zstd`` style label."""
        return f"v{self.zarr_format}/{self.name}"

    def load_source(self) -> np.ndarray:
        """The values that were written (memory-mapped, read-only)."""
        return np.load(self.source_path, mmap_mode="r")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the results file."""
        return {
            "name": self.name,
            "zarr_format": self.zarr_format,
            "path": str(self.path),
            "codec": CODECS[self.codec].description,
            "shape": list(self.shape),
            "chunks": list(self.params.chunks),
            "dtype": self.params.dtype,
            "n_chunks": self.n_chunks,
            "logical_bytes": self.nbytes,
            "stored_bytes": self.stored_bytes,
            "compression_ratio": round(self.compression_ratio, 4),
            "seed": self.params.seed,
            "generator_version": GENERATOR_VERSION,
        }


def chunk_files(array_dir: Path) -> list[Path]:
    """Every stored chunk file below ``array_dir`` (metadata files excluded), sorted."""
    found = []
    for root, _dirs, files in os.walk(array_dir):
        for name in files:
            if name not in METADATA_FILES and not name.endswith(".tmp"):
                found.append(Path(root) / name)
    return sorted(found)


def _n_chunks(params: FieldParams) -> int:
    return params.shape[0] // params.chunk_rows


def ensure_dataset(
    params: FieldParams,
    codec: str,
    zarr_format: ZarrFormat,
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    log: Callable[[str], None] = print,
) -> Dataset:
    """The dataset for these parameters, written with zarr-python unless a complete one exists."""
    import zarr

    spec = CODECS[codec]
    source_path = ensure_source(params, data_dir, log=log)
    path = data_dir / f"read-v{zarr_format}-{codec}-{params.key}-c{params.chunk_rows}x{params.columns}.zarr"
    manifest_path = path / "manifest.json"
    wanted = {
        "params": asdict(params),
        "codec": codec,
        "codec_description": spec.description,
        "zarr_format": zarr_format,
        "generator_version": GENERATOR_VERSION,
    }
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    if manifest is None or {k: manifest.get(k) for k in wanted} != wanted:
        if path.exists():
            shutil.rmtree(path)
        t0 = time.perf_counter()
        source = np.load(source_path, mmap_mode="r")
        arr = zarr.create_array(
            store=str(path),
            shape=params.shape,
            chunks=params.chunks,
            dtype=params.dtype,
            compressors=spec.compressors(zarr_format),
            filters=None,
            fill_value=0,
            zarr_format=zarr_format,
            overwrite=True,
        )
        slab = 16 * params.chunk_rows  # whole chunks per write: no read-modify-write
        for start in range(0, params.shape[0], slab):
            arr[start : start + slab] = source[start : start + slab]
        files = chunk_files(path)
        if len(files) != _n_chunks(params):
            raise RuntimeError(f"{path}: expected {_n_chunks(params)} chunk files, zarr-python wrote {len(files)}")
        _write_json(
            manifest_path,
            {
                **wanted,
                "written_by": f"zarr-python {zarr.__version__}",
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        log(f"  wrote {path.name} with zarr-python in {time.perf_counter() - t0:.1f} s")
    files = chunk_files(path)
    if len(files) != _n_chunks(params):
        raise RuntimeError(f"{path}: expected {_n_chunks(params)} chunk files, found {len(files)}")
    return Dataset(
        name=codec,
        zarr_format=zarr_format,
        path=path,
        source_path=source_path,
        params=params,
        codec=codec,
        stored_bytes=sum(f.stat().st_size for f in files),
        n_chunks=len(files),
        chunk_paths=tuple(files),
    )


def parse_list(text: str, known: Sequence[str], what: str) -> list[str]:
    """Split a comma-separated option and check every item is known."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return items
