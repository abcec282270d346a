"""Reads that take little of a chunk stored as is (uncompressed, native byte order) read
only the byte ranges holding what they take, from stores that read ranges of files
(local files): the same values as a whole read, the same errors, and a whole read where
the ranges would save little."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuzarr
from gpuzarr.errors import CorruptChunkError
from gpuzarr.indexing import MAX_RANGES, ortho_get, selection_byte_ranges
from gpuzarr.pipeline import read as read_module
from gpuzarr.stores.local import LocalStore
from gpuzarr.stores.memory import MemoryStore

# --------------------------------------------------------------------------------------
# planning the ranges


@st.composite
def _selection_entry(draw: st.DrawFn, n: int) -> Any:
    # (As chunk selections are: slices with steps, and integer arrays, unsorted and
    # repeating as a caller's may be.)
    kind = draw(st.sampled_from(["slice", "array"]))
    if kind == "array":
        return np.array(draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=6)), dtype=np.int64)
    start = draw(st.integers(0, n))
    stop = draw(st.integers(start, n))
    return slice(start, stop, draw(st.integers(1, n + 1)))


@st.composite
def _planned(draw: st.DrawFn) -> tuple[tuple[int, ...], int, tuple[Any, ...], int]:
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    itemsize = draw(st.sampled_from([1, 2, 4, 8]))
    selection = tuple(draw(_selection_entry(n)) for n in shape)
    max_gap = draw(st.sampled_from([0, 1, 7, 64, 2**14]))
    return shape, itemsize, selection, max_gap


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planned())
def test_ranges_hold_every_selected_element(planned: tuple[tuple[int, ...], int, tuple[Any, ...], int]) -> None:
    shape, itemsize, selection, max_gap = planned
    ranges = selection_byte_ranges(selection, shape, itemsize, max_gap=max_gap, max_share=float("inf"))
    assert ranges is not None
    nbytes = int(np.prod(shape)) * itemsize
    # In order, apart by more than max_gap, inside the array, none empty.
    ends = [offset + length for offset, length in ranges]
    assert all(length > 0 for _, length in ranges)
    assert all(offset >= 0 and end <= nbytes for (offset, _), end in zip(ranges, ends, strict=True))
    assert all(nxt[0] - end > max_gap for nxt, end in zip(ranges[1:], ends, strict=False))
    # A buffer holding the array's bytes only at the ranges serves the selection exactly.
    original = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    partial = np.full(nbytes, 0xA5, dtype=np.uint8)
    for offset, length in ranges:
        partial[offset : offset + length] = original[offset : offset + length]
    dtype = np.dtype(f"u{itemsize}")
    expected = ortho_get(original.view(dtype).reshape(shape), selection)
    np.testing.assert_array_equal(ortho_get(partial.view(dtype).reshape(shape), selection), expected)


def test_rows_of_a_strided_selection_are_read_apart() -> None:
    ranges = selection_byte_ranges((slice(3, 64, 7), slice(0, 4096, 3)), (64, 4096), 4, max_gap=2**14, max_share=0.5)
    assert ranges == [(row * 16384, 16384) for row in range(3, 64, 7)]


def test_close_ranges_merge_and_large_shares_read_whole() -> None:
    # Two columns a byte apart in each row, rows 16 bytes apart: one range with a gap of 16.
    assert selection_byte_ranges((slice(0, 4), np.array([0, 2])), (4, 16), 1, max_gap=16, max_share=2.0) == [(0, 51)]
    assert selection_byte_ranges((slice(0, 4), np.array([0, 2])), (4, 16), 1, max_gap=0, max_share=1.0) == [
        (0, 1),
        (2, 1),
        (16, 1),
        (18, 1),
        (32, 1),
        (34, 1),
        (48, 1),
        (50, 1),
    ]
    # A box of most of the array: read whole.
    assert selection_byte_ranges((slice(0, 60), slice(0, 4096)), (64, 4096), 4, max_gap=2**14, max_share=0.5) is None
    # Tiny ranges far apart cost a read each: counted so, they are not worth it.
    assert selection_byte_ranges((slice(0, 64), slice(0, 1)), (64, 4096), 4, max_gap=2**14, max_share=0.5) is None


def test_too_many_ranges_or_unknown_entries_read_whole() -> None:
    many = MAX_RANGES + 1
    assert selection_byte_ranges((slice(0, many), slice(0, 1)), (many, 8), 1, max_gap=0, max_share=1.0) is None
    assert selection_byte_ranges((slice(0, 2), "x"), (2, 2), 1, max_gap=0, max_share=1.0) is None
    assert selection_byte_ranges((slice(0, 2),), (2, 2), 1, max_gap=0, max_share=1.0) is None
    assert selection_byte_ranges((np.array([], dtype=np.int64), slice(0, 2)), (2, 2), 1, max_gap=0, max_share=1) == []


# --------------------------------------------------------------------------------------
# stores


def test_local_store_reads_only_the_ranges(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = bytes(range(256)) * 4
    store.set("k", data)
    buffer = bytearray(b"\xee" * len(data))
    assert store.get_into("k", memoryview(buffer), ranges=[(10, 5), (700, 20)]) == len(data)
    assert buffer[10:15] == data[10:15] and buffer[700:720] == data[700:720]
    untouched = buffer[:10] + buffer[15:700] + buffer[720:]
    assert untouched == b"\xee" * (len(data) - 25)
    assert store.get_into("missing", memoryview(buffer), ranges=[(0, 1)]) is None
    # A range past the end reads what is there; the size tells the caller.
    small = bytearray(2000)
    assert store.get_into("k", memoryview(small), ranges=[(1000, 1000)]) == len(data)
    assert small[1000:1024] == data[1000:1024]


def test_other_stores_may_fill_more_of_the_buffer() -> None:
    store = MemoryStore()
    store.set("k", b"abcdef")
    buffer = bytearray(6)
    assert store.get_into("k", memoryview(buffer), ranges=[(1, 2)]) == 6
    assert buffer[1:3] == b"bc"


# --------------------------------------------------------------------------------------
# reads

SHAPE = (300, 700)
CHUNKS = (64, 256)


def _local_array(tmp_path: Path, zarr_format: int) -> tuple[Any, np.ndarray]:
    data = np.random.default_rng(3).standard_normal(SHAPE).astype("float32")
    path = str(tmp_path / f"v{zarr_format}")
    a = gpuzarr.create_array(
        path, shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors=None, zarr_format=zarr_format
    )
    a[...] = data
    return gpuzarr.open_array(path, mode="r"), data


@pytest.fixture
def range_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ranges each ranged read of a local file asked for (with the gap read
    through scaled down to these small chunks' 1 KiB rows)."""
    monkeypatch.setattr(read_module, "RANGE_GAP_BYTES", 256)
    seen: list[int] = []
    original = LocalStore._get_ranges_into_buffer

    def recording(self: Any, key: str, ranges: Any, buffer: memoryview) -> int | None:
        seen.append(len(ranges))
        return original(self, key, ranges, buffer)

    monkeypatch.setattr(LocalStore, "_get_ranges_into_buffer", recording)
    return seen


