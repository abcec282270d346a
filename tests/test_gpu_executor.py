"""The GPU read path's executor, run on the host backend (NumPy standing in for the GPU).

Every test reads through :func:`gpuzarr.gpu.executor.read_into_device` and compares with
the CPU pipeline: codecs, formats, sharding, selections, missing chunks, checksums,
corrupt chunks, the CPU fallback and the out-of-memory back-off. The same tests run on
a real GPU (``CudaBackend``) under the ``gpu`` marker; without one they are skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import cuda_backend_or_skip

import gpuzarr
from gpuzarr.errors import ChecksumError, CorruptChunkError, UnsupportedCodecError, UnsupportedDataTypeError
from gpuzarr.gpu.backend import Backend, HostBackend
from gpuzarr.gpu.executor import GpuFallbackWarning, device_chain
from gpuzarr.pipeline import shard_index_cache
from gpuzarr.stores import MemoryStore

SHAPE = (37, 29)
CHUNKS = (8, 6)


def _data(dtype: str = "float32") -> np.ndarray:
    values = np.random.default_rng(11).normal(size=SHAPE) * 100
    return values.astype(dtype)


def _read(a: gpuzarr.Array, backend: Backend, selection: Any = Ellipsis, mode: str = "basic") -> np.ndarray:
    result = a._read_on_backend([a._indexer(selection, mode)], [None], backend)[0]  # type: ignore[arg-type]
    return backend.to_host(result) if backend.xp is not np else result


V3_CODECS: dict[str, dict[str, Any]] = {
    "raw": {"compressors": None},
    "zstd": {"compressors": {"name": "zstd", "configuration": {"level": 1, "checksum": False}}},
    "zstd-checksum": {"compressors": {"name": "zstd", "configuration": {"level": 3, "checksum": True}}},
    "gzip": {"compressors": {"name": "gzip", "configuration": {"level": 5}}},
    "blosc-lz4-shuffle": {"compressors": {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}},
    "blosc-zstd-bitshuffle": {
        "compressors": {"name": "blosc", "configuration": {"cname": "zstd", "shuffle": "bitshuffle"}}
    },
    "blosc-zlib-noshuffle": {
        "compressors": {"name": "blosc", "configuration": {"cname": "zlib", "shuffle": "noshuffle"}}
    },
    "lz4": {"compressors": numcodecs.LZ4()},
    "zlib": {"compressors": numcodecs.Zlib(level=3)},
    "crc32c": {"compressors": [{"name": "crc32c"}]},
    "zstd-crc32c": {"compressors": [{"name": "zstd", "configuration": {"level": 1}}, {"name": "crc32c"}]},
    "zlib-crc32c": {"compressors": [numcodecs.Zlib(level=1), {"name": "crc32c"}]},
    "big-endian": {"serializer": {"name": "bytes", "configuration": {"endian": "big"}}, "compressors": None},
    "transpose-zstd": {"filters": [{"name": "transpose", "configuration": {"order": [1, 0]}}]},
}


@pytest.mark.parametrize("codec", list(V3_CODECS))
@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8", "float64"])
def test_v3_codecs_match_cpu(tmp_path: Path, backend: Backend, codec: str, dtype: str) -> None:
    data = _data(dtype)
    a = gpuzarr.create_array(tmp_path / "a", shape=SHAPE, chunks=CHUNKS, dtype=dtype, **V3_CODECS[codec])
    a[...] = data
    a = gpuzarr.open_array(tmp_path / "a")
    assert device_chain(a._layout.chain).unsupported is None  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)  # the device decodes every one of these
        np.testing.assert_array_equal(_read(a, backend), data)
        np.testing.assert_array_equal(_read(a, backend, (slice(3, 30, 2), slice(5, 17))), data[3:30:2, 5:17])
        np.testing.assert_array_equal(_read(a, backend, (slice(None, None, -3), 7)), data[::-3, 7])


@pytest.mark.parametrize(
    "compressor",
    [None, numcodecs.Zstd(level=1), numcodecs.GZip(level=1), numcodecs.Zlib(level=1), numcodecs.LZ4(),
     numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.BITSHUFFLE)],
    ids=["raw", "zstd", "gzip", "zlib", "lz4", "blosc"],
)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f4", ">i4", ">f8"])
def test_v2_written_by_zarr_python(tmp_path: Path, backend: Backend, compressor: Any, order: str, dtype: str) -> None:
    data = _data(dtype.lstrip("<>")).astype(dtype)
    z = zarr.create_array(
        tmp_path / "v2", shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=2, order=order, compressors=compressor
    )
    z[...] = data
    a = gpuzarr.open_array(tmp_path / "v2")
    assert device_chain(a._layout.chain).unsupported is None  # type: ignore[attr-defined]
    np.testing.assert_array_equal(_read(a, backend), data)
    np.testing.assert_array_equal(_read(a, backend, (slice(2, 9), slice(None, None, 4))), data[2:9, ::4])


@pytest.mark.parametrize("index_location", ["start", "end"])
def test_sharded_with_missing_and_empty_inner_chunks(tmp_path: Path, backend: Backend, index_location: str) -> None:
    data = _data("float32")
    data[8:16] = 0  # empty inner chunks: not stored
    a = gpuzarr.create_array(
        tmp_path / "s",
        shape=SHAPE,
        chunks=(4, 6),
        shards={"shape": (16, 12), "index_location": index_location},
        dtype="float32",
        compressors={"name": "zstd", "configuration": {"level": 1}},
        fill_value=0,
    )
    a[...] = data
    a[32:, :] = 0  # whole shards gone
    data[32:, :] = 0
    shard_index_cache.clear()
    a = gpuzarr.open_array(tmp_path / "s")
    np.testing.assert_array_equal(_read(a, backend), data)
    np.testing.assert_array_equal(_read(a, backend, (slice(5, 35), slice(1, 28, 3))), data[5:35, 1:28:3])


def test_missing_chunks_read_as_fill_value(tmp_path: Path, backend: Backend) -> None:
    a = gpuzarr.create_array(tmp_path / "f", shape=SHAPE, chunks=CHUNKS, dtype="int32", fill_value=-7)
    a[0:8, 0:6] = 3
    expected = np.full(SHAPE, -7, dtype="int32")
    expected[0:8, 0:6] = 3
    np.testing.assert_array_equal(_read(a, backend), expected)
    empty = gpuzarr.create_array(tmp_path / "e", shape=SHAPE, chunks=CHUNKS, dtype="float64", fill_value=np.nan)
    assert np.isnan(_read(empty, backend, (slice(0, 3), 5))).all()


@pytest.mark.parametrize("mode", ["orthogonal", "vectorized"])
def test_orthogonal_and_vectorized_selections(tmp_path: Path, backend: Backend, mode: str) -> None:
    data = _data("int16")
    a = gpuzarr.create_array(tmp_path / "o", shape=SHAPE, chunks=CHUNKS, dtype="int16", compressors={"name": "zstd"})
    a[...] = data
    a[16:24, :] = 0  # some chunks not stored
    data[16:24, :] = 0
    rows, cols = np.array([0, 20, 5, 36, 17]), np.array([28, 3, 3, 0, 14])
    if mode == "orthogonal":
        np.testing.assert_array_equal(_read(a, backend, (rows, cols), mode), data[np.ix_(rows, cols)])
    else:
        np.testing.assert_array_equal(_read(a, backend, (rows, cols), mode), data[rows, cols])


def test_batch_of_windows_in_one_call(tmp_path: Path) -> None:
    data = _data("float32")
    a = gpuzarr.create_array(tmp_path / "w", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors={"name": "zstd"})
    a[...] = data
    backend = HostBackend()
    selections = [(slice(r, r + 8), slice(c, c + 6)) for r, c in [(0, 0), (8, 6), (24, 18), (32, 24)]]
    results = a._read_on_backend([a._indexer(s, "basic") for s in selections], [None] * 4, backend)
    for sel, got in zip(selections, results, strict=True):
        np.testing.assert_array_equal(got, data[sel])
    assert backend.decompress_calls == [("zstd", 4)]  # one batched call for every chunk of the read


def test_zlib_adler32_is_checked_after_device_decode(tmp_path: Path) -> None:
    """nvCOMP decodes the raw deflate between the zlib header and trailer: a stream
    whose data no longer matches its Adler-32 must raise, as zlib does on the CPU."""
    import zlib

    zlib_codec = numcodecs.Zlib(level=1)
    a = gpuzarr.create_array(tmp_path / "z", shape=(16,), chunks=(16,), dtype="int32", compressors=zlib_codec)
    a[...] = np.arange(16, dtype="int32")
    np.testing.assert_array_equal(_read(a, HostBackend()), np.arange(16))
    raw = (tmp_path / "z" / "c" / "0").read_bytes()
    other = zlib.compress((np.arange(16, dtype="int32") * 2).tobytes(), 1)[2:-4]
    (tmp_path / "z" / "c" / "0").write_bytes(raw[:2] + other + raw[-4:])  # the old trailer
    a = gpuzarr.open_array(tmp_path / "z")
    with pytest.raises(CorruptChunkError, match=r"c/0.*incorrect data check"):  # zlib's own word for it
        _read(a, HostBackend())


class _TrustingBackend(HostBackend):
    """A host backend whose decompressors check no checksum the format carries (nvCOMP's
    are documented to operate on valid input only): gzip members are decoded as their
    raw deflate, their CRC-32 and size trailer unread, and zstd frames without their
    content checksum. What the executor checks itself shows here."""

    def decompress_stream(self, codec: str, stream: bytes, nbytes: int) -> bytes:
        import zlib

        if codec == "gzip":
            return zlib.decompressobj(wbits=-15).decompress(stream[10:])  # past the member header
        if codec == "zstd" and len(stream) > 4 and stream[4] & 0x04:
            # the frame as if written without the checksum: flag cleared, trailer dropped
            stream = stream[:4] + bytes([stream[4] & 0xFB]) + stream[5:-4]
        return super().decompress_stream(codec, stream, nbytes)


def test_gzip_trailers_are_checked_after_device_decode(tmp_path: Path) -> None:
    """A gzip member whose CRC-32 or size trailer disagrees with its data raises, as
    on the CPU, even where the device decompressor does not check the trailer."""
    a = gpuzarr.create_array(tmp_path / "g", shape=(64,), chunks=(32,), dtype="int32", compressors={"name": "gzip"})
    a[...] = np.arange(64, dtype="int32")
    np.testing.assert_array_equal(_read(a, _TrustingBackend()), np.arange(64))
    chunk = tmp_path / "g" / "c" / "1"
    good = chunk.read_bytes()
    for position in (-8, -1):  # a CRC-32 byte, then a size byte
        bad = bytearray(good)
        bad[position] ^= 0x01
        chunk.write_bytes(bytes(bad))
        with pytest.raises(CorruptChunkError, match=r"'c/1'"):
            _read(gpuzarr.open_array(tmp_path / "g"), _TrustingBackend())


def test_zstd_content_checksums_are_checked_after_device_decode(tmp_path: Path) -> None:
    """A zstd frame written with a content checksum that disagrees with its data raises,
    even where the device decompressor does not check it; frames without one decode."""
    zstd = {"name": "zstd", "configuration": {"level": 1, "checksum": True}}
    a = gpuzarr.create_array(tmp_path / "z", shape=(64,), chunks=(32,), dtype="int32", compressors=zstd)
    a[...] = np.arange(64, dtype="int32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        np.testing.assert_array_equal(_read(a, _TrustingBackend()), np.arange(64))
    chunk = tmp_path / "z" / "c" / "1"
    bad = bytearray(chunk.read_bytes())
    bad[-1] ^= 0x01
    chunk.write_bytes(bytes(bad))
    with pytest.raises(ChecksumError, match=r"'c/1'.*zstd.*checksum"):
        _read(gpuzarr.open_array(tmp_path / "z"), _TrustingBackend())


def _gzip_member(data: bytes, flags: int = 0, header_crc: int | None = None) -> bytes:
    """One gzip member with header flags ``flags``; with FHCRC (0x02) its CRC-16 is
    ``header_crc``, or the right one."""
    import struct
    import zlib

    header = bytes([0x1F, 0x8B, 0x08, flags]) + bytes(6)
    if flags & 0x02:
        crc = zlib.crc32(header) & 0xFFFF if header_crc is None else header_crc
        header += struct.pack("<H", crc)
    body = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = body.compress(data) + body.flush()
    return header + deflated + struct.pack("<II", zlib.crc32(data), len(data))


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (0, 0x1E, "incorrect header check"),
        (2, 0x07, "unknown compression method"),
        (3, 0x20, "unknown header flags set"),
    ],
    ids=["id-byte", "method", "reserved-flag"],
)
def test_gzip_headers_zlib_refuses_raise_after_device_decode(
    tmp_path: Path, backend: Backend, position: int, value: int, message: str
) -> None:
    """A gzip member whose header zlib refuses raises as on the CPU, even where the
    device decompressor reads past the header without looking at it (and on a GPU)."""
    a = gpuzarr.create_array(tmp_path / "g", shape=(64,), chunks=(32,), dtype="int32", compressors={"name": "gzip"})
    a[...] = np.arange(64, dtype="int32")
    chunk = tmp_path / "g" / "c" / "1"
    bad = bytearray(chunk.read_bytes())
    bad[position] = value
    chunk.write_bytes(bytes(bad))
    for device in (backend, _TrustingBackend()):
        with pytest.raises(CorruptChunkError, match=rf"'c/1'.*{message}"):
            _read(gpuzarr.open_array(tmp_path / "g"), device)
    with pytest.raises(CorruptChunkError, match=rf"'c/1'.*{message}"):  # the CPU path, for comparison
        gpuzarr.open_array(tmp_path / "g")[...]


@pytest.mark.parametrize("header_crc", [None, 0], ids=["right", "wrong"])
def test_gzip_header_crcs_read_as_on_the_cpu(tmp_path: Path, backend: Backend, header_crc: int | None) -> None:
    """A gzip member with a header CRC-16 (FHCRC) reads as on the CPU path, whose codec
    (libdeflate where installed, as numcodecs' gzip) does not check that CRC."""
    data = np.arange(32, dtype="int32")
    a = gpuzarr.create_array(tmp_path / "g", shape=(32,), chunks=(32,), dtype="int32", compressors={"name": "gzip"})
    chunk = tmp_path / "g" / "c" / "0"
    chunk.parent.mkdir()
    chunk.write_bytes(_gzip_member(data.tobytes(), flags=0x02, header_crc=header_crc))

    def outcome(read: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GpuFallbackWarning)
                return np.asarray(read()).tolist()
        except CorruptChunkError as exc:
            return type(exc)

    on_cpu = outcome(lambda: a[...])
    assert on_cpu == data.tolist() or header_crc is not None
    for device in (backend, _TrustingBackend()):
        assert outcome(lambda device=device: _read(a, device)) == on_cpu


def test_gzip_headers_with_a_name_decode_on_the_device(tmp_path: Path, backend: Backend) -> None:
    """Header fields the device decompressor skips itself (a file name) need no CPU."""
    data = np.arange(32, dtype="int32")
    a = gpuzarr.create_array(tmp_path / "g", shape=(32,), chunks=(32,), dtype="int32", compressors={"name": "gzip"})
    member = _gzip_member(data.tobytes())
    named = member[:3] + bytes([0x08]) + member[4:10] + b"chunk\x00" + member[10:]  # FNAME
    (tmp_path / "g" / "c").mkdir()
    (tmp_path / "g" / "c" / "0").write_bytes(named)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        np.testing.assert_array_equal(_read(a, backend), data)


@pytest.mark.parametrize("backend_type", [HostBackend, _TrustingBackend])
def test_gzip_chunks_of_several_members_decode_on_the_cpu(tmp_path: Path, backend_type: type[Backend]) -> None:
    """A valid chunk of two gzip members (which the CPU path reads, and nvCOMP may not)
    is decoded on the CPU with the fallback warning, or refused under "error"."""
    import gzip

    data = np.arange(64, dtype="int32")
    a = gpuzarr.create_array(tmp_path / "g", shape=(64,), chunks=(64,), dtype="int32", compressors={"name": "gzip"})
    a[...] = data
    raw = data.tobytes()
    (tmp_path / "g" / "c" / "0").write_bytes(gzip.compress(raw[:100]) + gzip.compress(raw[100:]))
    with pytest.warns(GpuFallbackWarning, match=r"'c/0' \(codec 'gzip'\) did not decode on the GPU but is valid"):
        np.testing.assert_array_equal(_read(a, backend_type()), data)
    with gpuzarr.config.set(gpu_fallback="error"), pytest.raises(UnsupportedCodecError, match="'c/0'"):
        _read(a, backend_type())


def _blosc_zlib_array(path: Path) -> tuple[gpuzarr.Array, np.ndarray]:
    data = (np.arange(4096) // 3).astype("int32")
    blosc = {"name": "blosc", "configuration": {"cname": "zlib", "clevel": 5, "shuffle": "noshuffle", "blocksize": 0}}
    a = gpuzarr.create_array(path, shape=(4096,), chunks=(4096,), dtype="int32", compressors=blosc)
    a[...] = data
    return a, data


def test_blosc_zlib_adler32_is_checked_after_device_decode(tmp_path: Path) -> None:
    """Inside blosc-zlib chunks nvCOMP decodes each stream's raw deflate: a stream whose
    Adler-32 trailer disagrees raises as c-blosc does on the CPU."""
    a, data = _blosc_zlib_array(tmp_path / "b")
    np.testing.assert_array_equal(_read(a, HostBackend()), data)
    chunk = tmp_path / "b" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    assert raw[2] >> 5 == 3 and not raw[2] & 0x02  # zlib, compressed (not memcpy-ed)
    raw[-1] ^= 0x01  # the last stream's Adler-32
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptChunkError, match=r"'c/0'.*blosc"):
        _read(gpuzarr.open_array(tmp_path / "b"), HostBackend())


@pytest.mark.parametrize(("byte", "change"), [(1, 0x07), (2, 0x08)], ids=["codec-format-version", "reserved-flag"])
def test_blosc_headers_c_blosc_refuses_are_refused(tmp_path: Path, byte: int, change: int) -> None:
    """Headers c-blosc 1.x never writes go to the CPU library, which refuses them; the
    device plan used to decode them as if they were valid."""
    _blosc_zlib_array(tmp_path / "b")
    chunk = tmp_path / "b" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[byte] = change if byte == 1 else raw[byte] | change
    chunk.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GpuFallbackWarning)
        with pytest.raises(CorruptChunkError, match=r"'c/0'"):
            _read(gpuzarr.open_array(tmp_path / "b"), HostBackend())


