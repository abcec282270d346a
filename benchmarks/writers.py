"""The writers under test: the same values, the same codecs and chunking, each library's API.

Every writer writes into its own scratch directory next to the datasets (same file
system, page cache only: nothing is fsynced, by any writer):

* ``write-full``: the directory is moved aside (untimed), then the writer creates the
  array (timed as "open": the metadata document) and writes the whole source (timed as
  "run");
* ``write-partial``: a pristine copy of the dataset is made (untimed), then the writer
  opens it for writing ("open") and overwrites an unaligned box ("run").

Earlier outputs are moved aside, not deleted, while writes are measured: ext4 without
a journal skips inodes freed in the last minute when it allocates new ones (five
minutes more while their inode table block is not written back: ``RECENTCY_MIN``
and ``RECENTCY_DIRTY`` in ``fs/ext4/ialloc.c``), reading each one's inode table entry
to tell, so deleting thousands of chunk files
right before a timed write made every writer's file creation scan them (measured, 64
KiB zstd chunks, 2048 files per write: 60% of tensorstore's CPU time in
``recently_deleted`` and the block lookups under it, the times of every writer rising
round after round within one cell). A finished cell's outputs go to a trash
(:class:`Trash`) that the suite empties after a dataset's cells, and before the next
write cell it waits until that deletion is :data:`DELETION_SETTLE_S` old: creating 1000
directories of one file each took 462 ms of CPU time just after deleting 16,000 such
files and directories, 248 ms 20 and 40 s later, and 123 ms (as before the deletion)
70 s later.

Before every measurement the page cache is flushed (``os.sync``, untimed) so one
measurement's write-back does not land in the next one, and the wait for a quiet machine
comes after that.

Verification: the warm-up's output is read back by a *different* library (zarr-python
for gpuzarr and tensorstore, tensorstore for zarr-python and zarrs) and compared with
the source (for ``write-partial``: the source with the box replaced). The stored size of
each writer's output is recorded, so a writer that compressed differently shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.datasets import CODECS, Dataset, chunk_files
from benchmarks.patterns import Task
from benchmarks.readers import (
    Subject,
    TensorstoreReader,
    ZarrsReader,
    clear_gpuzarr_caches,
    compare_arrays,
    missing_modules,
    package_version,
    zarr_settings,
)

__all__ = [
    "DEFAULT_WRITERS",
    "WRITERS",
    "WRITE_CEILINGS",
    "FileWriteCeiling",
    "GpuzarrWriter",
    "TensorstoreWriter",
    "Writer",
    "ZarrPythonWriter",
    "ZarrsWriter",
    "make_writers",
    "read_back",
]


def _retire(path: Path, retired: Path) -> None:
    """Move ``path`` (if it exists) into the folder ``retired``, under a new name."""
    if path.exists():
        retired.mkdir(parents=True, exist_ok=True)
        path.rename(retired / f"{path.name}-{uuid.uuid4().hex}")


#: How old the suite's last deletion of outputs must be before a write cell starts
#: (see the module docs): ext4's 60 s for inodes whose table block was written back
#: (every deletion is followed by ``os.sync``), and a margin.
DELETION_SETTLE_S = 70.0


def trash_path(scratch: Path) -> Path:
    """Where finished write cells leave their outputs in ``scratch`` (see :class:`Trash`)."""
    return scratch / ".trash"


class Trash:
    """The outputs finished write cells left in ``scratch``, deleted in one go between
    cells (:meth:`empty`), and the wait before a write cell for that deletion to be
    ``settle_s`` old (:meth:`settle`; see the module docs)."""

    def __init__(self, scratch: Path, settle_s: float = DELETION_SETTLE_S) -> None:
        self.path = trash_path(scratch)
        self.settle_s = settle_s
        #: time.monotonic() of the last deletion, None before the first.
        self.emptied_at: float | None = None

    def empty(self) -> bool:
        """Delete everything in the trash and write the change back (``os.sync``): True
        if there was anything to delete."""
        if not self.path.exists():
            return False
        shutil.rmtree(self.path)
        os.sync()
        self.emptied_at = time.monotonic()
        return True

    def settle(self) -> float:
        """Sleep until the last deletion is ``settle_s`` old; return the seconds slept."""
        if self.emptied_at is None:
            return 0.0
        left = self.emptied_at + self.settle_s - time.monotonic()
        if left <= 0:
            return 0.0
        time.sleep(left)
        return left


def read_back(library: str, path: Path, zarr_format: int) -> np.ndarray:
    """The whole array at ``path`` as read by ``library`` (``zarr-python`` or ``tensorstore``)."""
    if library == "zarr-python":
        import zarr

        with zarr.config.set({"codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline"}):
            return np.asarray(zarr.open_array(str(path), mode="r")[...])
    if library == "tensorstore":
        import tensorstore as ts

        spec = {"driver": "zarr3" if zarr_format == 3 else "zarr", "kvstore": {"driver": "file", "path": str(path)}}
        return np.asarray(ts.open(spec, read=True).result().read().result())
    raise ValueError(f"no read-back with {library!r}")


class Writer(Subject):
    """One way of writing Zarr arrays (the same codecs and chunking as the dataset)."""

    #: Library whose read-back checks this writer's output (never the writer's own).
    verifier: ClassVar[str] = "zarr-python"

    def __init__(self, threads: int | None = None, scratch: Path | None = None) -> None:
        super().__init__(threads)
        self.scratch = scratch or Path("/tmp/gpuzarr-bench-scratch")
        #: Stored bytes of the last verified output, per (dataset, pattern).
        self.stored_bytes: dict[tuple[str, str], int] = {}
        self._value: np.ndarray | None = None
        self._value_key: tuple[str, str] | None = None

    def dest(self, ds: Dataset, task: Task) -> Path:
        """Where this writer writes ``task`` on ``ds``."""
        return self.scratch / f"{self.name}-{task.pattern}-{ds.name}.zarr"

    def set_value(self, ds: Dataset, task: Task, value: np.ndarray) -> None:
        """The values written (held in memory; the timing loop sets them once per dataset and pattern)."""
        self._value, self._value_key = value, (ds.name, task.pattern)

    def value(self, ds: Dataset, task: Task) -> np.ndarray:
        """The values to write for ``task``."""
        if self._value is None or self._value_key != (ds.name, task.pattern):
            raise RuntimeError("set_value() was not called for this dataset and pattern")
        return self._value

    @property
    def retired(self) -> Path:
        """Where this writer's earlier outputs wait to be deleted (see the module docs)."""
        return self.scratch / f".retired-{self.name}"

    def prepare(self, ds: Dataset, task: Task) -> None:
        dest = self.dest(ds, task)
        _retire(dest, self.retired)
        if not task.full:
            shutil.copytree(ds.path, dest, ignore=shutil.ignore_patterns("manifest.json"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.sync()  # write-back of earlier output must not land in this measurement

    def open(self, ds: Dataset, task: Task) -> Any:
        dest = self.dest(ds, task)
        return self.create(ds, dest) if task.full else self.open_existing(ds, dest)

    def run(self, handle: Any, ds: Dataset, task: Task) -> Any:
        self.write(handle, task, self.value(ds, task))
        return self.dest(ds, task)

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        path = Path(result)
        try:
            back = read_back(self.verifier, path, ds.zarr_format)
        except Exception as exc:
            return f"{self.verifier} could not read the output back: {type(exc).__name__}: {exc}"
        problem = compare_arrays(back, expected, f"array read back by {self.verifier}")
        if problem is None:
            self.stored_bytes[(ds.name, task.pattern)] = sum(f.stat().st_size for f in chunk_files(path))
        return problem

    def cleanup(self, ds: Dataset, task: Task) -> None:
        # (Into the trash, not deleted: see the module docs.)
        trash = trash_path(self.scratch)
        _retire(self.dest(ds, task), trash)
        _retire(self.retired, trash)
        self._value = None

    def metadata(self, ds: Dataset) -> dict[str, Any]:
        """``create_array`` keywords shared by gpuzarr and zarr-python (JSON codec specs)."""
        spec = ds.spec
        return {
            "shape": spec.shape,
            "chunks": spec.chunks,
            "shards": spec.shards,
            "dtype": spec.dtype,
            "compressors": CODECS[spec.codec].json(spec.zarr_format, spec.dtype),
            "filters": None,
            "fill_value": 0,
            "zarr_format": spec.zarr_format,
        }

    def create(self, ds: Dataset, dest: Path) -> Any:
        """Create a fresh array at ``dest`` shaped and encoded as ``ds``."""
        raise NotImplementedError

    def open_existing(self, ds: Dataset, dest: Path) -> Any:
        """Open the existing array at ``dest`` for writing."""
        raise NotImplementedError

    def write(self, handle: Any, task: Task, value: np.ndarray) -> None:
        """Write ``value`` into ``task.selection``."""
        handle[task.selection] = value


class GpuzarrWriter(Writer):
    """gpuzarr: ``create_array(...)`` / ``open_array(path, mode="r+")``, then ``a[sel] = value``."""

    name = "gpuzarr"
    description = "gpuzarr.create_array(path, ...) or open_array(path, mode='r+'); a[sel] = value"

    def unavailable(self) -> str | None:
        return missing_modules("gpuzarr")

    def version(self) -> str | None:
        import gpuzarr

        return gpuzarr.__version__

    def settings(self) -> dict[str, Any]:
        import gpuzarr

        with self.session():
            cfg = gpuzarr.config.get()
        return {"threads": cfg.threads, "wave_bytes": cfg.wave_bytes, "write_empty_chunks": cfg.write_empty_chunks}

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import gpuzarr

        return gpuzarr.config.set(threads=self.threads) if self.threads else contextlib.nullcontext()

    def prepare(self, ds: Dataset, task: Task) -> None:
        super().prepare(ds, task)
        clear_gpuzarr_caches()  # the copy replaced the shards the cache may remember

    def create(self, ds: Dataset, dest: Path) -> Any:
        import gpuzarr

        return gpuzarr.create_array(str(dest), device="cpu", **self.metadata(ds))

    def open_existing(self, ds: Dataset, dest: Path) -> Any:
        import gpuzarr

        return gpuzarr.open_array(str(dest), mode="r+", device="cpu")


class ZarrPythonWriter(Writer):
    """zarr-python 3 with its default configuration."""

    name = "zarr-python"
    description = "zarr.create_array(store=path, ...) or zarr.open_array(path, mode='r+'); a[sel] = value"
    verifier = "tensorstore"

    def unavailable(self) -> str | None:
        return missing_modules("zarr")

    def version(self) -> str | None:
        return package_version("zarr")

    def _config(self) -> dict[str, Any]:
        return {}

    def settings(self) -> dict[str, Any]:
        with self.session():
            return zarr_settings()

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import zarr

        return zarr.config.set(self._config()) if self._config() else contextlib.nullcontext()

    def create(self, ds: Dataset, dest: Path) -> Any:
        import zarr

        return zarr.create_array(store=str(dest), **self.metadata(ds))

    def open_existing(self, ds: Dataset, dest: Path) -> Any:
        import zarr

        return zarr.open_array(str(dest), mode="r+")


class ZarrsWriter(ZarrPythonWriter):
    """zarr-python with zarrs-python's Rust codec pipeline, strict (no silent fallback)."""

    name = "zarrs"
    description = (
        "as zarr-python, under codec_pipeline.path=zarrs.ZarrsCodecPipeline (strict=True: an unsupported case "
        "raises instead of falling back)"
    )
    unsupported_errors = ZarrsReader.unsupported_errors

    def unavailable(self) -> str | None:
        return missing_modules("zarr", "zarrs")

    def version(self) -> str | None:
        return package_version("zarrs")

    def _config(self) -> dict[str, Any]:
        return ZarrsReader(self.threads)._config()


class TensorstoreWriter(Writer):
    """tensorstore's zarr3 / zarr driver, the same context as its reader (no cache pool)."""

    name = "tensorstore"
    description = (
        "ts.open({driver, kvstore: file, metadata}, create=True) or ts.open(..., open=True, write=True); "
        "h[sel].write(value).result(); the reader's context plus file_io_sync=false (tensorstore fsyncs every "
        "file and its directory by default; no writer here syncs)"
    )

    def unavailable(self) -> str | None:
        return missing_modules("tensorstore")

    def version(self) -> str | None:
        return package_version("tensorstore")

    def context_spec(self) -> dict[str, Any]:
        """The reader's context, and no fsync: tensorstore's file kvstore syncs every
        file it writes, and its directory, by default (``file_io_sync``), where no other
        writer here syncs anything."""
        return {**TensorstoreReader(self.threads).context_spec(), "file_io_sync": False}

    def settings(self) -> dict[str, Any]:
        return {"context": self.context_spec()}

    def _spec(self, ds: Dataset, dest: Path, *, metadata: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "driver": "zarr3" if ds.zarr_format == 3 else "zarr",
            "kvstore": {"driver": "file", "path": str(dest)},
        }
        if metadata:
            spec["metadata"] = tensorstore_metadata(ds)
        return spec

    def create(self, ds: Dataset, dest: Path) -> Any:
        import tensorstore as ts

        context = ts.Context(self.context_spec())
        return ts.open(self._spec(ds, dest, metadata=True), create=True, context=context).result()

    def open_existing(self, ds: Dataset, dest: Path) -> Any:
        import tensorstore as ts

        context = ts.Context(self.context_spec())
        return ts.open(self._spec(ds, dest, metadata=False), open=True, read=True, write=True, context=context).result()

    def write(self, handle: Any, task: Task, value: np.ndarray) -> None:
        handle[task.selection].write(value).result()


def tensorstore_metadata(ds: Dataset) -> dict[str, Any]:
    """The dataset's metadata as tensorstore spells it (the same codecs as zarr-python writes)."""
    spec = ds.spec
    codec = CODECS[spec.codec]
    if spec.zarr_format == 2:
        return {
            "shape": list(spec.shape),
            "chunks": list(spec.chunks),
            "dtype": spec.dtype.newbyteorder("<").str if spec.dtype.itemsize > 1 else spec.dtype.str,
            "compressor": codec.v2_json(spec.dtype),
            "filters": None,
            "fill_value": 0,
            "order": "C",
            "dimension_separator": ".",
        }
    codecs = codec.v3_codecs(spec.dtype)
    if spec.shards is not None:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(spec.chunks),
                    "codecs": codecs,
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ]
    return {
        "shape": list(spec.shape),
        "data_type": spec.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(spec.storage_chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
    }


class FileWriteCeiling(Writer):
    """Reference point: write the dataset's stored bytes as new files, no encoding.

    The chunk (or shard) files of the dataset are read into memory once (untimed); each
    measurement creates the directory ("open") and writes every file's bytes into a new
    file on a thread pool of CPU-count threads ("run"): no encoding, no temporary file
    and rename, no fsync. No writer producing these bytes can be faster.
    """

    name = "file-write"
    description = (
        "ceiling: write the dataset's stored chunk bytes (held in memory) as new files on a thread pool of "
        "CPU-count threads; no encoding, no rename, no fsync"
    )
    is_reference = True

    def __init__(self, threads: int | None = None, scratch: Path | None = None) -> None:
        super().__init__(threads, scratch)
        self._blobs: list[tuple[str, bytes]] | None = None
        self._blobs_of: str | None = None
        self._pool: Any = None

    def _workers(self) -> int:
        return self.threads or os.cpu_count() or 1

    def settings(self) -> dict[str, Any]:
        return {"threads": self._workers()}

    def supports(self, ds: Dataset, task: Task) -> str | None:
        return None if task.full and task.kind == "write" else "the write ceiling is measured for full writes only"

    def prepare(self, ds: Dataset, task: Task) -> None:
        if self._blobs_of != ds.name:
            self._blobs = [(str(p.relative_to(ds.path)), p.read_bytes()) for p in ds.chunk_paths]
            self._blobs_of = ds.name
        super().prepare(ds, task)

    def open(self, ds: Dataset, task: Task) -> Any:
        dest = self.dest(ds, task)
        dest.mkdir(parents=True)
        return dest

    def run(self, handle: Any, ds: Dataset, task: Task) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix="file-write")
        dest = Path(handle)
        assert self._blobs is not None
        dirs = {os.path.dirname(rel) for rel, _ in self._blobs}
        for d in sorted(dirs):
            (dest / d).mkdir(parents=True, exist_ok=True)

        def put(item: tuple[str, bytes]) -> int:
            rel, blob = item
            with open(dest / rel, "wb", buffering=0) as f:
                return f.write(blob) or 0

        return sum(self._pool.map(put, self._blobs))

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        if result != ds.stored_bytes:
            return f"wrote {result} bytes, the dataset stores {ds.stored_bytes}"
        return None

    def cleanup(self, ds: Dataset, task: Task) -> None:
        super().cleanup(ds, task)
        self._blobs = None
        self._blobs_of = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


#: Every writer by name; the order here is the order of the tables.
WRITERS: dict[str, type[Writer]] = {
    cls.name: cls for cls in (GpuzarrWriter, ZarrPythonWriter, ZarrsWriter, TensorstoreWriter)
}
WRITE_CEILINGS: dict[str, type[Writer]] = {FileWriteCeiling.name: FileWriteCeiling}

#: The writers run when ``--peers`` is not given.
DEFAULT_WRITERS = ("gpuzarr", "zarr-python", "zarrs", "tensorstore")


def make_writers(names: Sequence[str], threads: int | None, scratch: Path, *, ceiling: bool = True) -> list[Writer]:
    """Writer instances for ``names`` (in :data:`WRITERS` order), then the write ceiling if asked."""
    writers = [cls(threads, scratch) for name, cls in WRITERS.items() if name in names]
    if ceiling:
        writers += [cls(threads, scratch) for cls in WRITE_CEILINGS.values()]
    return writers
