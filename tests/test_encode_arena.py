"""Compressors writing encoded chunks into a reused arena (``cpu_encode_many(..., arena)``)
and the write path that lends them one: the same bytes as the one-by-one encoders,
and never memory a store may still hold."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numcodecs.blosc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr.codecs import blosc as blosc_module
from gpuzarr.codecs import zstd as zstd_module
from gpuzarr.codecs.blosc import BloscCodec
from gpuzarr.codecs.zstd import ZstdCodec
from gpuzarr.pipeline import write as write_module
from gpuzarr.pipeline.pool import encode_arena
from gpuzarr.stores import LocalStore, MemoryStore
from gpuzarr.stores.base import ReadArena

needs_libzstd = pytest.mark.skipif(zstd_module._libzstd() is None, reason="numcodecs' libzstd is not callable")
needs_blosc_context = pytest.mark.skipif(
    blosc_module._context_compress() is None, reason="numcodecs' c-blosc exports no context call"
)


@pytest.fixture(autouse=True)
def _blosc_without_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the main thread numcodecs compresses with c-blosc's threads, which lay blocks
    # out in the order they finish: the reference bytes must come from one thread.
    monkeypatch.setattr(numcodecs.blosc, "use_threads", False)


def _smooth_bytes(nbytes: int, seed: int = 0) -> np.ndarray:
    """Compressible bytes: a random walk."""
    steps = np.random.default_rng(seed).integers(-3, 4, nbytes)
    return (np.cumsum(steps) % 251).astype(np.uint8)


def _encoded_in_arena(
    codec: ZstdCodec | BloscCodec, datas: list[np.ndarray], arena: ReadArena, *, in_arena: bool = True
) -> list[bytes]:
    encoded = codec.cpu_encode_many(datas, None, arena)  # type: ignore[arg-type]
    # (Views of the arena's memory; python-zstandard's bytes for small zstd chunks.)
    assert all(isinstance(e, memoryview if in_arena else bytes) for e in encoded)
    return [bytes(e) for e in encoded]


@needs_libzstd
@pytest.mark.parametrize("level", [-5, 0, 1, 3, 9, 19])
@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_into_an_arena_writes_numcodecs_bytes(level: int, checksum: bool) -> None:
    codec = ZstdCodec(level, checksum)
    datas = [_smooth_bytes(n, seed=n) for n in (0, 1, 1000, 65536, 2**20 + 13)]
    arena = ReadArena(1 << 24)
    expected = [bytes(numcodecs.Zstd(level=level, checksum=checksum).encode(d)) for d in datas]
    assert _encoded_in_arena(codec, datas, arena) == expected
    arena.reset()
    assert _encoded_in_arena(codec, datas[::-1], arena) == expected[::-1]  # (the reused context)
    for data, frame in zip(datas[1:], expected[1:], strict=True):  # (numcodecs decodes no empty frame)
        assert bytes(codec.cpu_decode(frame, None)) == data.tobytes()  # type: ignore[arg-type]


@needs_blosc_context
@pytest.mark.parametrize("cname", ["lz4", "lz4hc", "blosclz", "zstd", "zlib"])
@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
def test_blosc_into_an_arena_writes_numcodecs_bytes(cname: str, shuffle: str) -> None:
    arena = ReadArena(1 << 24)
    for typesize in (1, 2, 3, 4, 8, 16):
        for blocksize in (0, 4096):
            codec = BloscCodec(cname, 5, shuffle, typesize, blocksize)  # type: ignore[arg-type]
            # (A size that typesize does not divide is shuffled by bytes, as numcodecs does.)
            datas = [_smooth_bytes(n, seed=n) for n in (0, 1, 7, 1000, 65536, 300_001)]
            expected = [bytes(codec.cpu_encode(d, None)) for d in datas]  # type: ignore[arg-type]
            assert _encoded_in_arena(codec, datas, arena) == expected, (typesize, blocksize)
            arena.reset()


@needs_blosc_context
def test_blosc_compressors_the_build_lacks_fail_as_numcodecs_does() -> None:
    missing = sorted(set(blosc_module.BLOSC_CNAMES) - set(numcodecs.blosc.list_compressors()))
    if not missing:
        pytest.skip("numcodecs' c-blosc has every compressor")
    codec = BloscCodec(missing[0], 5, "shuffle", 4, 0)  # type: ignore[arg-type]
    data = _smooth_bytes(4000)
    with pytest.raises(ValueError, match="compressor") as one_by_one:
        codec.cpu_encode(data, None)  # type: ignore[arg-type]
    with pytest.raises(type(one_by_one.value), match="compressor"):
        codec.cpu_encode_many([data], None, ReadArena(1 << 20))  # type: ignore[arg-type]


@needs_libzstd
@needs_blosc_context
@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=20_000),
    use_zstd=st.booleans(),
    level=st.integers(-3, 9),
    checksum=st.booleans(),
    cname=st.sampled_from(["lz4", "blosclz", "zstd", "zlib"]),
    shuffle=st.sampled_from(["noshuffle", "shuffle", "bitshuffle"]),
    typesize=st.sampled_from([1, 2, 4, 8]),
)
def test_arena_encoding_matches_one_by_one_encoding(
    data: bytes, use_zstd: bool, level: int, checksum: bool, cname: str, shuffle: str, typesize: int
) -> None:
    codec = ZstdCodec(level, checksum) if use_zstd else BloscCodec(cname, max(level, 0), shuffle, typesize, 0)  # type: ignore[arg-type]
    array = np.frombuffer(data, dtype=np.uint8)
    arena = ReadArena(1 << 20)
    (encoded,) = _encoded_in_arena(codec, [array, array], arena, in_arena=not use_zstd)[:1]
    assert encoded == bytes(codec.cpu_encode(array, None))  # type: ignore[arg-type]
    if data:  # (numcodecs decodes no empty zstd frame)
        assert bytes(codec.cpu_decode(encoded, None)) == data  # type: ignore[arg-type]


def test_encode_arena_is_lent_only_to_stores_that_keep_no_views(tmp_path: Path) -> None:
    """An arena for local files (written out before the write returns), none for a store
    that keeps what it is given or for a subclass hooking a write. (Nested borrows:
    ``test_sharding.test_thread_arenas_are_lent_once_per_thread``.)"""

    class KeepingStore(LocalStore):
        def _set(self, key: str, value: memoryview) -> None:
            super()._set(key, value)

    class ReadAuditingStore(LocalStore):
        def _get(self, key: str) -> bytes | None:
            return super()._get(key)

    store = LocalStore(tmp_path)
    assert store.keeps_no_views and ReadAuditingStore(tmp_path).keeps_no_views
    assert not KeepingStore(tmp_path).keeps_no_views and not MemoryStore().keeps_no_views
    with encode_arena(store) as lent:
        assert lent is not None
    with encode_arena(KeepingStore(tmp_path)) as none, encode_arena(MemoryStore()) as none_either:
        assert none is None and none_either is None


_ZSTD = {"name": "zstd", "configuration": {"level": 3}}
_BLOSC_LZ4 = {"name": "blosc", "configuration": {"cname": "lz4"}}


@needs_libzstd
@needs_blosc_context
@pytest.mark.parametrize("compressor", [_ZSTD, _BLOSC_LZ4])
def test_writes_through_the_arena_store_each_chunk_s_own_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressor: dict
) -> None:
    """Chunks of 512 KiB (zstd takes the arena above 256 KiB), a batch of one each, so
    every worker reuses its arena many times: every stored chunk is what numcodecs
    encodes for that chunk alone, and the array reads back."""
    chunk_rows, columns = 128, 1024
    monkeypatch.setattr(write_module, "ENCODE_BATCH_MAX_BYTES", chunk_rows * columns * 4)
    lent: list[bool] = []
    codec_class = ZstdCodec if compressor["name"] == "zstd" else BloscCodec
    original = codec_class.cpu_encode_many

    def spy(self: object, datas: object, spec: object, arena: object = None) -> object:
        lent.append(arena is not None)
        return original(self, datas, spec, arena)  # type: ignore[arg-type]

    monkeypatch.setattr(codec_class, "cpu_encode_many", spy)
    data = np.random.default_rng(1).normal(size=(1100, columns)).round(2).astype("float32")
    path = str(tmp_path / "a")
    a = gpuzarr.create_array(
        path, shape=data.shape, dtype="float32", chunks=(chunk_rows, columns), compressors=compressor
    )
    with gpuzarr.config.set(threads=2):
        a[:] = data
        a[30:1000, 10:300] = data[30:1000, 10:300][::-1]  # (partly covered chunks too)
    expected = data.copy()
    expected[30:1000, 10:300] = data[30:1000, 10:300][::-1]
    assert len(lent) == 9 + 8 and all(lent)  # (a batch per chunk written)
    np.testing.assert_array_equal(gpuzarr.open_array(path)[:], expected)
    reference = numcodecs.Zstd(level=3) if compressor is _ZSTD else numcodecs.Blosc(cname="lz4", clevel=5)
    padded = np.zeros((9 * chunk_rows, columns), dtype="float32")
    padded[: len(expected)] = expected
    for i in range(9):
        stored = (tmp_path / "a" / "c" / str(i) / "0").read_bytes()
        assert stored == bytes(reference.encode(padded[i * chunk_rows : (i + 1) * chunk_rows])), i


@needs_libzstd
def test_a_store_that_keeps_views_gets_bytes_no_arena_reuses(tmp_path: Path) -> None:
    """A LocalStore subclass keeping every value it is given (a cache, say): what it
    kept is still each chunk's bytes after the write, since it was lent no arena."""
    kept: dict[str, memoryview] = {}

    class KeepingStore(LocalStore):
        def _set(self, key: str, value: memoryview) -> None:
            kept[key] = value
            super()._set(key, value)

    store = KeepingStore(tmp_path / "a")
    data = np.random.default_rng(2).normal(size=(256, 256)).round(1).astype("float32")
    a = gpuzarr.create_array(store, shape=data.shape, dtype="float32", chunks=(32, 32), compressors={"name": "zstd"})
    with gpuzarr.config.set(threads=2):
        a[:] = data
    chunk_keys = [k for k in kept if k.startswith("c/")]
    assert len(chunk_keys) == 64
    for key in chunk_keys:
        assert bytes(kept[key]) == (tmp_path / "a" / key).read_bytes()