def test_one_call_per_stage_per_wave(tmp_path: Path) -> None:
    data = _data("float32")
    a = gpuzarr.create_array(tmp_path / "w", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors={"name": "zstd"})
    a[...] = data
    backend = HostBackend()
    chunk_nbytes = 8 * 6 * 4
    with gpuzarr.config.set(wave_bytes=10 * chunk_nbytes):
        np.testing.assert_array_equal(_read(a, backend), data)
    assert [n for _, n in backend.decompress_calls] == [10, 10, 5]  # 25 chunks in waves of 10


def test_out_of_memory_shrinks_the_wave(tmp_path: Path) -> None:
    data = _data("float32")
    a = gpuzarr.create_array(tmp_path / "m", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors={"name": "zstd"})
    a[...] = data
    slot = 256  # one 192-byte chunk per 256-byte slot
    backend = HostBackend(memory_limit=4 * slot)
    np.testing.assert_array_equal(_read(a, backend), data)
    assert max(n for _, n in backend.decompress_calls) <= 4
    with pytest.raises(MemoryError):
        _read(a, HostBackend(memory_limit=100))  # not even one chunk fits


def test_cpu_fallback_warns_or_raises(tmp_path: Path) -> None:
    data = _data("float32")
    a = gpuzarr.create_array(
        tmp_path / "b", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors=numcodecs.BZ2(level=1)
    )
    a[...] = data
    assert device_chain(a._layout.chain).unsupported == "numcodecs.bz2"  # type: ignore[attr-defined]
    with pytest.warns(GpuFallbackWarning, match="bz2"):
        np.testing.assert_array_equal(_read(a, HostBackend()), data)
    with gpuzarr.config.set(gpu_fallback="error"), pytest.raises(UnsupportedCodecError, match="bz2"):
        _read(a, HostBackend())
    strings = gpuzarr.create_array(tmp_path / "s", shape=(4,), chunks=(2,), dtype=str)
    strings[...] = ["a", "bb", "ccc", "dddd"]
    with pytest.raises(UnsupportedDataTypeError, match="device='cpu'"):
        _read(strings, HostBackend())


