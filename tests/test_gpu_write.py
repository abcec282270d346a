"""The GPU write path, run on the host backend (NumPy standing in for the GPU).

Every test writes through :func:`gpuzarr.gpu.write.write_from_device` and checks the
result the way a user on another machine would: read back by gpuzarr's CPU pipeline, by
zarr-python 3 and (for a representative set) by tensorstore, with the same stored
objects as a CPU write (empty chunks not stored, whole shards deleted). The same tests
run on a real GPU (``CudaBackend``) under the ``gpu`` marker; without one they skip.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from conftest import cuda_backend_or_skip

import gpuzarr
from gpuzarr.errors import ChecksumError, UnsupportedCodecError
from gpuzarr.gpu.backend import Backend, HostBackend
from gpuzarr.gpu.executor import GpuFallbackWarning
from gpuzarr.gpu.write import encode_plan_unsupported
from gpuzarr.pipeline import shard_index_cache

SHAPE = (37, 29)
CHUNKS = (8, 6)


def _data(dtype: str = "float32", seed: int = 5) -> np.ndarray:
    values = np.random.default_rng(seed).normal(size=SHAPE) * 100
    return values.astype(dtype)


def _write(a: gpuzarr.Array, backend: Backend, selection: Any, value: Any, mode: str = "basic") -> None:
    if backend.xp is not np and isinstance(value, np.ndarray):
        value = backend.xp.asarray(value)  # a CuPy value, as a GPU user writes
    a._write_on_backend(a._indexer(selection, mode), value, backend)  # type: ignore[arg-type]


def _stored(path: Path) -> dict[str, bytes]:
    """Every stored chunk or shard object below ``path`` (metadata excluded)."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs", ".zgroup")
    }


def _twins(tmp_path: Path, **kwargs: Any) -> tuple[gpuzarr.Array, gpuzarr.Array]:
    """Two identical new arrays: one written on the device, one on the CPU."""
    return (
        gpuzarr.create_array(tmp_path / "device", **kwargs),
        gpuzarr.create_array(tmp_path / "cpu", **kwargs),
    )


V3_CODECS: dict[str, dict[str, Any]] = {
    "raw": {"compressors": None},
    "zstd": {"compressors": {"name": "zstd", "configuration": {"level": 1, "checksum": False}}},
    "zstd-checksum": {"compressors": {"name": "zstd", "configuration": {"level": 3, "checksum": True}}},
    "gzip": {"compressors": {"name": "gzip", "configuration": {"level": 5}}},
    "blosc-lz4-shuffle": {"compressors": {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}},
    "blosc-lz4hc-noshuffle": {
        "compressors": {"name": "blosc", "configuration": {"cname": "lz4hc", "shuffle": "noshuffle"}}
    },
    "blosc-zstd-bitshuffle": {
        "compressors": {"name": "blosc", "configuration": {"cname": "zstd", "shuffle": "bitshuffle"}}
    },
    "blosc-zlib-shuffle": {"compressors": {"name": "blosc", "configuration": {"cname": "zlib", "shuffle": "shuffle"}}},
    "lz4": {"compressors": numcodecs.LZ4()},
    "zlib": {"compressors": numcodecs.Zlib(level=3)},
    "crc32c": {"compressors": [{"name": "crc32c"}]},
    "zstd-crc32c": {"compressors": [{"name": "zstd", "configuration": {"level": 1}}, {"name": "crc32c"}]},
    "gzip-crc32c": {"compressors": [{"name": "gzip", "configuration": {"level": 1}}, {"name": "crc32c"}]},
    "big-endian": {"serializer": {"name": "bytes", "configuration": {"endian": "big"}}, "compressors": None},
    "big-endian-zstd": {"serializer": {"name": "bytes", "configuration": {"endian": "big"}}},
    "transpose-zstd": {"filters": [{"name": "transpose", "configuration": {"order": [1, 0]}}]},
}


@pytest.mark.parametrize("codec", list(V3_CODECS))
@pytest.mark.parametrize("dtype", ["float32", "int16", "uint8", "float64"])
def test_v3_codecs_read_by_zarr_python(tmp_path: Path, backend: Backend, codec: str, dtype: str) -> None:
    data = _data(dtype)
    a = gpuzarr.create_array(tmp_path / "a", shape=SHAPE, chunks=CHUNKS, dtype=dtype, **V3_CODECS[codec])
    assert encode_plan_unsupported(a._layout.chain) is None  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)  # the device encodes every one of these
        _write(a, backend, Ellipsis, data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[...], data)
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "a")[...], data)


