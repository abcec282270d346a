"""Tests of gpuzarr.stores: one behavioural suite run by every store, then store specifics."""

from __future__ import annotations

import gc
import os
import pathlib
import pickle
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuzarr.errors import ChecksumError, ReadOnlyError, StoreError
from gpuzarr.stores import FsspecStore, LocalStore, MemoryStore, Store, ZipStore, make_store
from gpuzarr.stores import local as local_module

#: "fsspec": an FsspecStore over fsspec's in-memory filesystem (each test its own root),
#: which stands in for an object store: same calls, no network.
KINDS = ["local", "memory", "zip", "fsspec"]

# A store factory: ``open_(read_only=False)`` returns a store over the same location
# each time, so data written by one store can be checked through another.
Opener = Callable[..., Store]


def _opener(kind: str, where: pathlib.Path) -> Opener:
    shared: dict[str, bytes] = {}

    def open_(read_only: bool = False) -> Store:
        if kind == "local":
            return LocalStore(where / "data", read_only=read_only)
        if kind == "memory":
            return MemoryStore(shared, read_only=read_only)
        if kind == "fsspec":
            return FsspecStore.from_url(f"memory://{where}/data", read_only=read_only)
        path = where / "data.zip"
        return ZipStore(path, "r" if read_only else ("a" if path.exists() else "w"))

    return open_


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Opener:
    return _opener(request.param, tmp_path)


@pytest.fixture
def store(opener: Opener) -> Iterator[Store]:
    s = opener()
    yield s
    s.close()


def _run_in_threads(fn: Callable[[int], None], n: int) -> None:
    """Run ``fn(0) ... fn(n - 1)`` concurrently; re-raise the first failure here."""
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(fn, i) for i in range(n)]
    for future in futures:
        future.result()


def _fill(s: Store, items: dict[str, bytes]) -> None:
    for k, v in items.items():
        s.set(k, v)


def _reopen_read_only(s: Store, opener: Opener) -> Store:
    s.close()  # a ZipStore flushes here
    return opener(read_only=True)


NESTED = {
    "zarr.json": b"{root}",
    "a/zarr.json": b"{a}",
    "a/c/0/0": b"chunk00",
    "a/c/0/1": b"chunk01",
    "a/c/1/0": b"chunk10",
    "ab/zarr.json": b"{ab}",
    "a.b/0.1": b"v2-chunk",
    ".zmetadata": b"{consolidated}",
}


# ------------------------------------------------------------------ common suite


class TestCommon:
    def test_round_trip_and_overwrite(self, store: Store) -> None:
        store.set("a/b/c", b"hello")
        assert store.get("a/b/c") == b"hello"
        assert isinstance(store.get("a/b/c"), bytes)
        store.set("a/b/c", b"world!")
        assert store.get("a/b/c") == b"world!"
        store.set("empty", b"")
        assert store.get("empty") == b""
        assert store.exists("empty")
        store.flush()  # durable (a no-op where writes go straight through)
        assert store.get("a/b/c") == b"world!"
        store.delete("a/b/c")
        assert store.get("a/b/c") is None
        assert not store.exists("a/b/c")

    def test_bytes_like_values_are_copied(self, store: Store) -> None:
        buf = bytearray(b"abcdef")
        store.set("ba", buf)
        buf[0:3] = b"XYZ"  # mutating the caller's buffer must not change the store
        assert store.get("ba") == b"abcdef"
        store.set("mv", memoryview(b"0123456789")[2:5])
        assert store.get("mv") == b"234"
        arr = np.arange(4, dtype="<u2")
        store.set("np", arr)
        assert store.get("np") == arr.tobytes()
        store.set("strided", np.arange(8, dtype="u1")[::2])  # non-contiguous
        assert store.get("strided") == bytes([0, 2, 4, 6])
        with pytest.raises(TypeError, match="'k'"):
            store.set("k", "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'k'"):
            store.set("k", 5)  # type: ignore[arg-type]

    def test_missing_keys_read_as_none(self, store: Store) -> None:
        store.set("a/b", b"x")
        for key in ("nope", "a", "a/b/c", "a/nope", "z/y/x"):
            assert store.get(key) is None, key
            assert store.get_ranges(key, [(0, 1)]) is None
            assert store.get_suffix(key, 1) is None
            assert store.size(key) is None
            assert not store.exists(key)
            assert key not in store
        store.delete("nope")  # missing key: no error
        store.delete_many(["nope", "a/nope"])

    def test_get_many(self, store: Store) -> None:
        data = {f"g/{i}/c": bytes([i]) * i for i in range(40)}
        store.set_many(list(data.items()))
        keys = ["g/5/c", "missing", "g/0/c", "g/39/c", "g/5/c"]
        assert store.get_many(keys) == [data["g/5/c"], None, b"", data["g/39/c"], data["g/5/c"]]
        assert store.get_many([]) == []
        assert store.get_many(list(data)) == list(data.values())

    def test_get_ranges(self, store: Store) -> None:
        store.set("k", bytes(range(100)))
        ranges = [(10, 5), (0, 3), (95, 10), (100, 4), (500, 1), (7, 0), (0, 100)]
        out = store.get_ranges("k", ranges)
        assert out == [
            bytes(range(10, 15)),
            bytes(range(3)),
            bytes(range(95, 100)),  # short read at the end
            b"",  # starts exactly at the end
            b"",  # starts past the end
            b"",
            bytes(range(100)),
        ]
        assert store.get_ranges("k", []) == []
        assert store.get_ranges("k", [(np.int64(1), np.uint8(2))]) == [b"\x01\x02"]
        # A huge length past the end must not try to allocate it.
        assert store.get_ranges("k", [(98, 1 << 60)]) == [b"\x62\x63"]

    def test_object_token(self, store: Store) -> None:
        from gpuzarr.stores.base import UNVERSIONED

        assert store.object_token("a/x") is None or store.object_token("a/x") == UNVERSIONED
        store.set("a/x", b"one")
        first = store.object_token("a/x")
        assert first is not None
        store.set("a/x", b"two")  # same size, new object
        second = store.object_token("a/x")
        if first != UNVERSIONED:  # stores that can tell versions apart must do so
            assert second != first
        assert store.object_token("a/x") == second  # stable while unchanged

    def test_get_suffix(self, store: Store) -> None:
        store.set("k", b"0123456789")
        assert store.get_suffix("k", 3) == b"789"
        assert store.get_suffix("k", 10) == b"0123456789"
        assert store.get_suffix("k", 50) == b"0123456789"
        assert store.get_suffix("k", 0) == b""

    def test_get_many_suffixes(self, store: Store) -> None:
        store.set("x", b"abcdef")
        store.set("y/z", b"0123")
        assert store.get_many_suffixes(["x", "nope", "y/z", "x"], 3) == [b"def", None, b"123", b"def"]
        assert store.get_many_suffixes(["y/z"], 10) == [b"0123"]
        assert store.get_many_suffixes(["x", "nope"], 0) == [b"", None]
        assert store.get_many_suffixes([], 3) == []
        with pytest.raises(StoreError, match="invalid store key"):
            store.get_many_suffixes(["x", "/bad"], 1)

    def test_get_many_ranges(self, store: Store) -> None:
        store.set("x", b"abcdef")
        store.set("y/z", b"0123")
        out = store.get_many_ranges([("x", [(1, 2), (4, 10)]), ("nope", [(0, 1)]), ("y/z", [])])
        assert out == [[b"bc", b"ef"], None, []]
        many = [("x", [(i % 6, 1)]) for i in range(50)]
        assert store.get_many_ranges(many) == [[b"abcdef"[i % 6 : i % 6 + 1]] for i in range(50)]

    def test_invalid_ranges(self, store: Store) -> None:
        store.set("k", b"abc")
        for bad in ([(-1, 2)], [(0, -2)], [(0,)], [("0", 1)], [(0.5, 1)]):
            with pytest.raises(StoreError, match="'k'"):
                store.get_ranges("k", bad)  # type: ignore[arg-type]
        with pytest.raises(StoreError, match="'k'"):
            store.get_suffix("k", -1)

    def test_size_and_exists(self, store: Store) -> None:
        store.set("d/k", b"x" * 1234)
        assert store.size("d/k") == 1234
        assert store.exists("d/k")
        assert not store.exists("d")  # an implicit directory is not a key
        assert store.size("d") is None

    def test_list_prefix(self, store: Store) -> None:
        _fill(store, NESTED)
        assert sorted(store.list_prefix("")) == sorted(NESTED)
        assert sorted(store.list_prefix("a")) == ["a/c/0/0", "a/c/0/1", "a/c/1/0", "a/zarr.json"]
        assert sorted(store.list_prefix("a/")) == sorted(store.list_prefix("a"))
        assert sorted(store.list_prefix("a/c/0")) == ["a/c/0/0", "a/c/0/1"]
        assert list(store.list_prefix("ab")) == ["ab/zarr.json"]
        assert list(store.list_prefix("missing")) == []
        assert list(store.list_prefix("zarr.json")) == []  # a key has nothing under it

    def test_list_dir(self, store: Store) -> None:
        _fill(store, NESTED)
        assert list(store.list_dir("")) == sorted([".zmetadata", "a", "a.b", "ab", "zarr.json"])
        assert list(store.list_dir("a")) == ["c", "zarr.json"]
        assert list(store.list_dir("a/c/")) == ["0", "1"]
        assert list(store.list_dir("a/c/0")) == ["0", "1"]
        assert list(store.list_dir("nope")) == []

    def test_delete_prefix(self, store: Store) -> None:
        _fill(store, NESTED)
        store.delete_prefix("a/c/0")
        assert sorted(store.list_prefix("a")) == ["a/c/1/0", "a/zarr.json"]
        store.delete_prefix("a")
        assert store.get("ab/zarr.json") == b"{ab}"  # "ab" is not under "a"
        assert store.get("a.b/0.1") == b"v2-chunk"
        assert list(store.list_prefix("a")) == []
        store.delete_prefix("does/not/exist")
        store.delete_prefix("")
        assert list(store.list_prefix("")) == []
        store.set("after/clear", b"ok")  # still usable
        assert store.get("after/clear") == b"ok"

    def test_set_many_delete_many(self, store: Store) -> None:
        items = [(f"m/{i}", str(i).encode()) for i in range(30)]
        store.set_many(items)
        assert sorted(store.list_prefix("m")) == sorted(k for k, _ in items)
        store.delete_many([k for k, _ in items[:20]] + ["m/missing"])
        assert sorted(store.list_prefix("m")) == sorted(k for k, _ in items[20:])
        store.set_many([])
        store.delete_many([])

    def test_set_each(self, store: Store) -> None:
        """``set_each`` stores like ``set``, object by object: new folders, replaced
        objects, empty ones; an invalid key fails the batch before anything is written."""
        store.set("e/old", b"old")
        items = [("e/old", b"new"), ("e/empty", b""), ("e/0/0", bytes(range(256)) * 300), ("e/0/1", b"x")]
        store.set_each(items)
        assert {k: store.get(k) for k, _ in items} == dict(items)
        assert sorted(store.list_prefix("e")) == sorted(k for k, _ in items)
        with pytest.raises(StoreError, match="invalid store key"):
            store.set_each([("e/fine", b"1"), ("../escape", b"2")])
        assert store.get("e/fine") is None
        store.set_each([])

    def test_set_parts(self, store: Store) -> None:
        parts = [b"head", bytearray(b""), memoryview(b"-middle-"), np.arange(3, dtype="<u2"), b"tail"]
        store.set_parts("p/k", parts)
        assert store.get("p/k") == b"head-middle-\x00\x00\x01\x00\x02\x00tail"
        store.set_parts("p/k", [b"new"])  # replaces, like set
        assert store.get("p/k") == b"new"
        store.set_parts("p/empty", [])
        assert store.get("p/empty") == b""
        with pytest.raises(TypeError, match="p/bad"):
            store.set_parts("p/bad", [b"x", "text"])  # type: ignore[list-item]
        assert store.get("p/bad") is None

    @pytest.mark.parametrize(
        "bad", ["", "/a", "a/", "a//b", "./a", "a/./b", "a/../b", "..", ".", "a\\b", "a\x00b"]
    )
    def test_invalid_keys(self, store: Store, bad: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: store.get(bad),
            lambda: store.set(bad, b"x"),
            lambda: store.delete(bad),
            lambda: store.get_ranges(bad, [(0, 1)]),
            lambda: store.get_suffix(bad, 1),
            lambda: store.size(bad),
            lambda: store.exists(bad),
            lambda: store.get_many(["ok", bad]),
            lambda: store.set_many([("ok", b"1"), (bad, b"x")]),
            lambda: store.delete_many([bad]),
            lambda: store.get_many_ranges([(bad, [(0, 1)])]),
        ]
        for call in calls:
            with pytest.raises(StoreError, match="invalid store key") as info:
                call()
            assert repr(bad) in str(info.value)
        assert store.get("ok") is None  # the batch with a bad key wrote nothing

    @pytest.mark.parametrize("bad", ["/a", "a//b", "a/..", "/", "a\\b"])
    def test_invalid_prefixes(self, store: Store, bad: str) -> None:
        with pytest.raises(StoreError):
            store.list_prefix(bad)
        with pytest.raises(StoreError):
            store.list_dir(bad)
        with pytest.raises(StoreError):
            store.delete_prefix(bad)

    def test_non_str_key(self, store: Store) -> None:
        with pytest.raises(StoreError, match="must be a str"):
            store.get(123)  # type: ignore[arg-type]
        assert 123 not in store

    def test_read_only(self, store: Store, opener: Opener) -> None:
        store.set("a/k", b"v")
        ro = _reopen_read_only(store, opener)
        try:
            assert ro.read_only
            assert ro.get("a/k") == b"v"
            writes: list[tuple[Callable[[], object], str]] = [
                (lambda: ro.set("a/k", b"w"), "'a/k'"),
                (lambda: ro.set("new", b"w"), "'new'"),
                (lambda: ro.delete("a/k"), "'a/k'"),
                (lambda: ro.delete("missing"), "'missing'"),
                (lambda: ro.set_many([("x", b"1")]), "'x'"),
                (lambda: ro.set_each([("y", b"1"), ("z", b"2")]), "'y'"),
                (lambda: ro.delete_many(["a/k"]), "'a/k'"),
                (lambda: ro.delete_prefix("a"), "'a'"),
            ]
            for call, name in writes:
                with pytest.raises(ReadOnlyError, match=name):
                    call()
            assert ro.get("a/k") == b"v"
            assert ro.get("new") is None
        finally:
            ro.close()

    def test_closed_store(self, store: Store) -> None:
        store.set("k", b"v")
        store.close()
        assert store.closed
        store.close()  # idempotent
        for call in (
            lambda: store.get("k"),
            lambda: store.set("k", b"w"),
            lambda: store.delete("k"),
            lambda: store.list_prefix(""),
            lambda: store.list_dir(""),
            lambda: store.get_many(["k"]),
            lambda: store.set_each([("k", b"w")]),
            lambda: store.set_each([]),
            lambda: store.get_ranges("k", [(0, 1)]),
            lambda: store.exists("k"),
            store.flush,
        ):
            with pytest.raises(StoreError, match="closed"):
                call()

    def test_context_manager(self, opener: Opener) -> None:
        with opener() as s:
            s.set("k", b"v")
        assert s.closed
        with opener(read_only=True) as r:
            assert r.get("k") == b"v"

    def test_repr_and_eq(self, store: Store, opener: Opener, tmp_path: pathlib.Path) -> None:
        text = repr(store)
        assert type(store).__name__ in text
        if not isinstance(store, MemoryStore):
            assert str(tmp_path) in text
        assert store != object()
        assert hash(store) == hash(store)

    def test_threads_different_keys(self, store: Store) -> None:
        def work(t: int) -> None:
            for i in range(25):
                key = f"t{t % 4}/{t}/{i}"  # threads share parent directories
                value = f"{t}-{i}".encode() * (i + 1)
                store.set(key, value)
                assert store.get(key) == value
                if i % 3 == 0:
                    store.delete(key)
                    assert store.get(key) is None

        _run_in_threads(work, 12)
        expected = {f"t{t % 4}/{t}/{i}" for t in range(12) for i in range(25) if i % 3}
        assert set(store.list_prefix("")) == expected