@pytest.mark.parametrize("chain", ["plain", "big-endian", "transpose"])
def test_blosclz_chunks_fall_back_per_chunk(tmp_path: Path, chain: str) -> None:
    """blosclz chunks are decompressed on the CPU, then go through the rest of the
    device chain like the others (byte order and transposes once, not twice)."""
    data = (np.arange(np.prod(SHAPE)) // 7).astype("float32").reshape(SHAPE)  # compressible: not stored raw
    extra: dict[str, Any] = {
        "plain": {},
        "big-endian": {"serializer": {"name": "bytes", "configuration": {"endian": "big"}}},
        "transpose": {"filters": [{"name": "transpose", "configuration": {"order": [1, 0]}}]},
    }[chain]
    a = gpuzarr.create_array(
        tmp_path / "b",
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="float32",
        compressors={"name": "blosc", "configuration": {"cname": "blosclz", "shuffle": "shuffle"}},
        **extra,
    )
    a[...] = data
    with pytest.warns(GpuFallbackWarning, match="blosclz"):
        np.testing.assert_array_equal(_read(a, HostBackend()), data)


def test_corrupt_chunks_are_named(tmp_path: Path, backend: Backend) -> None:
    a = gpuzarr.create_array(
        tmp_path / "c",
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="float32",
        compressors=[{"name": "zstd", "configuration": {"level": 1}}, {"name": "crc32c"}],
    )
    a[...] = _data("float32")
    chunk = tmp_path / "c" / "c" / "1" / "2"
    raw = bytearray(chunk.read_bytes())
    raw[10] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="c/1/2"):
        _read(a, backend)
    b = gpuzarr.create_array(tmp_path / "z", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors={"name": "zstd"})
    b[...] = _data("float32")
    chunk = tmp_path / "z" / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(CorruptChunkError, match="c/2/0"):
        _read(b, backend)