@pytest.mark.parametrize(
    "compressor",
    [None, numcodecs.Zstd(level=1), numcodecs.GZip(level=1), numcodecs.Zlib(level=1), numcodecs.LZ4(),
     numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.BITSHUFFLE),
     numcodecs.Blosc(cname="zstd", shuffle=numcodecs.Blosc.SHUFFLE, blocksize=256)],
    ids=["raw", "zstd", "gzip", "zlib", "lz4", "blosc-lz4", "blosc-zstd-blocksize"],
)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f4", ">i4", ">f8"])
def test_v2_read_by_zarr_python(tmp_path: Path, backend: Backend, compressor: Any, order: str, dtype: str) -> None:
    data = _data(dtype.lstrip("<>")).astype(dtype)
    a = gpuzarr.create_array(
        tmp_path / "v2", shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=2, order=order, compressors=compressor
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        _write(a, backend, Ellipsis, data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "v2", mode="r")[...], data)


def test_read_by_tensorstore(tmp_path: Path, backend: Backend) -> None:
    ts = pytest.importorskip("tensorstore")
    data = _data("float32")
    for name, codecs in [("zstd", V3_CODECS["zstd-crc32c"]), ("blosc", V3_CODECS["blosc-zstd-bitshuffle"]),
                         ("gzip", V3_CODECS["gzip"])]:
        a = gpuzarr.create_array(tmp_path / name, shape=SHAPE, chunks=CHUNKS, dtype="float32", **codecs)
        _write(a, backend, Ellipsis, data)
        store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / name)}}).result()
        np.testing.assert_array_equal(store.read().result(), data)
    s = gpuzarr.create_array(
        tmp_path / "sharded", shape=SHAPE, chunks=(4, 6), shards=(16, 12), dtype="float32",
        compressors=[{"name": "zstd", "configuration": {"level": 1}}],
    )
    _write(s, backend, Ellipsis, data)
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "sharded")}}).result()
    np.testing.assert_array_equal(store.read().result(), data)


@pytest.mark.parametrize("codec", ["raw", "zstd", "blosc-lz4-shuffle", "transpose-zstd", "gzip-crc32c"])
def test_partial_writes_match_cpu(tmp_path: Path, backend: Backend, codec: str) -> None:
    """Read-modify-write of partly covered chunks, edge chunks, steps, integer indices."""
    device, cpu = _twins(tmp_path, shape=SHAPE, chunks=CHUNKS, dtype="float32", fill_value=-1, **V3_CODECS[codec])
    expected = np.full(SHAPE, -1, dtype="float32")
    writes: list[tuple[Any, Any]] = [
        ((slice(0, 20), slice(0, 29)), _data(seed=1)[:20]),
        ((slice(3, 30, 2), slice(5, 17)), _data(seed=2)[3:30:2, 5:17]),
        ((slice(None, None, -3), 7), _data(seed=3)[::-3, 7]),
        ((slice(30, 37), slice(20, 29)), 4.5),  # a scalar into the corner (edge chunks)
        ((11, slice(None)), np.arange(29, dtype="float32")),
    ]
    for selection, value in writes:
        _write(device, backend, selection, np.asarray(value, dtype="float32") if np.ndim(value) else value)
        cpu[selection] = value
        expected[selection] = value
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "device")[...], expected)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "device", mode="r")[...], expected)
    assert _stored(tmp_path / "device").keys() == _stored(tmp_path / "cpu").keys()


