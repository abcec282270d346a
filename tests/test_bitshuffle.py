"""The native helper's AVX2 bit-unshuffle (``gpuzarr/_native/bitshuffle.c``) and the blosc
decode that uses it: the same bytes as c-blosc's own, for every buffer."""

from __future__ import annotations

import ctypes
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr import _native
from gpuzarr.codecs import blosc as blosc_module

pytestmark = pytest.mark.skipif(
    _native.bitunshuffle is None, reason="gpuzarr's native helper is not built, or this CPU has no AVX2"
)


def _address(array: np.ndarray) -> int:
    return int(array.ctypes.data)


def numpy_bitshuffle(elements: np.ndarray, elem_size: int) -> np.ndarray:
    """Bitshuffle's layout, built with NumPy: bit-row 8b+k holds bit k of byte b of every
    element, element j at bit j % 8 of the row's byte j // 8."""
    bits = np.unpackbits(elements.reshape(-1, elem_size), axis=1, bitorder="little")  # (n, 8E): column 8b+k
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little").reshape(-1)


def unshuffle(shuffled: np.ndarray, elem_size: int, *, scalar: bool = False) -> tuple[int, np.ndarray]:
    out = np.full(shuffled.size, 0xAB, dtype=np.uint8)
    result = _native.bitunshuffle(_address(shuffled), _address(out), shuffled.size // elem_size, elem_size, int(scalar))
    return result, out


@settings(max_examples=150, deadline=None)
@given(
    elem_size=st.sampled_from([2, 4, 8]),
    n_columns=st.integers(1, 200),  # (past 64: whole 64-column steps, a 32-column step, then single columns)
    seed=st.integers(0, 2**32 - 1),
)
def test_unshuffle_inverts_the_bitshuffle_layout(elem_size: int, n_columns: int, seed: int) -> None:
    elements = np.random.default_rng(seed).integers(0, 256, n_columns * 8 * elem_size, dtype=np.uint8)
    shuffled = numpy_bitshuffle(elements, elem_size)
    for scalar in (False, True):
        result, out = unshuffle(shuffled, elem_size, scalar=scalar)
        assert result == 0
        np.testing.assert_array_equal(out, elements)


@pytest.mark.parametrize("elem_size", [2, 4, 8])
def test_unshuffle_of_a_whole_blosc_block_at_odd_addresses(elem_size: int) -> None:
    # A 256 KiB block (the size c-blosc picks for 1 MiB zstd chunks), source and target
    # off any vector alignment.
    rng = np.random.default_rng(elem_size)
    elements = rng.integers(0, 256, 2**18, dtype=np.uint8)
    shuffled = np.empty(2**18 + 1, np.uint8)[1:]
    shuffled[:] = numpy_bitshuffle(elements, elem_size)
    out = np.empty(2**18 + 3, np.uint8)[3:]
    assert _native.bitunshuffle(_address(shuffled), _address(out), 2**18 // elem_size, elem_size, 0) == 0
    np.testing.assert_array_equal(out, elements)


@pytest.mark.parametrize(("elem_size", "n_elements"), [(1, 64), (3, 64), (16, 64), (2, 12), (4, 4)])
def test_unshuffle_refuses_what_it_does_not_cover(elem_size: int, n_elements: int) -> None:
    shuffled = np.zeros(n_elements * elem_size, np.uint8)
    out = np.full_like(shuffled, 7)
    assert _native.bitunshuffle(_address(shuffled), _address(out), n_elements, elem_size, 0) == -1
    assert (out == 7).all()  # untouched


def _c_blosc() -> Any:
    library = ctypes.CDLL(numcodecs.blosc.__file__)
    function = library.blosc_decompress_ctx
    function.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


@pytest.fixture(scope="module")
def decoders() -> tuple[Any, Any]:
    """(c-blosc's blosc_decompress_ctx, gpuzarr's decompress of the same shape)."""
    if blosc_module._context_decompress() is None:
        pytest.skip("this numcodecs build does not export c-blosc 1.21+'s context API")
    c_blosc = _c_blosc()
    address = ctypes.cast(c_blosc, ctypes.c_void_p).value

    def ours(source: np.ndarray, target: np.ndarray) -> int:
        return int(_native.blosc_decompress(address, _address(source), source.size, _address(target), target.size))

    def theirs(source: np.ndarray, target: np.ndarray) -> int:
        return int(c_blosc(_address(source), _address(target), target.size, 1))

    return theirs, ours


def _encode(data: np.ndarray, cname: str, shuffle: int, blocksize: int, typesize: int) -> np.ndarray:
    """``data``'s bytes blosc-encoded with that typesize (numcodecs takes it from the
    buffer's item size)."""
    view = data.view(np.uint8).reshape(-1)
    if typesize > 1:
        view = view.view(f"V{typesize}")
    encoded = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle, blocksize=blocksize).encode(view)
    return np.frombuffer(bytes(encoded), np.uint8)


def _sample(nbytes: int, seed: int) -> np.ndarray:
    """Compressible bytes: a slow random walk of int16s (cut to ``nbytes``)."""
    walk = np.cumsum(np.random.default_rng(seed).integers(-2, 3, nbytes // 2 + 1)).astype("<i2")
    return walk.view(np.uint8)[:nbytes].copy()


@pytest.mark.parametrize("cname", ["zstd", "lz4", "blosclz", "zlib"])
@pytest.mark.parametrize("typesize", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("shuffle", [numcodecs.Blosc.BITSHUFFLE, numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.NOSHUFFLE])
def test_blosc_decode_is_c_bloscs(decoders: tuple[Any, Any], cname: str, typesize: int, shuffle: int) -> None:
    theirs, ours = decoders
    taken = 0
    for nbytes in (64, 1000, 4096, 40_000, 2**18 + 48):
        for blocksize in (0, 256, 1000, 2**16):
            nbytes -= nbytes % typesize
            encoded = _encode(_sample(nbytes, nbytes + blocksize), cname, shuffle, blocksize, typesize)
            expected, got = np.zeros(nbytes, np.uint8), np.ones(nbytes, np.uint8)
            assert theirs(encoded, expected) == nbytes
            assert ours(encoded, got) == nbytes
            np.testing.assert_array_equal(got, expected)
            taken += _native.blosc_unshuffles_here(_address(encoded), encoded.size, nbytes)
    if shuffle == numcodecs.Blosc.BITSHUFFLE and typesize in (2, 4, 8):
        assert taken > 0  # (the AVX2 path ran; for 1000-byte blocks of 8-byte elements, not)
    else:
        assert taken == 0


def test_which_buffers_are_unshuffled_here() -> None:
    def covered(encoded: np.ndarray, destsize: int | None = None) -> bool:
        size = destsize if destsize is not None else int.from_bytes(encoded[4:8].tobytes(), "little")
        return bool(_native.blosc_unshuffles_here(_address(encoded), encoded.size, size))

    data = _sample(2**16, 0)
    bit = numcodecs.Blosc.BITSHUFFLE
    assert covered(_encode(data, "zstd", bit, 0, 2))
    assert covered(_encode(data, "lz4", bit, 4096, 8))
    assert not covered(_encode(data, "zstd", numcodecs.Blosc.SHUFFLE, 0, 2))
    assert not covered(_encode(data, "zstd", bit, 1000, 2))  # blocks of 500 elements
    assert not covered(_encode(data[: 2**16 - 8], "zstd", bit, 0, 8))  # a (last) block of 8191 elements
    assert not covered(_encode(data, "zstd", bit, 0, 1))
    encoded = _encode(data, "zstd", bit, 0, 4)
    assert not covered(encoded, destsize=2**16 - 1)  # decodes to more than the target holds
    assert not covered(encoded[:-1])  # the header's size is not the buffer's
    assert not covered(encoded[:15])
    stored = _encode(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8), "lz4", bit, 0, 4)
    assert stored[2] & 0x2  # incompressible: stored as is (no shuffle applied)
    assert not covered(stored)


@pytest.mark.parametrize("typesize", [2, 4, 8])
def test_damaged_blosc_buffers_fail_as_c_blosc_fails(decoders: tuple[Any, Any], typesize: int) -> None:
    # Damage past the header: the helper returns what c-blosc returns, and decodes the
    # same bytes when c-blosc decodes any.
    theirs, ours = decoders
    nbytes = 2**18
    encoded = _encode(_sample(nbytes, typesize), "zstd", numcodecs.Blosc.BITSHUFFLE, 2**15, typesize)
    rng = np.random.default_rng(typesize)
    for _ in range(40):
        damaged = encoded.copy()
        at = rng.integers(16, damaged.size, 3)
        damaged[at] ^= rng.integers(1, 256, 3, dtype=np.uint8)
        expected, got = np.zeros(nbytes, np.uint8), np.zeros(nbytes, np.uint8)
        result = theirs(damaged, expected)
        assert ours(damaged, got) == result
        if result == nbytes:
            np.testing.assert_array_equal(got, expected)


def test_codec_and_array_reads_use_it(tmp_path: Any) -> None:
    # Through the codec and a whole array round trip (int16 tiles, blosc zstd bitshuffle).
    data = np.cumsum(np.random.default_rng(3).integers(-3, 4, (512, 1024)), axis=1).astype("<i2")
    array = gpuzarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=data.shape,
        dtype="int16",
        chunks=(256, 512),
        compressors=[{"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5, "shuffle": "bitshuffle"}}],
    )
    array[...] = data
    np.testing.assert_array_equal(array[...], data)
    np.testing.assert_array_equal(array[100:300, 7:900:3], data[100:300, 7:900:3])
