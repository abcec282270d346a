"""A store inside a single ZIP archive."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
import struct
import threading
import time
import weakref
import zipfile
import zlib
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, Literal

from gpuzarr.errors import ChecksumError, StoreError

from ._threads import default_threads, parallel_map
from .base import (
    ByteRange,
    ObjectReader,
    ReadArena,
    SnapshotReader,
    Store,
    _check_ranges,
    _check_suffix_length,
    under_prefix,
    validate_key,
)
from .local import _pread_all, _temp_name
from .memory import _Identity

__all__ = ["ZipStore"]

#: Numbers ZipStore handles (see ZipStore.cache_namespace); next() is atomic under the GIL.
_handle_serials = itertools.count()
_archive_serials = itertools.count()

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # PKZIP local file header, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_COPY_CHUNK = 1 << 22
_O_BINARY = getattr(os, "O_BINARY", 0)


def _is_key(name: str) -> bool:
    try:
        validate_key(name)
    except StoreError:
        return False
    return True


class _Archive:
    """Read access to one on-disk zip file, as it was when opened.

    Members stored without compression (the normal case for zarr: chunks are
    compressed by codecs) are read with ``os.pread`` at their data offset, which
    needs no lock, so threads read different members in parallel. Compressed
    members go through :class:`zipfile.ZipFile`, which keeps a file position and
    is therefore guarded by :attr:`lock`.
    """

    def __init__(self, path: str) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.zf = zipfile.ZipFile(self.file, "r")
        except BaseException:
            self.file.close()
            raise
        self.fd = self.file.fileno()
        self.lock = threading.Lock()
        #: Distinguishes this opening of the file from every other (see _token).
        self.serial = next(_archive_serials)
        #: Reads and readers using this opening (guarded by the store state's ``cond``):
        #: a flush replaces the file at once, and this one is closed after its last.
        self.readers = 0
        self.retired = False
        self._closed = False
        # Every member (later duplicates win, as in zipfile), in archive order, and
        # the subset whose names are valid store keys (directory entries etc. are
        # kept on rewrite but are not keys).
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zf.infolist():
            self.members.pop(info.filename, None)
            self.members[info.filename] = info
        self.keys: dict[str, zipfile.ZipInfo] = {
            name: info for name, info in self.members.items() if _is_key(name)
        }
        self._data_offsets: dict[str, int] = {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.zf.close()
        finally:
            self.file.close()

    def _data_offset(self, key: str, info: zipfile.ZipInfo) -> int:
        offset = self._data_offsets.get(key)
        if offset is None:
            # The central directory gives the local header's offset; the data starts
            # after that header, whose name/extra lengths may differ from the central
            # directory's, so read them from the header itself.
            header = _pread_all(self.fd, _LOCAL_HEADER.size, info.header_offset)
            if len(header) != _LOCAL_HEADER.size:
                raise StoreError(f"zip member {key!r}: truncated local header")
            fields = _LOCAL_HEADER.unpack(header)
            if fields[0] != _LOCAL_SIGNATURE:
                raise StoreError(f"zip member {key!r}: bad local header signature")
            offset = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
            self._data_offsets[key] = offset  # benign race: same value from any thread
        return offset

    def _check_readable(self, key: str, info: zipfile.ZipInfo) -> None:
        if info.flag_bits & 0x1:
            raise StoreError(f"zip member {key!r} is encrypted, which is not supported")

    def read(self, key: str, info: zipfile.ZipInfo, verify_crc: bool) -> bytes:
        """The whole (decompressed) content of member ``key``."""
        self._check_readable(key, info)
        if info.compress_type == zipfile.ZIP_STORED:
            data = _pread_all(self.fd, info.file_size, self._data_offset(key, info))
            if len(data) != info.file_size:
                raise StoreError(
                    f"zip member {key!r} is truncated: {len(data)} of {info.file_size} bytes"
                )
            if verify_crc and zlib.crc32(data) != info.CRC:
                raise ChecksumError(f"zip member {key!r} failed its CRC-32 check")
            return data
        try:
            with self.lock:
                return self.zf.read(info)
        except zipfile.BadZipFile as exc:
            if "CRC" in str(exc):
                raise ChecksumError(f"zip member {key!r} failed its CRC-32 check") from exc
            raise StoreError(f"cannot read zip member {key!r}: {exc}") from exc
        except (NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
            raise StoreError(f"cannot read zip member {key!r}: {exc}") from exc

    def read_suffix(self, key: str, info: zipfile.ZipInfo, length: int, verify_crc: bool) -> bytes:
        """The last ``length`` bytes of member ``key`` (all of it, if shorter)."""
        start = max(0, info.file_size - length)
        return self.read_ranges(key, info, [(start, info.file_size - start)], verify_crc)[0]

    def read_ranges(
        self, key: str, info: zipfile.ZipInfo, ranges: list[ByteRange], verify_crc: bool
    ) -> list[bytes]:
        """Byte ranges of member ``key`` (clipped at its end)."""
        self._check_readable(key, info)
        if info.compress_type != zipfile.ZIP_STORED:
            # No random access into a compressed stream: decompress once and slice.
            view = memoryview(self.read(key, info, verify_crc))
            return [bytes(view[offset : offset + length]) for offset, length in ranges]
        base, size = self._data_offset(key, info), info.file_size
        return [
            _pread_all(self.fd, min(length, size - offset), base + offset) if offset < size else b""
            for offset, length in ranges
        ]


class _ZipState:
    """All state of a :class:`ZipStore`, kept apart from the store object itself.

    The store's ``weakref.finalize`` holds this object (a finalizer must not keep
    the store alive), so that a store dropped without ``close()`` still flushes its
    pending writes when collected or at interpreter exit.

    Concurrency: ``cond`` guards every field and every archive's reader count.
    Readers look a key up under it and, if it lives in the on-disk archive, register
    with that archive and read without the lock; nothing that reads ever waits. A
    flush sets ``flushing`` (which holds back writers, so the content it writes stays
    put), builds the new archive, renames it over the file and installs it at once;
    the old archive stays open for the readers still registered with it (POSIX keeps
    a replaced file readable) and is closed after the last. An open member reader
    (:class:`_MemberReader`) stays registered until closed, so all its reads see one
    version of the member. ``cond``'s lock is reentrant: a reader's finalizer (which
    releases it) may run on a thread that holds it, inside a garbage collection.
    """

    def __init__(self, path: str, mode: str, verify_crc: bool) -> None:
        self.path = path
        self.mode = mode
        self.verify_crc = verify_crc
        self.cond = threading.Condition(threading.RLock())
        self.flushing = False
        self.closed = False
        self.pending: dict[str, bytes] = {}  # writes not yet on disk
        self.deleted: set[str] = set()  # archive members deleted since the last flush
        self.archive: _Archive | None = None
        # "w" starts empty and must (re)write the file even if nothing is set.
        self.dirty = mode == "w"
        if mode == "r" or (mode == "a" and os.path.exists(path)):
            self.archive = self._open_archive()

    def _open_archive(self) -> _Archive:
        try:
            return _Archive(self.path)
        except FileNotFoundError as exc:
            raise StoreError(f"zip file {self.path!r} does not exist") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise StoreError(f"cannot open zip file {self.path!r}: {exc}") from exc

    # ------------------------------------------------------------------ locking

    def _wait_idle(self) -> None:
        """With ``cond`` held: wait until no flush is in progress."""
        self.cond.wait_for(lambda: not self.flushing)

    def lookup(self, key: str) -> tuple[bytes | None, _Archive | None, zipfile.ZipInfo | None]:
        """Resolve ``key``: ``(pending_value, None, None)``, ``(None, archive, info)``
        with a reader registered with ``archive`` (call :meth:`release` with it), or all
        ``None`` if missing. Never waits."""
        with self.cond:
            value = self.pending.get(key)
            if value is not None:
                return value, None, None
            archive = self.archive
            if archive is None or key in self.deleted:
                return None, None, None
            info = archive.keys.get(key)
            if info is None:
                return None, None, None
            archive.readers += 1
            return None, archive, info

    def release(self, archive: _Archive) -> None:
        """End a registration with ``archive`` (:meth:`lookup`); a replaced archive is
        closed after its last."""
        with self.cond:
            archive.readers -= 1
            if archive.readers == 0:
                if archive.retired:
                    archive.close()
                self.cond.notify_all()

    def _retire(self, archive: _Archive) -> None:
        """With ``cond`` held: ``archive`` is no longer the store's; close it now, or
        after its last registered reader."""
        archive.retired = True
        if archive.readers == 0:
            archive.close()

    # ------------------------------------------------------------------- writes

    def put(self, key: str, value: bytes) -> None:
        with self.cond:
            self._wait_idle()
            self.pending[key] = value
            self.deleted.discard(key)
            self.dirty = True

    def _remove(self, key: str) -> None:
        """With ``cond`` held and no flush running: forget ``key``."""
        if self.pending.pop(key, None) is not None:
            self.dirty = True
        if self.archive is not None and key in self.archive.keys and key not in self.deleted:
            self.deleted.add(key)
            self.dirty = True

    def remove(self, keys: list[str]) -> None:
        with self.cond:
            self._wait_idle()
            for key in keys:
                self._remove(key)

    def remove_prefix(self, prefix: str) -> None:
        start = under_prefix(prefix)
        with self.cond:
            self._wait_idle()
            for key in self._keys_snapshot(start):
                self._remove(key)

    def _keys_snapshot(self, start: str) -> list[str]:
        """With ``cond`` held: every live key starting with ``start``."""
        keys = []
        if self.archive is not None:
            keys = [
                k
                for k in self.archive.keys
                if k.startswith(start) and k not in self.deleted and k not in self.pending
            ]
        keys.extend(k for k in self.pending if k.startswith(start))
        return keys

    def list_keys(self, start: str) -> list[str]:
        with self.cond:  # (a flush changes nothing listed until its swap, made under cond)
            return self._keys_snapshot(start)

    # -------------------------------------------------------------------- flush

    def _write_archive(self, out_path: str) -> None:
        """Write the merged content (archive minus deletions plus pending) to ``out_path``."""
        now = time.localtime()[:6]
        with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_STORED) as out:
            archive = self.archive
            if archive is not None:
                for name, info in archive.members.items():
                    if name in self.pending or name in self.deleted:
                        continue
                    new_info = zipfile.ZipInfo(name, date_time=info.date_time)
                    new_info.external_attr = info.external_attr
                    new_info.comment = info.comment
                    new_info.compress_type = zipfile.ZIP_STORED
                    if info.is_dir():
                        out.writestr(new_info, b"")
                        continue
                    new_info.file_size = info.file_size
                    # Stream member by member: the archive may not fit in memory.
                    with (
                        archive.lock,
                        archive.zf.open(info) as src,
                        out.open(new_info, "w") as dst,
                    ):
                        shutil.copyfileobj(src, dst, _COPY_CHUNK)
            for name, value in self.pending.items():
                new_info = zipfile.ZipInfo(name, date_time=now)
                new_info.compress_type = zipfile.ZIP_STORED
                new_info.external_attr = 0o644 << 16  # a regular rw-r--r-- file when unzipped
                out.writestr(new_info, value)

    def flush(self) -> None:
        """Make pending writes durable by atomically replacing the zip file."""
        with self.cond:
            self._wait_idle()
            if not self.dirty or self.mode == "r":
                return
            self.flushing = True
        try:
            directory, basename = os.path.split(self.path)
            tmp = os.path.join(directory, _temp_name(basename))
            try:
                self._write_archive(tmp)
                with contextlib.suppress(OSError):
                    # Keep the permissions of the file being replaced.
                    os.chmod(tmp, stat.S_IMODE(os.stat(self.path).st_mode))
                self._swap(tmp)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                    raise StoreError(f"cannot write zip file {self.path!r}: {exc}") from exc
                raise
        finally:
            with self.cond:
                self.flushing = False
                self.cond.notify_all()

    def _swap(self, tmp: str) -> None:
        with self.cond:
            old = self.archive
            if old is not None and os.name == "nt":
                # Windows cannot replace a file that is open: wait for the old one's
                # readers (POSIX keeps reading a replaced file, so no one waits there).
                self.cond.wait_for(lambda: old.readers == 0)
                old.close()
                self.archive = None
            try:
                os.replace(tmp, self.path)
            except BaseException:
                if old is not None and self.archive is None:
                    self.archive = self._open_archive()
                raise
            self.archive = self._open_archive()
            if old is not None:
                self._retire(old)
            self.pending.clear()
            self.deleted.clear()
            self.dirty = False

    def close(self) -> None:
        """Flush (if writable) and release the archive; idempotent."""
        if self.closed:
            return
        if self.mode != "r":
            self.flush()
        with self.cond:
            # (Readers still open keep the archive until they close: closing waits for
            # nothing, so it may run in a finalizer, or on a thread that holds a reader.)
            if self.archive is not None:
                self._retire(self.archive)
                self.archive = None
            self.closed = True


def _token(value: bytes | None, archive: _Archive | None) -> Hashable | None:
    """The version token of what a lookup found: an unflushed write's bytes (replaced,
    never edited, by a later write) by identity; an archive member by the opening of
    the archive it is in (a flush opens a new one, so tokens change on every flush)."""
    if archive is not None:
        return ("member", archive.serial)
    return None if value is None else _Identity(value)


class _MemberReader(ObjectReader):
    """A reader of one archive member: registered with its archive until closed, so
    all its reads see that archive's version of the member, even after a flush."""

    def __init__(self, store: ZipStore, key: str, token: Hashable, archive: _Archive, info: zipfile.ZipInfo) -> None:
        super().__init__(store, key, token)
        self._state = store._state
        self._archive = archive
        self._info = info
        # Registered until closed, or until collected if never closed (the archive of
        # a forgotten reader would stay open).
        self._release = weakref.finalize(self, store._state.release, archive)

    def _live_archive(self) -> _Archive:
        if not self._release.alive:
            raise StoreError(f"reader of key {self.key!r} in {self.store!r} is closed")
        return self._archive

    def get_ranges(self, ranges: Sequence[ByteRange], *, arena: ReadArena | None = None) -> list[Any]:
        checked = _check_ranges(self.key, ranges)
        return self._live_archive().read_ranges(self.key, self._info, checked, self._state.verify_crc)

    def get_suffix(self, length: int) -> bytes:
        length = _check_suffix_length(self.key, length)
        return self._live_archive().read_suffix(self.key, self._info, length, self._state.verify_crc)

    def close(self) -> None:
        self._release()  # (once: a finalizer runs at most once)