SELECTIONS = [
    np.s_[::7, ::3],
    np.s_[5:290:13, 3:650:50],
    np.s_[10, ::2],
    np.s_[::-5, 7],
    np.s_[1::9, 100:102],
]


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("selection", SELECTIONS)
def test_strided_reads_of_uncompressed_chunks_match(
    tmp_path: Path, zarr_format: int, selection: Any, range_reads: list[int]
) -> None:
    a, data = _local_array(tmp_path, zarr_format)
    np.testing.assert_array_equal(a[selection], data[selection])
    assert range_reads, "no chunk was read in ranges"


def test_orthogonal_reads_in_ranges_match(tmp_path: Path, range_reads: list[int]) -> None:
    a, data = _local_array(tmp_path, 3)
    rows, cols = [299, 5, 2, 64, 5], [7, 699, 0, 300]
    np.testing.assert_array_equal(a.oindex[rows, cols], data[np.ix_(rows, cols)])
    assert range_reads


def test_boxes_of_most_of_a_chunk_are_read_whole(tmp_path: Path, range_reads: list[int]) -> None:
    a, data = _local_array(tmp_path, 3)
    np.testing.assert_array_equal(a[2:62, 3:250], data[2:62, 3:250])
    assert range_reads == []


def test_missing_chunks_read_in_ranges_are_fill(tmp_path: Path, range_reads: list[int]) -> None:
    path = tmp_path / "sparse"
    a = gpuzarr.create_array(str(path), shape=SHAPE, chunks=CHUNKS, dtype="float32", compressors=None, fill_value=4.5)
    a[:64, :256] = 1.0
    got = gpuzarr.open_array(str(path), mode="r")[::7, ::3]
    expected = np.full(SHAPE, 4.5, dtype="float32")
    expected[:64, :256] = 1.0
    np.testing.assert_array_equal(got, expected[::7, ::3])


def test_a_short_chunk_read_in_ranges_is_named(tmp_path: Path, range_reads: list[int]) -> None:
    a, _ = _local_array(tmp_path, 3)
    chunk = tmp_path / "v3" / "c" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:1000])
    with pytest.raises(CorruptChunkError, match=r"chunk.*\(1, 1\)|c/1/1") as raised:
        a[::7, ::3]
    assert "expected" in str(raised.value)
    assert range_reads
