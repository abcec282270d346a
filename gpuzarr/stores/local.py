"""A store of plain files in a local directory."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import random
import re
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from gpuzarr import _native
from gpuzarr.errors import StoreError

from ._threads import default_threads, parallel_batches, parallel_map
from .base import (
    ARENA_ALIGN,
    ByteRange,
    BytesLike,
    ObjectReader,
    ObjectWriter,
    ReadArena,
    Store,
    _check_ranges,
    _check_suffix_length,
    under_prefix,
    validate_key,
)

__all__ = ["LocalStore"]

_T = TypeVar("_T")

# Temporary files written by ``set`` are named ``.{basename}.{16 hex}.tmp`` in the
# target's directory (same file system, so ``os.replace`` is an atomic rename).
# Listings skip names of this shape: a leftover from a crashed writer is not a key.
_TEMP_RE = re.compile(r"\..*\.[0-9a-f]{16}\.tmp", re.DOTALL)
# Keep temp names well below the usual 255-byte file name limit.
_TEMP_BASENAME_MAX = 64
# Missing parents are created on demand; a concurrent delete may prune a freshly
# created directory before our temp file lands in it, so retry a few times.
_MAKEDIRS_RETRIES = 32
# Per-call cap of os.read/os.pread (Linux transfers at most ~2 GiB per call).
_MAX_IO = 1 << 30
#: The records gpuzarr's native helper reads files through (``gpuzarr_shard``).
_FILE_RECORD = np.dtype(_native.ShardFile)
#: The records it writes files through (``gpuzarr_put``).
_PUT_RECORD = np.dtype(_native.PutRecord)

#: Files one native read holds open at once, at most (more are read in slices, since
#: every worker thread may hold its own at the same time).
NATIVE_FILES_AT_ONCE = 32


def open_files_budget(most: int, share: int) -> int:
    """Files one read may hold open at once: at most ``most``, and a ``share``-th of the
    process's open-file limit (at least 1; 8 where the limit cannot be read)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return min(most, 8)
    if soft == resource.RLIM_INFINITY:
        return most
    return max(1, min(most, soft // share))


def native_files_at_once() -> int:
    """Files one native read may hold open: at most :data:`NATIVE_FILES_AT_ONCE`, and
    a 64th of the process's open-file limit (its workers, and whatever else the process
    has open, share the rest)."""
    return open_files_budget(NATIVE_FILES_AT_ONCE, 64)


#: Errors of opening a key's file that mean it holds no object.
_MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# A range length that reaches past the end of any file.
_WHOLE_FILE = 1 << 62
# Reads into caller memory (ReadArena) need preadv, and writes of several parts
# writev (neither is on Windows).
_HAVE_PREADV = hasattr(os, "preadv")
_HAVE_WRITEV = hasattr(os, "writev")
# Parts one writev may take (POSIX guarantees at least 16; Linux allows 1024).
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") and "SC_IOV_MAX" in os.sysconf_names else 16


#: An object of at least this many bytes replaces its file with the old file held open
#: and closed on another thread (:class:`_ReplacedFiles`): freeing a smaller file's
#: blocks costs little (a rename over a synced file, ext4 mounted with discard: 0.14 ms
#: for 64 KiB, 0.43 ms for 1 MiB, 1.5 ms for 4 MiB). Not on Windows, where a file held
#: open cannot be renamed over.
HOLD_REPLACED_MIN_BYTES = 256 * 2**10 if os.name == "posix" else 1 << 62


#: Whether the native batched writes start new objects as unnamed files, linked at
#: their path once written (Linux's O_TMPFILE, named through /proc/self/fd): one change
#: to the folder where a temp file renamed into place makes three (on ext4, 2048 files
#: of 4 KiB: 36 us of CPU time a file against 48 us), and nothing left behind by a
#: process killed mid-write. Objects that exist already, and file systems without
#: unnamed files, take the temp file and rename.
UNNAMED_FILES = sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd")


class _ReplacedFiles:
    """Files that writes replaced, held open, and closed on a background thread.

    A rename that drops the last link of a file frees its blocks before it returns; on
    a file system mounted with ``discard`` (ext4, as on many cloud disks) it then waits
    for the device to discard them, and a worker that is meant to encode the next
    chunk sits idle meanwhile (measured: partial writes of 33 files of 1 MiB blocked
    each worker 14 ms in all). Holding the old file open across the rename leaves that
    to whoever closes it last: this thread, while the workers go on. A write through an
    array waits for the files it replaced before it returns
    (:meth:`LocalStore.finish_writes`), so its time still includes their release; no
    more than :attr:`MAX_PENDING` wait at once (more are closed on the spot).
    """

    #: Most held files waiting to be closed (each is a file descriptor).
    MAX_PENDING = 64

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: list[int] = []
        self._closing = 0
        self._thread: threading.Thread | None = None

    def release(self, fds: Sequence[int]) -> None:
        """Close ``fds`` on the background thread (those beyond the room left, here)."""
        if not fds:
            return
        with self._changed:
            room = max(0, self.MAX_PENDING - len(self._waiting) - self._closing)
            self._waiting += fds[:room]
            if self._thread is None and self._waiting:
                self._thread = threading.Thread(target=self._close_forever, name="gpuzarr-release", daemon=True)
                self._thread.start()
            self._changed.notify_all()
        _close_all(fds[room:])

    def wait(self) -> None:
        """Return once every file handed to :meth:`release` is closed. The files the
        background thread has not taken yet are closed here, on the waiting thread,
        alongside the ones it is closing: a write's last replaced files are released
        after its workers are done, and one thread closing them in turn kept the write
        waiting (measured on 4 shards of 16 MiB rewritten, 2 cores: 4-22 ms a file)."""
        with self._changed:
            mine = self._take_waiting()
        self._close_taken(mine)
        with self._changed:
            self._changed.wait_for(lambda: not self._waiting and not self._closing)

    def _close_forever(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting))
                fds = self._take_waiting()
            self._close_taken(fds)

    def _take_waiting(self) -> list[int]:
        """With the condition held: the files waiting, now counted as closing."""
        fds, self._waiting = self._waiting, []
        self._closing += len(fds)
        return fds

    def _close_taken(self, fds: list[int]) -> None:
        """Close files :meth:`_take_waiting` gave this thread, then tell the waiters."""
        if not fds:
            return
        try:
            _close_all(fds)
        finally:
            with self._changed:
                self._closing -= len(fds)
                self._changed.notify_all()

    def after_fork_in_child(self) -> None:
        """A forked child has copies of the files waiting, and no thread closing them:
        close them here and start over."""
        waiting = self._waiting
        self.__init__()  # type: ignore[misc]
        _close_all(waiting)


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


_replaced_files = _ReplacedFiles()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_replaced_files.after_fork_in_child)


