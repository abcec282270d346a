"""A store over an fsspec filesystem: object stores (``s3://``, ``gs://``, ``az://``),
HTTP, and every other filesystem fsspec reaches.

A batch of reads (many chunks, or the coalesced ranges of many inner chunks) runs
concurrently: through fsspec's batched calls (``cat``, ``cat_ranges``, ``pipe``) on the
async filesystems of object stores and HTTP, which run their requests concurrently, and
on a thread pool for synchronous filesystems (SFTP, HDFS...), whose batched calls are
loops. A read costs a few round trips' worth of latency, not one per chunk.

Object stores have no cheap version token (a HEAD request per shard would double the
round trips of a read), so this store reports none (:attr:`tells_versions` is False):
shard indexes are cached per handle (:attr:`caches_per_handle`), trusted until gpuzarr
rewrites or deletes the shard through it, and dropped when an array is opened again.
Open the array again to see shards another writer has replaced meanwhile. For the same
reason its readers (:meth:`Store.open_reader`) cannot pin one version of an object, as
the local, zip and memory stores' do: a shard replaced by another writer between the
read of its index and of its inner chunks can mix the two versions, which fails to
decode, or, for inner chunks neither compressed nor checksummed, reads other values (a
``crc32c`` codec turns that into a ChecksumError). Write a dataset before reading it, as
object stores are used for training data.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote

from gpuzarr._checks import is_integer
from gpuzarr.errors import StoreError

from ._threads import default_threads, parallel_map
from .base import UNVERSIONED, ByteRange, Store, under_prefix

__all__ = ["FsspecStore"]

#: What an fsspec filesystem raises for a path that holds no object.
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)

_handles = itertools.count()


class FsspecStore(Store):
    """Keys as objects below ``root`` on the fsspec filesystem ``fs``
    (``a/c/0`` -> ``{root}/a/c/0``).

    Missing objects (and pseudo-directories) read as None; any other failure of the
    filesystem raises :class:`~gpuzarr.errors.StoreError` naming the key, so a network
    or permission error never reads as a missing chunk (which would read as the fill
    value). Each write is one ``pipe`` of the whole object, which object stores make
    atomic; filesystems of files (fsspec's local one, SFTP) write it in place, where a
    reader can meet a partial object: for local files use :class:`LocalStore` (which
    :func:`make_store` gives for paths and ``file://`` URLs).
    """

    caches_per_handle = True

    def __init__(self, fs: Any, root: str, *, read_only: bool = False, threads: int | None = None) -> None:
        super().__init__(read_only=read_only)
        if not hasattr(fs, "cat_file") or not hasattr(fs, "pipe_file"):
            raise TypeError(f"FsspecStore needs an fsspec filesystem, got {type(fs).__name__}")
        if threads is not None and (not is_integer(threads) or threads < 1):
            raise ValueError(f"threads must be an integer of at least 1, got {threads!r}")
        self.fs = fs
        #: The path of the store's root on ``fs`` (no protocol, no trailing slash).
        self.root = fs._strip_protocol(root).rstrip("/") if root else ""
        # What every object's path starts with: "root/", or at the filesystem's root its
        # root marker ("/" for memory and local paths, "" for buckets).
        self._head = self.root + "/" if self.root else getattr(fs, "root_marker", "")
        # URLs (HTTP) need keys percent-encoded: "%", "#", "?" and spaces are legal in
        # keys and would otherwise name another object, a fragment or a query.
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        self._urls = any(p in ("http", "https") for p in protocols)
        #: Threads for the batches of a synchronous filesystem (an async one runs its own).
        self.threads = default_threads() if threads is None else threads
        self._concurrent = bool(getattr(fs, "async_impl", False))
        self._handle = next(_handles)

    @classmethod
    def from_url(
        cls, url: str, *, read_only: bool = False, storage_options: Mapping[str, Any] | None = None
    ) -> FsspecStore:
        """The store at ``url`` (``"s3://bucket/data.zarr"``, ``"memory://x"``, ...),
        its filesystem made by fsspec with ``storage_options`` (credentials, endpoint...)."""
        try:
            import fsspec
        except ImportError:
            raise ImportError(
                f"the store {url!r} needs fsspec: pip install fsspec (and s3fs, gcsfs... for its protocol)"
            ) from None
        fs, path = fsspec.url_to_fs(url, **dict(storage_options or {}))
        return cls(fs, path, read_only=read_only)

    def __repr__(self) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        where = self.root if "://" in self.root else f"{protocol}://{self.root}"  # (HTTP roots are URLs)
        return f"FsspecStore({where!r}, read_only={self.read_only})"

    @property
    def cache_namespace(self) -> tuple[object, ...]:
        return ("fsspec", self._handle)

    def _path(self, key: str) -> str:
        return self._head + (quote(key, safe="/") if self._urls else key)

    def _key_of(self, path: str) -> str | None:
        """The key of a path the filesystem listed (None: not below the root)."""
        path = self.fs._strip_protocol(path) if "://" not in self._head else path
        if not path.startswith(self._head):
            return None
        key = path[len(self._head) :]
        return unquote(key) if self._urls else key

    def _error(self, key: str, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {what} key {key!r} in {self!r}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ reads

    def _object_token(self, key: str) -> Hashable | None:
        return UNVERSIONED

    def _get(self, key: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(key)))
        except _MISSING:
            return None
        except Exception as exc:
            raise self._error(key, "read", exc) from exc

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys:
            return []
        paths = [self._path(k) for k in keys]
        distinct = list(dict.fromkeys(paths))
        answers = self._read_batch(keys[0], [(p, None, None) for p in distinct])
        found = dict(zip(distinct, answers, strict=True))
        return [self._result(key, found[path]) for key, path in zip(keys, paths, strict=True)]

    def _read_batch(self, first_key: str, requests: list[tuple[str, int | None, int | None]]) -> list[Any]:
        """Each request's (path, start, end) bytes, or the exception it raised: one
        ``cat_ranges`` on an async filesystem (it runs them concurrently), the thread
        pool on a synchronous one. (Not ``cat``: it expands "[", "*" and "?" in paths as
        globs, which are legal in keys, and answers for the paths they match.)"""
        if not requests:
            return []
        if not self._concurrent:
            return parallel_map(self._cat_file_or_error, requests, self.threads)
        paths, starts, ends = (list(column) for column in zip(*requests, strict=True))
        try:
            return list(self.fs.cat_ranges(paths, starts, ends, on_error="return"))
        except Exception as exc:
            raise self._error(first_key, "read", exc) from exc

    def _cat_file_or_error(self, request: tuple[str, int | None, int | None]) -> Any:
        """One read of a batch on a synchronous filesystem: its bytes, or the exception
        (as fsspec's batched calls answer with ``on_error="return"``)."""
        path, start, end = request
        try:
            return self.fs.cat_file(path, start=start, end=end)
        except Exception as exc:
            return exc

    def _result(self, key: str, value: Any) -> bytes | None:
        """A batched call's answer for ``key``: bytes, None where missing, else raise."""
        if value is None or isinstance(value, _MISSING):
            return None
        if isinstance(value, BaseException):
            raise self._error(key, "read", value) from value
        return bytes(value)

    def _get_ranges(self, key: str, ranges: list[ByteRange]) -> list[bytes] | None:
        return self._get_many_ranges([(key, ranges)])[0]

    def _get_many_ranges(self, requests: list[tuple[str, list[ByteRange]]]) -> list[list[bytes] | None]:
        batch = [(self._path(key), offset, offset + length) for key, ranges in requests for offset, length in ranges]
        answers = self._read_batch(requests[0][0], batch) if batch else []
        results: list[list[bytes] | None] = []
        position = 0
        for key, ranges in requests:
            parts = [self._result(key, a) for a in answers[position : position + len(ranges)]]
            position += len(ranges)
            if all(length == 0 for _, length in ranges):
                # (Nothing to read, and filesystems may answer an empty range without a
                # request: still say whether the object is there.)
                results.append(None if self._size(key) is None else [b""] * len(ranges))
                continue
            if any(part is None for part in parts):
                results.append(None)
                continue
            for part, (_, length) in zip(parts, ranges, strict=True):
                if len(part) > length:  # type: ignore[arg-type]
                    raise self._overlong(key, len(part), length)  # type: ignore[arg-type]
            results.append(parts)  # type: ignore[arg-type]
        return results

    def _overlong(self, key: str, got: int, asked: int) -> StoreError:
        # (A server that ignores Range headers answers with the whole object: its bytes
        # taken for the range asked would be other data.)
        return StoreError(
            f"cannot read key {key!r} in {self!r}: {got} bytes came back for a range of {asked}; "
            "the server does not honour range requests"
        )

    def _get_suffix(self, key: str, length: int) -> bytes | None:
        if length == 0:  # (a start of -0 would read the whole object)
            return None if self._size(key) is None else b""
        try:
            data = bytes(self.fs.cat_file(self._path(key), start=-length))
        except _MISSING:
            return None
        except Exception as exc:
            raise self._error(key, "read", exc) from exc
        if len(data) > length:
            raise self._overlong(key, len(data), length)
        return data

    def _get_many_suffixes(self, keys: list[str], length: int) -> list[bytes | None]:
        if not keys or length == 0:
            return [self._get_suffix(k, length) for k in keys]
        answers = self._read_batch(keys[0], [(self._path(k), -length, None) for k in keys])
        results = [self._result(key, answer) for key, answer in zip(keys, answers, strict=True)]
        for key, data in zip(keys, results, strict=True):
            if data is not None and len(data) > length:
                raise self._overlong(key, len(data), length)
        return results

    def _size(self, key: str) -> int | None:
        try:
            info = self.fs.info(self._path(key))
        except _MISSING:
            if self._urls:
                self._confirm_missing(key)
            return None
        except Exception as exc:
            raise self._error(key, "stat", exc) from exc
        return int(info["size"]) if info.get("type", "file") == "file" else None

    def _confirm_missing(self, key: str) -> None:
        """fsspec's HTTP ``info`` answers FileNotFoundError for any failure (a 500, a 403):
        ask for one byte, whose failure says which, and raise unless it is a 404."""
        try:
            self.fs.cat_file(self._path(key), start=0, end=1)
        except _MISSING:
            return
        except Exception as exc:
            raise self._error(key, "stat", exc) from exc

    def _list_prefix(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self._head.rstrip("/") or self._head
        try:
            paths = self.fs.find(base)
        except _MISSING:
            return iter(())
        except Exception as exc:
            raise self._error(prefix, "list", exc) from exc
        inside = under_prefix(prefix)  # (a key has nothing under it: find lists it itself)
        keys = (self._key_of(p) for p in paths)
        return iter([k for k in keys if k is not None and k.startswith(inside) and k])

    # ----------------------------------------------------------------- writes

    def _set(self, key: str, value: memoryview) -> None:
        self._set_many([(key, value)])

    def _set_each(self, items: list[tuple[str, memoryview]]) -> None:
        self._set_many(items)  # (one batched put: fsspec sends it as it likes)

    def _set_many(self, items: list[tuple[str, memoryview]]) -> None:
        if not items:
            return
        objects = {self._path(k): (k, bytes(v)) for k, v in items}
        try:
            try:
                self._pipe(objects)
            except FileNotFoundError:
                if self._concurrent:
                    # An object store's "not found" on a write is its bucket: making the
                    # parents would create a bucket a typo named (s3fs does).
                    raise
                # A filesystem with directories (SFTP, HDFS...) wants the parents made first.
                for parent in {self.fs._parent(path) for path in objects}:
                    self.fs.makedirs(parent, exist_ok=True)
                self._pipe(objects)
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(items[0][0], "write", exc) from exc

    def _pipe(self, objects: dict[str, tuple[str, bytes]]) -> None:
        """Write each object (path -> (key, bytes)): one batched call on an async
        filesystem, the thread pool on a synchronous one, where a failure other than a
        missing parent (FileNotFoundError, for the caller) raises naming its key."""
        if self._concurrent or len(objects) == 1:
            self.fs.pipe({path: data for path, (_, data) in objects.items()})
            return

        def write(item: tuple[str, tuple[str, bytes]]) -> None:
            path, (key, data) = item
            try:
                self.fs.pipe_file(path, data)
            except FileNotFoundError:
                raise
            except Exception as exc:
                raise self._error(key, "write", exc) from exc

        parallel_map(write, list(objects.items()), self.threads)

    def _delete_many(self, keys: list[str]) -> None:
        # (One request per object, on the pool: a resize or overwrite on an object store
        # deletes many chunks. fsspec's batched rm expands globs in paths, as cat does.)
        parallel_map(self._delete, keys, self.threads)

    def _delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except _MISSING:
            return
        except Exception as exc:
            raise self._error(key, "delete", exc) from exc
