"""The readers under test, behind one small interface.

A :class:`Reader` splits a whole-array read into the steps the timing loop needs:

* :meth:`Reader.unavailable` (once): why the reader cannot run here (missing package), or None;
* :meth:`Reader.session` (untimed): a context in force around open and read (library settings);
* :meth:`Reader.open` (timed, "open" column): what a user does first, e.g. ``open_array(path)``;
* :meth:`Reader.read` (timed, "read" column): read everything into memory, return the result;
* :meth:`Reader.verify` (untimed, once per dataset on the warm-up result): mismatch or None.

Adding a peer (a GPU reader, a sharded-array reader, ...) is one subclass and one entry
in :data:`READERS`. Each reader states its settings in :meth:`Reader.settings`; they are
recorded with the results.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from benchmarks.datasets import Dataset

__all__ = [
    "DEFAULT_PEERS",
    "READERS",
    "FileBytesCeiling",
    "GpuzarrPreallocReader",
    "GpuzarrReader",
    "Reader",
    "TensorstoreReader",
    "ZarrPythonReader",
    "ZarrsReader",
    "make_readers",
    "package_version",
]


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing(*modules: str) -> str | None:
    """Why one of ``modules`` cannot be imported (not installed, or its import fails), or None."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"python package {module!r} is not installed"
        try:
            importlib.import_module(module)
        except Exception as exc:
            return f"import {module} failed: {type(exc).__name__}: {exc}"
    return None


def _full_selection(ds: Dataset) -> tuple[slice, ...]:
    # Explicit slices rather than Ellipsis: zarrs-python documents Ellipsis indexing as a
    # case it may hand back to zarr-python's pipeline.
    return tuple(slice(None) for _ in ds.shape)


class Reader(ABC):
    """One way of reading a whole Zarr array into host memory."""

    #: Name used on the command line, in the table and in the results.
    name: ClassVar[str]
    #: One line saying exactly what is timed.
    description: ClassVar[str]
    #: True for reference points that are not Zarr readers (the file-bytes ceiling).
    is_reference: ClassVar[bool] = False

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def unavailable(self) -> str | None:
        """Why this reader cannot run in this environment, or None when it can."""
        return None

    def version(self) -> str | None:
        """Version of the library measured."""
        return None

    def settings(self) -> dict[str, Any]:
        """Settings that affect performance, recorded with the results."""
        return {"threads": self.threads}

    def session(self) -> contextlib.AbstractContextManager[Any]:
        """Context entered (untimed) around each open + read."""
        return contextlib.nullcontext()

    @abstractmethod
    def open(self, ds: Dataset) -> Any:
        """Open the array: a fresh handle, nothing cached from earlier repetitions."""

    @abstractmethod
    def read(self, handle: Any, ds: Dataset) -> Any:
        """Read the whole array through ``handle``; return the result."""

    def verify(self, result: Any, ds: Dataset, source: np.ndarray) -> str | None:
        """None when ``result`` equals the source values, else what differs."""
        if not isinstance(result, np.ndarray):
            return f"result is {type(result).__name__}, not a NumPy array"
        if result.shape != source.shape or result.dtype != source.dtype:
            return f"result is {result.shape} {result.dtype}, expected {source.shape} {source.dtype}"
        if not np.array_equal(result, source):
            bad = int(np.count_nonzero(result != source))
            return f"{bad} of {source.size} values differ from the source"
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release anything held across repetitions (thread pools)."""


class GpuzarrReader(Reader):
    """gpuzarr on the CPU: ``open_array(path, device="cpu").read(out=np.empty(...))``."""

    name = "gpuzarr"
    description = "gpuzarr.open_array(path, device='cpu'); a.read(out=np.empty(shape)) (fresh buffer each time)"

    def unavailable(self) -> str | None:
        return _missing("gpuzarr")

    def version(self) -> str | None:
        import gpuzarr

        return gpuzarr.__version__

    def settings(self) -> dict[str, Any]:
        import gpuzarr

        with self.session():
            cfg = gpuzarr.config.get()
        return {"threads": cfg.threads, "wave_bytes": cfg.wave_bytes, "device": "cpu"}

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import gpuzarr

        return gpuzarr.config.set(threads=self.threads) if self.threads else contextlib.nullcontext()

    def open(self, ds: Dataset) -> Any:
        import gpuzarr

        return gpuzarr.open_array(str(ds.path), mode="r", device="cpu")

    def read(self, handle: Any, ds: Dataset) -> Any:
        # A fresh buffer each time: its pages are faulted in during the read, as they are
        # for the peers that allocate their own result.
        out = np.empty(ds.shape, dtype=ds.dtype)
        handle.read(out=out)
        return out


class GpuzarrPreallocReader(GpuzarrReader):
    """gpuzarr reading into one output buffer reused across repetitions (pages already mapped)."""

    name = "gpuzarr-prealloc"
    description = "as gpuzarr, but into one preallocated, already-touched buffer reused across repetitions"

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self._out: np.ndarray | None = None

    def read(self, handle: Any, ds: Dataset) -> Any:
        if self._out is None or self._out.shape != ds.shape or self._out.dtype != ds.dtype:
            self._out = np.zeros(ds.shape, dtype=ds.dtype)
        handle.read(out=self._out)
        return self._out

    def close(self) -> None:
        self._out = None


class ZarrPythonReader(Reader):
    """zarr-python 3 with its default configuration (BatchedCodecPipeline)."""

    name = "zarr-python"
    description = "zarr.open_array(path, mode='r')[:, :] with zarr-python's default config"
    _pipeline: ClassVar[str | None] = None

    def unavailable(self) -> str | None:
        return _missing("zarr")

    def version(self) -> str | None:
        return package_version("zarr")

    def _config(self) -> dict[str, Any]:
        return {}

    def settings(self) -> dict[str, Any]:
        import zarr

        with self.session():
            return {
                "codec_pipeline": zarr.config.get("codec_pipeline"),
                "async.concurrency": zarr.config.get("async.concurrency"),
                "threading.max_workers": zarr.config.get("threading.max_workers"),
            }

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import zarr

        return zarr.config.set(self._config()) if self._config() else contextlib.nullcontext()

    def open(self, ds: Dataset) -> Any:
        import zarr

        return zarr.open_array(str(ds.path), mode="r")

    def read(self, handle: Any, ds: Dataset) -> Any:
        return handle[_full_selection(ds)]


class ZarrsReader(ZarrPythonReader):
    """zarr-python with zarrs-python's Rust codec pipeline (``strict``: no silent fallback)."""

    name = "zarrs"
    description = (
        "zarr.open_array(path)[:, :] under codec_pipeline.path=zarrs.ZarrsCodecPipeline "
        "(strict=True: an unsupported case raises instead of falling back to zarr-python)"
    )

    def unavailable(self) -> str | None:
        return _missing("zarr", "zarrs")

    def version(self) -> str | None:
        return package_version("zarrs")

    def _config(self) -> dict[str, Any]:
        # The settings the zarrs-python README documents, at their defaults, except
        # strict=True so that what is timed is really the Rust pipeline.
        cfg: dict[str, Any] = {
            "codec_pipeline.path": "zarrs.ZarrsCodecPipeline",
            "codec_pipeline.validate_checksums": True,
            "codec_pipeline.chunk_concurrent_maximum": None,
            "codec_pipeline.chunk_concurrent_minimum": 4,
            "codec_pipeline.direct_io": False,
            "codec_pipeline.strict": True,
        }
        if self.threads:
            cfg["threading.max_workers"] = self.threads
        return cfg