def test_empty_chunks_not_stored_and_deleted(tmp_path: Path, backend: Backend) -> None:
    device, cpu = _twins(tmp_path, shape=SHAPE, chunks=CHUNKS, dtype="int32", fill_value=7, compressors=None)
    data = np.full(SHAPE, 7, dtype="int32")
    data[0:5, 0:5] = 1
    for a in (device, cpu):
        if a is device:
            _write(a, backend, Ellipsis, data)
            _write(a, backend, (slice(0, 3), slice(0, 3)), np.int32(7))
        else:
            a[...] = data
            a[0:3, 0:3] = 7
    assert _stored(tmp_path / "device") == _stored(tmp_path / "cpu")
    assert len(_stored(tmp_path / "device")) == 1
    _write(device, backend, Ellipsis, np.int32(7))
    assert _stored(tmp_path / "device") == {}
    with gpuzarr.config.set(write_empty_chunks=True):
        _write(device, backend, (slice(0, 8), slice(0, 6)), np.int32(7))
    assert len(_stored(tmp_path / "device")) == 1


def test_nan_fill_value(tmp_path: Path, backend: Backend) -> None:
    a = gpuzarr.create_array(tmp_path / "n", shape=SHAPE, chunks=CHUNKS, dtype="float64", fill_value=np.nan)
    data = np.full(SHAPE, np.nan)
    data[20:, 10:] = 2.0
    _write(a, backend, Ellipsis, data)
    assert len(_stored(tmp_path / "n")) == len({(r // 8, c // 6) for r in range(20, 37) for c in range(10, 29)})
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "n", mode="r")[...], data)


@pytest.mark.parametrize("index_location", ["start", "end"])
@pytest.mark.parametrize("crc", [False, True])
@pytest.mark.parametrize("compressor", ["zstd", "blosc"])
def test_sharded_matches_cpu(tmp_path: Path, backend: Backend, index_location: str, crc: bool, compressor: str) -> None:
    codecs = [{"name": "zstd", "configuration": {"level": 1}}] if compressor == "zstd" else [
        {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}
    ]
    index_codecs = [{"name": "bytes", "configuration": {"endian": "little"}}] + ([{"name": "crc32c"}] if crc else [])
    serializer = {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [4, 6],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, *codecs],
            "index_codecs": index_codecs,
            "index_location": index_location,
        },
    }
    device, cpu = _twins(
        tmp_path, shape=SHAPE, chunks=(16, 12), dtype="float32", serializer=serializer, compressors=None, fill_value=0
    )
    data = _data()
    data[8:16] = 0  # empty inner chunks: not stored
    patch = _data(seed=9)[5:30, 2:20]
    for a in (device, cpu):
        if a is device:
            _write(a, backend, Ellipsis, data)
            _write(a, backend, (slice(5, 30), slice(2, 20)), patch)  # partial shards: kept inner chunks
            _write(a, backend, (slice(32, 37), slice(None)), np.float32(0))  # whole shards gone
        else:
            a[...] = data
            a[5:30, 2:20] = patch
            a[32:37, :] = 0
    expected = data.copy()
    expected[5:30, 2:20] = patch
    expected[32:, :] = 0
    shard_index_cache.clear()
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "device")[...], expected)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "device", mode="r")[...], expected)
    if compressor == "zstd":  # same encoder on both sides (the host backend runs numcodecs' zstd)
        assert _stored(tmp_path / "device").keys() == _stored(tmp_path / "cpu").keys()


def test_sharded_written_by_zarr_python_then_patched(tmp_path: Path, backend: Backend) -> None:
    data = _data()
    z = zarr.create_array(tmp_path / "z", shape=SHAPE, chunks=(4, 6), shards=(16, 12), dtype="float32")
    z[...] = data
    a = gpuzarr.open_array(tmp_path / "z", mode="r+")
    _write(a, backend, (slice(1, 3), slice(1, 3)), np.zeros((2, 2), dtype="float32"))
    data[1:3, 1:3] = 0
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "z", mode="r")[...], data)


@pytest.mark.parametrize("mode", ["orthogonal", "vectorized"])
def test_orthogonal_and_vectorized_writes(tmp_path: Path, backend: Backend, mode: str) -> None:
    device, cpu = _twins(tmp_path, shape=SHAPE, chunks=CHUNKS, dtype="int16", compressors={"name": "zstd"})
    data = _data("int16")
    rows, cols = np.array([0, 20, 5, 36, 17]), np.array([28, 3, 4, 0, 14])
    value = np.arange(25, dtype="int16").reshape(5, 5) if mode == "orthogonal" else np.arange(5, dtype="int16")
    _write(device, backend, Ellipsis, data)
    _write(device, backend, (rows, cols), value, mode)
    cpu[...] = data
    if mode == "orthogonal":
        cpu.oindex[rows, cols] = value
    else:
        cpu.vindex[rows, cols] = value
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "device")[...], cpu[...])