def _open_replaced(path: str) -> int:
    """The file at ``path`` opened read-only, to hold across a rename over it (-1 where
    there is none; never waiting on a FIFO in its place)."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return -1


def _is_temp_name(name: str) -> bool:
    return name.endswith(".tmp") and name.startswith(".") and _TEMP_RE.fullmatch(name) is not None


def _temp_name(basename: str) -> str:
    return f".{basename[:_TEMP_BASENAME_MAX]}.{random.getrandbits(64):016x}.tmp"


def _make_parent(path: str) -> None:
    """Make directory ``path`` and any missing parents (as ``os.makedirs(path,
    exist_ok=True)``). Its parent usually exists (a chunk's row directory under ``c/``,
    say): one ``mkdir`` then, where makedirs first stats, splits and joins in Python."""
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _c_strings(encoded: Iterable[bytes]) -> tuple[bytes, np.ndarray]:
    """NUL-terminated copies of ``encoded`` (which hold no NUL: keys cannot) in one
    block, and each one's address in it, for gpuzarr's native helper: keep the block
    alive while the addresses are in use."""
    block = b"".join(each + b"\0" for each in encoded)
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    return block, ctypes.cast(ctypes.c_char_p(block), ctypes.c_void_p).value + starts


def _write_all(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    pos, total = 0, len(data)
    while pos < total:
        pos += os.write(fd, data[pos : pos + _MAX_IO])


def _write_all_at(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` to ``fd`` from ``offset``, leaving the file position at
    the end of the file (where the next append goes)."""
    pos, total = 0, len(data)
    if hasattr(os, "pwrite"):
        while pos < total:
            pos += os.pwrite(fd, data[pos : pos + _MAX_IO], offset + pos)
        return
    os.lseek(fd, offset, os.SEEK_SET)  # (Windows has no pwrite)
    try:
        _write_all(fd, data)
    finally:
        os.lseek(fd, 0, os.SEEK_END)