class TensorstoreReader(Reader):
    """tensorstore's zarr3 / zarr (v2) driver with the cache disabled."""

    name = "tensorstore"
    description = "ts.open({driver: zarr3|zarr, kvstore: file}, context=fresh, cache 0).result().read().result()"

    def unavailable(self) -> str | None:
        return _missing("tensorstore")

    def version(self) -> str | None:
        return package_version("tensorstore")

    def context_spec(self) -> dict[str, Any]:
        """The tensorstore context: no cache pool (repeats cannot hit a cache), all cores."""
        return {
            "cache_pool": {"total_bytes_limit": 0},
            "data_copy_concurrency": {"limit": self.threads or os.cpu_count() or 1},
            "file_io_concurrency": {"limit": 32},
        }

    def settings(self) -> dict[str, Any]:
        return {"context": self.context_spec()}

    def open(self, ds: Dataset) -> Any:
        import tensorstore as ts

        spec = {
            "driver": "zarr3" if ds.zarr_format == 3 else "zarr",
            "kvstore": {"driver": "file", "path": str(ds.path)},
        }
        return ts.open(spec, read=True, context=ts.Context(self.context_spec())).result()

    def read(self, handle: Any, ds: Dataset) -> Any:
        return handle.read().result()


class FileBytesCeiling(Reader):
    """Reference point: read every stored chunk file's bytes (no decoding) on a thread pool.

    Each task opens one chunk file and reads it whole into a new ``bytes``, as a reader
    fetching chunks must at the least; nothing is decoded or copied into an output array.
    No Zarr reader can fetch the chunks from the page cache much faster than this. (An
    earlier variant read every file into one large output-sized buffer; on this kind of
    VM that measured the cost of landing data in cold memory rather than the I/O, and
    some readers beat it, so it was no ceiling.)
    """

    name = "file-bytes"
    description = (
        "ceiling: list the chunk files (open); read each whole into new bytes on a thread pool of "
        "CPU-count threads (read); no decoding, no output array"
    )
    is_reference = True

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self._pool: ThreadPoolExecutor | None = None

    def _workers(self) -> int:
        return self.threads or os.cpu_count() or 1

    def settings(self) -> dict[str, Any]:
        return {"threads": self._workers()}

    def open(self, ds: Dataset) -> Any:
        from benchmarks.datasets import chunk_files

        return chunk_files(ds.path)

    def read(self, handle: Any, ds: Dataset) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix="file-bytes")
        return sum(self._pool.map(_read_whole, handle))

    def verify(self, result: Any, ds: Dataset, source: np.ndarray) -> str | None:
        if result != ds.stored_bytes:
            return f"read {result} bytes, the chunk files hold {ds.stored_bytes}"
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _read_whole(path: os.PathLike[str]) -> int:
    with open(path, "rb", buffering=0) as f:
        return len(f.read())


#: Every reader by name; the order here is the order of the table.
READERS: dict[str, type[Reader]] = {
    cls.name: cls
    for cls in (
        GpuzarrReader,
        GpuzarrPreallocReader,
        ZarrPythonReader,
        ZarrsReader,
        TensorstoreReader,
        FileBytesCeiling,
    )
}

#: The peers run when ``--peers`` is not given.
DEFAULT_PEERS = ("gpuzarr", "zarr-python", "zarrs", "tensorstore")


def make_readers(names: list[str], threads: int | None, *, ceiling: bool = True) -> list[Reader]:
    """Reader instances for ``names`` (in :data:`READERS` order), plus the ceiling if asked."""
    wanted = list(names) + (["file-bytes"] if ceiling and "file-bytes" not in names else [])
    return [cls(threads) for name, cls in READERS.items() if name in wanted]


def iter_available(readers: list[Reader]) -> Iterator[tuple[Reader, str | None]]:
    """Each reader with the reason it is unavailable (None when it can run)."""
    for reader in readers:
        yield reader, reader.unavailable()
