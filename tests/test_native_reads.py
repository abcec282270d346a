"""gpuzarr's native batched reads of local files: inner chunks of shards
(``gpuzarr_open_shards`` / ``gpuzarr_read_shards``, or with ``gpuzarr_read_shards_call_shared``
reading and decoding them together), whole chunk files (``gpuzarr_open_files`` /
``gpuzarr_read_files``), and whole chunk files read and decoded together
(``gpuzarr_read_call_shared``): the same bytes, the same errors as the Python path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr import _native
from gpuzarr.errors import ChecksumError, CorruptChunkError, StoreError
from gpuzarr.pipeline import layout as layout_module
from gpuzarr.pipeline import shard_index_cache

pytestmark = pytest.mark.skipif(_native.shard_reads is None, reason="gpuzarr's native helper is not built")

BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}
CRC = {"name": "crc32c"}
GZIP = {"name": "gzip", "configuration": {"level": 1}}
ZSTD = {"name": "zstd", "configuration": {"level": 1}}


#: The inner chunks' compressor of :func:`_create` (set for each test by ``inner_codec``).
_inner = {"codec": ZSTD}


@pytest.fixture(autouse=True, params=["zstd", "gzip"])
def inner_codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with zstd inner chunks (read and decoded together, the threads
    sharing them: ``gpuzarr_read_shards_call_shared``) and with gzip ones (read first,
    all ranges at once, then decoded)."""
    monkeypatch.setitem(_inner, "codec", ZSTD if request.param == "zstd" else GZIP)
    return str(request.param)


