"""Reads that need only the start of a chunk's C-order elements decode no further, where
the chunk's codecs can stop early (zstd, block by block): the same values as a whole
decode, the same errors, and a whole decode wherever a prefix cannot be trusted (a
frame checksum to verify, a byte order to swap, a transposed layout, no size in the
frame header)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr.codecs import BytesCodec, ChunkSpec, CodecChain, GzipCodec, TransposeCodec, ZstdCodec
from gpuzarr.codecs.chain import CodecChain as ChainClass
from gpuzarr.errors import CorruptChunkError
from gpuzarr.metadata import data_type_from_user
from gpuzarr.pipeline import read as read_module

SHAPE = (700, 1100)
# int16 chunks of 300 KB: above the size that decodes in batches (BATCH_UNIT_MAX_BYTES),
# so each unit is decoded on its own, where a prefix is enough.
CHUNKS = (300, 500)
assert CHUNKS[0] * CHUNKS[1] * 2 > read_module.BATCH_UNIT_MAX_BYTES


def _spec(shape: tuple[int, ...], dtype: str) -> ChunkSpec:
    data_type = data_type_from_user(dtype)
    return ChunkSpec(shape, data_type, data_type.cast_fill_value(None))


@functools.cache
def _array(variant: str) -> tuple[Any, np.ndarray]:
    """An array of SHAPE in CHUNKS, zstd-compressed, and its data."""
    rng = np.random.default_rng(7)
    data = rng.integers(-40, 40, size=SHAPE).astype("int16")
    zstd = {"name": "zstd", "configuration": {"level": 1, "checksum": variant == "checksum"}}
    kwargs: dict[str, Any] = {"compressors": [zstd]}
    if variant == "big-endian":
        kwargs["serializer"] = {"name": "bytes", "configuration": {"endian": "big"}}
    if variant == "transposed":
        kwargs["filters"] = [{"name": "transpose", "configuration": {"order": [1, 0]}}]
    a = gpuzarr.create_array({}, shape=SHAPE, chunks=CHUNKS, dtype="int16", fill_value=0, **kwargs)
    a[...] = data
    return a, data


@pytest.fixture
def prefixes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Every prefix decode tried: (bytes asked for, whether it was done)."""
    seen: list[tuple[int, bool]] = []
    original = ChainClass.decode_prefix

    def recording(self: Any, data: Any, out: np.ndarray, nbytes: int) -> bool:
        done = original(self, data, out, nbytes)
        seen.append((nbytes, done))
        return done

    monkeypatch.setattr(ChainClass, "decode_prefix", recording)
    return seen


def test_a_box_at_the_top_of_chunks_decodes_only_their_start(prefixes: list[tuple[int, bool]]) -> None:
    a, data = _array("plain")
    with gpuzarr.config.set(threads=1):
        np.testing.assert_array_equal(a[290:310, 10:30], data[290:310, 10:30])
    # The chunk above the boundary is needed to its last rows: decoded whole. The one
    # below, to its row 9, column 29: that many elements decoded, no more.
    assert prefixes == [((9 * 500 + 29 + 1) * 2, True)]


def test_a_box_at_the_bottom_of_a_chunk_decodes_it_whole(prefixes: list[tuple[int, bool]]) -> None:
    a, data = _array("plain")
    np.testing.assert_array_equal(a[250:290, 400:500], data[250:290, 400:500])
    assert prefixes == []


@pytest.mark.parametrize("variant", ["checksum", "big-endian"])
def test_chunks_whose_prefix_cannot_be_trusted_decode_whole(prefixes: list[tuple[int, bool]], variant: str) -> None:
    a, data = _array(variant)
    np.testing.assert_array_equal(a[300:305, 0:7], data[300:305, 0:7])
    assert prefixes and not any(done for _, done in prefixes)


def test_a_transposed_chunk_decodes_whole(prefixes: list[tuple[int, bool]]) -> None:
    a, data = _array("transposed")
    np.testing.assert_array_equal(a[300:305, 0:7], data[300:305, 0:7])
    assert not any(done for _, done in prefixes)