def _write_parts(fd: int, parts: Sequence[memoryview]) -> None:
    """Write every part in order: ``writev`` calls of up to ``_IOV_MAX`` parts and
    ``_MAX_IO`` bytes (each call may write less than asked; macOS refuses calls over
    2 GiB), or one write per part where there is no ``writev``."""
    if len(parts) == 1 or not _HAVE_WRITEV:
        for part in parts:
            _write_all(fd, part)
        return
    pending = [part for part in parts if len(part)]
    first = 0
    while first < len(pending):
        batch, total = [], 0
        for part in pending[first : first + _IOV_MAX]:
            if total + len(part) > _MAX_IO:
                if not batch:
                    batch.append(part[:_MAX_IO])  # a part larger than one call
                break
            batch.append(part)
            total += len(part)
        written = os.writev(fd, batch)
        while written:  # drop what was written; the first part left may be cut
            size = len(pending[first])
            if written < size:
                pending[first] = pending[first][written:]
                break
            written -= size
            first += 1


def _read_all(fd: int, size: int) -> bytes:
    """Read a whole file of (f)stat size ``size`` from the start."""
    # One os.read into a fresh bytes object measured fastest for 1 MiB files
    # (~75 us vs ~85 us for open().read() and ~95 us for readinto a bytearray).
    data = os.read(fd, min(size, _MAX_IO)) if size else b""
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:  # very large file, or a short read
        part = os.read(fd, min(size - got, _MAX_IO))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _pread_into(fd: int, view: memoryview, offset: int) -> memoryview:
    """Fill ``view`` from ``fd`` at ``offset``; the part filled (less at end of file)."""
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got : got + _MAX_IO]], offset + got)
        if not n:
            break
        got += n
    return view[:got]


def _read_ranges(fd: int, size: int, ranges: Sequence[ByteRange], arena: ReadArena | None) -> list[Any]:
    """The bytes of each ``(offset, length)`` range of the open file ``fd`` of ``size``
    bytes, into ``arena``'s memory when given. Ranges are clipped to the file size, so a
    huge length past the end never allocates."""
    if arena is not None and _HAVE_PREADV:
        return [
            _pread_into(fd, arena.take(min(length, size - offset), offset), offset)
            if offset < size
            else memoryview(b"")
            for offset, length in ranges
        ]
    return [_pread_all(fd, min(length, size - offset), offset) if offset < size else b"" for offset, length in ranges]


def _read_suffix(fd: int, size: int, length: int) -> bytes:
    """The last ``length`` bytes of the open file ``fd`` of ``size`` bytes (all of it
    when shorter)."""
    start = max(0, size - length)
    return _pread_all(fd, size - start, start)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """``os.pread`` until ``length`` bytes or end of file."""
    pread = getattr(os, "pread", None)
    parts: list[bytes] = []
    got = 0
    while got < length:
        n = min(length - got, _MAX_IO)
        if pread is not None:
            part = pread(fd, n, offset + got)
        else:  # Windows: each get_ranges call owns its fd, so seek+read is safe
            os.lseek(fd, offset + got, os.SEEK_SET)
            part = os.read(fd, n)
        if not part:
            break
        parts.append(part)
        got += len(part)
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


class _OpenFile(ObjectReader):
    """A local file held open: every read sees the version that was opened."""

    def __init__(self, store: LocalStore, key: str, fd: int, st: os.stat_result) -> None:
        super().__init__(store, key, _token(st))
        self._fd: int | None = fd
        self._size = st.st_size

    def _live_fd(self) -> int:
        if self._fd is None:
            raise StoreError(f"reader of key {self.key!r} in {self.store!r} is closed")
        return self._fd

    def _read(self, read: Callable[[int, int], _T]) -> _T:
        """``read(fd, size)`` on the open file, its OSError raised as a StoreError."""
        fd = self._live_fd()
        try:
            return read(fd, self._size)
        except OSError as exc:
            raise _read_error(self.key, self.store, exc) from exc

    def get_ranges(self, ranges: Sequence[ByteRange], *, arena: ReadArena | None = None) -> list[Any] | None:
        checked = _check_ranges(self.key, ranges)
        return self._read(lambda fd, size: _read_ranges(fd, size, checked, arena))

    def get_suffix(self, length: int) -> bytes:
        length = _check_suffix_length(self.key, length)
        return self._read(lambda fd, size: _read_suffix(fd, size, length))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _file_error(action: str, key: str, store: Store, exc: OSError) -> StoreError:
    """The StoreError for a failed ``action`` (open, stat, read, write) on ``key``'s file."""
    return StoreError(f"cannot {action} key {key!r} in {store!r}: {exc}")


def _read_error(key: str, store: Store, exc: OSError) -> StoreError:
    """The StoreError for a failed read of ``key``'s file."""
    return _file_error("read", key, store, exc)