def _create(path: Path, data: np.ndarray, *, index_location: str = "end", crc: bool = True, **kw: Any) -> Any:
    """A sharded array of ``data``: inner chunks (2, 3) in shards (4, 6), compressed as
    ``inner_codec`` says."""
    a = gpuzarr.create_array(
        path,
        shape=data.shape,
        dtype=data.dtype,
        chunks=(4, 6),
        serializer={
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [2, 3],
                "codecs": [BYTES_LE, _inner["codec"]],
                "index_codecs": [BYTES_LE, CRC] if crc else [BYTES_LE],
                "index_location": index_location,
            },
        },
        compressors=None,
        **kw,
    )
    a[...] = data
    return a


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the native reads (one entry per batch: its number of shards), and checks
    that zstd inner chunks are read and decoded together and gzip ones fetched first."""
    seen: list[int] = []
    original = layout_module.ShardedLayout._opened_natively
    read_and_decode = layout_module.ShardedLayout.read_decode_natively
    decoded_together: list[bool] = []

    def counting(self: Any, projections: Any, keys: list[str], *rest: Any) -> Any:
        seen.append(len(keys))
        return original(self, projections, keys, *rest)

    def recording(self: Any, *args: Any) -> Any:
        decoded_together.append(True)
        return read_and_decode(self, *args)

    monkeypatch.setattr(layout_module.ShardedLayout, "_opened_natively", counting)
    monkeypatch.setattr(layout_module.ShardedLayout, "read_decode_natively", recording)
    yield seen
    if seen and _native.read_shards_call_shared is not None:
        assert bool(decoded_together) == (_inner["codec"] is ZSTD)


def _python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "shard_reads", None)


@pytest.mark.parametrize("index_location", ["start", "end"])
@pytest.mark.parametrize("crc", [True, False])
def test_reads_match_the_python_path(
    tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch, index_location: str, crc: bool
) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(18, 25)).astype("int32")  # edge shards on both axes
    data[8:12, :] = 0  # a row of shards holding only the fill value: not stored
    data[0:2, 0:3] = 0  # an inner chunk at the empty entry
    a = _create(tmp_path / "a", data, index_location=index_location, crc=crc)
    selections = [(slice(None), slice(None)), (slice(1, 17), slice(2, 23)), (slice(5, 6), slice(7, 8))]
    windows = [(slice(r, r + 2), slice(c, c + 3)) for r, c in [(0, 0), (2, 3), (14, 21), (16, 24), (8, 6)]]
    got = [a[sel] for sel in selections] + a.read_batch(windows)
    assert calls, "the native reads did not run"
    _python_path(monkeypatch)
    calls.clear()
    want = [a[sel] for sel in selections] + a.read_batch(windows)
    assert not calls
    for g, w, sel in zip(got, want, selections + windows, strict=True):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(g, data[sel])


def test_many_shards_are_read_in_slices(tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout_module, "MAX_OPEN_SHARDS", 5)
    data = np.arange(40 * 30, dtype="float32").reshape(40, 30)
    a = _create(tmp_path / "a", data)
    windows = [(slice(r, r + 2), slice(c, c + 3)) for r in range(0, 40, 4) for c in range(0, 30, 6)]
    for got, sel in zip(a.read_batch(windows), windows, strict=True):
        np.testing.assert_array_equal(got, data[sel])
    assert calls and max(calls) <= 5 and sum(calls) == 50


@pytest.mark.parametrize("threads", [1, 2])
def test_inner_chunks_the_read_buffer_cannot_hold_are_redone(
    tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """An inner chunk larger than a thread's read buffer is left to the general path,
    which reads it in full: the same values."""
    rng = np.random.default_rng(5)
    data = rng.integers(1, 1000, size=(8, 12)).astype("int32")
    a = _create(tmp_path / "a", data)
    monkeypatch.setattr(layout_module, "_NATIVE_READ_SLACK", 0)
    monkeypatch.setattr(layout_module, "_NATIVE_READ_EXTRA", 8)  # (smaller than any stored chunk)
    windows = [(slice(r, r + 2), slice(c, c + 3)) for r in range(0, 8, 2) for c in range(0, 12, 3)]
    with gpuzarr.config.set(threads=threads):
        for got, sel in zip(a.read_batch(windows), windows, strict=True):
            np.testing.assert_array_equal(got, data[sel])
        np.testing.assert_array_equal(a[...], data)
    assert calls


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 20),
    cols=st.integers(1, 20),
    starts=st.tuples(st.integers(0, 19), st.integers(0, 19)),
    sizes=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    gap=st.sampled_from([0, 16, 2**20]),
)
def test_any_selection_reads_as_numpy(
    tmp_path_factory: pytest.TempPathFactory, rows: int, cols: int, starts: tuple[int, int], sizes: tuple[int, int],
    gap: int,
) -> None:  # fmt: skip
    data = (np.arange(rows * cols, dtype="int16").reshape(rows, cols) % 7).astype("int16")  # zeros are fill
    a = _create(tmp_path_factory.mktemp("p") / "a", data)
    sel = tuple(slice(s, s + n) for s, n in zip(starts, sizes, strict=True))
    with gpuzarr.config.set(coalesce_gap_bytes=gap):
        np.testing.assert_array_equal(a[sel], data[sel])


# -- errors: those of the Python path ---------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.arange(8 * 12, dtype="int32").reshape(8, 12) + 1
    _create(tmp_path / "s", data)
    shard_index_cache.clear()
    return tmp_path / "s", data


def _open(path: Path) -> Any:
    return gpuzarr.open_array(path, mode="r")


def test_missing_shard_reads_as_fill(stored: tuple[Path, np.ndarray], calls: list[int]) -> None:
    path, data = stored
    (path / "c" / "1" / "1").unlink()
    expected = data.copy()
    expected[4:8, 6:12] = 0
    np.testing.assert_array_equal(_open(path)[:], expected)
    assert calls


def test_directory_in_place_of_a_shard_reads_as_fill(stored: tuple[Path, np.ndarray], calls: list[int]) -> None:
    path, _ = stored
    shard = path / "c" / "0" / "1"
    shard.unlink()
    shard.mkdir()
    np.testing.assert_array_equal(_open(path)[0:4, 6:12], np.zeros((4, 6), "int32"))
    assert calls


def test_unreadable_shard_is_a_store_error(stored: tuple[Path, np.ndarray], calls: list[int]) -> None:
    path, _ = stored
    shard = path / "c" / "1" / "0"
    shard.unlink()
    os.symlink(shard.name, shard)  # a link to itself: opening it fails with ELOOP, not "missing"
    with pytest.raises(StoreError, match="c/1/0"):
        _open(path)[4:6, 0:3]
    assert calls


def test_checksum_mismatch(stored: tuple[Path, np.ndarray], calls: list[int]) -> None:
    path, _ = stored
    shard = path / "c" / "0" / "1"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match=r"c/0/1.*crc32c"):
        _open(path)[0:2, 6:9]
    assert calls


def test_truncated_shard(stored: tuple[Path, np.ndarray], calls: list[int]) -> None:
    path, _ = stored
    shard = path / "c" / "1" / "1"
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(CorruptChunkError, match=r"c/1/1.*truncated, 20 bytes"):
        _open(path)[6:8, 9:12]
    assert calls


def _forge_entry(shard: Path, inner: int, offset: int, nbytes: int) -> None:
    """Rewrite one entry of an index without checksum (4 entries of 16 bytes at the end)."""
    raw = shard.read_bytes()
    index = np.frombuffer(raw[-4 * 16 :], "<u8").copy()
    index[2 * inner : 2 * inner + 2] = offset, nbytes
    shard.write_bytes(raw[: -4 * 16] + index.tobytes())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ((10**6, 8), r"shard 'c/1/0' inner chunk \(0, 1\) at bytes \[1000000, 1000008\) lies past the end"),
        ((2**64 - 1, 8), r"shard 'c/1/0': index entry of inner chunk \(0, 1\) is half empty"),
        ((2**63 - 4, 8), r"shard 'c/1/0': index entry of inner chunk \(0, 1\) .* past any possible end"),
    ],
)
def test_bad_index_entry(tmp_path: Path, calls: list[int], entry: tuple[int, int], message: str) -> None:
    data = np.arange(8 * 12, dtype="int32").reshape(8, 12) + 1
    _create(tmp_path / "s", data, crc=False)
    _forge_entry(tmp_path / "s" / "c" / "1" / "0", 1, *entry)
    with pytest.raises(CorruptChunkError, match=message):
        _open(tmp_path / "s")[4:6, 3:6]
    assert calls


def test_a_shard_replaced_mid_read_is_read_whole_from_one_version(
    tmp_path: Path, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index and inner chunks come from the file opened first, even when a writer
    replaces the shard between the two steps (as LocalStore's writes do, by rename)."""
    path = tmp_path / "s"
    old = np.arange(8 * 12, dtype="int32").reshape(8, 12) + 1
    _create(path, old)
    shard = path / "c" / "0" / "0"
    new = old * 3
    other = tmp_path / "t"
    _create(other, new)
    replaced: list[bool] = []
    check = layout_module.ShardedLayout._check_native_shards

    def replace_between_steps(self: Any, files: Any, keys: list[str], indexes: Any) -> None:
        check(self, files, keys, indexes)
        if indexes is not None and not replaced:
            replaced.append(True)
            os.replace(other / "c" / "0" / "0", shard)  # (the inner chunks are laid out differently)

    monkeypatch.setattr(layout_module.ShardedLayout, "_check_native_shards", replace_between_steps)
    np.testing.assert_array_equal(_open(path)[0:4, 0:6], old[0:4, 0:6])
    assert replaced and calls
    np.testing.assert_array_equal(_open(path)[0:4, 0:6], new[0:4, 0:6])