class ZipStore(Store):
    """Store keys as members of one ZIP archive.

    ``mode``: ``"r"`` read-only (the file must exist); ``"w"`` start empty (an
    existing file is replaced on flush); ``"a"`` read and edit an existing archive
    (created if missing).

    Writes are buffered in memory and reads see them at once; :meth:`flush` (also
    run by :meth:`close`, by garbage collection of the store and at interpreter
    exit) writes a complete new archive to a temporary file beside the target and
    renames it over the target. The file on disk is therefore always a complete
    archive, the old or the new one, and an overwritten key never leaves a
    duplicate member. Each flush rewrites the whole archive, so flush rarely.
    Members are written uncompressed (``ZIP_STORED``): chunks are already
    compressed by their codecs, and stored members allow cheap ranged reads. The
    result is readable by :mod:`zipfile` and zarr-python's ``ZipStore``.

    Reads of stored members use ``os.pread`` without a lock, so threads (and the
    batched ``get_many``, run on a thread pool of ``threads`` workers) read in
    parallel. With ``verify_crc`` (default), whole-member reads check the member's
    CRC-32 and raise :class:`~gpuzarr.errors.ChecksumError` on a mismatch; this
    costs about 0.3 ms per MiB, so pass ``False`` to trust the medium. Ranged
    reads cannot be checked.
    """

    cheap_reads = True
    tells_versions = True
    caches_per_handle = True  # (see cache_namespace)

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: Literal["r", "w", "a"] = "r",
        *,
        threads: int | None = None,
        verify_crc: bool = True,
    ) -> None:
        if mode not in ("r", "w", "a"):
            raise ValueError(f"ZipStore mode must be 'r', 'w' or 'a', got {mode!r}")
        super().__init__(read_only=mode == "r")
        path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"ZipStore path must be a str path, got {type(path).__name__}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._path = os.path.abspath(path)
        self.mode = mode
        self.threads = default_threads() if threads is None else int(threads)
        self._state = _ZipState(self._path, mode, bool(verify_crc))
        self._serial = next(_handle_serials)  # (never reused, unlike an id)
        self._finalizer = weakref.finalize(self, self._state.close)

    @property
    def path(self) -> str:
        """Absolute path of the zip file."""
        return self._path

    def __repr__(self) -> str:
        return f"ZipStore({self._path!r}, mode={self.mode!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZipStore):
            return NotImplemented
        return self._path == other._path and self.mode == other.mode

    def __hash__(self) -> int:
        return hash((ZipStore, self._path, self.mode))

    @property
    def cache_namespace(self) -> tuple[object, ...]:
        """This handle alone (see :attr:`Store.cache_namespace`): each handle reads its
        own snapshot of the archive (the file as opened, plus its unflushed writes), and
        its version tokens mean nothing to another handle, so a shard index cached
        through one handle, or from the file as it was before another program replaced
        it, must never serve another."""
        return ("zip", self._path, self._serial)

    def flush(self) -> None:
        """Write pending changes to disk (atomically replacing the zip file)."""
        self._check_open()
        if self.read_only:
            return
        self._state.flush()

    # ------------------------------------------------------------------ reads

    def _get(self, key: str) -> bytes | None:
        state = self._state
        value, archive, info = state.lookup(key)
        if archive is None or info is None:
            return value
        try:
            return archive.read(key, info, state.verify_crc)
        finally:
            state.release(archive)

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return parallel_map(self._get, keys, self.threads)

    def _open_reader(self, key: str) -> ObjectReader | None:
        # One version for all the reader's reads: an unflushed write's bytes (replaced,
        # never edited, by a later write), or the member of the archive as opened.
        value, archive, info = self._state.lookup(key)
        token = _token(value, archive)  # (of the version found, not of a later one)
        if archive is None or info is None:
            return None if value is None else SnapshotReader(self, key, token, value)
        try:
            return _MemberReader(self, key, token, archive, info)
        except BaseException:  # (not registered for release: release here)
            self._state.release(archive)
            raise

    def _get_ranges(self, key: str, ranges: list[ByteRange]) -> list[bytes] | None:
        state = self._state
        value, archive, info = state.lookup(key)
        if archive is None or info is None:
            if value is None:
                return None
            view = memoryview(value)
            return [bytes(view[offset : offset + length]) for offset, length in ranges]
        try:
            return archive.read_ranges(key, info, ranges, state.verify_crc)
        finally:
            state.release(archive)

    def _get_suffix(self, key: str, length: int) -> bytes | None:
        state = self._state
        value, archive, info = state.lookup(key)
        if archive is None or info is None:
            if value is None:
                return None
            return value[max(0, len(value) - length) :]
        try:
            return archive.read_suffix(key, info, length, state.verify_crc)
        finally:
            state.release(archive)

    def _get_many_ranges(
        self, requests: list[tuple[str, list[ByteRange]]]
    ) -> list[list[bytes] | None]:
        return parallel_map(lambda req: self._get_ranges(*req), requests, self.threads)

    def _object_token(self, key: str) -> Hashable | None:
        value, archive, _info = self._state.lookup(key)
        if archive is not None:
            self._state.release(archive)
        return _token(value, archive)

    def _size(self, key: str) -> int | None:
        state = self._state
        value, archive, info = state.lookup(key)
        if archive is None or info is None:
            return None if value is None else len(value)
        state.release(archive)
        return info.file_size

    # ----------------------------------------------------------------- writes

    def _set(self, key: str, value: memoryview) -> None:
        obj = value.obj
        data = obj if type(obj) is bytes and len(obj) == value.nbytes else value.tobytes()
        self._state.put(key, data)

    def _delete(self, key: str) -> None:
        self._state.remove([key])

    def _delete_many(self, keys: list[str]) -> None:
        self._state.remove(keys)

    def _delete_prefix(self, prefix: str) -> None:
        self._state.remove_prefix(prefix)

    # ---------------------------------------------------------------- listing

    def _list_prefix(self, prefix: str) -> Iterator[str]:
        return iter(self._state.list_keys(under_prefix(prefix)))

    # --------------------------------------------------------------- lifecycle

    def _close(self) -> None:
        self._state.close()
        # Only now: if the final flush raised, the finalizer stays armed as a retry.
        self._finalizer.detach()