def test_a_chunk_cut_short_names_itself() -> None:
    _, data = _array("plain")
    zstd = {"name": "zstd", "configuration": {"level": 1, "checksum": False}}
    b = gpuzarr.create_array({}, shape=SHAPE, chunks=CHUNKS, dtype="int16", fill_value=0, compressors=[zstd])
    b[...] = data
    key = "c/1/0"
    whole = bytes(b.store.get(key))
    np.testing.assert_array_equal(b[300:400, 0:500], data[300:400, 0:500])
    # A frame that still claims the whole chunk in its header but stops after its first
    # block: the prefix read runs out of it.
    cut = whole[: len(whole) // 8]
    b.store.set(key, cut)
    with pytest.raises(CorruptChunkError, match=r"chunk \(1, 0\)|c/1/0"):
        b[300:400, 0:500]  # (the first 100 of 300 rows: more than the cut frame holds)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(["plain", "checksum", "big-endian", "transposed"]),
    rows=st.tuples(st.integers(0, SHAPE[0] - 1), st.integers(1, 150), st.integers(1, 3)),
    cols=st.tuples(st.integers(0, SHAPE[1] - 1), st.integers(1, 600), st.integers(1, 4)),
    picks=st.lists(st.integers(0, SHAPE[1] - 1), min_size=1, max_size=5),
)
def test_selections_read_like_numpy(
    variant: str, rows: tuple[int, int, int], cols: tuple[int, int, int], picks: list[int]
) -> None:
    a, data = _array(variant)
    row_sel = slice(rows[0], rows[0] + rows[1], rows[2])
    col_sel = slice(cols[0], cols[0] + cols[1], cols[2])
    np.testing.assert_array_equal(a[row_sel, col_sel], data[row_sel, col_sel])
    np.testing.assert_array_equal(a[rows[0], col_sel], data[rows[0], col_sel])
    np.testing.assert_array_equal(a.oindex[row_sel, picks], data[row_sel][:, picks])


# --------------------------------------------------------------------------------------
# the codec and the chain


def _frame(n: int, checksum: bool = False) -> tuple[bytes, bytes]:
    payload = (np.arange(n) % 97).astype(np.uint8).tobytes()
    return payload, zstandard.ZstdCompressor(level=1, write_checksum=checksum).compress(payload)


@pytest.mark.parametrize("n", [1, 1000, 200_000, 600_000])
def test_zstd_decodes_a_prefix(n: int) -> None:
    payload, frame = _frame(600_000)
    out = bytearray(n)
    assert ZstdCodec().cpu_decode_prefix(frame, memoryview(out))
    assert bytes(out) == payload[:n]


def test_zstd_decodes_no_prefix_of_a_frame_with_a_checksum() -> None:
    _, frame = _frame(1000, checksum=True)
    out = bytearray(10)
    assert not ZstdCodec().cpu_decode_prefix(frame, memoryview(out))
    assert out == bytearray(10)


def test_zstd_prefix_of_a_frame_too_short_raises() -> None:
    _, frame = _frame(1000)
    with pytest.raises(CorruptChunkError, match="codec 'zstd'"):
        ZstdCodec().cpu_decode_prefix(frame, memoryview(bytearray(1001)))
    with pytest.raises(CorruptChunkError, match="codec 'zstd'"):
        ZstdCodec().cpu_decode_prefix(b"not a frame at all", memoryview(bytearray(4)))


def test_chain_decodes_prefixes_only_where_it_can() -> None:
    spec = _spec((100, 50), "int16")
    data = np.arange(5000, dtype="int16").reshape(100, 50)
    out = np.zeros((100, 50), dtype="int16")
    plain = CodecChain([BytesCodec("little"), ZstdCodec(1)], spec)
    assert plain.decode_prefix(plain.encode(data), out, 300)
    np.testing.assert_array_equal(out.reshape(-1)[:150], data.reshape(-1)[:150])
    assert (out.reshape(-1)[150:] == 0).all(), "nothing past the prefix is written"
    refused = [
        CodecChain([BytesCodec("big"), ZstdCodec(1)], spec),  # (bytes to swap)
        CodecChain([TransposeCodec((1, 0)), BytesCodec("little"), ZstdCodec(1)], spec),
        CodecChain([BytesCodec("little"), GzipCodec(1)], spec),  # (gzip: no prefix decoder)
        CodecChain([BytesCodec("little")], spec),  # (nothing to decode)
    ]
    for chain in refused:
        assert not chain.decode_prefix(chain.encode(data), out, 300), chain.to_json()
    # A frame that does not record the chunk's size (or records another) is decoded whole.
    other = CodecChain([BytesCodec("little"), ZstdCodec(1)], _spec((100, 49), "int16"))
    assert not plain.decode_prefix(other.encode(data[:, :49].copy()), out, 300)