@pytest.mark.parametrize("native", [True, False])
def test_a_bad_entry_of_a_chunk_not_read_is_an_error_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """As decoding a whole index finds it: the index is corrupt, whichever chunk is read."""
    if not native:
        _python_path(monkeypatch)
    data = np.arange(8 * 12, dtype="int32").reshape(8, 12) + 1
    _create(tmp_path / "s", data, crc=False)
    _forge_entry(tmp_path / "s" / "c" / "1" / "0", 3, 2**64 - 1, 8)  # inner chunk (1, 1)
    with pytest.raises(CorruptChunkError, match=r"c/1/0.*inner chunk \(1, 1\) is half empty"):
        _open(tmp_path / "s")[4:6, 0:3]  # inner chunk (0, 0) alone


@pytest.mark.parametrize("step", ["stat", "read"])
def test_only_a_failed_open_finds_a_shard_missing(stored: tuple[Path, np.ndarray], step: str) -> None:
    """A file that opened but then failed to stat or read, even with ENOENT (a FUSE file
    system whose object vanished), is a StoreError: never the fill value."""
    import errno

    path, _ = stored
    layout = _open(path)._layout  # type: ignore[attr-defined]
    files = np.zeros(2, dtype=np.dtype(_native.ShardFile))
    files["error"][1] = errno.ENOENT
    files["failed_step"][1] = _native.STEPS.index(step)
    with pytest.raises(StoreError, match=rf"cannot {step} key 'c/0/1'.*No such file"):
        layout._check_native_shards(files, ["c/0/0", "c/0/1"], None)
    files["failed_step"][1] = _native.STEPS.index("open")
    layout._check_native_shards(files, ["c/0/0", "c/0/1"], None)  # (missing: no error)