def test_device_arrays_from_the_public_api_need_a_gpu(tmp_path: Path) -> None:
    from gpuzarr.device import gpu_path_available

    gpuzarr.create_array(tmp_path / "p", shape=(4,), dtype="i2")
    if gpu_path_available():
        pytest.skip("a GPU is present: covered by the gpu-marked tests")
    assert str(gpuzarr.open_array(tmp_path / "p", device="auto").device) == "cpu"
    assert str(gpuzarr.open_array(tmp_path / "p").device) == "cpu"


@pytest.mark.gpu
def test_public_api_returns_cupy_arrays(tmp_path: Path) -> None:
    cuda_backend_or_skip()
    import cupy

    data = _data("float32")
    gpuzarr.create_array(tmp_path / "g", shape=SHAPE, chunks=CHUNKS, dtype="float32")[...] = data
    a = gpuzarr.open_array(tmp_path / "g", device="cuda")
    got = a[2:30, 1:20]
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), data[2:30, 1:20])
    out = cupy.zeros((5, 29), dtype="float32")
    a.read((slice(0, 5), slice(None)), out=out)
    np.testing.assert_array_equal(cupy.asnumpy(out), data[:5])


class _RemoteLikeStore(MemoryStore):
    """A store whose reads are not cheap: fetched in batches per wave, the next wave's on
    a helper thread while the current one decodes."""

    cheap_reads = False


