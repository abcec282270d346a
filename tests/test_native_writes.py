"""gpuzarr's native batched writes of local files (``gpuzarr_put_files``): each object
written to a temp file and renamed over its own (or, on Linux, a new object written to
an unnamed file and linked at its path), a batch in one GIL-free call. The same files,
the same atomicity and the same errors as the Python path, in both ways of naming."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gpuzarr
from gpuzarr import _native
from gpuzarr.errors import StoreError
from gpuzarr.stores import LocalStore
from gpuzarr.stores import local as local_module

pytestmark = pytest.mark.skipif(_native.file_writes is None, reason="gpuzarr's native helper is built without writes")


@pytest.fixture(autouse=True, params=["unnamed", "named"])
def naming(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with new objects started as unnamed files where the platform has
    them, and with temp files renamed into place."""
    if request.param == "unnamed" and not local_module.UNNAMED_FILES:
        pytest.skip("no unnamed files (O_TMPFILE and /proc/self/fd) here")
    monkeypatch.setattr(local_module, "UNNAMED_FILES", request.param == "unnamed")
    return str(request.param)


@pytest.fixture
def write_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the native batched writes (one entry per call: its number of objects)."""
    seen: list[int] = []
    original = LocalStore._write_some_natively

    def counting(self: Any, items: Any, which: Any) -> Any:
        seen.append(len(which))
        return original(self, items, which)

    monkeypatch.setattr(LocalStore, "_write_some_natively", counting)
    return seen


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its path relative to it."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hand_out_taken_temp_names(monkeypatch: pytest.MonkeyPatch, taken: str, count: int) -> None:
    """The next ``count`` temp names drawn are ``taken``; fresh ones after that."""
    real = local_module._temp_name
    calls = iter(range(10**9))
    monkeypatch.setattr(local_module, "_temp_name", lambda basename: taken if next(calls) < count else real(basename))


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_a_batch_is_written_in_one_call_once_its_folders_exist(tmp_path: Path, write_calls: list[int]) -> None:
    store = LocalStore(tmp_path)
    store.set("old", b"to be replaced")
    items = {"old": b"new", "empty": b"", "c/0/0": os.urandom(70_000), "c/0/1": b"x", "c/1/0": b"y"}
    store.set_each(list(items.items()))
    # One call for all; the three whose folders were missing again once they were made.
    assert write_calls == [5, 3]
    assert _files(tmp_path) == items, "every object written, no temp file left"
    mode = stat.S_IMODE(os.stat(tmp_path / "c" / "0" / "0").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask, "created like any file, not private like a mkstemp file"
    write_calls.clear()
    store.set_each([("c/0/0", b"again"), ("c/1/0", b"and again")])
    assert write_calls == [2]
    assert store.get("c/0/0") == b"again"
    assert store.get("c/1/0") == b"and again"


def test_keys_outside_ascii_are_written_natively(tmp_path: Path, write_calls: list[int]) -> None:
    store = LocalStore(tmp_path)
    items = {"dé/ü ñ": b"1", "日本/語": b"22", "a b/c%d": b"333"}
    store.set_each(list(items.items()))
    assert write_calls == [3, 3]
    assert {key: store.get(key) for key in items} == items
    assert _files(tmp_path) == {os.path.join(*key.split("/")): value for key, value in items.items()}


def test_a_taken_temp_name_is_drawn_again(
    tmp_path: Path, write_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.set_each([("a", b"old"), ("b", b"old")])  # (replacing objects takes a temp name either way)
    write_calls.clear()
    squatter = tmp_path / ".a.taken.tmp"
    squatter.write_bytes(b"someone else's")
    names = iter([squatter.name])
    real = local_module._temp_name
    monkeypatch.setattr(local_module, "_temp_name", lambda basename: next(names, None) or real(basename))
    store.set_each([("a", b"1"), ("b", b"2")])
    assert write_calls == [2, 1]
    assert _files(tmp_path) == {"a": b"1", "b": b"2", squatter.name: b"someone else's"}


def test_new_objects_need_no_temp_name_when_unnamed(
    tmp_path: Path, write_calls: list[int], monkeypatch: pytest.MonkeyPatch, naming: str
) -> None:
    """An unnamed file is linked straight at its path: every temp name taken changes
    nothing for new objects (named, each is drawn again)."""
    store = LocalStore(tmp_path)
    squatter = tmp_path / ".taken.tmp"
    squatter.write_bytes(b"someone else's")
    _hand_out_taken_temp_names(monkeypatch, squatter.name, 3)
    store.set_each([("a", b"1"), ("b", b"2"), ("c", b"3")])
    assert write_calls == ([3] if naming == "unnamed" else [3, 3])
    assert _files(tmp_path) == {"a": b"1", "b": b"2", "c": b"3", squatter.name: b"someone else's"}


@pytest.mark.parametrize("size", [10, local_module.HOLD_REPLACED_MIN_BYTES])
def test_a_batch_mixing_new_and_existing_objects_writes_them_all(
    tmp_path: Path, write_calls: list[int], size: int
) -> None:
    """An existing object met in an unnamed batch is replaced by rename (a link cannot
    replace it), as are the rest of that batch; objects before it were linked. Large
    replaced files are held open and released as ever."""
    store = LocalStore(tmp_path)
    store.set_each([("c/2", b"old 2"), ("c/4", b"old 4")])
    write_calls.clear()
    before = _open_fds()
    items = {f"c/{i}": bytes([i]) * size for i in range(6)}
    store.set_each(list(items.items()))
    store.finish_writes()
    assert write_calls == [6]
    assert _files(tmp_path) == items, "every object written, no temp file left"
    assert _open_fds() == before, "every replaced file released"


def test_a_later_batch_tries_unnamed_files_again(
    tmp_path: Path, write_calls: list[int], monkeypatch: pytest.MonkeyPatch, naming: str
) -> None:
    store = LocalStore(tmp_path)
    store.set_each([("a", b"old"), ("b", b"old")])
    store.set_each([("a", b"1"), ("b", b"2"), ("c", b"3")])
    write_calls.clear()
    squatter = tmp_path / ".taken.tmp"
    squatter.write_bytes(b"")
    _hand_out_taken_temp_names(monkeypatch, squatter.name, 2)
    store.set_each([("d", b"4"), ("e", b"5")])
    # (Unnamed, no temp name is needed, so the taken ones cost no second call.)
    assert write_calls == ([2] if naming == "unnamed" else [2, 2])
    assert _files(tmp_path) == {"a": b"1", "b": b"2", "c": b"3", "d": b"4", "e": b"5", squatter.name: b""}


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ")
def test_a_write_that_fails_midway_leaves_no_file(tmp_path: Path, write_calls: list[int]) -> None:
    """A file size limit makes the write of the large object fail partway (EFBIG): the
    error names its key, and neither a partial object nor a temp file is left."""
    import resource

    store = LocalStore(tmp_path)
    store.set("big", b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        for key in ("new", "big"):
            with pytest.raises(StoreError, match=f"cannot write key '{key}'.*File too large"):
                store.set_each([("small", b"s"), (key, b"x" * 10_000)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert _files(tmp_path) == {"small": b"s", "big": b"old"}


def test_a_folder_missing_again_is_left_to_the_python_path(
    tmp_path: Path, write_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder still missing after the helper's second call (say, pruned meanwhile by a
    concurrent delete) is made by the Python path, which writes the object."""
    real = local_module._make_parent
    skipped: list[str] = []

    def first_lost(path: str) -> None:
        if not skipped:
            skipped.append(path)
            return
        real(path)

    monkeypatch.setattr(local_module, "_make_parent", first_lost)
    store = LocalStore(tmp_path)
    store.set_each([("c/0/0", b"a"), ("c/0/1", b"b")])
    assert write_calls == [2, 2]
    assert skipped
    assert _files(tmp_path) == {"c/0/0": b"a", "c/0/1": b"b"}