# ------------------------------------------------------------- model-based check


_key_st = st.lists(st.sampled_from(["a", "b", "c", "0", "zarr.json"]), min_size=1, max_size=3).map(
    "/".join
)
_op_st = st.one_of(
    st.tuples(st.just("set"), _key_st, st.binary(max_size=20)),
    st.tuples(st.just("delete"), _key_st, st.just(b"")),
    st.tuples(st.just("delete_prefix"), _key_st, st.just(b"")),
    st.tuples(st.just("flush"), st.just(""), st.just(b"")),
)


def _conflicts(model: dict[str, bytes], key: str) -> bool:
    """Whether ``key`` would be both a file and a directory next to ``model``'s keys.

    A file-system store cannot hold both ``a`` and ``a/b``, so the model skips such
    writes to stay within what every store supports.
    """
    parts = key.split("/")
    parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
    return any(k in parents or k.startswith(key + "/") for k in model)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op_st, max_size=25))
def test_matches_dict_model(kind: str, ops: list[tuple[str, str, bytes]]) -> None:
    where = pathlib.Path(tempfile.mkdtemp())
    try:
        open_ = _opener(kind, where)
        s = open_()
        model: dict[str, bytes] = {}
        for op, key, value in ops:
            if op == "set":
                if _conflicts(model, key):
                    continue
                s.set(key, value)
                model[key] = value
            elif op == "delete":
                s.delete(key)
                model.pop(key, None)
            elif op == "delete_prefix":
                s.delete_prefix(key)
                model = {k: v for k, v in model.items() if not k.startswith(key + "/")}
            elif isinstance(s, ZipStore):
                s.flush()
            assert sorted(s.list_prefix("")) == sorted(model)
        for key, value in model.items():
            assert s.get(key) == value
        s.close()
        reopened = open_(read_only=True)
        assert {k: reopened.get(k) for k in reopened.list_prefix("")} == model
        reopened.close()
    finally:
        shutil.rmtree(where, ignore_errors=True)


# -------------------------------------------------------------------- LocalStore