def test_waves_on_a_store_without_cheap_reads() -> None:
    data = _data("float32")
    store = _RemoteLikeStore()
    a = gpuzarr.create_array(
        store, shape=SHAPE, chunks=(4, 6), shards=(8, 12), dtype="float32", compressors={"name": "zstd"}
    )
    a[...] = data
    shard_index_cache.clear()
    backend = HostBackend()
    with gpuzarr.config.set(wave_bytes=7 * 4 * 6 * 4):
        np.testing.assert_array_equal(_read(gpuzarr.open_array(store), backend), data)
    assert len(backend.decompress_calls) > 5 and max(n for _, n in backend.decompress_calls) <= 7


def test_reads_into_out_in_place(tmp_path: Path) -> None:
    data = _data("float32")
    a = gpuzarr.create_array(tmp_path / "o", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors={"name": "zstd"})
    a[...] = data
    backend = HostBackend()
    out = np.zeros((10, 29), dtype="float32")
    (got,) = a._read_on_backend([a._indexer((slice(3, 13), slice(None)), "basic")], [out], backend)
    assert got is out
    np.testing.assert_array_equal(out, data[3:13])
    strided = np.zeros((20, 29), dtype="float32")[::2]  # not contiguous: filled through a copy
    (got,) = a._read_on_backend([a._indexer((slice(3, 13), slice(None)), "basic")], [strided], backend)
    assert got is strided
    np.testing.assert_array_equal(strided, data[3:13])
    with pytest.raises(ValueError, match="shape"):
        a._read_on_backend([a._indexer((slice(3, 13), slice(None)), "basic")], [np.zeros((9, 29), "float32")], backend)