def test_a_failed_object_names_its_key_and_leaves_no_temp_file(tmp_path: Path, write_calls: list[int]) -> None:
    store = LocalStore(tmp_path)
    store.set_each([("c/0", b"old 0"), ("c/2", b"old 2")])
    (tmp_path / "c" / "1").mkdir()
    (tmp_path / "c" / "1" / "x").write_bytes(b"in the way")  # (a rename over a full folder fails)
    before = _open_fds()
    with pytest.raises(StoreError, match=r"cannot write key 'c/1' in LocalStore\(.*\): .*Is a directory"):
        store.set_each([("c/0", b"new 0"), ("c/1", b"new 1"), ("c/2", b"new 2")])
    assert _open_fds() == before, "no file left open"
    # Each object stands whole: the others of the batch were written.
    assert _files(tmp_path) == {"c/0": b"new 0", "c/2": b"new 2", "c/1/x": b"in the way"}


def test_an_object_that_cannot_be_created_names_its_key(tmp_path: Path, write_calls: list[int]) -> None:
    store = LocalStore(tmp_path)
    (tmp_path / "file").write_bytes(b"")  # (a file where a folder must be: ENOTDIR)
    with pytest.raises(StoreError, match="cannot write key 'file/x'"):
        store.set_each([("ok", b"1"), ("file/x", b"2")])
    assert _files(tmp_path) == {"ok": b"1", "file": b""}