def test_the_helper_builds_under_a_strict_c_standard(tmp_path: Path) -> None:
    """``hatch_build.py`` passes CFLAGS through: ``-std=c99`` must still declare pread
    and O_CLOEXEC, and build the AVX2 code (a failed build silently drops every native
    path)."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler")
    sources = [str(Path(_native.__file__).with_name(name)) for name in ("call_each.c", "bitshuffle.c")]
    result = subprocess.run(
        [compiler, "-std=c99", "-Werror=implicit-function-declaration", "-O1", "-shared", "-fPIC",
         "-o", str(tmp_path / "helper.so"), *sources],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr



# -- whole chunk files (unsharded arrays) -------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.fixture
def file_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the native whole-file reads (one entry per batch: its number of files)."""
    from gpuzarr.stores import LocalStore

    if _native.file_reads is None:
        pytest.skip("gpuzarr's native helper is built without file reads")
    seen: list[int] = []
    original = LocalStore._read_files_natively

    def counting(self: Any, keys: list[str], arena: Any) -> Any:
        seen.append(len(keys))
        return original(self, keys, arena)

    monkeypatch.setattr(LocalStore, "_read_files_natively", counting)
    return seen


def test_chunk_files_read_as_the_python_path(
    tmp_path: Path, file_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 50, size=(30, 41)).astype("int16")
    data[0:4, 0:5] = 0  # a chunk of fill value only: not stored
    # (gzip: a codec without a C decoder for the helper, so chunk files are read natively
    # and decoded in Python; zstd's are read and decoded together, tested below.)
    a = gpuzarr.create_array(
        tmp_path / "a", shape=data.shape, dtype="int16", chunks=(4, 5), fill_value=0, compressors=[GZIP]
    )
    a[...] = data
    (tmp_path / "a" / "c" / "0" / "0").mkdir(parents=True)  # (a directory where the unstored chunk would be)
    windows = [(slice(r, r + 4), slice(c, c + 5)) for r in range(0, 28, 4) for c in range(0, 40, 5)]
    got = [a[:, :], a[3:27, 2:39], *a.read_batch(windows)]
    assert file_calls, "the native file reads did not run"
    monkeypatch.setattr(_native, "file_reads", None)
    want = [a[:, :], a[3:27, 2:39], *a.read_batch(windows)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[0], data)


def test_store_get_each_reads_files_natively(tmp_path: Path, file_calls: list[int]) -> None:
    from gpuzarr.stores import LocalStore
    from gpuzarr.stores.base import ReadArena

    store = LocalStore(tmp_path)
    values = {"a": b"", "b": b"x" * 100, "c/d": os.urandom(70_000)}
    for key, value in values.items():
        store.set(key, value)
    (tmp_path / "dir").mkdir()
    arena = ReadArena(2**20)
    keys = ["a", "missing", "b", "dir", "c/d", "c/d"]
    got = store.get_each(keys, arena=arena)
    assert file_calls == [len(keys)]
    assert [None if g is None else bytes(g) for g in got] == [values.get(k) for k in keys]
    for g in got:
        if g is not None and len(g):
            assert np.frombuffer(g, np.uint8).ctypes.data % 64 == 0, "files start aligned in the arena"


