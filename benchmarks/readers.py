"""The readers under test, behind one small interface shared with the writers.

A :class:`Subject` (reader, writer or ceiling) splits one measured operation into the
steps the timing loop needs:

* :meth:`Subject.unavailable` (once): why it cannot run here (missing package), or None;
* :meth:`Subject.supports` (once per task): why it does not do this pattern, or None;
* :meth:`Subject.session` (untimed): a context in force around open and run (library settings);
* :meth:`Subject.prepare` (untimed, before every measurement): e.g. drop caches, remove old output;
* :meth:`Subject.open` (timed, "open" column): what a user does first, e.g. ``open_array(path)``;
* :meth:`Subject.run` (timed, "run" column): read the selection(s) or write the values;
* :meth:`Subject.verify` (untimed, once per dataset and pattern, on the warm-up result).

A :class:`Reader` implements :meth:`Reader.open_array` and the reads
(:meth:`Reader.read_full`, :meth:`Reader.read_selection`, :meth:`Reader.read_batch`);
a new peer is one subclass and one entry in :data:`READERS`. Each subject states its
settings in :meth:`Subject.settings`; they are recorded with the results.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.patterns import Selection, Task

__all__ = [
    "CEILINGS",
    "DEFAULT_PEERS",
    "READERS",
    "FileBytesCeiling",
    "FileBytesOutputCeiling",
    "GpuzarrPreallocReader",
    "GpuzarrReader",
    "Reader",
    "Subject",
    "TensorstoreReader",
    "ZarrPythonReader",
    "ZarrsReader",
    "compare_arrays",
    "make_readers",
    "missing_modules",
    "package_version",
]


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def zarr_settings() -> dict[str, Any]:
    """zarr-python's settings that shape its speed (recorded with every zarr-based result)."""
    import zarr

    return {
        "codec_pipeline": zarr.config.get("codec_pipeline"),
        "async.concurrency": zarr.config.get("async.concurrency"),
        "threading.max_workers": zarr.config.get("threading.max_workers"),
    }


def missing_modules(*modules: str) -> str | None:
    """Why one of ``modules`` cannot be imported (not installed, or its import fails), or None."""
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
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


def compare_arrays(result: Any, expected: np.ndarray, what: str = "result") -> str | None:
    """None when ``result`` is a NumPy array equal to ``expected`` (shape, dtype, values), else what differs."""
    if not isinstance(result, np.ndarray):
        return f"{what} is {type(result).__name__}, not a NumPy array"
    if result.shape != expected.shape or result.dtype != expected.dtype:
        return f"{what} is {result.shape} {result.dtype}, expected {expected.shape} {expected.dtype}"
    if not np.array_equal(result, expected):
        bad = int(np.count_nonzero(result != expected))
        return f"{bad} of {expected.size} values of the {what} differ from the source"
    return None


class Subject(ABC):
    """One implementation measured by the timing loop: a reader, a writer or a ceiling."""

    #: Name used on the command line, in the tables and in the results.
    name: ClassVar[str]
    #: One line saying exactly what is timed.
    description: ClassVar[str]
    #: True for reference points that are not Zarr libraries (the ceilings).
    is_reference: ClassVar[bool] = False
    #: Exception class names that mean "this library does not do that" rather than a bug.
    unsupported_errors: ClassVar[tuple[str, ...]] = ()

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    @property
    def label(self) -> str:
        """Name as shown in tables: ceilings are marked."""
        return f"{self.name} (ceiling)" if self.is_reference else self.name

    def unavailable(self) -> str | None:
        """Why this subject cannot run in this environment, or None when it can."""
        return None

    def supports(self, ds: Dataset, task: Task) -> str | None:
        """Why this subject does not do ``task`` on ``ds`` (not measured, not an error), or None."""
        return None

    def version(self) -> str | None:
        """Version of the library measured."""
        return None

    def settings(self) -> dict[str, Any]:
        """Settings that affect performance, recorded with the results."""
        return {"threads": self.threads}

    def session(self) -> contextlib.AbstractContextManager[Any]:
        """Context entered (untimed) around each open + run."""
        return contextlib.nullcontext()

    def prepare(self, ds: Dataset, task: Task) -> None:  # noqa: B027 - optional hook
        """Untimed, before every measurement (the warm-up included)."""

    @abstractmethod
    def open(self, ds: Dataset, task: Task) -> Any:
        """Open (or create) the array: a fresh handle, nothing cached from earlier repetitions."""

    @abstractmethod
    def run(self, handle: Any, ds: Dataset, task: Task) -> Any:
        """Do the task through ``handle``; return what :meth:`verify` checks."""

    @abstractmethod
    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        """None when ``result`` is right, else what differs."""

    def cleanup(self, ds: Dataset, task: Task) -> None:  # noqa: B027 - optional hook
        """After the last measurement of ``task`` on ``ds`` (remove written output)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release anything held across repetitions (thread pools)."""