@needs_libzstd
def test_zstd_compress_contexts_are_per_thread_and_setting_and_freed_with_the_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    library = zstd_module._libzstd()
    assert library is not None
    freed: list[int] = []
    real_free = library.free_compress_context
    library.free_compress_context = lambda pointer: freed.append(pointer) or real_free(pointer)
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(lambda: library.thread_compress_context(3, False).pointer).result()
            again = pool.submit(lambda: library.thread_compress_context(3, False).pointer).result()
            checked = pool.submit(lambda: library.thread_compress_context(3, True).pointer).result()
        assert first == again != checked  # one per thread and setting, reused
        assert first != library.thread_compress_context(3, False).pointer
        assert {first, checked} <= set(freed)  # freed when their thread ended
    finally:
        library.free_compress_context = real_free


@needs_blosc_context
def test_blosc_without_a_context_compressor_encodes_through_numcodecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A c-blosc build exporting no ``blosc_compress_ctx``: numcodecs encodes, into
    fresh bytes, the same chunks."""
    blosc_module._context_decompress()  # (cached: its own checks passed)
    monkeypatch.setattr(blosc_module.ctypes, "CDLL", lambda path: object())
    blosc_module._context_compress.cache_clear()
    try:
        assert blosc_module._context_compress() is None
        codec = BloscCodec("zstd", 5, "shuffle", 4, 0)
        datas = [_smooth_bytes(40_000, seed=s) for s in range(3)]
        encoded = codec.cpu_encode_many(datas, None, ReadArena(1 << 20))  # type: ignore[arg-type]
        assert [bytes(e) for e in encoded] == [bytes(codec.cpu_encode(d, None)) for d in datas]  # type: ignore[arg-type]
        assert not any(isinstance(e, memoryview) for e in encoded)
    finally:
        monkeypatch.undo()
        blosc_module._context_compress.cache_clear()
