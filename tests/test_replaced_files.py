"""Local writes that replace large files hold the old file open across the rename and
close it on a background thread (its blocks then freed, and on a disk mounted with
discard, discarded, off the writing thread); a write through an array returns once
they are all closed, and nothing stays open."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gpuzarr
from gpuzarr import _native
from gpuzarr.stores import LocalStore, MemoryStore
from gpuzarr.stores import local as local_module
from gpuzarr.stores.local import HOLD_REPLACED_MIN_BYTES, _ReplacedFiles

pytestmark = pytest.mark.skipif(os.name != "posix", reason="files held open cannot be renamed over on Windows")

BIG = HOLD_REPLACED_MIN_BYTES


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if os.path.isdir("/proc/self/fd") else set()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """What writes hand the background closer: the fds of each call."""
    seen: list[list[int]] = []
    original = local_module._replaced_files.release

    def recording(fds: list[int]) -> None:
        seen.append(list(fds))
        original(fds)

    monkeypatch.setattr(local_module._replaced_files, "release", recording)
    return seen


@pytest.mark.parametrize("native", [True, False])
def test_large_replaced_files_are_released_off_the_writing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, released: list[list[int]], native: bool
) -> None:
    if native and _native.file_writes is None:
        pytest.skip("gpuzarr's native helper is built without writes")
    if not native:
        monkeypatch.setattr(_native, "file_writes", None)
    store = LocalStore(tmp_path)
    old = {f"c/{i}": os.urandom(BIG + i) for i in range(3)}
    store.set_each(list(old.items()))  # (new files: nothing replaced)
    store.set("small", b"x")
    assert not any(released)
    inodes = {key: os.stat(tmp_path / key).st_ino for key in old}
    new = {key: os.urandom(BIG + 7) for key in old}
    store.set_each(list(new.items()))
    store.set("small", b"y")  # (small: released by the rename itself)
    fds = [fd for call in released for fd in call]
    assert len(fds) == 3
    store.finish_writes()
    assert not any(_is_open(fd) for fd in fds)
    for key, data in new.items():
        assert (tmp_path / key).read_bytes() == data
        assert os.stat(tmp_path / key).st_ino != inodes[key]
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # (no temp file left)


def test_a_held_file_is_the_replaced_one_until_closed(tmp_path: Path) -> None:
    """The held descriptor is the old file's, whatever the path holds now."""
    closer = _ReplacedFiles()
    store = LocalStore(tmp_path)
    store.set("a", b"1" * BIG)
    old_inode = os.stat(tmp_path / "a").st_ino
    handed: list[int] = []
    original = local_module._replaced_files
    local_module._replaced_files = closer
    closer.release = handed.extend  # type: ignore[method-assign]
    try:
        store.set("a", b"2" * BIG)
    finally:
        local_module._replaced_files = original
    (fd,) = handed
    try:
        assert os.fstat(fd).st_ino == old_inode and os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 4, 0) == b"1111"
        assert (tmp_path / "a").read_bytes() == b"2" * BIG
    finally:
        os.close(fd)


def test_the_closer_closes_in_the_background_and_bounds_what_waits() -> None:
    closer = _ReplacedFiles()
    pipes = [os.pipe() for _ in range(closer.MAX_PENDING + 5)]
    reads = [r for r, _ in pipes]
    gate = threading.Event()
    original_close = os.close
    closed_on: set[str] = set()

    def slow_close(fd: int) -> None:
        closed_on.add(threading.current_thread().name)
        if threading.current_thread().name == "gpuzarr-release":
            gate.wait(5)
        original_close(fd)

    local_module.os.close = slow_close  # type: ignore[assignment]
    try:
        closer.release(reads[:1])
        closer.release(reads[1:])  # (the first still closing: room for MAX_PENDING - 1 more)
        # Those beyond the room were closed here, on this thread, at once.
        assert not any(_is_open(fd) for fd in reads[closer.MAX_PENDING :])
        assert threading.current_thread().name in closed_on
        gate.set()
        closer.wait()
        assert not any(_is_open(fd) for fd in reads)
    finally:
        local_module.os.close = original_close  # type: ignore[assignment]
        gate.set()
        for _, w in pipes:
            os.close(w)
    closer.wait()  # (nothing waiting: returns at once)