class Reader(Subject):
    """One way of reading Zarr arrays into memory."""

    #: How :meth:`read_batch` reads a batch of windows (recorded with the results).
    batch_mode: ClassVar[str] = "one selection after another"

    def settings(self) -> dict[str, Any]:
        return {"threads": self.threads, "batch": self.batch_mode}

    def open(self, ds: Dataset, task: Task) -> Any:
        return self.open_array(ds)

    def run(self, handle: Any, ds: Dataset, task: Task) -> Any:
        if task.full:
            return self.read_full(handle, ds)
        if task.batch:
            return self.read_batch(handle, ds, task.selections)
        return self.read_selection(handle, ds, task.selection)

    @abstractmethod
    def open_array(self, ds: Dataset) -> Any:
        """Open the array for reading: a fresh handle."""

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        """Read the whole array."""
        return self.read_selection(handle, ds, _full_selection(ds))

    @abstractmethod
    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        """Read one selection (slices, possibly with steps)."""

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        """Read several selections, as the library's API best allows; a list of results in order."""
        return [self.read_selection(handle, ds, sel) for sel in selections]

    def to_host(self, result: Any) -> Any:
        """The result as NumPy (GPU readers copy device arrays back for verification)."""
        return result

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        if task.batch:
            if not isinstance(result, list) or len(result) != len(expected):
                return f"expected a list of {len(expected)} windows, got {type(result).__name__}"
            for i, (got, want) in enumerate(zip(result, expected, strict=True)):
                problem = compare_arrays(self.to_host(got), want, f"window {i}")
                if problem:
                    return problem
            return None
        return compare_arrays(self.to_host(result), expected)


# --------------------------------------------------------------------------------------
# CPU readers


class GpuzarrReader(Reader):
    """gpuzarr on the CPU: ``open_array(path, device="cpu")`` then ``a[sel]`` (the full read too)."""

    name = "gpuzarr"
    description = (
        "gpuzarr.open_array(path, device='cpu'); a[sel] (full: a[:, :], a result gpuzarr allocates each time, "
        "as the peers allocate theirs, from the memory of results freed earlier: config.result_pool_bytes, "
        "default 256 MiB; gpuzarr-fresh turns that off); windows with a.read_batch(selections) (one batched read)"
    )
    batch_mode = "Array.read_batch: all selections planned, fetched and decoded as one read"

    def unavailable(self) -> str | None:
        return missing_modules("gpuzarr")

    def version(self) -> str | None:
        import gpuzarr

        return gpuzarr.__version__

    def settings(self) -> dict[str, Any]:
        import gpuzarr

        with self.session():
            cfg = gpuzarr.config.get()
        return {
            "threads": cfg.threads,
            "wave_bytes": cfg.wave_bytes,
            "coalesce_gap_bytes": cfg.coalesce_gap_bytes,
            "result_pool_bytes": cfg.result_pool_bytes,
            "device": "cpu",
            "batch": self.batch_mode,
            "shard_index_cache": "cleared before every measurement (each measurement starts cold, as for the peers)",
        }

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import gpuzarr

        return gpuzarr.config.set(threads=self.threads) if self.threads else contextlib.nullcontext()

    def prepare(self, ds: Dataset, task: Task) -> None:
        clear_gpuzarr_caches()

    def open_array(self, ds: Dataset) -> Any:
        import gpuzarr

        return gpuzarr.open_array(str(ds.path), mode="r", device="cpu")

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        return handle[sel]

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        return handle.read_batch(selections)


def clear_gpuzarr_caches() -> None:
    """Forget gpuzarr's process-wide shard index cache (it outlives handles).

    Without this, every repetition after the first would skip reading shard indexes,
    which a fresh process (and each peer, whose handles are fresh) must read.
    """
    try:
        from gpuzarr.pipeline import shard_index_cache
    except ImportError:  # a gpuzarr without the cache
        return
    shard_index_cache.clear()


class GpuzarrFreshReader(GpuzarrReader):
    """gpuzarr with its pool of freed results' memory turned off: every result is fresh."""

    name = "gpuzarr-fresh"
    description = (
        "as gpuzarr, with config.result_pool_bytes=0: every result is fresh memory that the kernel zeroes as the "
        "read first writes it, as the peers' results are (gpuzarr by default backs results of 1 MiB and more "
        "with the memory of results freed earlier)"
    )

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import gpuzarr

        changes: dict[str, Any] = {"result_pool_bytes": 0}
        if self.threads:
            changes["threads"] = self.threads
        return gpuzarr.config.set(**changes)