def test_a_file_that_cannot_be_opened_names_its_key(tmp_path: Path, file_calls: list[int]) -> None:
    from gpuzarr.stores import LocalStore
    from gpuzarr.stores.base import ReadArena

    store = LocalStore(tmp_path)
    store.set("good", b"data")
    os.symlink("loop", tmp_path / "loop")  # (a link to itself: ELOOP, not "missing")
    before = _open_fds()
    with pytest.raises(StoreError, match="cannot open key 'loop'"):
        store.get_each(["good", "loop"], arena=ReadArena(2**20))
    assert file_calls and _open_fds() == before, "no file left open"


def test_a_batch_of_more_files_than_may_be_open_is_read_in_slices(
    tmp_path: Path, file_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a low open-file limit a worker's batch of many chunk files still reads (the
    helper opens at most a slice of them at once)."""
    import resource

    import gpuzarr.stores.local as local_module

    opened_at_once: list[int] = []
    reads = _native.file_reads
    assert reads is not None
    original_open = reads.open

    def counting_open(records: Any, n: int, *rest: Any) -> Any:
        opened_at_once.append(n)
        return original_open(records, n, *rest)

    monkeypatch.setattr(reads, "open", counting_open)
    data = np.arange(200 * 3, dtype="float32").reshape(200, 3)
    a = gpuzarr.create_array(tmp_path / "a", shape=data.shape, dtype="float32", chunks=(1, 3), compressors=[GZIP])
    a[...] = data
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        assert local_module.native_files_at_once() == 4
        with gpuzarr.config.set(threads=1):
            np.testing.assert_array_equal(a[...], data)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert file_calls and max(opened_at_once) <= 4


# -- chunk files read and decoded together (gpuzarr_read_call_shared) ---------------------


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of the helper's read-and-decode loop (one entry per thread's
    call: the batch's number of files)."""
    original = _native.read_call_shared
    if original is None:
        pytest.skip("gpuzarr's native helper is built without the read-and-decode loop")
    seen: list[int] = []

    def counting(*args: Any) -> Any:
        seen.append(args[2])
        return original(*args)

    monkeypatch.setattr(_native, "read_call_shared", counting)
    return seen