def test_cpu_fallback_warns_once_and_is_an_error_on_request(tmp_path: Path, backend: Backend) -> None:
    data = _data("int32")  # (a delta filter on floats does not round-trip exactly)
    a = gpuzarr.create_array(
        tmp_path / "d", shape=SHAPE, chunks=CHUNKS, dtype="int32", zarr_format=2,
        filters=[numcodecs.Delta(dtype="i4")], compressors=numcodecs.Zstd(level=1),
    )
    assert encode_plan_unsupported(a._layout.chain) is not None  # type: ignore[attr-defined]
    with pytest.warns(GpuFallbackWarning, match="Delta|delta") as record:
        _write(a, backend, Ellipsis, data)
    assert len(record) == 1
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "d", mode="r")[...], data)
    blosclz = gpuzarr.create_array(
        tmp_path / "b", shape=SHAPE, chunks=CHUNKS, dtype="float32",
        compressors={"name": "blosc", "configuration": {"cname": "blosclz"}},
    )
    with gpuzarr.config.set(gpu_fallback="error"), pytest.raises(UnsupportedCodecError, match="blosclz"):
        _write(blosclz, backend, Ellipsis, data.astype("float32"))


def test_cpu_written_reads_on_device_and_back(tmp_path: Path, backend: Backend) -> None:
    """Round trip: CPU write -> device read -> device write -> CPU read, bit for bit."""
    data = _data("float64")
    a = gpuzarr.create_array(
        tmp_path / "r", shape=SHAPE, chunks=(4, 6), shards=(8, 12), dtype="float64",
        compressors={"name": "blosc", "configuration": {"cname": "zstd", "shuffle": "bitshuffle"}},
    )
    a[...] = data
    on_device = a._read_on_backend([a._indexer(Ellipsis, "basic")], [None], backend)[0]  # type: ignore[arg-type]
    b = gpuzarr.create_array(tmp_path / "w", shape=SHAPE, chunks=(8, 6), dtype="float64", compressors=None)
    b._write_on_backend(b._indexer(Ellipsis, "basic"), on_device, backend)  # type: ignore[arg-type]
    np.testing.assert_array_equal(b[...], data)


def test_zero_dimensional(tmp_path: Path, backend: Backend) -> None:
    a = gpuzarr.create_array(tmp_path / "z", shape=(), dtype="int64", fill_value=0)
    _write(a, backend, (), np.int64(42))
    assert zarr.open_array(tmp_path / "z", mode="r")[()] == 42


def test_wave_splits_large_writes(tmp_path: Path, backend: Backend) -> None:
    data = _data()
    a = gpuzarr.create_array(tmp_path / "w", shape=SHAPE, chunks=CHUNKS, dtype="float32")
    with gpuzarr.config.set(wave_bytes=3 * 8 * 6 * 4):  # three chunks per wave
        _write(a, backend, Ellipsis, data)
    if isinstance(backend, HostBackend):
        assert len(backend.compress_calls) == -(-a.nchunks // 3)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "w", mode="r")[...], data)


def test_out_of_memory_shrinks_the_wave(tmp_path: Path) -> None:
    data = _data()
    a = gpuzarr.create_array(tmp_path / "m", shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors=None)
    slot = 256  # one 8x6 float32 chunk (192 bytes) per aligned slot
    backend = HostBackend(memory_limit=2 * slot)  # at most two chunks per device buffer
    _write(a, backend, Ellipsis, data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "m", mode="r")[...], data)
    with pytest.raises(MemoryError):
        _write(a, HostBackend(memory_limit=100), Ellipsis, data)  # not even one chunk fits


class _SmallStreams(HostBackend):
    """A host backend whose compressors take streams of at most 256 bytes (as nvCOMP's
    deflate takes 64 KiB): larger gzip/zlib chunks must go to the CPU, blosc blocks shrink."""

    max_stream_nbytes = {"deflate": 256, "lz4": 256, "zstd": 256}  # noqa: RUF012