def test_fsync_syncs_the_files_and_their_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = LocalStore._fsync_dir
    monkeypatch.setattr(LocalStore, "_fsync_dir", staticmethod(lambda path: synced.append(path) or real(path)))
    store = LocalStore(tmp_path, fsync=True)
    store.set_each([("c/0", b"a"), ("c/1", b"b"), ("d", b"c")])
    assert _files(tmp_path) == {"c/0": b"a", "c/1": b"b", "d": b"c"}
    assert sorted(synced) == sorted({str(tmp_path / "c"), str(tmp_path)})


def test_a_subclass_write_hook_sees_every_write(tmp_path: Path, write_calls: list[int]) -> None:
    seen: list[str] = []

    class Recording(LocalStore):
        def _set(self, key: str, value: memoryview) -> None:
            seen.append(key)
            super()._set(key, value)

    class OwnTemps(LocalStore):
        def _create_temp(self, key: str, path: str) -> tuple[int, str]:
            seen.append(key)
            return super()._create_temp(key, path)

    for cls in (Recording, OwnTemps):
        seen.clear()
        store = cls(tmp_path / cls.__name__)
        store.set_each([("a", b"1"), ("b/c", b"2")])
        store.set_many([("d", b"3"), ("e", b"4")])
        assert sorted(seen) == ["a", "b/c", "d", "e"]
        assert store.get("b/c") == b"2"
    assert write_calls == []


def test_set_many_writes_each_thread_s_batch_natively(tmp_path: Path, write_calls: list[int]) -> None:
    store = LocalStore(tmp_path, threads=4)
    items = [(f"c/{i}", bytes([i]) * i) for i in range(64)]
    store.set_many(items)
    assert _files(tmp_path) == {f"c/{i}": bytes([i]) * i for i in range(64)}
    assert 1 < len(write_calls) <= 64 and sum(write_calls) >= 64


@pytest.mark.parametrize(("chunks", "threads"), [((4, 6), 1), ((4, 6), 3), ((8, 10), 2)])
def test_array_writes_store_what_the_python_path_stores(
    tmp_path: Path, write_calls: list[int], monkeypatch: pytest.MonkeyPatch, chunks: tuple[int, int], threads: int
) -> None:
    """Full and partial (read-modify-write) writes of a chunked array, some chunks left
    holding only the fill value (deleted), give the same files either way."""
    rng = np.random.default_rng(11)
    data = rng.integers(0, 9, size=(30, 41)).astype("int16")
    update = rng.integers(0, 9, size=(17, 23)).astype("int16")

    def write(path: Path) -> None:
        a = gpuzarr.create_array(path, shape=data.shape, dtype="int16", chunks=chunks, fill_value=0)
        a[...] = data
        a[3:20, 5:28] = update
        a[0:4, 0:6] = 0  # (one chunk all fill value again: its file goes)

    with gpuzarr.config.set(threads=threads):
        write(tmp_path / "native")
        assert write_calls, "the native writes ran"
        monkeypatch.setattr(_native, "file_writes", None)
        write(tmp_path / "python")
    assert _files(tmp_path / "native") == _files(tmp_path / "python")
    expected = data.copy()
    expected[3:20, 5:28] = update
    expected[0:4, 0:6] = 0
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "native")[...], expected)