def _zstd_array(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> Any:
    a = gpuzarr.create_array(path, shape=data.shape, dtype=data.dtype, chunks=chunks, fill_value=0, compressors=[ZSTD])
    a[...] = data
    return a


def _python_path_reads(monkeypatch: pytest.MonkeyPatch, read: Any) -> Any:
    """``read()`` with the helper's read-and-decode loop (and its whole-file reads) off."""
    with monkeypatch.context() as patch:
        patch.setattr(_native, "read_call_shared", None)
        patch.setattr(_native, "file_reads", None)
        return read()


@pytest.mark.parametrize("threads", [1, 3])
def test_chunk_files_read_and_decoded_as_the_python_path(
    tmp_path: Path, decode_calls: list[int], monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(size=(256, 320)).astype("float32")
    data[0:16, 0:64] = 0  # a chunk of fill value only: not stored
    a = _zstd_array(tmp_path / "a", data, (16, 64))
    (tmp_path / "a" / "c" / "1" / "1").unlink()
    (tmp_path / "a" / "c" / "1" / "1").mkdir()  # (a directory where a chunk would be: not stored)
    data[16:32, 64:128] = 0
    # Windows of one chunk each (decoded straight into their results), of several, and
    # ones that cut chunks (decoded into scratch, then placed): more than 128 KiB in all,
    # so one batch the threads share.
    windows = [(slice(r, r + 16), slice(c, c + 64)) for r in range(0, 256, 16) for c in range(0, 320, 64)]
    windows += [(slice(8, 40), slice(0, 128)), (slice(3, 61), slice(5, 150)), (slice(0, 256), slice(63, 65))]

    def read() -> list[np.ndarray]:
        with gpuzarr.config.set(threads=threads):
            return [*a.read_batch(windows), a[...]]

    got = read()
    assert decode_calls and max(decode_calls) > len(windows), "the read-and-decode loop ran on the whole batch"
    want = _python_path_reads(monkeypatch, read)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[-1], data)
    for window, g in zip(windows, got, strict=False):
        np.testing.assert_array_equal(g, data[window])


def test_threads_share_a_batch_read_and_decoded_natively(tmp_path: Path) -> None:
    """Two threads in the loop at once (as run_together runs it) take each file once:
    every unit decoded, the missing one found missing."""
    import threading

    if _native.read_call_shared is None:
        pytest.skip("gpuzarr's native helper is built without the read-and-decode loop")
    data = np.random.default_rng(3).normal(size=(64 * 16, 64)).astype("float32")
    data[5 * 16 : 6 * 16] = 0  # (not stored)
    a = _zstd_array(tmp_path / "a", data, (16, 64))
    layout = a._layout
    rows = [(slice(16 * r, 16 * r + 16), slice(0, 64)) for r in range(64)]
    projections = [p for row in rows for p in a._indexer(row, "basic").chunk_projections()]
    out = np.zeros((64, 16, 64), dtype="float32")
    addresses = (out.ctypes.data + out[0].nbytes * np.arange(64)).astype(np.uintp)
    start = threading.Barrier(2, timeout=10)

    def two_threads(work: Any) -> None:
        def run() -> None:
            start.wait()
            work()

        other = threading.Thread(target=run)
        other.start()
        run()
        other.join()

    outcome = layout.read_decode_natively(projections, addresses, two_threads)
    done, missing = layout_module.NATIVE_DONE, layout_module.NATIVE_MISSING
    assert outcome.tolist() == [missing if r == 5 else done for r in range(64)]
    out[5] = 0
    np.testing.assert_array_equal(out.reshape(data.shape), data)


def test_a_corrupt_chunk_file_names_its_chunk_as_the_python_path(
    tmp_path: Path, decode_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    a = _zstd_array(tmp_path / "a", data, (8, 64))
    (tmp_path / "a" / "c" / "5" / "0").write_bytes(b"not a zstd frame")
    windows = [(slice(r, r + 8), slice(0, 64)) for r in range(0, 64, 8)]
    with pytest.raises(CorruptChunkError) as native:
        a.read_batch(windows)
    assert decode_calls
    with pytest.raises(CorruptChunkError) as python:
        _python_path_reads(monkeypatch, lambda: a.read_batch(windows))
    assert str(native.value) == str(python.value) and "'c/5/0'" in str(native.value)


def test_a_chunk_file_that_cannot_be_opened_names_its_key(
    tmp_path: Path, decode_calls: list[int]
) -> None:
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    a = _zstd_array(tmp_path / "a", data, (8, 64))
    (tmp_path / "a" / "c" / "3" / "0").unlink()
    os.symlink("0", tmp_path / "a" / "c" / "3" / "0")  # (a link to itself: ELOOP, not "missing")
    before = _open_fds()
    with pytest.raises(StoreError, match="cannot open key 'c/3/0'"):
        a.read_batch([(slice(r, r + 8), slice(0, 64)) for r in range(0, 64, 8)])
    assert decode_calls and _open_fds() == before, "no file left open"


def test_a_chunk_file_larger_than_the_read_buffer_is_read_in_python(
    tmp_path: Path, decode_calls: list[int]
) -> None:
    """A chunk file may hold more than a frame of its bytes (a skippable frame after it,
    here): the loop leaves one larger than its buffer to the general path, which reads it."""
    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    a = _zstd_array(tmp_path / "a", data, (8, 64))
    path = tmp_path / "a" / "c" / "2" / "0"
    skippable = (0x184D2A50).to_bytes(4, "little") + (300_000).to_bytes(4, "little") + bytes(300_000)
    path.write_bytes(path.read_bytes() + skippable)
    got = a.read_batch([(slice(r, r + 8), slice(0, 64)) for r in range(0, 64, 8)])
    assert decode_calls
    np.testing.assert_array_equal(np.concatenate(got), data)