def test_streams_beyond_the_compressor_limit(tmp_path: Path) -> None:
    data = _data()  # 8x6 float32 chunks: 192 bytes fit; 16x12 ones (768 bytes) do not
    small = gpuzarr.create_array(tmp_path / "s", shape=SHAPE, chunks=CHUNKS, dtype="float32", **V3_CODECS["gzip"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        _write(small, _SmallStreams(), Ellipsis, data)
    large = gpuzarr.create_array(tmp_path / "l", shape=SHAPE, chunks=(16, 12), dtype="float32", **V3_CODECS["gzip"])
    with pytest.warns(GpuFallbackWarning, match="gzip"):
        _write(large, _SmallStreams(), Ellipsis, data)
    blosc = gpuzarr.create_array(
        tmp_path / "b", shape=SHAPE, chunks=(16, 12), dtype="float32",
        compressors={"name": "blosc", "configuration": {"cname": "zlib", "shuffle": "shuffle", "clevel": 9}},
    )
    backend = _SmallStreams()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GpuFallbackWarning)
        _write(blosc, backend, Ellipsis, data)
    for name in ("s", "l", "b"):
        np.testing.assert_array_equal(zarr.open_array(tmp_path / name, mode="r")[...], data)
    raw = (tmp_path / "b" / "c" / "0" / "0").read_bytes()
    assert int.from_bytes(raw[8:12], "little") <= 256  # the header's blocksize


@pytest.mark.gpu
def test_public_api_writes_on_the_gpu(tmp_path: Path) -> None:
    backend = cuda_backend_or_skip()
    cupy = backend.xp
    data = _data()
    a = gpuzarr.create_array(
        tmp_path / "a", shape=SHAPE, chunks=CHUNKS, dtype="float32", device="cuda", **V3_CODECS["zstd-crc32c"]
    )
    a[...] = cupy.asarray(data)
    a[3:9, 2:5] = np.zeros((6, 3), dtype="float32")  # NumPy data into a device array
    data[3:9, 2:5] = 0
    b = gpuzarr.create_array(tmp_path / "b", shape=SHAPE, chunks=CHUNKS, dtype="float32")
    b[...] = cupy.asarray(data)  # a CuPy value is encoded on its GPU whatever the array's device
    for name in ("a", "b"):
        np.testing.assert_array_equal(zarr.open_array(tmp_path / name, mode="r")[...], data)
    np.testing.assert_array_equal(cupy.asnumpy(a[...]), data)


@pytest.mark.parametrize(
    ("zarr_format", "dtype"), [(2, ">c16"), (2, ">c8"), (2, ">U3"), (3, "complex128"), (3, "complex64")]
)
def test_big_endian_complex_and_unicode(tmp_path: Path, backend: Backend, zarr_format: int, dtype: str) -> None:
    """Byte order is per part: a complex number swaps its two floats, a unicode string
    each UCS4 character (not the whole element)."""
    if dtype.endswith("U3"):
        if backend.xp is not np:
            pytest.skip("CuPy has no unicode dtype")
        data = np.array([["ab", "c", "xyz"][i % 3] for i in range(SHAPE[0] * SHAPE[1])], dtype=dtype).reshape(SHAPE)
    else:
        data = (_data("float64") + 1j * _data("float64", seed=6)).astype(dtype)
    kwargs: dict[str, Any] = {"zarr_format": 2} if zarr_format == 2 else {
        "serializer": {"name": "bytes", "configuration": {"endian": "big"}}
    }
    a = gpuzarr.create_array(tmp_path / "a", shape=SHAPE, chunks=CHUNKS, dtype=dtype, **kwargs)
    _write(a, backend, Ellipsis, data)
    _write(a, backend, (slice(3, 20), slice(4, 9)), data[:17, :5])  # read-modify-write: decoded on the device
    data[3:20, 4:9] = data[:17, :5].copy()
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "a")[...], data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a", mode="r")[...], data)


class _NoRepeatedTargets(np.ndarray):
    """A device buffer that refuses array-indexed assignments with repeated targets: CuPy
    stores an undefined one of the values there, NumPy the last."""

    def __setitem__(self, key: Any, value: Any) -> None:
        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, np.ndarray | list) for k in parts):
            targets = np.arange(self.size).reshape(self.shape)[key]
            assert np.unique(targets).size == np.size(targets), "repeated targets (undefined on CuPy)"
        super().__setitem__(key, value)