class GpuzarrPreallocReader(GpuzarrReader):
    """gpuzarr reading into one output buffer reused across repetitions (pages already mapped)."""

    name = "gpuzarr-prealloc"
    description = (
        "as gpuzarr, but full reads go into one preallocated, already-touched buffer reused across repetitions"
    )

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self._out: np.ndarray | None = None

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        if self._out is None or self._out.shape != ds.shape or self._out.dtype != ds.dtype:
            self._out = np.zeros(ds.shape, dtype=ds.dtype)
        handle.read(out=self._out)
        return self._out

    def close(self) -> None:
        self._out = None


class ZarrPythonReader(Reader):
    """zarr-python 3 with its default configuration (BatchedCodecPipeline)."""

    name = "zarr-python"
    description = (
        "zarr.open_array(path, mode='r')[sel] with zarr-python's default config; windows concurrently "
        "(asyncio.gather over Array.async_array.getitem)"
    )
    batch_mode = "asyncio.gather of AsyncArray.getitem on zarr's event loop"

    def unavailable(self) -> str | None:
        return missing_modules("zarr")

    def version(self) -> str | None:
        return package_version("zarr")

    def _config(self) -> dict[str, Any]:
        return {}

    def settings(self) -> dict[str, Any]:
        with self.session():
            return {**zarr_settings(), "batch": self.batch_mode}

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import zarr

        return zarr.config.set(self._config()) if self._config() else contextlib.nullcontext()

    def open_array(self, ds: Dataset) -> Any:
        import zarr

        return zarr.open_array(str(ds.path), mode="r")

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        return handle[sel]

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        import asyncio

        from zarr.core.sync import sync

        async_array = handle.async_array

        async def gather() -> list[Any]:
            return list(await asyncio.gather(*(async_array.getitem(sel) for sel in selections)))

        return sync(gather())


class ZarrsReader(ZarrPythonReader):
    """zarr-python with zarrs-python's Rust codec pipeline (``strict``: no silent fallback)."""

    name = "zarrs"
    description = (
        "zarr.open_array(path)[sel] under codec_pipeline.path=zarrs.ZarrsCodecPipeline "
        "(strict=True: an unsupported case raises instead of falling back to zarr-python); windows concurrently"
    )
    unsupported_errors = ("DiscontiguousArrayError",)

    def unavailable(self) -> str | None:
        return missing_modules("zarr", "zarrs")

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
    description = (
        "ts.open({driver: zarr3|zarr, kvstore: file}, context=fresh, cache 0).result(); h[sel].read().result(); "
        "windows issued together in one ts.Batch, then awaited"
    )
    batch_mode = "all reads issued in one ts.Batch, then awaited"

    def unavailable(self) -> str | None:
        return missing_modules("tensorstore")

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
        return {"context": self.context_spec(), "batch": self.batch_mode}

    def open_array(self, ds: Dataset) -> Any:
        import tensorstore as ts

        spec = {
            "driver": "zarr3" if ds.zarr_format == 3 else "zarr",
            "kvstore": {"driver": "file", "path": str(ds.path)},
        }
        return ts.open(spec, read=True, context=ts.Context(self.context_spec())).result()

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        return handle.read().result()

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        return handle[sel].read().result()

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        import tensorstore as ts

        batch_cls = getattr(ts, "Batch", None)
        if batch_cls is None:  # older tensorstore: plain concurrent futures
            futures = [handle[sel].read() for sel in selections]
        else:
            with batch_cls() as batch:
                futures = [handle[sel].read(batch=batch) for sel in selections]
        return [f.result() for f in futures]


# --------------------------------------------------------------------------------------
# ceilings