def _token(st: os.stat_result) -> Hashable:
    # A write replaces the file by rename, so the inode changes; size and mtime catch
    # writers that rewrite in place.
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _FileWriter(ObjectWriter):
    """A local store's :class:`ObjectWriter`: each piece is written to a temp file
    beside the key's file as it comes, and the temp file renamed over it at commit (a
    reader sees the old object or the whole new one); an abort, or a failed write,
    removes the temp file."""

    store: LocalStore

    def __init__(self, store: LocalStore, key: str) -> None:
        super().__init__(store, key)
        self._path = store._path(key)
        try:
            self._fd, self._tmp = store._create_temp(key, self._path)
        except StoreError:
            raise
        except OSError as exc:
            raise _file_error("write", key, store, exc) from exc

    def _guarded(self, write: Callable[[], None]) -> None:
        """Run ``write``; if it fails, the temp file goes and the error names the key."""
        try:
            write()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                raise _file_error("write", self.key, self.store, exc) from exc
            raise

    def _append(self, views: list[memoryview], parts: Sequence[BytesLike]) -> None:
        self._guarded(lambda: _write_parts(self._fd, views))

    def _write_at(self, offset: int, view: memoryview) -> None:
        self._guarded(lambda: _write_all_at(self._fd, view, offset))

    def _commit(self) -> None:
        store, path, tmp = self.store, self._path, self._tmp
        held = -1
        try:
            try:
                if store.fsync:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
            if self.nbytes >= HOLD_REPLACED_MIN_BYTES:
                held = _open_replaced(path)
            os.replace(tmp, path)
        except BaseException as exc:
            _close_all([held] if held >= 0 else [])
            # Whatever went wrong (including KeyboardInterrupt), the final name still
            # holds the old object; only the temp file must go.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                raise _file_error("write", self.key, store, exc) from exc
            raise
        if held >= 0:
            _replaced_files.release([held])
        if store.fsync:
            store._fsync_dir(os.path.dirname(path))

    def _abort(self) -> None:
        _close_all([self._fd])
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