class _CountingFileReads(HostBackend):
    """The host backend, counting the ranges read through ``read_files``."""

    def __init__(self) -> None:
        super().__init__()
        self.file_reads = 0

    def read_files(self, reads: list[tuple[str, int, int]], dst: Any, offsets: np.ndarray) -> None:
        self.file_reads += len(reads)
        super().read_files(reads, dst, offsets)


@pytest.mark.parametrize("codec", ["raw", "zstd", "gzip", "big-endian", "transpose-zstd", "lz4", "zstd-crc32c"])
@pytest.mark.parametrize("sharded", [False, True])
def test_direct_file_reads(tmp_path: Path, codec: str, sharded: bool) -> None:
    """``gpu_io="kvikio"``: local file ranges go straight to the device for chains that need
    no host look at the stored bytes; the others keep host staging."""
    data = _data("int16")
    data[8:16] = 0  # unstored (inner) chunks
    kwargs = dict(V3_CODECS[codec])
    if sharded:
        kwargs["shards"] = (16, 12)
    chunks = (4, 6) if sharded else CHUNKS
    a = gpuzarr.create_array(tmp_path / "d", shape=SHAPE, chunks=chunks, dtype="int16", **kwargs)
    a[...] = data
    shard_index_cache.clear()
    backend = _CountingFileReads()
    with gpuzarr.config.set(gpu_io="kvikio"):
        a = gpuzarr.open_array(tmp_path / "d")
        np.testing.assert_array_equal(_read(a, backend), data)
        np.testing.assert_array_equal(_read(a, backend, (slice(5, 30, 3), slice(2, 20))), data[5:30:3, 2:20])
    direct = codec in ("raw", "zstd", "gzip", "big-endian", "transpose-zstd")
    assert (backend.file_reads > 0) == direct


class _ReplacingBackend(HostBackend):
    """The host backend, whose first ``times`` direct reads find the shard replaced by
    another version (another writer renaming a new file over it) just before reading."""

    def __init__(self, path: Path, versions: list[bytes], times: int) -> None:
        super().__init__()
        self.path, self.versions, self.times = path, versions, times
        self.file_reads = 0

    def read_files(self, reads: list[tuple[str, int, int]], dst: Any, offsets: np.ndarray) -> None:
        if self.file_reads < self.times:
            replacement = self.path.with_name("replacement")
            replacement.write_bytes(self.versions[self.file_reads % len(self.versions)])
            replacement.replace(self.path)  # (a new inode, as a write's rename)
        self.file_reads += 1
        super().read_files(reads, dst, offsets)


