"""The CUDA kernels, their NumPy references and the GPU batch planning, checked on the CPU.

Four layers, each checked against the one below it:

1. the NumPy references (:mod:`gpuzarr.gpu.reference`) against real libraries: NumPy's
   byteswap, numcodecs' Shuffle and Blosc (through real blosc chunks), the ``crc32c``
   package, zlib's crc32 and adler32, gpuzarr's shard index decoding, gpuzarr's CPU reads
   and NumPy slice assignment;
2. the blosc batch plans (:mod:`gpuzarr.gpu.plan`), executed stage by stage with the CPU
   codecs and the references, against ``numcodecs.Blosc`` decoding whole chunks;
3. the kernels' logic against the references, on the CPU: the ``.cu`` sources are built
   with g++ through ``tests/kernels_shim/cuda_shim.h`` (a launch runs the grid with one OS
   thread per CUDA thread, real barriers and atomics) and called with ``ctypes``;
4. the kernels compile with nvcc for sm_80 and sm_90 (when nvcc is installed).

Tests marked ``gpu`` run the same comparisons through CuPy on a GPU; they skip without one.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c as crc32c_package
import numcodecs
import numpy as np
import pytest

import gpuzarr
from gpuzarr.codecs import ShardingCodec
from gpuzarr.errors import CorruptChunkError
from gpuzarr.gpu import plan, reference
from gpuzarr.gpu.kernels import COMPILE_OPTIONS, KERNELS, MODULES, kernel_dir, module_source
from gpuzarr.indexing import make_indexer
from gpuzarr.stores import MemoryStore

SHIM_DIR = Path(__file__).parent / "kernels_shim"
#: Host translation units of the shim, one per kernel module (shard_index rides with crc32c).
SHIM_UNITS = ("byteswap", "shuffle", "bitshuffle", "crc32c", "scatter", "fill_check", "adler32", "xxh64")
#: Launch geometries (grid x, grid y, block) the host builds run with: tiny grids force
#: the grid-stride loops, odd block sizes catch assumptions of a power of two.
GEOMETRIES = [(1, 1, 32), (3, 2, 64), (5, 7, 96)]


def _find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


# ======================================================================================
# the host build of the kernels


@dataclass
class Shim:
    """The kernels built for the host, callable with the references' signatures."""

    lib: ctypes.CDLL
    geometry: tuple[int, int, int] = GEOMETRIES[1]

    def with_geometry(self, geometry: tuple[int, int, int]) -> Shim:
        return Shim(self.lib, geometry)

    def launch(self, name: str, args: list[Any], grid: tuple[int, int] | None = None) -> None:
        """Call ``shim_<name>(grid_x, grid_y, block_x, args...)`` typed by KERNELS."""
        spec = KERNELS[name]
        fn = getattr(self.lib, f"shim_{name}")
        types: list[Any] = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
        values: list[Any] = []
        for ctype, value in zip(spec.params, args, strict=True):
            if ctype.endswith("*"):
                types.append(ctypes.c_void_p)
                if value is not None:
                    assert isinstance(value, np.ndarray) and value.flags.c_contiguous
                    value = value.ctypes.data
                values.append(value)
            else:
                types.append({"u32": ctypes.c_uint32, "u64": ctypes.c_uint64, "i64": ctypes.c_int64}[ctype])
                values.append(int(value))
        fn.argtypes = types
        fn.restype = ctypes.c_int
        gx, gy, block = self.geometry
        if grid is not None:
            gx, gy = grid
        assert fn(gx, gy, block, *values) == 0

    # -- the references' signatures ------------------------------------------------------

    def byteswap(self, data: np.ndarray, offsets: Any, sizes: Any, itemsize: int) -> None:
        offs, lens = _u64(offsets), _u64(sizes)
        self.launch("byteswap_batch", [data, offs, lens, len(lens), itemsize])

    def _blocks(self, name: str, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any, ts: int) -> None:
        lens = _u64(sizes)
        self.launch(name, [src, dst, _u64(so), _u64(do), lens, len(lens), ts])

    def unshuffle(self, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any, ts: int) -> None:
        self._blocks("blosc_unshuffle_batch", src, dst, so, do, sizes, ts)

    def shuffle(self, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any, ts: int) -> None:
        self._blocks("blosc_shuffle_batch", src, dst, so, do, sizes, ts)

    def bitunshuffle(self, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any, ts: int) -> None:
        self._blocks("bitunshuffle_batch", src, dst, so, do, sizes, ts)

    def bitshuffle(self, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any, ts: int) -> None:
        self._blocks("bitshuffle_batch", src, dst, so, do, sizes, ts)

    def copy_ranges(self, src: np.ndarray, dst: np.ndarray, so: Any, do: Any, sizes: Any) -> None:
        lens = _u64(sizes)
        self.launch("copy_ranges", [src, dst, _u64(so), _u64(do), lens, len(lens)])

    def _checksums(self, name: str, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
        lens = _u64(sizes)
        out = np.zeros(len(lens), dtype=np.uint32)
        self.launch(name, [data, _u64(offsets), lens, len(lens), out], grid=(self.geometry[1], 1))
        return out

    def crc32c(self, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
        return self._checksums("crc32c_batch", data, offsets, sizes)

    def crc32(self, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
        return self._checksums("crc32_batch", data, offsets, sizes)

    def adler32(self, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
        return self._checksums("adler32_batch", data, offsets, sizes)

    def xxh64(self, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
        lens = _u64(sizes)
        out = np.zeros(len(lens), dtype=np.uint64)
        self.launch("xxh64_batch", [data, _u64(offsets), lens, len(lens), out], grid=(self.geometry[1], 1))
        return out

    def equals_fill(self, data: np.ndarray, offsets: Any, sizes: Any, itemsize: int, fill_value: bytes) -> np.ndarray:
        lens = _u64(sizes)
        flags = np.ones(len(lens), dtype=np.uint32)  # the kernel only clears flags
        pattern = np.frombuffer(bytes(fill_value), dtype=np.uint8).copy()
        self.launch("equals_fill_batch", [data, _u64(offsets), lens, len(lens), itemsize, pattern, flags])
        return flags != 0

    def parse_shard_indexes(self, data: np.ndarray, offsets: Any, nentries: int, has_crc: bool,
                            shard_nbytes: Any = None) -> reference.ParsedShardIndexes:
        offs = _u64(offsets)
        n = len(offs)
        out = reference.ParsedShardIndexes(
            np.zeros(n * nentries, np.uint64), np.zeros(n * nentries, np.uint64),
            np.zeros(n * nentries, np.uint8), np.full(n, 99, np.uint32),
        )
        limits = None if shard_nbytes is None else _u64(shard_nbytes)
        self.launch("shard_index_parse", [data, offs, n, nentries, int(has_crc), limits,
                                          out.offsets, out.lengths, out.stored, out.status], grid=(self.geometry[1], 1))
        return out

    def scatter(self, src: np.ndarray, src_offsets: Any, dst: np.ndarray, chunk_shape: Any, boxes: np.ndarray) -> None:
        boxes = np.ascontiguousarray(boxes, dtype=np.int64)
        if not len(boxes):
            return
        shape = dst.shape if dst.ndim == boxes.shape[1] else (dst.size,)
        self.launch("scatter_chunks", [src, _u64(src_offsets), dst.reshape(-1).view(np.uint8), len(boxes),
                                       boxes.shape[1], dst.itemsize, _i64(chunk_shape), _i64(shape), boxes])

    def gather(self, src: np.ndarray, dst: np.ndarray, dst_offsets: Any, chunk_shape: Any, boxes: np.ndarray) -> None:
        boxes = np.ascontiguousarray(boxes, dtype=np.int64)
        if not len(boxes):
            return
        shape = src.shape if src.ndim == boxes.shape[1] else (src.size,)
        self.launch("gather_chunks", [src.reshape(-1).view(np.uint8), dst, _u64(dst_offsets), len(boxes),
                                      boxes.shape[1], src.itemsize, _i64(chunk_shape), _i64(shape), boxes])

    def fill(self, dst: np.ndarray, boxes: np.ndarray, fill_value: bytes) -> None:
        boxes = np.ascontiguousarray(boxes, dtype=np.int64)
        if not len(boxes):
            return
        shape = dst.shape if dst.ndim == boxes.shape[1] else (dst.size,)
        pattern = np.frombuffer(bytes(fill_value), dtype=np.uint8).copy()
        self.launch("fill_regions", [dst.reshape(-1).view(np.uint8), len(boxes), boxes.shape[1], dst.itemsize,
                                     _i64(shape), boxes, pattern])


def _u64(values: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1).astype(np.uint64))


def _i64(values: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Shim:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed: the kernels' host build cannot be made")
    out = tmp_path_factory.mktemp("kernels_shim")
    flags = ["-std=c++20", "-O2", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
             "-I", str(SHIM_DIR), "-I", str(kernel_dir())]

    def build(unit: str) -> subprocess.CompletedProcess[str]:
        return _run([gxx, *flags, "-c", str(SHIM_DIR / f"{unit}.cpp"), "-o", str(out / f"{unit}.o")])

    with ThreadPoolExecutor(len(SHIM_UNITS)) as pool:
        results = list(pool.map(build, SHIM_UNITS))
    for unit, result in zip(SHIM_UNITS, results, strict=True):
        assert result.returncode == 0, f"g++ failed on {unit}.cpp:\n{result.stderr}"
    lib = out / "libgpuzarr_kernels_shim.so"
    link = _run([gxx, "-shared", "-pthread", "-o", str(lib), *(str(out / f"{u}.o") for u in SHIM_UNITS)])
    assert link.returncode == 0, link.stderr
    return Shim(ctypes.CDLL(str(lib)))


@pytest.fixture(params=GEOMETRIES, ids=lambda g: "grid{}x{}_block{}".format(*g))
def shim_geometry(shim: Shim, request: pytest.FixtureRequest) -> Shim:
    return shim.with_geometry(request.param)


# ======================================================================================
# sources, signatures, imports


def _signature(source: str, name: str) -> tuple[str, ...]:
    """Parameter types of ``extern "C" __global__ void name(...)`` in a source text."""
    match = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + name + r"\s*\(([^)]*)\)", source)
    assert match, f"kernel {name} not found"
    types = []
    for param in match.group(1).split(","):
        words = param.replace("__restrict__", "").replace("*", " * ").split()
        types.append(" ".join(words[:-1]).replace(" *", "*"))  # drop the parameter name
    return tuple(types)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_declared_signatures_match_sources(name: str) -> None:
    # The CuPy launchers and the ctypes harness both type arguments by KERNELS.
    spec = KERNELS[name]
    assert _signature(module_source(spec.module), name) == spec.params


def test_shim_exports_every_kernel() -> None:
    exported = set()
    for unit in SHIM_UNITS:
        exported |= set(re.findall(r"SHIM_EXPORT\((\w+)", (SHIM_DIR / f"{unit}.cpp").read_text()))
    assert exported == set(KERNELS)


def test_sources_found_and_concatenated() -> None:
    assert (kernel_dir() / "scatter.cu").is_file()
    source = module_source("shard_index")
    assert source.index('#line 1 "crc32c.cu"') < source.index('#line 1 "shard_index.cu"')
    on_disk = {p.name for p in kernel_dir().glob("*.cu")}
    assert {f for files in MODULES.values() for f in files} == on_disk


def test_imports_stay_cpu_only() -> None:
    code = (
        "import sys, gpuzarr\n"
        "assert 'gpuzarr.gpu' not in sys.modules, 'import gpuzarr imported gpuzarr.gpu'\n"
        "import gpuzarr.gpu.kernels, gpuzarr.gpu.ops, gpuzarr.gpu.plan, gpuzarr.gpu.reference\n"
        "assert 'cupy' not in sys.modules, 'a gpuzarr.gpu module imported cupy'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(Path(gpuzarr.__file__).parent.parent)})
    assert result.returncode == 0, result.stderr


# -- nvcc ---------------------------------------------------------------------------------

ARCHS = ("sm_80", "sm_90")


@pytest.fixture(scope="session")
def nvcc_results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc is not installed (looked on PATH and in /usr/local/cuda/bin)")
    out = tmp_path_factory.mktemp("nvcc")
    for module in MODULES:  # exactly the text CuPy would compile
        (out / f"{module}.cu").write_text(module_source(module))

    def compile_one(job: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        module, arch = job
        return _run([nvcc, f"-arch={arch}", "-ptx", *COMPILE_OPTIONS, "-Werror", "all-warnings",
                     "-o", str(out / f"{module}.{arch}.ptx"), str(out / f"{module}.cu")])

    jobs = [(m, a) for m in MODULES for a in ARCHS]
    with ThreadPoolExecutor(min(len(jobs), max(2, os.cpu_count() or 2))) as pool:
        return dict(zip(jobs, pool.map(compile_one, jobs), strict=True))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", sorted(MODULES))
def test_nvcc_compiles(nvcc_results: dict[tuple[str, str], Any], module: str, arch: str) -> None:
    result = nvcc_results[(module, arch)]
    assert result.returncode == 0, f"nvcc -arch={arch} failed on {module}:\n{result.stderr}"


# ======================================================================================
# byteswap


@pytest.mark.parametrize("dtype", ["<u2", "<i4", "<f8", "<c8", "<c16"])
def test_byteswap_reference_matches_numpy(dtype: str) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 2**16, n).astype(dtype) for n in (0, 1, 17, 1000)]
    itemsize = np.dtype(dtype).itemsize // (2 if np.dtype(dtype).kind == "c" else 1)
    data = np.concatenate([a.view(np.uint8) for a in arrays]) if arrays else np.zeros(0, np.uint8)
    sizes = [a.nbytes for a in arrays]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    reference.byteswap(data, offsets, sizes, itemsize)
    expected = np.concatenate([a.astype(np.dtype(dtype).newbyteorder(">")).view(np.uint8) for a in arrays])
    np.testing.assert_array_equal(data, expected)


@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_byteswap_kernel(shim_geometry: Shim, itemsize: int) -> None:
    rng = np.random.default_rng(itemsize)
    sizes = [n * itemsize for n in (0, 3, 64, 1001, 5000)]
    # pos 1 misaligns a buffer: the kernel's byte-by-byte path
    offsets = np.array([0, 1, 64, 1024, 9000], dtype=np.int64)
    data = rng.integers(0, 256, 9000 + sizes[-1] + 7, dtype=np.uint8)
    expected = data.copy()
    reference.byteswap(expected, offsets, sizes, itemsize)
    shim_geometry.byteswap(data, offsets, sizes, itemsize)
    np.testing.assert_array_equal(data, expected)


# ======================================================================================
# byte shuffle


@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8, 16])
def test_shuffle_reference_matches_numcodecs(typesize: int) -> None:
    rng = np.random.default_rng(typesize)
    buf = rng.integers(0, 256, typesize * 999, dtype=np.uint8)
    expected = np.frombuffer(numcodecs.Shuffle(elementsize=typesize).encode(buf), dtype=np.uint8)
    out = np.zeros_like(buf)
    reference.shuffle(buf, out, [0], [0], [buf.size], typesize)
    np.testing.assert_array_equal(out, expected)
    back = np.zeros_like(buf)
    reference.unshuffle(out, back, [0], [0], [buf.size], typesize)
    np.testing.assert_array_equal(back, buf)


def test_shuffle_reference_partial_element_tail() -> None:
    # c-blosc's generic shuffle copies the size % typesize trailing bytes unchanged.
    buf = np.arange(11, dtype=np.uint8)
    out = np.zeros_like(buf)
    reference.shuffle(buf, out, [0], [0], [11], 4)
    np.testing.assert_array_equal(out, [0, 4, 1, 5, 2, 6, 3, 7, 8, 9, 10])


def _block_batch(rng: np.random.Generator, typesize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of assorted sizes (partial elements included) at assorted offsets."""
    sizes = np.array([0, 1, typesize * 8, typesize * 8 + 3, typesize * 250 + 1, 4096 + 5, 777], dtype=np.int64)
    src_offsets = np.cumsum(np.concatenate([[5], sizes[:-1] + 3]))
    dst_offsets = np.cumsum(np.concatenate([[0], sizes[:-1] + 8]))
    src = rng.integers(0, 256, int(src_offsets[-1] + sizes[-1] + 8), dtype=np.uint8)
    return src, src_offsets, dst_offsets, sizes


@pytest.mark.parametrize("kind", ["shuffle", "unshuffle", "bitshuffle", "bitunshuffle"])
@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8, 16])
def test_shuffle_kernels(shim_geometry: Shim, kind: str, typesize: int) -> None:
    rng = np.random.default_rng(typesize)
    src, so, do, sizes = _block_batch(rng, typesize)
    expected = rng.integers(0, 256, int(do[-1] + sizes[-1] + 8), dtype=np.uint8)
    got = expected.copy()  # bytes between the blocks must stay untouched
    getattr(reference, kind)(src, expected, so, do, sizes, typesize)
    getattr(shim_geometry, kind)(src, got, so, do, sizes, typesize)
    np.testing.assert_array_equal(got, expected)


# ======================================================================================
# bitshuffle


def _bitshuffle_by_definition(block: np.ndarray, typesize: int) -> np.ndarray:
    """bshuf_trans_bit_elem spelled out bit by bit (for small blocks)."""
    n8 = (block.size // typesize) // 8 * 8
    out = block.copy()
    out[: n8 * typesize] = 0
    for i in range(n8):
        for j in range(typesize):
            for k in range(8):
                bit = (int(block[i * typesize + j]) >> k) & 1
                pos = (j * 8 + k) * n8 + i
                out[pos // 8] |= bit << (pos % 8)
    return out


@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("nbytes_extra", [0, 5])
def test_bitshuffle_reference_matches_definition(typesize: int, nbytes_extra: int) -> None:
    rng = np.random.default_rng(typesize)
    block = rng.integers(0, 256, typesize * 24 + nbytes_extra, dtype=np.uint8)
    out = np.zeros_like(block)
    reference.bitshuffle(block, out, [0], [0], [block.size], typesize)
    np.testing.assert_array_equal(out, _bitshuffle_by_definition(block, typesize))
    back = np.zeros_like(block)
    reference.bitunshuffle(out, back, [0], [0], [block.size], typesize)
    np.testing.assert_array_equal(back, block)


# Real bitshuffled bytes: the blosc round trips below decompress c-blosc's streams and
# bit-unshuffle them with the reference (and with the kernel), compared with numcodecs.


# ======================================================================================
# crc32c


def _crc_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = np.array([0, 1, 3, 7, 8, 9, 63, 64, 65, 1000, 4096, 33333], dtype=np.int64)
    offsets = np.cumsum(np.concatenate([[3], sizes[:-1] + 5]))  # unaligned starts
    data = rng.integers(0, 256, int(offsets[-1] + sizes[-1]), dtype=np.uint8)
    return data, offsets, sizes


@pytest.mark.parametrize("threads", [1, 7, 32, 256])
def test_crc32c_reference_matches_package(threads: int) -> None:
    data, offsets, sizes = _crc_batch(np.random.default_rng(threads))
    got = reference.crc32c(data, offsets, sizes, threads=threads)
    expected = [crc32c_package.crc32c(data[o : o + n].tobytes()) for o, n in zip(offsets, sizes, strict=True)]
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.uint32))


def test_crc32c_kernel(shim_geometry: Shim) -> None:
    data, offsets, sizes = _crc_batch(np.random.default_rng(1))
    np.testing.assert_array_equal(shim_geometry.crc32c(data, offsets, sizes), reference.crc32c(data, offsets, sizes))


def _zlib_checksums(fn: Any, data: np.ndarray, offsets: Any, sizes: Any) -> np.ndarray:
    return np.array([fn(data[o : o + n].tobytes()) for o, n in zip(offsets, sizes, strict=True)], dtype=np.uint32)


@pytest.mark.parametrize("threads", [1, 7, 32, 256])
def test_crc32_reference_matches_zlib(threads: int) -> None:
    data, offsets, sizes = _crc_batch(np.random.default_rng(threads))
    got = reference.crc32(data, offsets, sizes, threads=threads)
    np.testing.assert_array_equal(got, _zlib_checksums(zlib.crc32, data, offsets, sizes))


def test_crc32_kernel(shim_geometry: Shim) -> None:
    data, offsets, sizes = _crc_batch(np.random.default_rng(2))
    got = shim_geometry.crc32(data, offsets, sizes)
    np.testing.assert_array_equal(got, reference.crc32(data, offsets, sizes))
    np.testing.assert_array_equal(got, _zlib_checksums(zlib.crc32, data, offsets, sizes))


# ======================================================================================
# adler32


def _adler_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty to a few MiB, around zlib's NMAX (5552) and at unaligned starts; the last two
    buffers are all 0xFF, the largest sums (where an overflow would show)."""
    sizes = np.array([0, 1, 7, 8, 9, 5551, 5552, 5553, 65536, 3 * 2**20 + 5, 100003, 4 * 2**20 + 3], dtype=np.int64)
    offsets = np.cumsum(np.concatenate([[3], sizes[:-1] + 5]))
    data = rng.integers(0, 256, int(offsets[-1] + sizes[-1]), dtype=np.uint8)
    data[offsets[-2] :] = 0xFF
    return data, offsets, sizes


def test_adler32_reference_matches_zlib() -> None:
    data, offsets, sizes = _adler_batch(np.random.default_rng(4))
    got = reference.adler32(data, offsets, sizes)
    np.testing.assert_array_equal(got, _zlib_checksums(zlib.adler32, data, offsets, sizes))
    assert got[0] == 1  # the empty buffer: the initial value


def test_adler32_kernel(shim_geometry: Shim) -> None:
    data, offsets, sizes = _adler_batch(np.random.default_rng(5))
    got = shim_geometry.adler32(data, offsets, sizes)
    np.testing.assert_array_equal(got, reference.adler32(data, offsets, sizes))
    np.testing.assert_array_equal(got, _zlib_checksums(zlib.adler32, data, offsets, sizes))


# ======================================================================================
# xxh64


def _xxh_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty to 64 KiB, every tail length (n % 32, and the 8/4/1-byte steps inside it)
    around one and two stripes, at unaligned starts."""
    sizes = np.array([*range(0, 70), 95, 96, 97, 1000, 65536 + 13], dtype=np.int64)
    offsets = np.cumsum(np.concatenate([[5], sizes[:-1] + 3]))
    data = rng.integers(0, 256, int(offsets[-1] + sizes[-1]), dtype=np.uint8)
    return data, offsets, sizes


def _zstd_checksums(data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The low 32 bits of XXH64 as libzstd stores them in checksummed frames."""
    import zstandard

    compressor = zstandard.ZstdCompressor(write_checksum=True)
    frames = [compressor.compress(data[o : o + n].tobytes()) for o, n in zip(offsets, sizes, strict=True)]
    return np.array([int.from_bytes(frame[-4:], "little") for frame in frames], dtype=np.uint64)


def test_xxh64_reference_matches_libzstd() -> None:
    data, offsets, sizes = _xxh_batch(np.random.default_rng(7))
    got = reference.xxh64(data, offsets, sizes)
    np.testing.assert_array_equal(got & 0xFFFFFFFF, _zstd_checksums(data, offsets, sizes))
    # the published value for the empty input, all 64 bits
    assert int(reference.xxh64(np.zeros(0, np.uint8), [0], [0])[0]) == 0xEF46DB3751D8E999


def test_xxh64_kernel(shim_geometry: Shim) -> None:
    data, offsets, sizes = _xxh_batch(np.random.default_rng(8))
    np.testing.assert_array_equal(shim_geometry.xxh64(data, offsets, sizes), reference.xxh64(data, offsets, sizes))


# ======================================================================================
# fill-value check


#: Element sizes: the widths of NumPy's types, odd ones (no 2/4/8-byte words), 257 and
#: 2056 (the repeated pattern does not fit in shared memory: read from fill_value).
FILL_ITEMSIZES = [1, 2, 3, 4, 8, 12, 16, 257, 2056]


def _fill_batch(rng: np.random.Generator, itemsize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """Items that are all fill, or fill but for one byte (first, middle, last: the last
    is in the sub-word tail when the size is not a multiple of 8), or the fill pattern
    rotated by one byte; at 8-byte aligned and unaligned offsets."""
    fill = rng.integers(0, 256, itemsize, dtype=np.uint8)
    fill[0] ^= fill[-1] ^ 0x5A if itemsize > 1 else 0  # so the rotated pattern differs
    items: list[np.ndarray] = []
    for count in (0, 1, 2, 7, 33, 1000):
        if count * itemsize > 300_000:
            continue
        base = np.tile(fill, count)
        items.append(base)
        for at in (0, base.size // 2, base.size - 1) if base.size else ():
            flipped = base.copy()
            flipped[at] ^= 1 << int(rng.integers(0, 8))
            items.append(flipped)
        if base.size and itemsize > 1:
            items.append(np.roll(base, 1))
    pads = [0, 1, 2, 4, 8, 3]
    offsets, pos = [], 0
    for i, item in enumerate(items):
        pos = -(-pos // 8) * 8 + pads[i % len(pads)]
        offsets.append(pos)
        pos += item.size
    data = rng.integers(0, 256, pos + 16, dtype=np.uint8)  # garbage between the items
    for off, item in zip(offsets, items, strict=True):
        data[off : off + item.size] = item
    return data, np.array(offsets, dtype=np.int64), np.array([i.size for i in items], dtype=np.int64), fill.tobytes()


def _equals_fill_by_bytes(data: np.ndarray, offsets: Any, sizes: Any, fill: bytes) -> np.ndarray:
    return np.array([data[o : o + n].tobytes() == fill * (n // len(fill)) for o, n in zip(offsets, sizes, strict=True)])


@pytest.mark.parametrize("itemsize", FILL_ITEMSIZES)
def test_equals_fill_reference_matches_bytes(itemsize: int) -> None:
    data, offsets, sizes, fill = _fill_batch(np.random.default_rng(itemsize), itemsize)
    expected = _equals_fill_by_bytes(data, offsets, sizes, fill)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(reference.equals_fill(data, offsets, sizes, itemsize, fill), expected)


def test_equals_fill_reference_is_bitwise() -> None:
    values = np.array([np.nan, np.nan, -0.0, 0.0], dtype="<f8")
    data = values.view(np.uint8)
    offsets, sizes = [0, 16], [16, 16]
    nan = np.array(np.nan, dtype="<f8").tobytes()
    np.testing.assert_array_equal(reference.equals_fill(data, offsets, sizes, 8, nan), [True, False])
    zero = np.array(0.0, dtype="<f8").tobytes()
    np.testing.assert_array_equal(reference.equals_fill(data, offsets, sizes, 8, zero), [False, False])
    with pytest.raises(ValueError, match="itemsize"):
        reference.equals_fill(data, offsets, sizes, 4, zero)


@pytest.mark.parametrize("itemsize", FILL_ITEMSIZES)
def test_equals_fill_kernel(shim_geometry: Shim, itemsize: int) -> None:
    data, offsets, sizes, fill = _fill_batch(np.random.default_rng(itemsize), itemsize)
    got = shim_geometry.equals_fill(data, offsets, sizes, itemsize, fill)
    np.testing.assert_array_equal(got, reference.equals_fill(data, offsets, sizes, itemsize, fill))


# ======================================================================================
# shard indexes


BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}


def _shards(index_location: str, with_crc: bool) -> tuple[ShardingCodec, Any, list[bytes]]:
    """Shards written by gpuzarr (some inner chunks empty), their codec and shard spec."""
    store = MemoryStore()
    arr = gpuzarr.create_array(
        store, shape=(40, 30), chunks=(20, 15), dtype="i4", fill_value=0, compressors=None,
        serializer={
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [5, 5],
                "codecs": [BYTES_LE, {"name": "zstd", "configuration": {"level": 1}}],
                "index_codecs": [BYTES_LE, {"name": "crc32c"}] if with_crc else [BYTES_LE],
                "index_location": index_location,
            },
        },
    )
    data = np.random.default_rng(0).integers(1, 100, (40, 30)).astype("i4")
    data[0:5, 0:10] = 0  # fill-valued inner chunks are not stored: empty index entries
    data[20:40, 15:30] = 0  # a shard of fill value is not stored at all
    arr[...] = data
    shards = [store.get(k) for k in sorted(store.list_prefix("c/"))]
    layout = arr._layout
    return layout.codec, layout.shard_spec, [s for s in shards if s is not None]


def _index_batch(codec: ShardingCodec, spec: Any, shards: list[bytes]) -> tuple[np.ndarray, np.ndarray, int]:
    """The shards' raw indexes in one buffer (8-aligned except every other one)."""
    location, nbytes = codec.index_range(spec)
    raws = [s[:nbytes] if location == "start" else s[-nbytes:] for s in shards]
    offsets = np.array([i * (nbytes + 11) for i in range(len(raws))], dtype=np.int64)
    data = np.zeros(int(offsets[-1]) + nbytes, dtype=np.uint8)
    for off, raw in zip(offsets.tolist(), raws, strict=True):
        data[off : off + nbytes] = np.frombuffer(raw, dtype=np.uint8)
    return data, offsets, int(np.prod(codec.inner_grid(spec.shape)))


@pytest.mark.parametrize("with_crc", [True, False])
@pytest.mark.parametrize("index_location", ["start", "end"])
def test_shard_index_reference_matches_decode_index(index_location: str, with_crc: bool) -> None:
    codec, spec, shards = _shards(index_location, with_crc)
    data, offsets, nentries = _index_batch(codec, spec, shards)
    parsed = reference.parse_shard_indexes(data, offsets, nentries, with_crc, [len(s) for s in shards])
    assert not parsed.status.any()
    location, nbytes = codec.index_range(spec)
    for k, shard in enumerate(shards):
        raw = shard[:nbytes] if location == "start" else shard[-nbytes:]
        entries = codec.decode_index(raw, spec).entries.reshape(-1, 2)
        rows = slice(k * nentries, (k + 1) * nentries)
        np.testing.assert_array_equal(parsed.offsets[rows], entries[:, 0])
        np.testing.assert_array_equal(parsed.lengths[rows], entries[:, 1])
        np.testing.assert_array_equal(parsed.stored[rows], entries[:, 0] != np.uint64(2**64 - 1))
    assert not parsed.stored.all()  # the test data has empty entries


def _corrupt_indexes() -> tuple[np.ndarray, np.ndarray, int, list[int], list[int]]:
    """Indexes with one defect each, and the status bits the parser must report."""
    codec, spec, shards = _shards("end", True)
    data, offsets, nentries = _index_batch(codec, spec, shards * 4)
    sizes = [len(s) for s in shards * 4]
    expected = [0] * len(sizes)
    n = len(shards)
    # shard n: a flipped bit in a stored entry's length -> checksum mismatch
    clean = reference.parse_shard_indexes(data, offsets, nentries, True)
    entry = int(np.flatnonzero(clean.stored[n * nentries : (n + 1) * nentries])[0])
    data[offsets[n] + 16 * entry + 8] ^= 0x10
    expected[n] = reference.SHARD_STATUS_CRC
    # shard n+1: an entry half empty, with a matching checksum
    at = int(offsets[n + 1]) + 16 * 2
    data[at : at + 8] = 0xFF
    if nentries > 2:
        data[at + 8 : at + 16] = 1
    payload = data[offsets[n + 1] : offsets[n + 1] + 16 * nentries].tobytes()
    data[offsets[n + 1] + 16 * nentries : offsets[n + 1] + 16 * nentries + 4] = np.frombuffer(
        crc32c_package.crc32c(payload).to_bytes(4, "little"), dtype=np.uint8)
    expected[n + 1] = reference.SHARD_STATUS_HALF_EMPTY
    # shard n+2: claims to be smaller than its entries reach
    sizes[n + 2] = 20
    expected[n + 2] = reference.SHARD_STATUS_OUT_OF_BOUNDS
    return data, offsets, nentries, sizes, expected


def test_shard_index_reference_flags_corruption() -> None:
    data, offsets, nentries, sizes, expected = _corrupt_indexes()
    parsed = reference.parse_shard_indexes(data, offsets, nentries, True, sizes)
    np.testing.assert_array_equal(parsed.status, expected)
    unchecked = reference.parse_shard_indexes(data, offsets, nentries, True)
    assert not unchecked.status[len(sizes) // 4 + 2]  # no sizes given: no bounds check


@pytest.mark.parametrize("with_sizes", [True, False])
def test_shard_index_kernel(shim_geometry: Shim, with_sizes: bool) -> None:
    data, offsets, nentries, sizes, _ = _corrupt_indexes()
    limits = sizes if with_sizes else None
    got = shim_geometry.parse_shard_indexes(data, offsets, nentries, True, limits)
    expected = reference.parse_shard_indexes(data, offsets, nentries, True, limits)
    for field in ("offsets", "lengths", "stored", "status"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)
    no_crc = shim_geometry.parse_shard_indexes(data, offsets, nentries, False, limits)
    np.testing.assert_array_equal(no_crc.status, reference.parse_shard_indexes(data, offsets, nentries, False,
                                                                               limits).status)


# ======================================================================================
# scatter and fill, against gpuzarr's CPU reads


def _arrays() -> Iterator[tuple[str, Any]]:
    """Arrays with edge chunks and missing chunks (never written)."""
    rng = np.random.default_rng(3)
    a = gpuzarr.create_array(MemoryStore(), shape=(37, 23, 5), chunks=(8, 6, 5), dtype="f8", fill_value=-1.5)
    a[3:37, 0:20] = rng.standard_normal((34, 20, 5))
    yield "f8_3d", a
    b = gpuzarr.create_array(MemoryStore(), shape=(101,), chunks=(10,), dtype="i2", fill_value=7)
    b[0:55] = rng.integers(-1000, 1000, 55)
    yield "i2_1d", b
    c = gpuzarr.create_array(MemoryStore(), shape=(20, 18), chunks=(20, 18), shards=(20, 18), dtype="u1",
                             fill_value=3)
    c[:, :] = rng.integers(0, 255, (20, 18))
    yield "u1_sharded", c  # not plain: sharded, units are inner chunks
    d = gpuzarr.create_array(MemoryStore(), shape=(9, 7), chunks=(4, 3), dtype="V3", fill_value=b"abc")
    d[0:5, :] = np.frombuffer(rng.integers(0, 255, 105, dtype=np.uint8).tobytes(), dtype="V3").reshape(5, 7)
    yield "v3_odd_itemsize", d
    e = gpuzarr.create_array(MemoryStore(), shape=(), chunks=(), dtype="c16", fill_value=0)
    e[()] = 1 + 2j
    yield "c16_0d", e


SELECTIONS = [
    Ellipsis,
    (slice(3, 30, 4), 5, slice(None, None, -2)),
    (slice(None, None, -1), slice(2, 21, 3), 1),
    (slice(30, 37), slice(17, 23)),  # edge chunks only
    (slice(0, 8), slice(0, 6)),  # exactly one chunk
    (slice(35, 2, -7),),
    (4,),
]


def _scatter_cases() -> Iterator[tuple[str, Any, Any]]:
    for name, arr in _arrays():
        for sel in SELECTIONS:
            if arr.ndim == 0 and sel is not Ellipsis:
                continue
            try:
                arr[sel]
            except IndexError:
                continue  # too many indices for this array
            yield name, arr, sel


def _scatter_via(kernels: Any, arr: Any, sel: Any) -> np.ndarray:
    """Read ``arr[sel]`` as the GPU executor will: decode units to a flat buffer, then
    one scatter for the stored units and one fill for the missing ones."""
    indexer = arr._indexer(sel, "basic")
    layout = arr._layout
    projections = list(indexer.chunk_projections())
    raws = layout.fetch(projections)
    unit_nbytes = int(np.prod(layout.unit_shape)) * arr.dtype.itemsize
    stride = -(-max(unit_nbytes, 1) // 256) * 256
    present = np.array([r is not None for r in raws], dtype=bool)
    src = np.zeros(stride * max(int(present.sum()), 1), dtype=np.uint8)
    offsets = []
    for p, raw in zip(projections, raws, strict=True):
        if raw is None:
            continue
        unit = layout.decode(p.chunk_coords, raw)
        off = stride * len(offsets)
        src[off : off + unit_nbytes] = np.ascontiguousarray(unit).reshape(-1).view(np.uint8)
        offsets.append(off)
    scatter_plan = plan.plan_scatter(projections, layout.unit_shape, indexer.buffer_shape)
    # Garbage in the buffer: every element must be written by scatter or fill.
    buffer = np.frombuffer(np.random.default_rng(9).integers(0, 255, max(1, int(np.prod(indexer.buffer_shape)))
                                                             * arr.dtype.itemsize, dtype=np.uint8).tobytes(),
                           dtype=arr.dtype)[: int(np.prod(indexer.buffer_shape))].reshape(indexer.buffer_shape).copy()
    kernels.scatter(src, np.array(offsets, dtype=np.int64), buffer, scatter_plan.chunk_shape,
                    scatter_plan.boxes[present])
    fill_bytes = np.array(layout.metadata.fill_value, dtype=arr.dtype).tobytes()
    kernels.fill(buffer, scatter_plan.boxes[~present], fill_bytes)
    return indexer.finalize(buffer)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


@pytest.mark.parametrize(("name", "arr", "sel"), [pytest.param(*c, id=f"{c[0]}-{i}")
                                                  for i, c in enumerate(_scatter_cases())])
def test_scatter_reference_matches_cpu_read(name: str, arr: Any, sel: Any) -> None:
    _same_bytes(_scatter_via(reference, arr, sel), arr._get(sel, "basic"))


@pytest.mark.parametrize(("name", "arr", "sel"), [pytest.param(*c, id=f"{c[0]}-{i}")
                                                  for i, c in enumerate(_scatter_cases())])
def test_scatter_kernel_matches_cpu_read(shim: Shim, name: str, arr: Any, sel: Any) -> None:
    _same_bytes(_scatter_via(shim, arr, sel), arr._get(sel, "basic"))


# -- gather: the write path's inverse of scatter -----------------------------------------

#: (array shape, chunk shape, selection): strided and reversed slices (negative out
#: steps), integer indices, edge chunks, one whole chunk, a 0-d array.
GATHER_CASES = [
    ((37, 23, 5), (8, 6, 5), Ellipsis),
    ((37, 23, 5), (8, 6, 5), (slice(3, 30, 4), 5, slice(None, None, -2))),
    ((37, 23), (8, 6), (slice(None, None, -1), slice(2, 21, 3))),
    ((37, 23), (8, 6), (slice(30, 37), slice(17, 23))),
    ((37, 23), (8, 6), (slice(0, 8), slice(0, 6))),
    ((101,), (10,), (slice(95, 2, -7),)),
    ((101,), (10,), (4,)),
    ((), (), ()),
]
#: Item sizes 1, 2, 4, 8, 16, and 3 (no word wider than a byte).
GATHER_DTYPES = ["u1", "<i2", "<f4", "<c8", "<c16", "V3"]


@dataclass
class _GatherCase:
    value: np.ndarray  # what is written: C-contiguous, the indexer's buffer shape
    chunks: np.ndarray  # flat uint8: the touched chunks' old contents, garbage between them
    offsets: np.ndarray
    chunk_shape: np.ndarray
    boxes: np.ndarray
    expected: np.ndarray  # ``chunks`` after the write, by NumPy slice assignment


def _random_of(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes(), dtype=dtype).reshape(shape).copy()


def _gather_case(shape: tuple[int, ...], chunks: tuple[int, ...], sel: Any, dtype: str) -> _GatherCase:
    rng = np.random.default_rng(len(shape) * 100 + np.dtype(dtype).itemsize)
    indexer = make_indexer(sel, shape, chunks, "basic")
    projections = list(indexer.chunk_projections())
    scatter_plan = plan.plan_scatter(projections, chunks, indexer.buffer_shape)
    # The array padded to whole chunks: edge chunks' out-of-bounds parts must survive.
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    padded = _random_of(rng, tuple(g * c for g, c in zip(grid, chunks, strict=True)), dtype)
    value = _random_of(rng, tuple(indexer.buffer_shape), dtype)
    written = padded.copy()
    written[(*(slice(0, s) for s in shape), Ellipsis)][sel] = value.reshape(indexer.out_shape)  # (a 0-d view too)
    # Chunks at 256-byte slots, every other one a byte further (the kernel's byte path).
    itemsize = np.dtype(dtype).itemsize
    nbytes = int(np.prod(chunks)) * itemsize
    stride = -(-(nbytes + 1) // 256) * 256
    offsets = np.array([k * stride + k % 2 for k in range(len(projections))], dtype=np.int64)
    old = rng.integers(0, 256, stride * len(projections) + 8, dtype=np.uint8)
    new = old.copy()
    for off, proj in zip(offsets.tolist(), projections, strict=True):
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(proj.chunk_coords, chunks, strict=True))
        old[off : off + nbytes] = np.ascontiguousarray(padded[region]).reshape(-1).view(np.uint8)
        new[off : off + nbytes] = np.ascontiguousarray(written[region]).reshape(-1).view(np.uint8)
    return _GatherCase(value, old, offsets, scatter_plan.chunk_shape, scatter_plan.boxes, new)


def _gather_params() -> list[Any]:
    return [pytest.param(case, dtype, id=f"{dtype}-{i}") for i, case in enumerate(GATHER_CASES)
            for dtype in GATHER_DTYPES]


def test_gather_cases_cover_negative_steps_and_edges() -> None:
    boxes = [_gather_case(*case, "u1").boxes for case in GATHER_CASES]
    assert any((b[:, :, 3] < 0).any() for b in boxes)
    counts = np.concatenate([b[:, :, 4].reshape(-1) for b in boxes])
    assert (counts < 6).any()  # partial boxes (edge chunks, strided selections)


@pytest.mark.parametrize(("case", "dtype"), _gather_params())
def test_gather_reference_matches_numpy(case: tuple[Any, ...], dtype: str) -> None:
    g = _gather_case(*case, dtype)
    reference.gather(g.value, g.chunks, g.offsets, g.chunk_shape, g.boxes)
    np.testing.assert_array_equal(g.chunks, g.expected)


@pytest.mark.parametrize(("case", "dtype"), _gather_params())
def test_gather_then_scatter_round_trip(case: tuple[Any, ...], dtype: str) -> None:
    g = _gather_case(*case, dtype)
    reference.gather(g.value, g.chunks, g.offsets, g.chunk_shape, g.boxes)
    back = _random_of(np.random.default_rng(0), g.value.shape, dtype)
    reference.scatter(g.chunks, g.offsets, back, g.chunk_shape, g.boxes)
    _same_bytes(back, g.value)


@pytest.mark.parametrize(("case", "dtype"), _gather_params())
def test_gather_kernel(shim_geometry: Shim, case: tuple[Any, ...], dtype: str) -> None:
    g = _gather_case(*case, dtype)
    shim_geometry.gather(g.value, g.chunks, g.offsets, g.chunk_shape, g.boxes)
    np.testing.assert_array_equal(g.chunks, g.expected)
    back = _random_of(np.random.default_rng(0), g.value.shape, dtype)
    shim_geometry.scatter(g.chunks, g.offsets, back, g.chunk_shape, g.boxes)
    _same_bytes(back, g.value)


def test_plan_scatter_rejects_array_selections() -> None:
    a = gpuzarr.create_array(MemoryStore(), shape=(10,), chunks=(4,), dtype="i4")
    indexer = a._indexer((np.array([1, 5, 2]),), "orthogonal")  # unsorted: arrays, not slices
    with pytest.raises(ValueError, match="basic"):
        plan.plan_scatter(list(indexer.chunk_projections()), (4,), indexer.buffer_shape)


def test_copy_ranges_kernel(shim_geometry: Shim) -> None:
    rng = np.random.default_rng(5)
    sizes = np.array([0, 1, 7, 8, 64, 1000, 4099], dtype=np.int64)
    so = np.array([0, 3, 16, 40, 200, 512, 2000], dtype=np.int64)
    do = np.array([9000, 9001, 9016, 9032, 9104, 9200, 10203], dtype=np.int64)
    src = rng.integers(0, 256, 6200, dtype=np.uint8)
    expected = rng.integers(0, 256, 14400, dtype=np.uint8)
    got = expected.copy()
    reference.copy_ranges(src, expected, so, do, sizes)
    shim_geometry.copy_ranges(src, got, so, do, sizes)
    np.testing.assert_array_equal(got, expected)


# ======================================================================================
# blosc planning


def _blosc_chunks(typesize: int, cname: str, shuffle: int, blocksize: int) -> list[bytes]:
    """Real blosc chunks: compressible, incompressible (raw streams), constant, small,
    multi-block with a leftover block, and element counts that are not multiples of 8."""
    rng = np.random.default_rng(typesize * 100 + shuffle)
    dtype = {1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(typesize, f"V{typesize}")

    def values(n: int, kind: str) -> np.ndarray:
        if kind == "random":
            raw = rng.integers(0, 256, n * typesize, dtype=np.uint8)
        elif kind == "zeros":
            raw = np.zeros(n * typesize, dtype=np.uint8)
        else:  # small integers: compressible, more so after shuffling
            raw = np.zeros((n, typesize), dtype=np.uint8)
            raw[:, 0] = rng.integers(0, 16, n)
        return np.frombuffer(raw.tobytes(), dtype=dtype)

    codec = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle, blocksize=blocksize)
    sizes_kinds = [(1, "small"), (100, "small"), (1001, "small"), (70001, "small"), (300 * 1024 // typesize, "small"),
                   (150001, "random"), (40000, "zeros"), (0, "small")]
    return [codec.encode(values(n, kind)) for n, kind in sizes_kinds]


BLOSC_CASES = [
    (cname, shuffle, typesize)
    for cname in ("lz4", "zstd", "zlib")
    for shuffle in (numcodecs.Blosc.NOSHUFFLE, numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.BITSHUFFLE)
    for typesize in (1, 2, 4, 8)
] + [("zstd", numcodecs.Blosc.SHUFFLE, 3), ("lz4", numcodecs.Blosc.BITSHUFFLE, 16)]


def _check_plan(chunks: list[bytes], kernels: Any = reference, **options: Any) -> plan.BloscPlan:
    p = plan.plan_blosc_batch(chunks, **options)
    work = plan.decode_blosc_batch_on_host(p, chunks, kernels)
    for i, chunk in enumerate(chunks):
        # (numcodecs cannot decode the chunk of an empty buffer it writes: nothing to compare)
        decoded = numcodecs.Blosc().decode(chunk) if p.headers[i].nbytes else b""
        expected = np.frombuffer(decoded, dtype=np.uint8)
        off = int(p.decoded_offsets[i])
        got = work[off : off + int(p.decoded_sizes[i])]
        np.testing.assert_array_equal(got, expected, err_msg=f"chunk {i}: {p.headers[i]}")
    return p


@pytest.mark.parametrize(("cname", "shuffle", "typesize"), BLOSC_CASES)
def test_blosc_plan_round_trip(cname: str, shuffle: int, typesize: int) -> None:
    chunks = _blosc_chunks(typesize, cname, shuffle, blocksize=4096)
    p = _check_plan(chunks)
    assert not len(p.cpu_chunks)
    assert max(h.nblocks for h in p.headers) > 1  # multi-block chunks are covered
    assert any(h.leftover for h in p.headers)
    # nvCOMP alignment handling: streams gathered to aligned inputs, bounced outputs.
    _check_plan(chunks, input_alignment=8, output_alignment=8)


def test_blosc_plan_covers_every_stage() -> None:
    """Across the matrix, every kind of plan row occurs (so the round trips mean something)."""
    seen: dict[str, int] = {}
    for cname, shuffle, typesize in BLOSC_CASES:
        if typesize not in (1, 4, 16, 3):
            continue
        chunks = _blosc_chunks(typesize, cname, shuffle, blocksize=4096)
        p = plan.plan_blosc_batch(chunks, input_alignment=8, output_alignment=8)
        for h in p.headers:
            seen["memcpyed"] = seen.get("memcpyed", 0) + h.memcpyed
            seen["split"] = seen.get("split", 0) + (h.split and h.typesize > 1 and not h.memcpyed)
            seen["bitshuffle_odd_count"] = seen.get("bitshuffle_odd_count", 0) + (
                h.shuffle == "bitshuffle" and (h.nbytes // h.typesize) % 8 != 0 and not h.memcpyed)
        for codec, batch in p.streams.items():
            seen[codec] = seen.get(codec, 0) + len(batch)
        for sb in p.shuffles:
            seen[sb.kind] = seen.get(sb.kind, 0) + len(sb)
        seen["copies"] = seen.get("copies", 0) + len(p.copies)
        seen["gather"] = seen.get("gather", 0) + len(p.gather)
        seen["bounces"] = seen.get("bounces", 0) + len(p.bounces)
    for key in ("memcpyed", "split", "bitshuffle_odd_count", "lz4", "zstd", "deflate", "shuffle", "bitshuffle",
                "copies", "gather", "bounces"):
        assert seen.get(key, 0) > 0, f"no {key} in the blosc matrix: {seen}"


@pytest.mark.parametrize(("cname", "shuffle", "typesize"), [
    ("lz4", numcodecs.Blosc.SHUFFLE, 4),
    ("zstd", numcodecs.Blosc.BITSHUFFLE, 8),
    ("zlib", numcodecs.Blosc.BITSHUFFLE, 2),
    ("lz4", numcodecs.Blosc.BITSHUFFLE, 16),
    ("zstd", numcodecs.Blosc.SHUFFLE, 3),
])
def test_blosc_plan_through_kernels(shim: Shim, cname: str, shuffle: int, typesize: int) -> None:
    # c-blosc's real shuffled and bitshuffled blocks, unshuffled by the kernels' host build.
    chunks = _blosc_chunks(typesize, cname, shuffle, blocksize=4096)
    _check_plan(chunks, shim, input_alignment=8, output_alignment=8)


def test_blosc_plan_cpu_fallback() -> None:
    data = np.arange(5000, dtype="<u4") % 7
    chunks = [numcodecs.Blosc(cname="blosclz", shuffle=1).encode(data), numcodecs.Blosc(cname="lz4hc").encode(data)]
    p = _check_plan(chunks)
    assert p.cpu_chunks.tolist() == [0]
    assert "blosclz" in p.cpu_reasons[0]
    assert "lz4" in p.streams  # lz4hc streams are LZ4 blocks


def test_blosc_header_fields() -> None:
    data = np.arange(1000, dtype="<u8")
    chunk = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=2, blocksize=2048).encode(data)
    h = plan.parse_blosc_header(chunk)
    assert (h.codec, h.shuffle, h.typesize, h.nbytes, h.blocksize, h.cbytes) == ("zstd", "bitshuffle", 8, 8000,
                                                                                 2048, len(chunk))
    assert (h.nblocks, h.leftover, h.memcpyed) == (4, 8000 - 3 * 2048, False)


@pytest.mark.parametrize("damage", ["truncate", "cbytes", "stream_size", "bstart", "expected_nbytes"])
def test_blosc_plan_rejects_corrupt_chunks(damage: str) -> None:
    data = np.arange(20000, dtype="<u4") % 100
    chunk = bytearray(numcodecs.Blosc(cname="zstd", shuffle=1, blocksize=4096).encode(data))
    options: dict[str, Any] = {}
    if damage == "truncate":
        chunk = chunk[:10]
    elif damage == "cbytes":
        chunk[12:16] = (len(chunk) + 1).to_bytes(4, "little")
    elif damage == "stream_size":
        first = int.from_bytes(chunk[16:20], "little")
        chunk[first : first + 4] = (2**30).to_bytes(4, "little")
    elif damage == "bstart":
        chunk[16:20] = (len(chunk) + 100).to_bytes(4, "little")
    else:  # the header is fine but promises another size than the chunk's
        options["expected_nbytes"] = data.nbytes + 4
    good = numcodecs.Blosc().encode(np.arange(options.get("expected_nbytes", data.nbytes) // 4, dtype="<u4"))
    with pytest.raises(CorruptChunkError, match="chunk 1"):
        plan.plan_blosc_batch([good, bytes(chunk)], **options)


def test_blosc_plan_ignores_bytes_after_the_chunk() -> None:
    """Bytes after the header's compressed size are not the chunk's (numcodecs and the
    CPU path ignore them); the device plan used to refuse such a chunk."""
    data = np.arange(5000, dtype="<u4") % 97
    chunks = [numcodecs.Blosc(cname=cname, shuffle=1).encode(data) + b"\x07" * 13 for cname in ("lz4", "zstd")]
    built = plan.plan_blosc_batch(chunks)
    decoded = plan.decode_blosc_batch_on_host(built, chunks)
    for off in built.decoded_offsets.tolist():
        np.testing.assert_array_equal(decoded[off : off + data.nbytes].view("<u4"), data)


# ======================================================================================
# on a GPU, through CuPy


def _cupy() -> Any:
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"no usable CUDA device: {exc}")
    return cupy


@pytest.fixture
def cupy_mod() -> Any:
    return _cupy()


@pytest.mark.gpu
@pytest.mark.parametrize("module", sorted(MODULES))
def test_gpu_modules_compile(cupy_mod: Any, module: str) -> None:
    from gpuzarr.gpu.kernels import get_module

    assert get_module(module) is get_module(module)  # compiled once


@pytest.mark.gpu
@pytest.mark.parametrize("itemsize", [2, 4, 8])
def test_gpu_byteswap(cupy_mod: Any, itemsize: int) -> None:
    from gpuzarr.gpu import ops

    rng = np.random.default_rng(itemsize)
    sizes = [n * itemsize for n in (0, 3, 64, 100001)]
    offsets = np.array([0, 1, 64, 1024], dtype=np.int64)
    host = rng.integers(0, 256, 1024 + sizes[-1], dtype=np.uint8)
    dev = cupy_mod.asarray(host)
    reference.byteswap(host, offsets, sizes, itemsize)
    ops.byteswap(dev, offsets, sizes, itemsize)
    np.testing.assert_array_equal(dev.get(), host)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["shuffle", "unshuffle", "bitshuffle", "bitunshuffle"])
@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8, 16])
def test_gpu_shuffles(cupy_mod: Any, kind: str, typesize: int) -> None:
    from gpuzarr.gpu import ops

    rng = np.random.default_rng(typesize)
    src, so, do, sizes = _block_batch(rng, typesize)
    expected = np.zeros(int(do[-1] + sizes[-1] + 8), dtype=np.uint8)
    dst = cupy_mod.zeros(expected.size, dtype=cupy_mod.uint8)
    getattr(reference, kind)(src, expected, so, do, sizes, typesize)
    getattr(ops, kind)(cupy_mod.asarray(src), dst, so, do, sizes, typesize)
    np.testing.assert_array_equal(dst.get(), expected)


@pytest.mark.gpu
def test_gpu_crc32c(cupy_mod: Any) -> None:
    from gpuzarr.gpu import ops

    data, offsets, sizes = _crc_batch(np.random.default_rng(1))
    got = ops.crc32c(cupy_mod.asarray(data), offsets, sizes).get()
    np.testing.assert_array_equal(got, reference.crc32c(data, offsets, sizes))


@pytest.mark.gpu
def test_gpu_shard_index(cupy_mod: Any) -> None:
    from gpuzarr.gpu import ops

    data, offsets, nentries, sizes, expected_status = _corrupt_indexes()
    got = ops.parse_shard_indexes(cupy_mod.asarray(data), offsets, nentries, True, sizes)
    expected = reference.parse_shard_indexes(data, offsets, nentries, True, sizes)
    np.testing.assert_array_equal(got.status.get(), expected_status)
    for field in ("offsets", "lengths", "stored"):
        np.testing.assert_array_equal(getattr(got, field).get(), getattr(expected, field))


class _CupyKernels:
    """ops with host arrays in and out, so the scatter helper can drive the GPU."""

    def __init__(self, cupy: Any) -> None:
        self.cupy = cupy

    def scatter(self, src: np.ndarray, offsets: Any, dst: np.ndarray, chunk_shape: Any, boxes: np.ndarray) -> None:
        from gpuzarr.gpu import ops

        dev = self.cupy.asarray(dst)
        ops.scatter(self.cupy.asarray(src), offsets, dev, chunk_shape, boxes)
        dst[...] = dev.get()

    def fill(self, dst: np.ndarray, boxes: np.ndarray, fill_value: bytes) -> None:
        from gpuzarr.gpu import ops

        dev = self.cupy.asarray(dst)
        ops.fill(dev, boxes, fill_value)
        dst[...] = dev.get()


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "arr", "sel"), [pytest.param(*c, id=f"{c[0]}-{i}")
                                                  for i, c in enumerate(_scatter_cases())])
def test_gpu_scatter_matches_cpu_read(cupy_mod: Any, name: str, arr: Any, sel: Any) -> None:
    if arr.dtype.kind == "V":
        pytest.skip("CuPy arrays cannot hold void (fixed-size bytes) data types")
    _same_bytes(_scatter_via(_CupyKernels(cupy_mod), arr, sel), arr._get(sel, "basic"))


@pytest.mark.gpu
def test_gpu_copy_ranges(cupy_mod: Any) -> None:
    from gpuzarr.gpu import ops

    rng = np.random.default_rng(5)
    sizes = np.array([0, 1, 7, 8, 64, 1000, 4099], dtype=np.int64)
    so = np.array([0, 3, 16, 40, 200, 512, 2000], dtype=np.int64)
    do = np.array([9000, 9001, 9016, 9032, 9104, 9200, 10203], dtype=np.int64)
    src = rng.integers(0, 256, 6200, dtype=np.uint8)
    expected = np.zeros(14400, dtype=np.uint8)
    dst = cupy_mod.zeros(14400, dtype=cupy_mod.uint8)
    reference.copy_ranges(src, expected, so, do, sizes)
    ops.copy_ranges(cupy_mod.asarray(src), dst, so, do, sizes)
    np.testing.assert_array_equal(dst.get(), expected)


@pytest.mark.gpu
@pytest.mark.parametrize(("case", "dtype"), [p for p in _gather_params() if p.values[1] != "V3"])
def test_gpu_gather(cupy_mod: Any, case: tuple[Any, ...], dtype: str) -> None:
    from gpuzarr.gpu import ops

    g = _gather_case(*case, dtype)
    chunks = cupy_mod.asarray(g.chunks)
    ops.gather(cupy_mod.asarray(g.value), chunks, g.offsets, g.chunk_shape, g.boxes)
    np.testing.assert_array_equal(chunks.get(), g.expected)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["crc32", "adler32"])
def test_gpu_checksums(cupy_mod: Any, kind: str) -> None:
    from gpuzarr.gpu import ops

    data, offsets, sizes = _adler_batch(np.random.default_rng(6))
    got = getattr(ops, kind)(cupy_mod.asarray(data), offsets, sizes).get()
    np.testing.assert_array_equal(got, _zlib_checksums(getattr(zlib, kind), data, offsets, sizes))
    np.testing.assert_array_equal(got, getattr(reference, kind)(data, offsets, sizes))


@pytest.mark.gpu
def test_gpu_xxh64(cupy_mod: Any) -> None:
    from gpuzarr.gpu import ops

    data, offsets, sizes = _xxh_batch(np.random.default_rng(9))
    got = ops.xxh64(cupy_mod.asarray(data), offsets, sizes).get()
    np.testing.assert_array_equal(got, reference.xxh64(data, offsets, sizes))


@pytest.mark.gpu
@pytest.mark.parametrize("itemsize", FILL_ITEMSIZES)
def test_gpu_equals_fill(cupy_mod: Any, itemsize: int) -> None:
    from gpuzarr.gpu import ops

    data, offsets, sizes, fill = _fill_batch(np.random.default_rng(itemsize), itemsize)
    got = ops.equals_fill(cupy_mod.asarray(data), offsets, sizes, itemsize, fill).get()
    np.testing.assert_array_equal(got, reference.equals_fill(data, offsets, sizes, itemsize, fill))