class LocalStore(Store):
    """Store keys as files below a root directory (``a/c/0`` -> ``root/a/c/0``).

    * Reads of a missing file, a missing parent directory or a key that names a
      directory return ``None``.
    * :meth:`set` is atomic: the value is written to a temporary file in the target
      directory which is then renamed over the final name, so readers see the old
      or the new object, never a partial one, and a failed write leaves no trace.
    * :meth:`delete` removes now-empty parent directories up to (not including) the
      root.
    * Batched calls (``get_many``, ``set_many``, ``get_many_ranges``,
      ``delete_many``) run on a shared thread pool of ``threads`` workers (default
      ``min(32, 4 * cpu_count)``); ``threads=1`` keeps everything on the calling
      thread.
    * ``fsync=True`` makes each write durable (fsync of the file and its directory)
      before ``set`` returns, at a large cost in speed; atomicity does not need it.

    The root directory need not exist; it is created by the first write.
    """

    cheap_reads = True
    tells_versions = True
    # Reads go into caller memory (with preadv), unless a subclass overrides the read
    # hooks: those must then see every read (set per subclass, below).
    fills_arenas = _HAVE_PREADV
    # Writes copy values into files before they return, unless a subclass overrides a
    # write hook: that one may keep what it is given (set per subclass, below).
    keeps_no_views = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fills_arenas = cls.fills_arenas and all(
            getattr(cls, hook) is getattr(LocalStore, hook) for hook in ("_get", "_get_ranges", "_get_suffix")
        )
        cls.keeps_no_views = cls.keeps_no_views and all(
            getattr(cls, hook) is getattr(LocalStore, hook)
            for hook in ("set", "set_each", "set_many", "set_parts", "_set", "_set_each", "_set_many", "_set_parts")
        )

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        threads: int | None = None,
        fsync: bool = False,
    ) -> None:
        super().__init__(read_only=read_only)
        root = os.fspath(root)
        if not isinstance(root, str):
            raise TypeError(f"LocalStore root must be a str path, got {type(root).__name__}")
        self._root = os.path.abspath(root)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = default_threads() if threads is None else int(threads)
        self.fsync = bool(fsync)

    @property
    def root(self) -> str:
        """Absolute path of the root directory."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r}, read_only={self.read_only})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalStore):
            return NotImplemented
        return self._root == other._root and self.read_only == other.read_only

    def __hash__(self) -> int:
        return hash((LocalStore, self._root, self.read_only))

    @property
    def cache_namespace(self) -> tuple[object, ...]:
        """The storage this handle reads (see :attr:`Store.cache_namespace`)."""
        return ("local", self._root)

    # --------------------------------------------------------------- helpers

    def file_path(self, key: str) -> str:
        """The file holding ``key``'s object (for readers that open files themselves,
        such as kvikio on the GPU path); it may not exist."""
        self._check_open()
        return self._path(validate_key(key))

    def native_file_records(self, keys: Sequence[str], *, validated: bool = False) -> tuple[np.ndarray, bytes]:
        """Records of the files holding ``keys``' objects for gpuzarr's native helper
        (``ShardFile``: path set, not yet open), and the bytes their paths point into:
        keep those alive while the records are in use. ``validated``: the keys were
        checked already (by :meth:`get_each`)."""
        self._check_open()
        if not validated:
            for key in keys:
                validate_key(key)
        if os.sep == "/":
            # (os.fsencode of each path, the root encoded once.)
            root = os.fsencode(self._root + "/")
            encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
            paths, addresses = _c_strings(root + key.encode(encoding, errors) for key in keys)
        else:
            paths, addresses = _c_strings(os.fsencode(self._path(key)) for key in keys)
        records = np.zeros(len(keys), dtype=_FILE_RECORD)
        records["path"] = addresses
        records["fd"] = -1
        return records, paths

    @staticmethod
    def native_files_missing(records: np.ndarray) -> np.ndarray:
        """Which of ``records`` (after a native read) are files that are not there: their
        open failed with an errno that means no object, or found no regular file."""
        failed = records["error"]
        return (records["failed_step"] == _native.STEPS.index("open")) & np.isin(failed, _MISSING_ERRNOS)

    def raise_for_native_failures(self, records: np.ndarray, keys: Sequence[str]) -> None:
        """Raise the StoreError for the first file (of ``records``, native reads of
        ``keys``) that could not be opened, stat'ed or read; a file that is not there
        (its open failed with a missing errno) is no failure."""
        if not records["error"].any():
            return
        failed = np.flatnonzero((records["error"] != 0) & ~self.native_files_missing(records))
        if len(failed):
            f = int(failed[0])
            error, step = int(records["error"][f]), _native.STEPS[int(records["failed_step"][f])]
            exc = OSError(error, os.strerror(error), self._path(keys[f]))
            raise _file_error(step or "read", keys[f], self, exc)

    def _read_files_natively(self, keys: list[str], arena: ReadArena) -> list[bytes | memoryview | None]:
        """``_get_each`` in gpuzarr's native helper: files opened and sized, then read into
        ``arena`` and closed, two GIL-free calls per slice of at most
        :func:`native_files_at_once` files, with no Python per file."""
        step = native_files_at_once()
        results: list[bytes | memoryview | None] = []
        for start in range(0, len(keys), step):
            results += self._read_slice_natively(keys[start : start + step], arena)
        return results

    def _read_slice_natively(self, keys: list[str], arena: ReadArena) -> list[bytes | memoryview | None]:
        """:meth:`_read_files_natively` of files all held open at once."""
        reads = _native.file_reads
        assert reads is not None
        records, paths = self.native_file_records(keys, validated=True)  # (by get_each)
        at = np.zeros(len(keys), dtype=np.uint64)
        try:
            total = reads.open(records.ctypes.data, len(keys), ARENA_ALIGN, at.ctypes.data)
            self.raise_for_native_failures(records, keys)
            buffer = arena.take(total)
            address = ctypes.addressof(ctypes.c_char.from_buffer(buffer)) if total else 0
            reads.read(records.ctypes.data, len(keys), at.ctypes.data, address)
        finally:
            reads.close(records.ctypes.data, len(keys))  # (a no-op once read closed them)
        del paths  # (the helper held pointers into them until here)
        self.raise_for_native_failures(records, keys)
        missing = (records["error"] != 0).tolist()  # (every failure left is a file not there)
        return [
            None if gone else buffer[start : start + size]
            for gone, start, size in zip(missing, at.tolist(), records["size"].tolist(), strict=True)
        ]

    def _path(self, key: str) -> str:
        # Keys are validated (no '..', no '\\', no leading '/'), so this stays
        # inside the root.
        if os.sep == "/":
            return self._root + "/" + key
        return os.path.join(self._root, *key.split("/"))

    def _dir_path(self, prefix: str) -> str:
        return self._path(prefix) if prefix else self._root

    def _open_file(self, key: str) -> tuple[int, os.stat_result] | None:
        """Open ``key`` for reading: ``(fd, fstat)``, or ``None`` if it is not a file."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY | _O_BINARY | _O_CLOEXEC)
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return None
            raise _file_error("open", key, self, exc) from exc
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise _file_error("stat", key, self, exc) from exc
        if not stat.S_ISREG(st.st_mode):  # a directory (Linux lets us open it)
            os.close(fd)
            return None
        return fd, st

    def _read_file(self, key: str, read: Callable[[int, int], _T]) -> _T | None:
        """``read(fd, size)`` on ``key``'s file, opened for this call alone (None if it
        is not a file), its OSError raised as a StoreError."""
        return self._read_files([key], read)[0]

    def _read_files(self, keys: Iterable[str], read: Callable[[int, int], _T]) -> list[_T | None]:
        """:meth:`_read_file` of each of ``keys`` in turn, in one loop (the per-object
        Python matters when a worker reads thousands of small chunk files)."""
        results: list[_T | None] = []
        for key in keys:
            opened = self._open_file(key)
            if opened is None:
                results.append(None)
                continue
            fd, st = opened
            try:
                results.append(read(fd, st.st_size))
            except OSError as exc:
                raise _read_error(key, self, exc) from exc
            finally:
                os.close(fd)
        return results

    # ------------------------------------------------------------------ reads

    def _get(self, key: str) -> bytes | None:
        return self._read_file(key, _read_all)

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return parallel_map(self._get, keys, self.threads)

    def _get_into_buffer(self, key: str, buffer: memoryview) -> int | None:
        if not self.fills_arenas:
            return super()._get_into_buffer(key, buffer)

        def read_into(fd: int, size: int) -> int:
            wanted = min(size, len(buffer))
            got = len(_pread_into(fd, buffer[:wanted], 0))
            # A file cut short since its fstat (rewritten in place) reports what was read.
            return size if got == wanted else got

        return self._read_file(key, read_into)

    def _get_ranges_into_buffer(self, key: str, ranges: list[ByteRange], buffer: memoryview) -> int | None:
        if not self.fills_arenas:
            return super()._get_ranges_into_buffer(key, ranges, buffer)

        def read_ranges_into(fd: int, size: int) -> int:
            end = min(size, len(buffer))
            for offset, length in ranges:
                wanted = min(offset + length, end) - offset
                if wanted > 0 and len(_pread_into(fd, buffer[offset : offset + wanted], offset)) < wanted:
                    return offset  # (cut short since its fstat: report less than its size)
            return size

        return self._read_file(key, read_ranges_into)

    def _get_each(self, keys: list[str], arena: ReadArena | None) -> list[bytes | memoryview | None]:
        if arena is None or not self.fills_arenas or type(self)._get_into is not LocalStore._get_into:
            return super()._get_each(keys, arena)  # (a subclass's own _get_into sees every read)
        if _native.file_reads is not None and len(keys) > 1:
            return self._read_files_natively(keys, arena)
        take = arena.take
        return self._read_files(keys, lambda fd, size: _pread_into(fd, take(size), 0))  # type: ignore[return-value]

    def _get_into(self, key: str, arena: ReadArena) -> bytes | memoryview | None:
        if not self.fills_arenas:
            return self._get(key)
        whole = self._ranges_of(key, [(0, _WHOLE_FILE)], arena)  # (ranges are clipped to the file)
        return None if whole is None else whole[0]

    def _get_ranges_into(
        self, key: str, ranges: list[ByteRange], arena: ReadArena
    ) -> list[bytes] | list[memoryview] | None:
        if not self.fills_arenas:
            return self._get_ranges(key, ranges)
        return self._ranges_of(key, ranges, arena)

    def _object_token(self, key: str) -> Hashable | None:
        try:
            st = os.stat(self._path(key))
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return None
            raise _file_error("stat", key, self, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return _token(st)

    def _open_reader(self, key: str) -> ObjectReader | None:
        if not self.fills_arenas:  # a subclass's own read hooks must see every read
            return super()._open_reader(key)
        opened = self._open_file(key)
        return None if opened is None else _OpenFile(self, key, *opened)

    def _get_ranges(self, key: str, ranges: list[ByteRange]) -> list[bytes] | None:
        return self._ranges_of(key, ranges, None)  # type: ignore[return-value]

    def _ranges_of(self, key: str, ranges: list[ByteRange], arena: ReadArena | None) -> list[Any] | None:
        return self._read_file(key, lambda fd, size: _read_ranges(fd, size, ranges, arena))

    def _get_suffix(self, key: str, length: int) -> bytes | None:
        return self._read_file(key, lambda fd, size: _read_suffix(fd, size, length))

    def _get_many_ranges(
        self, requests: list[tuple[str, list[ByteRange]]]
    ) -> list[list[bytes] | None]:
        return parallel_map(lambda req: self._get_ranges(*req), requests, self.threads)

    def _size(self, key: str) -> int | None:
        try:
            st = os.stat(self._path(key))
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return None
            raise _file_error("stat", key, self, exc) from exc
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    # ----------------------------------------------------------------- writes

    def _create_temp(self, key: str, path: str) -> tuple[int, str]:
        """Create and open a fresh temp file next to ``path``, making parents as needed."""
        parent, basename = os.path.split(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC
        for _ in range(_MAKEDIRS_RETRIES):
            tmp = os.path.join(parent, _temp_name(basename))
            try:
                # 0o666 (minus umask) like any normally created file; mkstemp's 0o600
                # would make the data unreadable to other users.
                return os.open(tmp, flags, 0o666), tmp
            except FileExistsError:
                continue  # random name collision: draw again
            except FileNotFoundError:
                pass
            try:
                _make_parent(parent)
            except FileNotFoundError:
                # A concurrent delete pruned a directory makedirs had just created (it is
                # empty until our file lands): transient, so try again.
                continue
            except OSError as exc:
                raise StoreError(
                    f"cannot create directory for key {key!r} in {self!r}: {exc}"
                ) from exc
        raise StoreError(f"cannot create a temporary file for key {key!r} in {self!r}")

    def finish_writes(self) -> None:
        """Return once the files this process's writes replaced are released (closed on
        a background thread, see :class:`_ReplacedFiles`)."""
        _replaced_files.wait()

    def _set(self, key: str, value: memoryview) -> None:
        self._write_object(key, [value])

    def _set_parts(self, key: str, parts: list[memoryview]) -> None:
        if type(self)._set is not LocalStore._set:
            # A subclass hooks whole-object writes: hand it the joined object.
            super()._set_parts(key, parts)
            return
        self._write_object(key, parts)

    def _open_writer(self, key: str) -> ObjectWriter:
        if type(self)._set is not LocalStore._set or type(self)._write_object is not LocalStore._write_object:
            return super()._open_writer(key)  # (a subclass hooks whole-object writes)
        return _FileWriter(self, key)

    def _write_object(self, key: str, parts: list[memoryview]) -> None:
        """Write ``parts`` one after another to a temp file, then rename it to ``key``'s
        path (atomic: a reader sees the old object or the whole new one)."""
        writer = _FileWriter(self, key)
        writer.append(parts)
        writer.commit()

    def _set_each(self, items: list[tuple[str, memoryview]]) -> None:
        if (
            _native.file_writes is None
            or len(items) < 2
            or type(self)._set is not LocalStore._set
            or type(self)._write_object is not LocalStore._write_object
            or type(self)._create_temp is not LocalStore._create_temp
        ):
            super()._set_each(items)  # (a subclass's own write hooks see every write)
            return
        self._write_files_natively(items)

    def _write_files_natively(self, items: list[tuple[str, memoryview]]) -> None:
        """``_set_each`` in gpuzarr's native helper: every object written to a temp file
        and renamed over its own in one GIL-free call, with no Python per file. Objects
        whose directory did not exist are written again in a second call once the
        directories are made (a fresh array's chunks mostly each start one); any left
        (a temp name drawn twice, a directory pruned meanwhile) go through
        :meth:`_write_object`. Any other failure raises, naming its key."""
        left = range(len(items))
        for last in (False, True):
            left = self._write_some_natively(items, left)
            if not left:
                break
            if last:
                for at in left:
                    self._write_object(items[at][0], [items[at][1]])
            else:
                for directory in dict.fromkeys(os.path.dirname(self._path(items[at][0])) for at in left):
                    with contextlib.suppress(OSError):  # (_write_object reports what stays wrong)
                        _make_parent(directory)
        if self.fsync:
            for directory in dict.fromkeys(os.path.dirname(self._path(key)) for key, _ in items):
                self._fsync_dir(directory)

    def _write_some_natively(self, items: list[tuple[str, memoryview]], which: Sequence[int]) -> list[int]:
        """One native call writing ``items[at]`` for each ``at`` in ``which``: the ones
        whose temp file could not be created for want of its directory (or with its
        name taken). Any other failure raises a StoreError naming the key."""
        writes = _native.file_writes
        assert writes is not None
        n = len(which)
        paths = [self._path(items[at][0]) for at in which]
        temps = [f"{parent}/{_temp_name(name)}" for parent, _, name in (path.rpartition("/") for path in paths)]
        names, addresses = _c_strings(map(os.fsencode, paths + temps))
        records = np.zeros(n, dtype=_PUT_RECORD)
        records["path"] = addresses[:n]
        records["temp"] = addresses[n:]
        records["first_part"] = np.arange(n)
        records["n_parts"] = 1
        views = [np.frombuffer(items[at][1], dtype=np.uint8) for at in which]
        starts = np.array([view.ctypes.data for view in views], dtype=np.uintp)
        sizes = np.array([view.nbytes for view in views], dtype=np.uintp)
        records["hold"] = sizes >= HOLD_REPLACED_MIN_BYTES
        records["held"] = -1
        writes(records.ctypes.data, n, starts.ctypes.data, sizes.ctypes.data, int(self.fsync), int(UNNAMED_FILES))
        del names, views  # (the helper held pointers into them until here)
        held = records["held"]
        _replaced_files.release(held[held >= 0].tolist())
        redo = []
        for f in np.flatnonzero(records["error"]).tolist():
            error, step = int(records["error"][f]), _native.PUT_STEPS[records["failed_step"][f]]
            if step == "create" and error in (errno.ENOENT, errno.EEXIST):
                redo.append(which[f])
                continue
            exc = OSError(error, os.strerror(error), paths[f] if step == "rename" else temps[f])
            raise _file_error("write", items[which[f]][0], self, exc) from exc
        return redo

    @staticmethod
    def _fsync_dir(path: str) -> None:
        # Makes the rename itself durable (POSIX); directories cannot be opened on
        # Windows, where there is nothing to do.
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)

    def _set_many(self, items: list[tuple[str, memoryview]]) -> None:
        def store_batch(batch: Sequence[tuple[str, memoryview]]) -> list[None]:
            self._set_each(list(batch))  # (one native call for the thread's batch where possible)
            return []  # (no results to gather)

        parallel_batches(store_batch, items, self.threads)

    def _prune_dirs(self, directory: str) -> None:
        """Remove ``directory`` and its ancestors while empty, stopping at the root."""
        root = self._root
        while len(directory) > len(root) and directory.startswith(root):
            try:
                os.rmdir(directory)
            except OSError:
                return  # not empty (or already gone, or not ours to remove): stop
            directory = os.path.dirname(directory)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS or (exc.errno == errno.EPERM and os.path.isdir(path)):
                return  # missing, or a directory (EISDIR on Linux, EPERM on macOS)
            raise StoreError(f"cannot delete key {key!r} in {self!r}: {exc}") from exc
        self._prune_dirs(os.path.dirname(path))

    def _delete_many(self, keys: list[str]) -> None:
        parallel_map(self._delete, keys, self.threads)

    def _delete_prefix(self, prefix: str) -> None:
        directory = self._dir_path(prefix)
        if not os.path.isdir(directory):
            return  # nothing under it (a key named like the prefix is kept)

        def onerror(func: object, path: str, exc_info: tuple) -> None:
            # Entries may vanish under a concurrent delete; that is what we want.
            if not isinstance(exc_info[1], FileNotFoundError):
                raise StoreError(
                    f"cannot delete prefix {prefix!r} in {self!r}: {exc_info[1]}"
                ) from exc_info[1]

        if prefix:
            shutil.rmtree(directory, onerror=onerror)
            self._prune_dirs(os.path.dirname(directory))
        else:  # keep the root directory itself
            with os.scandir(directory) as entries:
                children = list(entries)
            for entry in children:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, onerror=onerror)
                else:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue  # removed concurrently
                    except OSError as exc:
                        raise StoreError(f"cannot delete prefix '' in {self!r}: {exc}") from exc

    # ---------------------------------------------------------------- listing

    def _list_prefix(self, prefix: str) -> Iterator[str]:
        directory = self._dir_path(prefix)
        start = under_prefix(prefix)
        # Iterative walk with an explicit stack (no recursion limit on deep trees).
        # Directory symlinks are followed, with a visited set against cycles.
        stack: list[tuple[str, str]] = [(directory, start)]
        seen: set[tuple[int, int]] = set()
        while stack:
            dirpath, keyprefix = stack.pop()
            try:
                st = os.stat(dirpath)
                with os.scandir(dirpath) as it:
                    entries = list(it)
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    continue  # missing prefix, a file, or removed concurrently
                raise StoreError(f"cannot list prefix {prefix!r} in {self!r}: {exc}") from exc
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                continue
            seen.add(ident)
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if is_dir:
                    stack.append((entry.path, keyprefix + entry.name + "/"))
                elif not _is_temp_name(entry.name):
                    yield keyprefix + entry.name

    def _list_dir(self, prefix: str) -> Iterator[str]:
        try:
            with os.scandir(self._dir_path(prefix)) as it:
                names = [e.name for e in it if not _is_temp_name(e.name)]
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return iter(())
            raise StoreError(f"cannot list prefix {prefix!r} in {self!r}: {exc}") from exc
        return iter(sorted(names))