@pytest.mark.parametrize("times", [1, 10], ids=["once", "every-try"])
def test_direct_reads_of_a_shard_replaced_after_its_index_was_read(tmp_path: Path, times: int) -> None:
    """A shard replaced between the read of its index and the direct read of its ranges
    is read again (and, when it keeps changing, through the store, which pins one
    version): never the old index's ranges of the new shard."""
    shape = (8, 8)

    def quads(values: list[int]) -> np.ndarray:
        x = np.empty(shape, np.int32)
        x[:4, :4], x[:4, 4:], x[4:, :4], x[4:, 4:] = values
        return x

    a = gpuzarr.create_array(
        tmp_path / "s", shape=shape, chunks=(4, 4), shards=shape, dtype="int32", fill_value=0, compressors=None
    )
    shard = tmp_path / "s" / "c" / "0" / "0"
    a[...] = quads([0, 5, 6, 7])  # inner chunk (0, 0) not stored: the others sit elsewhere
    version_a = shard.read_bytes()
    a[...] = quads([1, 2, 3, 4])
    version_b = shard.read_bytes()
    shard.write_bytes(version_a)
    shard_index_cache.clear()
    backend = _ReplacingBackend(shard, [version_b, version_a], times)
    with gpuzarr.config.set(gpu_io="kvikio"):
        got = _read(gpuzarr.open_array(tmp_path / "s"), backend)
    assert backend.file_reads == min(times + 1, 3)
    np.testing.assert_array_equal(got, quads([1, 2, 3, 4]))  # (the version last renamed in)


def test_locate_matches_fetch(tmp_path: Path) -> None:
    data = _data("float32")
    data[:8] = 0
    for name, kwargs in (("plain", {}), ("sharded", {"shards": (16, 12)})):
        a = gpuzarr.create_array(
            tmp_path / name, shape=SHAPE, chunks=(4, 6) if kwargs else CHUNKS, dtype="float32", **kwargs
        )
        a[...] = data
        layout = a._layout  # type: ignore[attr-defined]
        projections = list(a._indexer(Ellipsis, "basic").chunk_projections())
        located = layout.locate(projections)
        for where, raw in zip(located, layout.fetch(projections), strict=True):
            if raw is None:
                assert where is None
                continue
            key, offset, nbytes = where
            assert (tmp_path / name / key).read_bytes()[offset : offset + nbytes] == bytes(raw)


def test_direct_file_reads_of_a_truncated_file(tmp_path: Path) -> None:
    a = gpuzarr.create_array(tmp_path / "t", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors=None)
    a[...] = _data("float32")
    layout = a._layout  # type: ignore[attr-defined]
    projections = list(a._indexer(Ellipsis, "basic").chunk_projections())
    located = layout.locate(projections)
    chunk = tmp_path / "t" / located[3][0]
    chunk.write_bytes(chunk.read_bytes()[:10])  # truncated after it was located
    backend = HostBackend()
    out = backend.empty(10_000)
    with pytest.raises(OSError, match="truncated"):
        backend.read_files([(str(chunk), 0, located[3][2])], out, np.zeros(1, dtype=np.int64))


def test_gpu_io_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="gpu_io"):
        gpuzarr.config.set(gpu_io="gds")


# --------------------------------------------------------------------------------------
# corrupt chunks on the device path fail as on the CPU path (found by fuzzing the host backend)


def _cpu_and_device_errors(path: Path, **config: Any) -> tuple[str, str]:
    """The error class names of a CPU read and a device read of the array at ``path``."""
    names = []
    for read in (lambda a: a[...], lambda a: _read(a, HostBackend())):
        shard_index_cache.clear()
        try:
            with gpuzarr.config.set(**config), warnings.catch_warnings():
                warnings.simplefilter("ignore", GpuFallbackWarning)
                read(gpuzarr.open_array(path))
            names.append("no error")
        except gpuzarr.errors.GpuzarrError as exc:
            names.append(type(exc).__name__)
    return names[0], names[1]


@pytest.mark.parametrize(
    ("offset", "value"),
    [(0, 0), (0, 1), (0, 3), (1, 2), (8, 4097), (8, 0)],
    ids=["version-0", "version-1", "version-3", "codec-version-2", "blocksize-past-nbytes", "blocksize-0"],
)
def test_blosc_headers_c_blosc_refuses(tmp_path: Path, offset: int, value: int) -> None:
    """Header fields c-blosc 1.x refuses (format version other than 2, codec format
    version other than 1, a block larger than the chunk or empty) used to be decoded by
    the device plan as if valid."""
    data = (np.arange(4096) // 3).astype("uint8")
    blosc = {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "noshuffle", "blocksize": 1024}}
    a = gpuzarr.create_array(tmp_path / "b", shape=(4096,), chunks=(4096,), dtype="uint8", compressors=blosc)
    a[...] = data
    chunk = tmp_path / "b" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    if offset == 8:
        raw[8:12] = value.to_bytes(4, "little")
    else:
        raw[offset] = value
    chunk.write_bytes(bytes(raw))
    assert _cpu_and_device_errors(tmp_path / "b") == ("CorruptChunkError", "CorruptChunkError")