def _all_files(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class TestLocalStore:
    def test_layout_on_disk(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path / "root")
        s.set("a/c/0/1", b"data")
        s.set(".zmetadata", b"{}")
        assert (tmp_path / "root" / "a" / "c" / "0" / "1").read_bytes() == b"data"
        assert (tmp_path / "root" / ".zmetadata").read_bytes() == b"{}"
        assert s.root == str(tmp_path / "root")
        assert LocalStore(str(tmp_path / "root")) == s
        assert hash(LocalStore(str(tmp_path / "root"))) == hash(s)
        assert LocalStore(tmp_path / "root", read_only=True) != s

    def test_missing_root(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path / "nothing" / "here", read_only=True)
        assert s.get("k") is None
        assert list(s.list_prefix("")) == []
        assert list(s.list_dir("")) == []
        assert not (tmp_path / "nothing").exists()

    def test_directory_key_reads_as_missing(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        s.set("d/k", b"x")
        assert s.get("d") is None
        assert s.size("d") is None
        assert s.get_ranges("d", [(0, 1)]) is None
        s.delete("d")  # a directory is not a key: nothing happens
        assert s.get("d/k") == b"x"
        with pytest.raises(StoreError, match="'d'"):
            s.set("d", b"file over a directory")
        assert s.get("d/k") == b"x"
        assert [p.name for p in (tmp_path / "d").iterdir()] == ["k"]  # no temp left

    def test_write_below_a_file_fails_cleanly(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        s.set("f", b"file")
        with pytest.raises(StoreError, match="'f/x'"):
            s.set("f/x", b"y")
        assert s.get("f") == b"file"

    @pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt])
    def test_atomic_write_failure(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, exc_type: type
    ) -> None:
        s = LocalStore(tmp_path)
        s.set("a/k", b"old content")
        real_write_all = local_module._write_all

        def failing_write_all(fd: int, data: memoryview) -> None:
            real_write_all(fd, data[: len(data) // 2])  # half written, then the "crash"
            raise exc_type("disk on fire")

        monkeypatch.setattr(local_module, "_write_all", failing_write_all)
        expected = StoreError if exc_type is OSError else exc_type
        with pytest.raises(expected):
            s.set("a/k", b"new content that is longer")
        with pytest.raises(expected):
            s.set("a/fresh", b"never visible")
        monkeypatch.undo()
        assert s.get("a/k") == b"old content"
        assert s.get("a/fresh") is None
        assert _all_files(tmp_path) == ["a", os.path.join("a", "k")]  # no temp files

    def test_set_parts_writes_in_batches_and_resumes_short_writes(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # writev takes at most _IOV_MAX parts per call and may write less than asked
        # (cutting a part anywhere): every byte still lands once, in order.
        s = LocalStore(tmp_path)
        parts = [bytes([i]) * (i % 7 + 1) for i in range(50)]
        real_writev = os.writev
        calls: list[int] = []

        def short_writev(fd: int, buffers: list[memoryview]) -> int:
            calls.append(len(buffers))
            assert len(buffers) <= 4
            total = sum(len(b) for b in buffers)
            return real_writev(fd, [b"".join(bytes(b) for b in buffers)[: max(1, total // 2)]])

        monkeypatch.setattr(local_module, "_IOV_MAX", 4)
        monkeypatch.setattr(os, "writev", short_writev)
        s.set_parts("k", parts)
        assert s.get("k") == b"".join(parts)
        assert len(calls) > len(parts) // 4

    def test_set_parts_failure_leaves_the_old_object(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        s = LocalStore(tmp_path)
        s.set("a/k", b"old content")
        real_writev = os.writev

        def failing_writev(fd: int, buffers: list[memoryview]) -> int:
            real_writev(fd, buffers[:1])  # some written, then the "crash"
            raise OSError("disk on fire")

        monkeypatch.setattr(os, "writev", failing_writev)
        with pytest.raises(StoreError, match="a/k"):
            s.set_parts("a/k", [b"new ", b"content"])
        monkeypatch.undo()
        assert s.get("a/k") == b"old content"
        assert _all_files(tmp_path) == ["a", os.path.join("a", "k")]  # no temp files

    def test_set_parts_caps_each_writev_call(self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # At most _MAX_IO bytes a call (macOS refuses writev calls over 2 GiB), a part
        # larger than that split over calls.
        s = LocalStore(tmp_path)
        parts = [b"a" * 3, b"b" * 25, b"c" * 4, b"d" * 9, b"e"]
        real_writev = os.writev
        totals: list[int] = []

        def recording_writev(fd: int, buffers: list[memoryview]) -> int:
            totals.append(sum(len(b) for b in buffers))
            return real_writev(fd, buffers)

        monkeypatch.setattr(local_module, "_MAX_IO", 10)
        monkeypatch.setattr(os, "writev", recording_writev)
        s.set_parts("k", parts)
        assert s.get("k") == b"".join(parts)
        assert max(totals) <= 10 and sum(totals) == 42

    @pytest.mark.parametrize("hook", ["set", "_set"])
    def test_set_parts_goes_through_a_subclass_write_hook(self, tmp_path: pathlib.Path, hook: str) -> None:
        # Subclasses that hook whole-object writes (public or private) see the joined object.
        written: list[bytes] = []

        def record(self: LocalStore, key: str, value: Any) -> None:
            written.append(bytes(value))
            getattr(super(type(self), self), hook)(key, value)

        recording = type("Recording", (LocalStore,), {hook: record})
        s = recording(tmp_path)
        s.set_parts("k", [b"ab", b"cd"])
        assert written == [b"abcd"] and s.get("k") == b"abcd"

    def test_listing_ignores_temp_files(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        s.set("a/c/0", b"x")
        (tmp_path / "a" / "c" / ".0.0123456789abcdef.tmp").write_bytes(b"half")
        (tmp_path / ".zarr.json.fedcba9876543210.tmp").write_bytes(b"half")
        assert list(s.list_prefix("")) == ["a/c/0"]
        assert list(s.list_dir("a/c")) == ["0"]
        assert list(s.list_dir("")) == ["a"]
        # Names merely resembling temp files are ordinary keys.
        s.set("a/.x.tmp", b"key")
        assert sorted(s.list_prefix("a")) == ["a/.x.tmp", "a/c/0"]

    def test_temp_file_name_and_permissions(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[str] = []
        real_replace = os.replace

        def spy_replace(src: str, dst: str) -> None:
            seen.append(src)
            real_replace(src, dst)

        monkeypatch.setattr(local_module.os, "replace", spy_replace)
        s = LocalStore(tmp_path)
        s.set("dir/key", b"v")
        monkeypatch.undo()
        assert len(seen) == 1
        assert os.path.dirname(seen[0]) == str(tmp_path / "dir")
        assert local_module._is_temp_name(os.path.basename(seen[0]))
        assert os.path.basename(seen[0]).startswith(".key.")
        if os.name == "posix":
            umask = os.umask(0)
            os.umask(umask)
            mode = (tmp_path / "dir" / "key").stat().st_mode & 0o777
            assert mode == 0o666 & ~umask

    def test_empty_dirs_pruned(self, tmp_path: pathlib.Path) -> None:
        root = tmp_path / "root"
        s = LocalStore(root)
        s.set("a/b/c/d", b"1")
        s.set("a/x", b"2")
        s.delete("a/b/c/d")
        assert _all_files(root) == ["a", os.path.join("a", "x")]
        s.delete("a/x")
        assert _all_files(root) == []
        assert root.is_dir()  # the root itself stays
        s.set("p/q/r", b"3")
        s.set("p/s", b"4")
        s.delete_prefix("p/q")
        assert _all_files(root) == ["p", os.path.join("p", "s")]
        s.delete_prefix("")
        assert _all_files(root) == []
        assert root.is_dir()

    def test_options(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path, threads=1, fsync=True)
        s.set_many([(f"k/{i}", b"v") for i in range(5)])
        assert s.get_many([f"k/{i}" for i in range(5)]) == [b"v"] * 5
        with pytest.raises(ValueError, match="threads"):
            LocalStore(tmp_path, threads=0)

    def test_large_value(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        big = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
        s.set("big", big)
        assert s.get("big") == big
        assert s.get_ranges("big", [(1 << 20, 16)]) == [big[1 << 20 : (1 << 20) + 16]]
        assert s.get_suffix("big", 5) == big[-5:]

    def test_readers_never_see_partial_writes(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        n = 1 << 16
        values = [b"a" * n, b"b" * (n // 2)]
        s.set("hot", values[0])
        stop = threading.Event()
        bad: list[bytes] = []

        def reader() -> None:
            while not stop.is_set():
                got = s.get("hot")
                if got not in values:
                    bad.append(got or b"<missing>")

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for th in readers:
            th.start()
        for i in range(200):
            s.set("hot", values[i % 2])
        stop.set()
        for th in readers:
            th.join()
        assert not bad
        assert _all_files(tmp_path) == ["hot"]

    def test_parallel_batches_from_many_threads(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path, threads=4)

        def work(t: int) -> None:
            items = [(f"c/{t}/{i}", f"{t}.{i}".encode()) for i in range(30)]
            s.set_many(items)
            assert s.get_many([k for k, _ in items]) == [v for _, v in items]
            s.delete_many([k for k, _ in items[:10]])
            assert s.get_many([k for k, _ in items[:10]]) == [None] * 10

        _run_in_threads(work, 8)
        assert len(list(s.list_prefix("c"))) == 8 * 20

    def test_batch_error_propagates(self, tmp_path: pathlib.Path) -> None:
        s = LocalStore(tmp_path)
        s.set("f", b"file")
        items = [(f"ok/{i}", b"v") for i in range(20)] + [("f/below", b"x")]
        with pytest.raises(StoreError, match="'f/below'"):
            s.set_many(items)
        assert s.get_many([k for k, _ in items[:20]]) == [b"v"] * 20


# ------------------------------------------------------------------- MemoryStore


class TestMemoryStore:
    def test_set_parts_goes_through_a_subclass_set(self) -> None:
        written: list[tuple[str, bytes]] = []

        class Recording(MemoryStore):
            def set(self, key: str, value: Any) -> None:
                written.append((key, bytes(value)))
                super().set(key, value)

        s = Recording()
        s.set_parts("k", [b"ab", memoryview(b"cd")])
        assert written == [("k", b"abcd")] and s.get("k") == b"abcd"

    def test_shares_the_dict(self) -> None:
        d: dict[str, bytes] = {"pre/filled": bytearray(b"user")}  # type: ignore[dict-item]
        s = MemoryStore(d)
        assert s.data is d
        assert s.get("pre/filled") == b"user"
        assert type(s.get("pre/filled")) is bytes
        s.set("k", memoryview(b"abc"))
        assert type(d["k"]) is bytes
        assert d["k"] == b"abc"
        assert MemoryStore(d) == s
        assert MemoryStore(d, read_only=True) != s
        assert MemoryStore(dict(d)) != s
        with pytest.raises(TypeError, match="dict"):
            MemoryStore([("k", b"v")])  # type: ignore[arg-type]

    def test_pickle(self) -> None:
        s = MemoryStore({"k": b"v"})
        t = pickle.loads(pickle.dumps(s))
        assert t.get("k") == b"v"
        t.set("k2", b"w")  # the unpickled copy has a working lock


# ---------------------------------------------------------------------- ZipStore


def _names(path: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return zf.namelist()


class TestZipStore:
    def test_no_duplicates_after_overwrites(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        s = ZipStore(path, "w")
        s.set("a/zarr.json", b"v1")
        s.set("a/zarr.json", b"v2")
        s.set("a/c/0", b"chunk")
        s.flush()
        s.set("a/zarr.json", b"v3")  # overwrite a member already on disk
        s.set("gone", b"x")
        s.delete("gone")
        s.close()
        names = _names(path)
        assert sorted(names) == ["a/c/0", "a/zarr.json"]
        with zipfile.ZipFile(path) as zf:
            assert zf.read("a/zarr.json") == b"v3"
            assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())

    def test_reads_see_pending_writes(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        with ZipStore(path, "w") as s:
            s.set("k1", b"one")
            s.set("k2", b"two")
        s = ZipStore(path, "a")
        s.set("k3", b"three")
        s.delete("k1")
        assert s.get("k3") == b"three"
        assert s.get("k1") is None
        assert sorted(s.list_prefix("")) == ["k2", "k3"]
        assert _names(path) == ["k1", "k2"]  # nothing on disk yet
        s.close()
        assert sorted(_names(path)) == ["k2", "k3"]

    def test_reopen_append_and_edit(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        with ZipStore(path, "w") as s:
            _fill(s, NESTED)
        with ZipStore(path, "a") as s:
            assert s.get("a/c/0/0") == b"chunk00"
            s.set("a/c/0/0", b"CHANGED")
            s.set("new/key", b"new")
            s.delete_prefix("a/c/1")
            s.delete(".zmetadata")
        with ZipStore(path) as r:
            assert r.read_only
            expected = {k: v for k, v in NESTED.items() if k not in ("a/c/1/0", ".zmetadata")}
            expected.update({"a/c/0/0": b"CHANGED", "new/key": b"new"})
            assert {k: r.get(k) for k in r.list_prefix("")} == expected
        assert sorted(_names(path)) == sorted(expected)

    def test_mode_w_truncates(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        with ZipStore(path, "w") as s:
            s.set("old", b"x")
        s = ZipStore(path, "w")
        assert s.get("old") is None
        s.close()
        assert _names(path) == []

    def test_mode_a_creates(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "new.zip"
        with ZipStore(path, "a") as s:
            assert list(s.list_prefix("")) == []
            s.set("k", b"v")
        assert _names(path) == ["k"]

    def test_open_errors(self, tmp_path: pathlib.Path) -> None:
        with pytest.raises(StoreError, match="does not exist"):
            ZipStore(tmp_path / "missing.zip")
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"not a zip file at all")
        with pytest.raises(StoreError, match=r"bad\.zip"):
            ZipStore(bad, "a")
        with pytest.raises(ValueError, match="mode"):
            ZipStore(tmp_path / "x.zip", "x")  # type: ignore[arg-type]

    def test_eq(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        with ZipStore(path, "w"):
            pass
        a, b, c = ZipStore(path), ZipStore(str(path)), ZipStore(path, "a")
        assert a == b
        assert hash(a) == hash(b)
        assert a != c
        for s in (a, b, c):
            s.close()

    def test_flush_failure_keeps_original(
        self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "x.zip"
        with ZipStore(path, "w") as s:
            s.set("keep", b"original")
            s.set("other", b"also original")
        before = path.read_bytes()
        s = ZipStore(path, "a")
        s.set("keep", b"modified")
        s.set("n1", b"1")
        s.set("n2", b"2")
        real_writestr = zipfile.ZipFile.writestr
        calls = {"n": 0}

        def failing_writestr(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
            calls["n"] += 1
            if calls["n"] % 3 == 2:  # fail midway through writing each new archive
                raise OSError("disk full")
            real_writestr(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
        with pytest.raises(StoreError, match="disk full"):
            s.flush()
        with pytest.raises(StoreError, match="disk full"):
            s.close()
        assert not s.closed  # the failed close can be retried
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == ["x.zip"]  # temp file removed
        assert s.get("keep") == b"modified"  # pending writes survive the failure
        s.close()
        with ZipStore(path) as r:
            assert {k: r.get(k) for k in r.list_prefix("")} == {
                "keep": b"modified",
                "other": b"also original",
                "n1": b"1",
                "n2": b"2",
            }

    def test_finalizer_flushes_dropped_store(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        s = ZipStore(path, "w")
        s.set("k", b"v")
        del s
        gc.collect()
        with zipfile.ZipFile(path) as zf:
            assert zf.read("k") == b"v"

    def test_compressed_and_foreign_members(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        payload = bytes(range(256)) * 40
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("dir/", b"")  # a directory entry (zip -r makes these)
            zf.writestr("dir/deflated", payload, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr("dir/stored", payload, compress_type=zipfile.ZIP_STORED)
            zf.writestr("/abs/name", b"not a key")
        s = ZipStore(path, "a")
        assert sorted(s.list_prefix("")) == ["dir/deflated", "dir/stored"]
        assert list(s.list_dir("")) == ["dir"]
        for key in ("dir/deflated", "dir/stored"):
            assert s.get(key) == payload
            assert s.size(key) == len(payload)
            assert s.get_ranges(key, [(10, 5), (len(payload) - 2, 9)]) == [
                payload[10:15],
                payload[-2:],
            ]
            assert s.get_suffix(key, 7) == payload[-7:]
        s.set("dir/new", b"n")
        s.close()
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert sorted(names) == ["/abs/name", "dir/", "dir/deflated", "dir/new", "dir/stored"]
            assert zf.read("dir/deflated") == payload
            assert zf.read("/abs/name") == b"not a key"

    def test_crc_checked(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        payload = b"A" * 1000
        with ZipStore(path, "w") as s:
            s.set("k", payload)
        raw = bytearray(path.read_bytes())
        raw[raw.index(payload) + 500] ^= 0xFF
        path.write_bytes(bytes(raw))
        with ZipStore(path) as r:
            with pytest.raises(ChecksumError, match="'k'"):
                r.get("k")
            assert r.get_ranges("k", [(0, 3)]) == [b"AAA"]  # ranges cannot be checked
        with ZipStore(path, verify_crc=False) as r:
            assert len(r.get("k") or b"") == 1000

    def test_parallel_reads_and_flush(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / "x.zip"
        data = {f"c/{i}": bytes([i % 256]) * (100 + i) for i in range(200)}
        with ZipStore(path, "w") as s:
            s.set_many(list(data.items()))
        s = ZipStore(path, "a", threads=8)
        stop = threading.Event()

        def reader() -> int:
            rounds = 0
            while not stop.is_set():
                assert s.get_many(list(data)) == list(data.values())
                rounds += 1
            return rounds

        with ThreadPoolExecutor(3) as pool:
            readers = [pool.submit(reader) for _ in range(3)]
            for i in range(5):
                s.set(f"extra/{i}", b"x")
                s.flush()
            stop.set()
        for future in readers:
            assert future.result() > 0
        s.close()
        assert len(_names(path)) == 205

    def test_zarr_python_interop(self, tmp_path: pathlib.Path) -> None:
        zarr = pytest.importorskip("zarr")
        path = tmp_path / "zp.zip"
        zstore = zarr.storage.ZipStore(path, mode="w")
        arr = zarr.create_array(store=zstore, shape=(10,), chunks=(5,), dtype="i4")
        arr[:] = np.arange(10, dtype="i4")
        zstore.close()
        with ZipStore(path, "a") as s:
            assert sorted(s.list_prefix("")) == ["c/0", "c/1", "zarr.json"]
            s.set("c/0", s.get("c/1") or b"")  # chunk 0 now holds chunk 1's values
        assert len(_names(path)) == 3
        zstore = zarr.storage.ZipStore(path, mode="r")
        got = zarr.open_array(store=zstore, mode="r")[:]
        zstore.close()
        np.testing.assert_array_equal(got, np.r_[5:10, 5:10])


# ------------------------------------------------------------------- FsspecStore


def _counting_memory_fs(calls: list[tuple[str, int]], batches: bool = False) -> Any:
    """fsspec's memory filesystem, recording each call: (method, paths it asked for).
    ``batches``: it says it is async, as object stores' filesystems are, so the store
    hands it whole batches (``cat``, ``cat_ranges``) instead of a thread pool's calls."""
    from fsspec.implementations.memory import MemoryFileSystem

    class Counting(MemoryFileSystem):
        cachable = False  # (a fresh instance, not fsspec's shared one)
        async_impl = batches
        depth = 0  # (the batched calls of this sync filesystem call cat_file: not counted)

        def _count(self, name: str, n: int, call: Callable[[], Any]) -> Any:
            if not self.depth:
                calls.append((name, n))
            self.depth += 1
            try:
                return call()
            finally:
                self.depth -= 1

        def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
            return self._count("cat_file", 1, lambda: super(Counting, self).cat_file(path, *args, **kwargs))

        def cat(self, path: Any, *args: Any, **kwargs: Any) -> Any:
            n = len(path) if isinstance(path, list) else 1
            return self._count("cat", n, lambda: super(Counting, self).cat(path, *args, **kwargs))

        def cat_ranges(self, paths: list[str], *args: Any, **kwargs: Any) -> Any:
            return self._count("cat_ranges", len(paths), lambda: super(Counting, self).cat_ranges(paths, *args,
                                                                                                   **kwargs))

    return Counting()


class TestFsspecStore:
    def test_arrays_through_urls(self, tmp_path: pathlib.Path) -> None:
        import gpuzarr

        url = f"memory://{tmp_path}/data.zarr"
        data = np.arange(20 * 13, dtype="f4").reshape(20, 13)
        for fmt, shards in ((3, (8, 10)), (3, None), (2, None)):
            a = gpuzarr.create_array(f"{url}/{fmt}-{shards}", shape=data.shape, chunks=(4, 5), shards=shards,
                                     dtype="f4", zarr_format=fmt)
            assert isinstance(a.store, FsspecStore)
            a[...] = data
            a[3:9, 2:7] = -1
            expected = data.copy()
            expected[3:9, 2:7] = -1
            b = gpuzarr.open_array(f"{url}/{fmt}-{shards}", mode="r")
            np.testing.assert_array_equal(b[...], expected)
            np.testing.assert_array_equal(b[17:2:-3, ::4], expected[17:2:-3, ::4])
        group = gpuzarr.open_group(f"{url}/g", mode="w")
        group.create_array("x", shape=(3,), dtype="i2")[...] = [1, 2, 3]
        gpuzarr.consolidate_metadata(f"{url}/g")
        assert list(gpuzarr.open_group(f"{url}/g", mode="r")["x"][...]) == [1, 2, 3]

    @pytest.mark.parametrize("batches", [False, True], ids=["sync", "async"])
    def test_partial_shard_reads_are_two_requests(self, batches: bool) -> None:
        import gpuzarr

        calls: list[tuple[str, int]] = []
        root = f"/count-{batches}"  # (fsspec's memory filesystems share one dict of objects)
        store = FsspecStore(_counting_memory_fs(calls), root)
        a = gpuzarr.create_array(store, shape=(64, 8), chunks=(4, 8), shards=(64, 8), dtype="i4", compressors=None)
        a[...] = np.arange(64 * 8, dtype="i4").reshape(64, 8)
        store.close()
        reader = FsspecStore(_counting_memory_fs(calls, batches), root, read_only=True)  # (nothing cached)
        b = gpuzarr.open_array(reader, mode="r")
        calls.clear()
        np.testing.assert_array_equal(b[8:24], np.arange(64 * 8, dtype="i4").reshape(64, 8)[8:24])
        # The shard index as one suffix read, then the four adjacent inner chunks
        # coalesced into one range (of one batched call on an async filesystem).
        ranges = ("cat_ranges", 1) if batches else ("cat_file", 1)
        assert calls == [ranges, ranges]
        calls.clear()
        b[40:44]
        assert calls == [ranges]  # (the index is cached for this handle)

    def test_batches_run_concurrently_on_a_synchronous_filesystem(self) -> None:
        """fsspec's batched calls are loops on synchronous filesystems: the store runs a
        batch's reads and writes on its thread pool instead, so their latencies overlap."""
        import time

        from fsspec.implementations.memory import MemoryFileSystem

        state = {"now": 0, "most": 0}
        lock = threading.Lock()

        class Slow(MemoryFileSystem):
            cachable = False

            def _slowly(self, call: Callable[[], Any]) -> Any:
                with lock:
                    state["now"] += 1
                    state["most"] = max(state["most"], state["now"])
                try:
                    time.sleep(0.02)  # (a round trip)
                    return call()
                finally:
                    with lock:
                        state["now"] -= 1

            def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
                return self._slowly(lambda: super(Slow, self).cat_file(path, *args, **kwargs))

            def pipe_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
                return self._slowly(lambda: super(Slow, self).pipe_file(path, *args, **kwargs))

        store = FsspecStore(Slow(), "/slow-batches", threads=8)
        store.set_many([(f"k{i}", bytes([i]) * 10) for i in range(16)])
        assert state["most"] > 1
        state["most"] = 0
        assert store.get_many([f"k{i}" for i in range(16)]) == [bytes([i]) * 10 for i in range(16)]
        assert state["most"] > 1
        state["most"] = 0
        assert store.get_many_ranges([(f"k{i}", [(1, 2)]) for i in range(16)]) == [[bytes([i]) * 2]
                                                                                 for i in range(16)]
        assert state["most"] > 1

    def test_failures_are_errors_not_missing_chunks(self) -> None:
        """A filesystem error other than "not found" must never read as a missing chunk
        (which would read as the fill value)."""
        from fsspec.implementations.memory import MemoryFileSystem

        class Failing(MemoryFileSystem):
            cachable = False

            def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
                raise PermissionError("access denied")

            def cat_ranges(self, paths: list[str], *args: Any, **kwargs: Any) -> Any:
                return [PermissionError("access denied") for _ in paths]

            def cat(self, path: Any, *args: Any, **kwargs: Any) -> Any:
                return {p: PermissionError("access denied") for p in path}

        store = FsspecStore(Failing(), "/failing")
        store.fs.pipe_file("/failing/k", b"v")
        for call in (lambda: store.get("k"), lambda: store.get_ranges("k", [(0, 1)]),
                     lambda: store.get_many(["k"]), lambda: store.get_suffix("k", 1)):
            with pytest.raises(StoreError, match=r"cannot read key 'k'.*PermissionError: access denied"):
                call()

    def test_zarr_python_reads_what_it_writes_through_fsspec(self, tmp_path: pathlib.Path) -> None:
        import fsspec
        import zarr

        import gpuzarr

        store = FsspecStore(fsspec.filesystem("file"), str(tmp_path / "a.zarr"))
        a = gpuzarr.create_array(store, shape=(10, 10), chunks=(5, 5), shards=(10, 10), dtype="u2")
        a[...] = np.arange(100, dtype="u2").reshape(10, 10)
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[...],
                                      np.arange(100, dtype="u2").reshape(10, 10))

    def test_storage_options_reach_the_filesystem(self, tmp_path: pathlib.Path) -> None:
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        import gpuzarr

        class WithOptions(MemoryFileSystem):
            protocol = "gpuzarr-options"
            cachable = False

        fsspec.register_implementation("gpuzarr-options", WithOptions, clobber=True)
        url = f"gpuzarr-options://{tmp_path}/a.zarr"
        a = gpuzarr.create_array(url, shape=(4,), dtype="i1", storage_options={"token": "secret"})
        assert a.store.fs.storage_options == {"token": "secret"}  # type: ignore[attr-defined]
        a[...] = [1, 2, 3, 4]
        b = gpuzarr.open_array(url, storage_options={"token": "other"})
        assert b.store.fs.storage_options == {"token": "other"}  # type: ignore[attr-defined]
        assert b[...].tolist() == [1, 2, 3, 4]
        assert gpuzarr.open(url, mode="r", storage_options={"anon": True})[...].tolist() == [1, 2, 3, 4]
        with pytest.raises(ValueError, match="storage_options apply to URLs"):
            gpuzarr.open_array(str(tmp_path), storage_options={"anon": True})

    def test_keys_with_glob_characters_are_not_patterns(self) -> None:
        """fsspec's ``cat`` expands "[", "*" and "?" as globs (legal in keys): "x[0]/c/0"
        would match "x0/c/0" and read the other array's chunk, or nothing."""
        import gpuzarr

        calls: list[tuple[str, int]] = []
        for batches in (False, True):
            store = FsspecStore(_counting_memory_fs(calls, batches), f"/glob-{batches}")
            group = gpuzarr.open_group(store, mode="w")
            group.create_array("x0", shape=(4,), chunks=(2,), dtype="i4")[...] = [9, 9, 9, 9]
            group.create_array("x[0]", shape=(4,), chunks=(2,), dtype="i4")[...] = [1, 2, 3, 4]
            assert gpuzarr.open_array(store, path="x[0]", mode="r")[...].tolist() == [1, 2, 3, 4]
            assert store.get_many(["x[0]/c/0", "x?/c/0", "x*/c/0"])[1:] == [None, None]

    def test_the_root_of_a_filesystem(self) -> None:
        """At the root of the memory filesystem paths begin with its root marker "/"."""
        from fsspec.implementations.memory import MemoryFileSystem

        import gpuzarr

        class Fresh(MemoryFileSystem):
            cachable = False
            store: dict[str, Any] = {}  # noqa: RUF012 - (its own objects: the root is empty)
            pseudo_dirs = [""]  # noqa: RUF012

        store = FsspecStore(Fresh(), "")
        group = gpuzarr.open_group(store, mode="w")
        group.create_array("a", shape=(4,), chunks=(2,), dtype="i4")[...] = [1, 2, 3, 4]
        assert sorted(store.list_prefix("")) == ["a/c/0", "a/c/1", "a/zarr.json", "zarr.json"]
        assert list(store.list_dir("")) == ["a", "zarr.json"]
        gpuzarr.consolidate_metadata(store)
        assert [name for name, _ in gpuzarr.open_group(store, mode="r").members()] == ["a"]

    def test_keys_are_percent_encoded_in_urls(self) -> None:
        """On HTTP a key's "%", "#", "?" or space would name another object, a fragment
        or a query: keys are quoted into paths, and listed paths unquoted."""
        from fsspec.implementations.memory import MemoryFileSystem

        class UrlLike(MemoryFileSystem):
            protocol = ("http", "https")
            cachable = False

        store = FsspecStore(UrlLike(), "/quoted")
        values = {"pct%41": b"one", "pctA": b"two", "sp ace/x#1": b"three", "q?a=1": b"four"}
        store.set_many(list(values.items()))
        assert {k: store.get(k) for k in values} == values
        assert sorted(store.list_prefix("")) == sorted(values)
        assert "/quoted/pct%2541" in store.fs.store and "/quoted/sp%20ace/x%231" in store.fs.store

    def test_a_missing_bucket_is_not_created(self) -> None:
        """An object store's "not found" on a write is its bucket (s3fs's makedirs would
        create the bucket a typo named): the write fails, naming the key."""
        from fsspec.implementations.memory import MemoryFileSystem

        made: list[str] = []

        class NoBucket(MemoryFileSystem):
            cachable = False
            async_impl = True  # (as object stores' filesystems are)

            def pipe_file(self, path: str, *args: Any, **kwargs: Any) -> None:
                raise FileNotFoundError(f"NoSuchBucket: {path}")

            def makedirs(self, path: str, exist_ok: bool = False) -> None:
                made.append(path)

        store = FsspecStore(NoBucket(), "/tpyo-bucket/data.zarr")
        with pytest.raises(StoreError, match=r"cannot write key 'zarr\.json'.*NoSuchBucket"):
            store.set("zarr.json", b"{}")
        assert made == []

    def test_http_failures_are_not_missing_keys(self) -> None:
        """fsspec's HTTP info turns a 500 or 403 into FileNotFoundError: exists and size
        ask for a byte before calling a key missing."""
        from fsspec.implementations.memory import MemoryFileSystem

        class Failing(MemoryFileSystem):
            protocol = ("http", "https")
            cachable = False

            def info(self, path: str, **kwargs: Any) -> Any:
                raise FileNotFoundError(path)

            def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
                if path.endswith("broken"):
                    raise PermissionError("403 Forbidden")
                return super().cat_file(path, *args, **kwargs)

        store = FsspecStore(Failing(), "/http-failures")
        with pytest.raises(StoreError, match=r"cannot stat key 'broken'.*403 Forbidden"):
            store.exists("broken")
        assert not store.exists("absent")

    def test_a_server_ignoring_ranges_is_an_error_not_other_bytes(self) -> None:
        from fsspec.implementations.memory import MemoryFileSystem

        class NoRanges(MemoryFileSystem):
            cachable = False

            def cat_file(self, path: str, start: Any = None, end: Any = None, **kwargs: Any) -> Any:
                return super().cat_file(path)  # (the whole body, whatever was asked)

        store = FsspecStore(NoRanges(), "/no-ranges")
        store.set("k", bytes(range(100)))
        with pytest.raises(StoreError, match="100 bytes came back for a range of 4"):
            store.get_ranges("k", [(8, 4)])
        with pytest.raises(StoreError, match="does not honour range requests"):
            store.get_suffix("k", 10)

    def test_a_resized_sharded_array_forgets_the_indexes_of_its_deleted_shards(self) -> None:
        """No version tokens: the handle's cached index of a deleted shard must not serve
        the shard written there later (it raised "deleted while being read")."""
        import gpuzarr

        store = FsspecStore.from_url("memory://resize-index/a.zarr")
        a = gpuzarr.create_array(store, shape=(8,), chunks=(2,), shards=(4,), dtype="i4", fill_value=-1)
        a[...] = np.arange(8)
        assert a[4:].tolist() == [4, 5, 6, 7]  # (shard 1's index cached)
        a.resize((4,))
        a.resize((8,))
        assert a[...].tolist() == [0, 1, 2, 3, -1, -1, -1, -1]
        a[6:] = [60, 70]
        assert a[4:].tolist() == [-1, -1, 60, 70]

    def test_opening_an_array_again_drops_its_cached_shard_indexes(self) -> None:
        """Without version tokens, another handle's rewrite of a shard is seen once the
        array is opened again (here through the same group handle): its cached index
        pointed inner chunk 3 at the bytes of the new shard's chunk 0."""
        import gpuzarr

        writer = gpuzarr.open_group("memory://reopen-index", mode="w")
        a = writer.create_array("a", shape=(8,), chunks=(2,), shards=(8,), dtype="i4", compressors=None)
        a[6:] = [7, 7]
        reader = gpuzarr.open_group("memory://reopen-index", mode="r")
        assert reader["a"][...].tolist() == [0, 0, 0, 0, 0, 0, 7, 7]
        del writer["a"]
        again = writer.create_array("a", shape=(8,), chunks=(2,), shards=(8,), dtype="i4", compressors=None)
        again[:2] = [7, 7]
        assert reader["a"][...].tolist() == [7, 7, 0, 0, 0, 0, 0, 0]

    def test_make_store(self, tmp_path: pathlib.Path) -> None:
        import fsspec

        s = make_store(f"memory://{tmp_path}/m")
        assert isinstance(s, FsspecStore) and s.read_only and s.root == f"{tmp_path}/m"
        assert not make_store(f"memory://{tmp_path}/m", "a").read_only
        mapped = make_store(fsspec.get_mapper(f"memory://{tmp_path}/n"), "w")
        assert isinstance(mapped, FsspecStore) and mapped.root == f"{tmp_path}/n"
        for local_url in (f"file://{tmp_path}/d", f"local://{tmp_path}/d", fsspec.get_mapper(f"{tmp_path}/d")):
            local = make_store(local_url, "a")  # local files: the local store (atomic writes)
            assert isinstance(local, LocalStore) and pathlib.Path(local.root) == tmp_path / "d", local_url
        with pytest.raises(ValueError, match="threads must be an integer"):
            FsspecStore(fsspec.filesystem("memory"), "x", threads=True)
        with pytest.raises(TypeError, match="needs an fsspec filesystem"):
            FsspecStore(object(), "x")


# -------------------------------------------------------------------- make_store


class TestMakeStore:
    def test_store_passthrough(self) -> None:
        s = MemoryStore()
        assert make_store(s) is s
        assert make_store(s, "w") is s

    def test_paths(self, tmp_path: pathlib.Path) -> None:
        ro = make_store(str(tmp_path / "d"))
        assert isinstance(ro, LocalStore)
        assert ro.read_only
        for mode in ("r+", "a", "w", "w-"):
            s = make_store(tmp_path / "d", mode)
            assert isinstance(s, LocalStore)
            assert not s.read_only
        z = make_store(tmp_path / "x.zip", "w")
        assert isinstance(z, ZipStore)
        assert z.mode == "w"
        z.set("k", b"v")
        z.close()
        for mode, zmode in (("r", "r"), ("r+", "a"), ("a", "a"), ("w-", "a")):
            z = make_store(str(tmp_path / "x.zip"), mode)
            assert isinstance(z, ZipStore)
            assert z.mode == zmode, mode
            assert z.get("k") == b"v"
            z.close()
        (tmp_path / "dir.zip").mkdir()  # a directory named *.zip is a directory store
        assert isinstance(make_store(tmp_path / "dir.zip", "a"), LocalStore)
        z = make_store(str(tmp_path / "x.zip") + "/")  # (a shell's completion) names the zip file
        assert isinstance(z, ZipStore) and z.get("k") == b"v"
        z.close()

    def test_dict_and_none(self) -> None:
        d: dict[str, bytes] = {"k": b"v"}
        s = make_store(d, "a")
        assert isinstance(s, MemoryStore)
        assert s.data is d
        s.set("k2", b"v2")
        assert d["k2"] == b"v2"
        assert make_store(d).read_only
        fresh = make_store(None, "w")
        assert isinstance(fresh, MemoryStore)
        assert not fresh.read_only
        assert list(fresh.list_prefix("")) == []

    def test_errors(self) -> None:
        with pytest.raises(TypeError, match="int"):
            make_store(42)
        with pytest.raises(TypeError, match="list"):
            make_store(["a"])
        with pytest.raises(TypeError, match="bytes"):
            make_store(b"/some/path")
        with pytest.raises(ValueError, match="mode"):
            make_store(None, "rw")


# --------------------------------------------------------------------------------------
# reads into a ReadArena


def test_reads_into_an_arena_match_plain_reads(store: Store) -> None:
    """Every store answers reads given an arena exactly as without one (local files
    fill the arena; the others return bytes)."""
    from gpuzarr.stores.base import ReadArena

    items = {"a/c/0": bytes(range(256)) * 40, "a/c/1": b"", "a/c/2": b"xyz"}
    _fill(store, items)
    arena = ReadArena(1 << 20)
    for key, value in items.items():
        assert bytes(store.get(key, arena=arena)) == value  # type: ignore[arg-type]
    assert store.get("a/c/missing", arena=arena) is None
    ranges = [(0, 10), (5000, 1000), (10_230, 50), (20_000, 5)]  # overlapping the end, past it
    got = store.get_ranges("a/c/0", ranges, arena=arena)
    assert got is not None
    assert [bytes(g) for g in got] == [bytes(r) for r in store.get_ranges("a/c/0", ranges)]  # type: ignore[union-attr]
    assert store.get_ranges("a/c/missing", [(0, 1)], arena=arena) is None
    assert store.fills_arenas == (isinstance(store, LocalStore) and hasattr(os, "preadv"))


def test_get_each_reads_like_get(store: Store) -> None:
    """``get_each`` answers as ``get`` does, object by object, with and without an arena
    (missing objects and directories are None, empty objects empty)."""
    from gpuzarr.stores.base import ReadArena

    items = {"a/c/0": bytes(range(256)) * 40, "a/c/1": b"", "a/c/2": b"xyz", "a/c/d/3": b"in a folder"}
    _fill(store, items)
    keys = ["a/c/2", "a/c/missing", "a/c/0", "a/c/1", "a/c/d", "a/c/d/3", "a/c/2"]
    expected = [items.get(k) for k in keys]
    assert [None if v is None else bytes(v) for v in store.get_each(keys)] == expected
    arena = ReadArena(1 << 20)
    got = store.get_each(keys, arena=arena)
    assert [None if v is None else bytes(v) for v in got] == expected
    if store.fills_arenas:  # local files land in the arena, not in fresh bytes
        assert all(isinstance(v, memoryview) for v in got if v is not None)
    assert store.get_each([]) == []
    with pytest.raises(StoreError, match="invalid store key"):
        store.get_each(["a/c/0", "../escape"])


def test_get_each_goes_through_a_subclass_get() -> None:
    """A store overriding the public ``get`` sees every read ``get_each`` makes."""
    from gpuzarr.stores.base import ReadArena

    seen: list[str] = []

    class Recording(MemoryStore):
        def get(self, key: str) -> bytes | None:  # type: ignore[override]  # (written before arenas)
            seen.append(key)
            return super().get(key)

    store = Recording()
    store.set("k", b"v")
    assert store.get_each(["k", "missing"], arena=ReadArena(64)) == [b"v", None]
    assert seen == ["k", "missing"]


def test_set_each_goes_through_a_subclass_set() -> None:
    """A store overriding the public ``set`` sees every write ``set_each`` makes."""
    seen: list[str] = []

    class Recording(MemoryStore):
        def set(self, key: str, value: Any) -> None:
            seen.append(key)
            super().set(key, value)

    store = Recording()
    store.set_each([("a", b"1"), ("b", b"2")])
    assert seen == ["a", "b"]
    assert store.get("b") == b"2"


def test_get_each_on_a_closed_store_raises(store: Store) -> None:
    store.set("k", b"v")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_each([])


def test_local_get_each_goes_through_a_subclass_read_hook(tmp_path: pathlib.Path) -> None:
    """A LocalStore subclass's own ``_get_into`` (arena reads) or ``get`` (taking the
    arena keyword) sees every read ``get_each`` makes."""
    from gpuzarr.stores.base import ReadArena

    seen: list[str] = []

    class OwnArenaReads(LocalStore):
        def _get_into(self, key: str, arena: ReadArena) -> bytes | memoryview | None:
            seen.append(key)
            return super()._get_into(key, arena)

    class OwnGet(LocalStore):
        def get(self, key: str, **kw: Any) -> bytes | memoryview | None:
            seen.append(key)
            return super().get(key, **kw)

    for cls in (OwnArenaReads, OwnGet):
        store = cls(tmp_path / cls.__name__)
        store.set("k", b"v")
        seen.clear()
        got = store.get_each(["k", "gone"], arena=ReadArena(64))
        assert [None if v is None else bytes(v) for v in got] == [b"v", None]
        assert seen == ["k", "gone"]


@pytest.mark.skipif(not hasattr(os, "preadv"), reason="LocalStore reads into arenas with preadv")
def test_local_get_each_names_the_key_that_fails(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error reading one file of a batch is a StoreError naming its key, and
    no file is left open. (The Python loop: the native one is covered in
    test_native_reads.)"""
    import gpuzarr.stores.local as local_module
    from gpuzarr import _native
    from gpuzarr.stores.base import ReadArena

    monkeypatch.setattr(_native, "file_reads", None)

    store = LocalStore(tmp_path)
    for k in ("c/0", "c/1"):
        store.set(k, b"data")
    opened: list[int] = []
    real_open, real_close = os.open, os.close
    closed: list[int] = []

    def tracking_open(path: str, flags: int, *args: object) -> int:
        fd = real_open(path, flags, *args)
        opened.append(fd)
        return fd

    def tracking_close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    real_preadv = os.preadv

    def failing_preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        if len(opened) == 2:  # reading the second file
            raise OSError(5, "Input/output error")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(local_module.os, "open", tracking_open)
    monkeypatch.setattr(local_module.os, "close", tracking_close)
    monkeypatch.setattr(local_module.os, "preadv", failing_preadv)
    with pytest.raises(StoreError, match="'c/1'"):
        store.get_each(["c/0", "c/1"], arena=ReadArena(64))
    assert sorted(opened) == sorted(closed)


def test_read_arena_reuses_its_memory_and_bounds_what_it_keeps() -> None:
    from gpuzarr.stores.base import ARENA_ALIGN, ReadArena

    def address(view: memoryview) -> int:
        return np.frombuffer(view, dtype=np.uint8).ctypes.data

    arena = ReadArena(keep_bytes=4096)
    first = arena.take(300)
    second = arena.take(200, source_offset=1000)  # past the first block: extra memory
    first[:] = b"a" * 300
    second[:] = b"b" * 200
    assert bytes(first) == b"a" * 300 and bytes(second) == b"b" * 200  # disjoint views
    # Aligned like the file offset they are read from (the kernel copies faster).
    assert address(first) % ARENA_ALIGN == 0 and address(second) % ARENA_ALIGN == 1000 % ARENA_ALIGN
    arena.reset()
    kept = arena.nbytes
    assert 500 <= kept <= 4096  # one block for the whole group next time
    views = [arena.take(300), arena.take(100, source_offset=7), arena.take(50, source_offset=64)]
    for view in views:
        view[:] = b"x" * len(view)
    addresses = [address(v) for v in views]
    assert [a % ARENA_ALIGN for a in addresses] == [0, 7, 0]
    assert all(a + len(v) <= b for a, v, b in zip(addresses, views, addresses[1:], strict=False))  # no overlap
    arena.reset()
    assert arena.nbytes == kept
    assert [address(arena.take(len(v), off)) for v, off in zip(views, (0, 7, 64), strict=True)] == addresses  # reused
    arena.reset()
    arena.take(3000)  # a first take larger than the block grows it, up to keep_bytes
    grown = arena.nbytes
    assert 3000 <= grown <= 4096
    arena.take(50_000)
    arena.reset()
    assert arena.nbytes == grown  # what overflowed keep_bytes is not kept


def test_local_store_arena_reads_short_files_and_directories(tmp_path: pathlib.Path) -> None:
    from gpuzarr.stores.base import ReadArena

    store = LocalStore(tmp_path)
    store.set("k", b"0123456789")
    (tmp_path / "dir").mkdir()
    arena = ReadArena(1 << 10)
    assert store.get("dir", arena=arena) is None
    assert [bytes(v) for v in store.get_ranges("k", [(8, 100), (0, 0)], arena=arena)] == [b"89", b""]  # type: ignore[union-attr]


def test_open_reader_reads_like_the_store(store: Store) -> None:
    value = bytes(range(256)) * 8
    store.set("a/obj", value)
    missing = store.open_reader("a/missing")  # stores that cannot tell cheaply find out on reading
    assert missing is None or missing.get_ranges([(0, 1)]) is None
    with store.open_reader("a/obj") as reader:  # type: ignore[union-attr]
        assert reader.token == store.object_token("a/obj")
        ranges = [(0, 10), (100, 50), (2040, 100), (5000, 3)]
        assert [bytes(r) for r in reader.get_ranges(ranges)] == [bytes(r) for r in store.get_ranges("a/obj", ranges)]  # type: ignore[union-attr]
        assert bytes(reader.get_suffix(20)) == value[-20:]
        assert bytes(reader.get_suffix(10_000)) == value
        with pytest.raises(StoreError):
            reader.get_ranges([(-1, 2)])


def test_local_reader_sees_the_version_it_opened(tmp_path: pathlib.Path) -> None:
    """A replace renames a new file over the key; an open reader keeps reading the old
    one (a shard's index and inner chunks come from one version)."""
    from gpuzarr.stores.base import ReadArena

    store = LocalStore(tmp_path)
    store.set("k", b"old contents")
    reader = store.open_reader("k")
    assert reader is not None
    store.set("k", b"NEW CONTENTS, longer")
    assert reader.token != store.object_token("k")
    assert [bytes(v) for v in reader.get_ranges([(0, 3), (4, 100)], arena=ReadArena(64))] == [b"old", b"contents"]  # type: ignore[union-attr]
    assert reader.get_suffix(8) == b"contents"
    reader.close()
    reader.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        reader.get_suffix(1)
    assert store.open_reader("missing") is None
    (tmp_path / "dir").mkdir()
    assert store.open_reader("dir") is None


@pytest.mark.parametrize("flushed", [False, True], ids=["unflushed", "flushed"])
def test_readers_see_the_version_they_opened(store: Store, flushed: bool) -> None:
    """On every store an open reader keeps reading the version it opened while the key
    is replaced or deleted (a shard's index and inner chunks then come from one
    version), and the token it carries is that version's."""
    if isinstance(store, FsspecStore):
        pytest.skip("an object store read through fsspec has no version to pin: FsspecStore documents it")
    store.set("k", b"old contents")
    if flushed:
        store.flush()  # (a zip archive's member rather than an unflushed write)
    old_token = store.object_token("k")
    reader = store.open_reader("k")
    assert reader is not None
    with reader:
        assert reader.token == old_token
        store.set("k", b"NEW CONTENTS, longer")
        assert store.object_token("k") != old_token  # a cache keyed by the old token misses
        assert [bytes(v) for v in reader.get_ranges([(0, 3), (4, 100)])] == [b"old", b"contents"]  # type: ignore[union-attr]
        assert bytes(reader.get_suffix(8)) == b"contents"
        store.delete("k")
        assert bytes(reader.get_suffix(3)) == b"nts"
    with pytest.raises(StoreError, match="closed"):
        reader.get_suffix(1)


def test_zip_readers_keep_their_archive_through_flushes(tmp_path: pathlib.Path) -> None:
    """A flush never waits for open readers: it installs the new archive at once, and a
    reader opened before keeps reading the member as it was (the replaced file stays
    open until the last such reader closes). The thread holding a reader may itself
    write, flush and close."""
    store = ZipStore(tmp_path / "z.zip", "w")
    store.set("a", b"A1")
    store.set("b", b"B1")
    store.flush()
    reader = store.open_reader("a")
    assert reader is not None
    old_archive = reader._archive  # type: ignore[attr-defined]
    store.set("a", b"A2")
    store.flush()  # (on this very thread, with the reader open)
    assert store.get("a") == b"A2"
    assert bytes(reader.get_suffix(2)) == b"A1"
    with store.open_reader("b") as other:  # type: ignore[union-attr]
        assert bytes(other.get_suffix(2)) == b"B1"
    assert not old_archive.file.closed  # (still read by `reader`)
    reader.close()
    assert old_archive.file.closed
    with zipfile.ZipFile(tmp_path / "z.zip") as zf:
        assert zf.read("a") == b"A2"
    forgotten = store.open_reader("a")  # a reader never closed is released when collected
    assert forgotten is not None
    store.close()  # (does not wait for it)
    archive = forgotten._archive  # type: ignore[attr-defined]
    assert not archive.file.closed
    del forgotten
    gc.collect()
    assert archive.file.closed


def test_zip_reader_release_inside_the_store_lock_does_not_deadlock(tmp_path: pathlib.Path) -> None:
    """A collection may run a forgotten reader's finalizer on a thread that holds the
    store's lock (inside any allocation there); and a store collected together with
    its reader may be closed first. Neither hangs."""
    store = ZipStore(tmp_path / "z.zip", "w")
    store.set("a", b"A1")
    store.flush()
    reader = store.open_reader("a")
    assert reader is not None
    done = threading.Event()

    def release_under_the_lock() -> None:
        with store._state.cond:  # type: ignore[attr-defined]
            reader.close()
        done.set()

    threading.Thread(target=release_under_the_lock, daemon=True).start()
    assert done.wait(10)

    class Holder:
        pass

    holder = Holder()
    holder.self = holder  # type: ignore[attr-defined]
    holder.store = ZipStore(tmp_path / "z.zip", "r")  # type: ignore[attr-defined]
    holder.reader = holder.store.open_reader("a")  # type: ignore[attr-defined]
    del holder
    collected = threading.Event()

    def collect() -> None:
        gc.collect()
        collected.set()

    threading.Thread(target=collect, daemon=True).start()
    assert collected.wait(10)
    store.close()


@pytest.mark.parametrize("kind", [*(k for k in KINDS if k != "fsspec"), "zip-flushed"])
def test_sharded_reads_see_one_version_of_a_shard(
    tmp_path: pathlib.Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard replaced between the read of its index and of its inner chunks does not
    mix the two versions (the index of one applied to the bytes of the other); on a
    zip store both for an unflushed shard and for one in the archive. (Through the
    stores' readers: local files read natively are covered in test_native_reads.)"""
    import gpuzarr
    from gpuzarr import _native

    monkeypatch.setattr(_native, "shard_reads", None)
    store = _opener(kind.removesuffix("-flushed"), tmp_path)()
    a = gpuzarr.create_array(
        store, shape=(10, 10), chunks=(5, 5), shards=(10, 10), dtype="int32", fill_value=0, compressors=None
    )

    def quads(values: list[int]) -> np.ndarray:
        x = np.empty((10, 10), np.int32)
        x[:5, :5], x[:5, 5:], x[5:, :5], x[5:, 5:] = values
        return x

    a[...] = quads([0, 5, 6, 7])  # inner chunk (0, 0) all fill: not stored
    version_a = store.get("c/0/0")
    a[...] = quads([1, 2, 3, 4])
    version_b = store.get("c/0/0")
    store.set("c/0/0", version_a)  # (through the store: a's cached index is no longer valid)
    if kind.endswith("-flushed"):
        store.flush()
    with store.open_reader("c/0/0") as probe:  # type: ignore[union-attr]
        reader_type = type(probe)
    replaced = []
    read_suffix = reader_type.get_suffix

    def get_suffix(self: Any, length: int) -> Any:
        out = read_suffix(self, length)
        if not replaced:
            replaced.append(True)
            store.set("c/0/0", version_b)  # what a writer in another thread may do
        return out

    monkeypatch.setattr(reader_type, "get_suffix", get_suffix)
    got = gpuzarr.open_array(store)[...]
    monkeypatch.undo()
    assert replaced
    np.testing.assert_array_equal(got, quads([0, 5, 6, 7]))
    np.testing.assert_array_equal(gpuzarr.open_array(store)[...], quads([1, 2, 3, 4]))
    store.close()


def test_get_into_reads_whole_objects_into_a_buffer(store: Store) -> None:
    store.set("k", b"0123456789")
    buffer = bytearray(b"_" * 12)
    assert store.get_into("k", memoryview(buffer)) == 10
    assert bytes(buffer) == b"0123456789__"
    short = bytearray(4)
    assert store.get_into("k", memoryview(short)) == 10  # the size says it did not fit
    assert bytes(short) == b"0123"
    assert store.get_into("missing", memoryview(short)) is None


def test_memory_values_edited_in_place_are_not_cached_by_version() -> None:
    """A bytearray put into a memory store's dict by the user may change in place: its
    version token equals no other, so a shard index read from it is not reused."""
    import gpuzarr

    data: dict[str, Any] = {}
    a = gpuzarr.create_array(
        MemoryStore(data), shape=(8,), chunks=(4,), shards=(8,), dtype="i4", compressors=None, fill_value=0
    )
    a[:4] = 2
    version_a = data["c/0"]
    a[:] = 0
    a[4:] = 3
    version_b = data["c/0"]
    assert len(version_a) == len(version_b)
    edited = bytearray(version_a)
    data["c/0"] = edited
    assert gpuzarr.open_array(MemoryStore(data))[...].tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    edited[:] = version_b
    assert gpuzarr.open_array(MemoryStore(data))[...].tolist() == [0, 0, 0, 0, 3, 3, 3, 3]
    store = MemoryStore(data)
    assert store.object_token("c/0") != store.object_token("c/0")
    data["c/0"] = bytes(version_b)
    assert store.object_token("c/0") == store.object_token("c/0")


def test_object_writer_builds_an_object_in_pieces(store: Store) -> None:
    """append returns where each piece starts; write_at overwrites bytes appended; the
    object appears under its key only at commit, all of it at once."""
    store.set("a/k", b"old")
    arena_like = bytearray(b"reused")  # (memory the caller reuses: the writer must not keep it)
    writer = store.open_writer("a/k")
    assert writer.append([b"\0\0\0\0"]) == 0  # (room for a header written last)
    assert writer.append([arena_like, memoryview(b"-tail")]) == 4
    arena_like[:] = b"XXXXXX"
    writer.write_at(0, b"HEAD")
    assert writer.nbytes == 15
    assert store.get("a/k") == b"old"  # (nothing visible before the commit)
    writer.commit()
    assert store.get("a/k") == b"HEADreused-tail"
    with pytest.raises(StoreError, match="committed"):
        writer.append([b"more"])
    writer.abort()  # (a no-op once committed)
    assert store.get("a/k") == b"HEADreused-tail"


def test_object_writer_abort_keeps_the_old_object(store: Store) -> None:
    store.set("k", b"old")
    with pytest.raises(RuntimeError, match="encoder"), store.open_writer("k") as writer:
        writer.append([b"new bytes"])
        raise RuntimeError("encoder failed")
    assert store.get("k") == b"old"
    with store.open_writer("fresh") as writer:  # (a block left normally commits)
        writer.append([b"x"])
    assert store.get("fresh") == b"x"
    with store.open_writer("never") as writer:
        writer.abort()
    assert store.get("never") is None


def test_object_writer_refuses_writes_past_what_was_appended(store: Store) -> None:
    writer = store.open_writer("k")
    writer.append([b"abc"])
    with pytest.raises(StoreError, match=r"'k'.*offset 2"):
        writer.write_at(2, b"xy")
    writer.abort()
    assert store.get("k") is None


def test_object_writer_on_a_read_only_store_raises(opener: Opener) -> None:
    s = opener()
    s.set("k", b"v")
    s = _reopen_read_only(s, opener)
    with pytest.raises(ReadOnlyError):
        s.open_writer("k")
    s.close()


def test_local_object_writer_leaves_no_temp_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces go to a temp file as they come; an abort or a failed write removes it,
    naming the key."""
    s = LocalStore(tmp_path)
    s.set("c/0", b"old")
    writer = s.open_writer("c/0")
    writer.append([b"new"])
    assert len(list(tmp_path.rglob("*.tmp"))) == 1 and s.get("c/0") == b"old"
    writer.abort()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["0", "c"]

    def failing_writev(fd: int, buffers: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module.os, "writev", failing_writev)
    writer = s.open_writer("c/0")
    with pytest.raises(StoreError, match=r"'c/0'.*No space left"):
        writer.append([b"a", b"b"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["0", "c"] and s.get("c/0") == b"old"
    with pytest.raises(StoreError, match="aborted"):
        writer.commit()