class _CeilingBase(Reader):
    """Shared plumbing of the file-reading ceilings: a thread pool, full reads only."""

    is_reference = True

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self._pool: ThreadPoolExecutor | None = None

    def _workers(self) -> int:
        return self.threads or os.cpu_count() or 1

    def settings(self) -> dict[str, Any]:
        return {"threads": self._workers()}

    def supports(self, ds: Dataset, task: Task) -> str | None:
        return None if task.full and task.kind == "read" else "ceilings are measured for full reads only"

    def pool(self) -> ThreadPoolExecutor:
        """The thread pool, made on first use."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix=self.name)
        return self._pool

    def open_array(self, ds: Dataset) -> Any:
        # The file list is known from the dataset (listed once when it was checked):
        # a ceiling pays nothing to "open", where every reader reads metadata.
        return ds.chunk_paths

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        raise NotImplementedError("ceilings read whole arrays only")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class FileBytesCeiling(_CeilingBase):
    """Reference point: read every stored file's bytes (no decoding, no output array) on a thread pool.

    Each task opens one chunk (or shard) file and reads it whole into a new ``bytes``, as
    a reader fetching chunks must at the least. Nothing is decoded or copied into an
    output array, and the allocator recycles the same cache-hot buffers from file to
    file, so this is *flattering*: the pure cost of fetching the stored bytes from the
    page cache. See :class:`FileBytesOutputCeiling` for the ceiling a real read faces.
    """

    name = "file-bytes"
    description = (
        "ceiling (flattering): read each chunk file (list known in advance) whole into new bytes on a thread pool "
        "of CPU-count threads; no decoding, no output array"
    )

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        return sum(self.pool().map(_read_whole, handle))

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        if result != ds.stored_bytes:
            return f"read {result} bytes, the chunk files hold {ds.stored_bytes}"
        return None


class FileBytesOutputCeiling(_CeilingBase):
    """Reference point: fetch the stored bytes *and* fill a fresh output-sized buffer at memcpy speed.

    What every real read must do at the least: get each stored file's bytes out of the
    page cache and write the decoded size of it into a freshly allocated result, whose
    pages the kernel must map and zero on first touch. Each file is read whole into a
    new ``bytes`` (the kernel's copy lands in a small, cache-hot buffer), then copied
    into its share of the output, repeatedly until the share (its decoded size) is full:
    a decoder running at memcpy speed. Files are processed on a thread pool of CPU-count
    threads (file reads and NumPy copies release the GIL). For uncompressed data this
    *is* a read; for compressed data no decoder is faster.

    (Reading with ``readinto`` straight into the output, one copy fewer, measured ~1.8x
    slower on the development VM: the kernel's copy into cold, freshly mapped pages is
    slower than a copy into a hot buffer plus a user-space memcpy. The faster way is
    the ceiling.)
    """

    name = "file-bytes+output"
    description = (
        "ceiling (realistic): allocate a fresh output-sized buffer, read each chunk file (list known in advance) "
        "into new bytes and copy them over its decoded-size share of the output (memcpy stands in for decoding)"
    )

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        out = np.empty(ds.nbytes, dtype=np.uint8)
        share = ds.nbytes // len(handle)

        def fill(i: int) -> int:
            with open(handle[i], "rb", buffering=0) as f:
                data = np.frombuffer(f.read(), dtype=np.uint8)
            region = out[i * share : (i + 1) * share]
            for start in range(0, share, max(1, len(data))):
                piece = region[start : start + len(data)]
                piece[:] = data[: len(piece)]
            return len(data)

        fetched = sum(self.pool().map(fill, range(len(handle))))
        return fetched, out

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        fetched, out = result
        if fetched != ds.stored_bytes:
            return f"read {fetched} bytes, the chunk files hold {ds.stored_bytes}"
        if out.nbytes != ds.nbytes:
            return f"filled {out.nbytes} bytes, the array holds {ds.nbytes}"
        return None


def _read_whole(path: os.PathLike[str]) -> int:
    with open(path, "rb", buffering=0) as f:
        return len(f.read())


#: Every CPU reader by name; the order here is the order of the tables.
READERS: dict[str, type[Reader]] = {
    cls.name: cls
    for cls in (
        GpuzarrReader,
        GpuzarrFreshReader,
        GpuzarrPreallocReader,
        ZarrPythonReader,
        ZarrsReader,
        TensorstoreReader,
    )
}

#: The read ceilings, run unless ``--no-ceiling``.
CEILINGS: dict[str, type[Reader]] = {cls.name: cls for cls in (FileBytesCeiling, FileBytesOutputCeiling)}

#: The peers run when ``--peers`` is not given.
DEFAULT_PEERS = ("gpuzarr", "gpuzarr-fresh", "zarr-python", "zarrs", "tensorstore")


def make_readers(
    names: Sequence[str],
    threads: int | None,
    *,
    ceiling: bool = True,
    registry: dict[str, type[Reader]] | None = None,
    ceilings: dict[str, type[Reader]] | None = None,
) -> list[Reader]:
    """Reader instances for ``names`` (in registry order), then the ceilings if asked."""
    registry = READERS if registry is None else registry
    ceilings = CEILINGS if ceilings is None else ceilings
    readers = [cls(threads) for name, cls in registry.items() if name in names]
    if ceiling:
        readers += [cls(threads) for cls in ceilings.values()]
    return readers


def iter_available(subjects: Sequence[Subject]) -> Iterator[tuple[Subject, str | None]]:
    """Each subject with the reason it is unavailable (None when it can run)."""
    for subject in subjects:
        yield subject, subject.unavailable()