def test_blosc_blocks_c_blosc_does_not_split(tmp_path: Path) -> None:
    """c-blosc splits a block into typesize streams only for blocks of at least 128
    elements, whatever the flag 0x10 says: such a chunk without the flag decodes on the
    device (the plan used to expect typesize streams and refuse it)."""
    data = (np.arange(120) * 7919 % 1000).astype("uint32")
    blosc = {"name": "blosc", "configuration": {"cname": "zlib", "shuffle": "noshuffle"}}
    a = gpuzarr.create_array(tmp_path / "b", shape=(120,), chunks=(120,), dtype="uint32", compressors=blosc)
    a[...] = data
    chunk = tmp_path / "b" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    assert raw[2] & 0x10 and not raw[2] & 0x02  # not split, compressed
    raw[2] &= ~0x10 & 0xFF
    chunk.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        np.testing.assert_array_equal(_read(gpuzarr.open_array(tmp_path / "b"), HostBackend()), data)


@pytest.mark.parametrize("header", [b"\x88\x1c", b"\xf8\x00"], ids=["window-64k", "window-4m"])
def test_zlib_headers_with_a_window_zlib_refuses(tmp_path: Path, header: bytes) -> None:
    """A zlib header's window (CINFO) above 7 is invalid: zlib refuses the stream on
    the CPU, and the device used to inflate the deflate inside."""
    a = gpuzarr.create_array(tmp_path / "z", shape=(256,), chunks=(256,), dtype="int32",
                             compressors=numcodecs.Zlib(level=1))
    a[...] = np.arange(256, dtype="int32") // 3
    chunk = tmp_path / "z" / "c" / "0"
    chunk.write_bytes(header + chunk.read_bytes()[2:])
    assert _cpu_and_device_errors(tmp_path / "z") == ("CorruptChunkError", "CorruptChunkError")


@pytest.mark.parametrize("compressor", [numcodecs.Zlib(level=1), numcodecs.LZ4()], ids=["zlib", "lz4"])
def test_checksum_failures_are_reported_before_stream_headers(tmp_path: Path, compressor: Any) -> None:
    a = gpuzarr.create_array(tmp_path / "c", shape=(64,), chunks=(64,), dtype="int32",
                             compressors=[compressor, {"name": "crc32c"}])
    a[...] = np.arange(64, dtype="int32")
    chunk = tmp_path / "c" / "c" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[0] ^= 1  # the stream header, under the crc32c
    chunk.write_bytes(bytes(raw))
    assert _cpu_and_device_errors(tmp_path / "c") == ("ChecksumError", "ChecksumError")


@pytest.mark.parametrize(("position", "flip"), [(5, 0x01), (7, 0x80), (13, 0x01)],
                         ids=["offset-2**40", "offset-2**63", "nbytes-2**40"])
def test_corrupt_shard_indexes_on_the_direct_path(tmp_path: Path, position: int, flip: int) -> None:
    """Direct file reads size their buffers from the index: an entry past the end of
    the shard must fail as on the staged path (it raised OSError, or asked for 1 TiB)."""
    serializer = {"name": "sharding_indexed", "configuration": {
        "chunk_shape": [4, 4], "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "gzip"}],
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}], "index_location": "end"}}
    a = gpuzarr.create_array(tmp_path / "s", shape=(8, 8), chunks=(8, 8), serializer=serializer, compressors=None,
                             dtype="float32")
    a[...] = np.arange(64, dtype="float32").reshape(8, 8)
    shard = tmp_path / "s" / "c" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) - 64 + position] ^= flip  # inner chunk (0, 0)'s entry: offset, then nbytes
    shard.write_bytes(bytes(raw))
    for gpu_io in ("staging", "kvikio"):
        assert _cpu_and_device_errors(tmp_path / "s", gpu_io=gpu_io) == ("CorruptChunkError", "CorruptChunkError")


def test_valid_blosc_chunks_the_plan_refuses_are_decoded_by_c_blosc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk c-blosc reads but the device plan refuses (a layout it does not know) is
    decoded by c-blosc and copied in as is, byte order and transposes applied once."""
    from gpuzarr.gpu import plan as plan_module

    original = plan_module._plan_chunk

    def refusing(i: int, header: Any, *args: Any) -> None:
        if i == 1 and not header.memcpyed:  # (what replaces it is a plain copy)
            raise CorruptChunkError("chunk 1: a layout this plan does not take")
        original(i, header, *args)

    monkeypatch.setattr(plan_module, "_plan_chunk", refusing)
    data = (np.arange(np.prod(SHAPE)) // 7).astype("float32").reshape(SHAPE)
    transpose = {"filters": [{"name": "transpose", "configuration": {"order": [1, 0]}}]}
    big_endian = {"serializer": {"name": "bytes", "configuration": {"endian": "big"}}}
    for name, extra in (("plain", {}), ("transposed", transpose), ("big-endian", big_endian)):
        a = gpuzarr.create_array(tmp_path / name, shape=SHAPE, chunks=CHUNKS, dtype="float32",
                                 compressors={"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}},
                                 **extra)
        a[...] = data
        with pytest.warns(GpuFallbackWarning, match="did not decode on the GPU but is valid"):
            np.testing.assert_array_equal(_read(a, HostBackend()), data)