class _CupyLikeKernels:
    """The NumPy references with the requirements of the CUDA launchers (gpuzarr.gpu.ops)."""

    def __getattr__(self, name: str) -> Any:
        from gpuzarr.gpu import reference

        return getattr(reference, name)

    @staticmethod
    def gather(src: Any, dst: Any, dst_offsets: Any, chunk_shape: Any, boxes: Any) -> None:
        from gpuzarr.gpu import reference

        if not src.flags.c_contiguous:
            raise ValueError("gather needs a C-contiguous source")
        reference.gather(src, dst, dst_offsets, chunk_shape, boxes)


class _CupyLike(HostBackend):
    """The host backend with CuPy's and the launchers' stricter behaviours."""

    kernels = _CupyLikeKernels()

    def empty(self, nbytes: int) -> np.ndarray:
        return super().empty(nbytes).view(_NoRepeatedTargets)


@pytest.mark.parametrize("mode", ["orthogonal", "vectorized"])
def test_repeated_indices_last_value_wins(tmp_path: Path, mode: str) -> None:
    device, cpu = _twins(tmp_path, shape=SHAPE, chunks=CHUNKS, dtype="int32", compressors=None)
    if mode == "vectorized":
        selection: Any = (np.array([1, 1, 20, 1]), np.array([2, 2, 3, 2]))
        value = np.array([10, 20, 30, 40], dtype="int32")
        cpu.vindex[selection] = value
    else:
        selection = (np.array([1, 1, 20]), np.array([2, 7, 2]))
        value = np.arange(9, dtype="int32").reshape(3, 3)
        cpu.oindex[selection] = value
    _write(device, _CupyLike(), selection, value, mode)
    np.testing.assert_array_equal(device[...], cpu[...])


def test_non_contiguous_value(tmp_path: Path) -> None:
    from gpuzarr.gpu.write import write_from_device

    data = np.asfortranarray(_data())
    a = gpuzarr.create_array(tmp_path / "a", shape=SHAPE, chunks=CHUNKS, dtype="float32")
    write_from_device(a._layout, a._indexer(Ellipsis, "basic"), data, _CupyLike())  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a[...], data)


class _NumbersOnly(HostBackend):
    """A host backend holding what CuPy holds: booleans and numbers."""

    def holds(self, dtype: np.dtype) -> bool:
        return dtype.kind in "biufc"


def test_data_types_the_device_cannot_hold(tmp_path: Path) -> None:
    from gpuzarr.errors import UnsupportedDataTypeError

    a = gpuzarr.create_array(tmp_path / "t", shape=(4,), chunks=(2,), dtype="datetime64[s]")
    a[...] = np.arange(4).astype("datetime64[s]")
    with pytest.raises(UnsupportedDataTypeError, match="device='cpu'"):
        a._read_on_backend([a._indexer(Ellipsis, "basic")], [None], _NumbersOnly())  # type: ignore[arg-type]
    assert HostBackend().holds(np.dtype("datetime64[s]"))
    assert not HostBackend().holds(np.dtype(object))


def test_zstd_frames_carry_the_content_checksum_the_codec_asks_for(tmp_path: Path) -> None:
    """The device compressor writes frames without one: the writer appends XXH64's low
    32 bits and sets the header flag, so a corrupt chunk fails on read (it was dropped)."""
    zstd = {"name": "zstd", "configuration": {"level": 3, "checksum": True}}
    a = gpuzarr.create_array(tmp_path / "z", shape=(64,), chunks=(32,), dtype="int32", compressors=zstd)
    _write(a, HostBackend(), Ellipsis, np.arange(64, dtype="int32"))
    chunk = tmp_path / "z" / "c" / "1"
    raw = chunk.read_bytes()
    assert raw[4] & 0x04  # the frame header says a checksum follows
    import zstandard

    assert zstandard.ZstdDecompressor().decompress(raw) == np.arange(32, 64, dtype="int32").tobytes()
    bad = bytearray(raw)
    bad[-1] ^= 0x01
    chunk.write_bytes(bytes(bad))
    with pytest.raises(ChecksumError, match="c/1"):
        gpuzarr.open_array(tmp_path / "z")[...]