def test_waiting_closes_what_the_closer_has_not_taken() -> None:
    """A waiting write closes the files still queued itself, alongside the one the
    background thread is closing, and returns once both are closed."""
    closer = _ReplacedFiles()
    pipes = [os.pipe() for _ in range(4)]
    reads = [r for r, _ in pipes]
    gate = threading.Event()
    started = threading.Event()
    original_close = os.close
    closed_on: dict[int, str] = {}

    def slow_close(fd: int) -> None:
        closed_on[fd] = threading.current_thread().name
        if threading.current_thread().name == "gpuzarr-release":
            started.set()
            gate.wait(5)
        original_close(fd)

    local_module.os.close = slow_close  # type: ignore[assignment]
    try:
        closer.release(reads[:1])
        assert started.wait(5)  # (the background thread holds the first, closing it)
        closer.release(reads[1:])
        waiter = threading.Thread(target=closer.wait, name="waiter")
        waiter.start()
        for _ in range(500):  # the queued ones close on the waiting thread, ungated
            if not any(_is_open(fd) for fd in reads[1:]):
                break
            time.sleep(0.01)
        assert not any(_is_open(fd) for fd in reads[1:])
        assert {closed_on[fd] for fd in reads[1:]} == {"waiter"}
        assert waiter.is_alive() and _is_open(reads[0])  # (still waiting for the first)
        gate.set()
        waiter.join(5)
        assert not waiter.is_alive() and not _is_open(reads[0])
        assert closer._closing == 0 and closer._waiting == []
    finally:
        local_module.os.close = original_close  # type: ignore[assignment]
        gate.set()
        for _, w in pipes:
            os.close(w)


def test_a_forked_child_closes_its_copies_and_starts_over() -> None:
    closer = _ReplacedFiles()
    r, w = os.pipe()
    closer._waiting = [r]  # (as if the background thread had not got to it yet)
    closer.after_fork_in_child()
    assert not _is_open(r) and closer._waiting == [] and closer._thread is None
    os.close(w)


def test_array_writes_return_with_every_replaced_file_closed(tmp_path: Path, released: list[list[int]]) -> None:
    before = _open_fds()
    data = np.random.default_rng(0).normal(size=(512, 1024)).astype("float32")  # chunks of 512 KiB
    path = str(tmp_path / "a")
    a = gpuzarr.create_array(path, shape=data.shape, dtype="float32", chunks=(128, 1024), compressors=None)
    a[:] = data
    a[100:400, 5:900] = -data[100:400, 5:900]
    data[100:400, 5:900] *= -1
    assert sum(len(call) for call in released) == 4  # (the rewrite replaced the four chunks)
    assert _open_fds() <= before  # (nothing left open once the write returned)
    np.testing.assert_array_equal(gpuzarr.open_array(path)[:], data)
    sharded = gpuzarr.create_array(
        str(tmp_path / "s"), shape=data.shape, dtype="float32", chunks=(64, 1024), shards=(256, 1024), compressors=None
    )
    sharded[:] = data
    sharded[10:300, :7] = 5.0  # (two shards read, merged and replaced as their parts)
    data[10:300, :7] = 5.0
    assert _open_fds() <= before
    np.testing.assert_array_equal(gpuzarr.open_array(str(tmp_path / "s"))[:], data)


def test_array_writes_finish_the_store_s_writes_even_when_they_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    finished: list[bool] = []
    store = MemoryStore()
    monkeypatch.setattr(type(store), "finish_writes", lambda self: finished.append(True))
    a = gpuzarr.create_array(store, shape=(4,), dtype="int32", chunks=(2,))
    a[:] = 1
    with pytest.raises(ValueError):
        a[:] = np.ones(3)  # (the wrong shape)
    assert finished == [True, True]
