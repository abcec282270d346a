"""Sharding (sharding_indexed): interop, partial reads, request counts, corruption."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts
import zarr

import gpuzarr
from gpuzarr.codecs import ShardingCodec
from gpuzarr.errors import ChecksumError, CorruptChunkError
from gpuzarr.pipeline import coalesce_ranges, shard_index_cache
from gpuzarr.stores import MemoryStore, Store, ZipStore
from gpuzarr.stores.base import ObjectReader

BYTES_LE = {"name": "bytes", "configuration": {"endian": "little"}}
CRC = {"name": "crc32c"}


def _data(shape: Sequence[int], dtype: str = "int32") -> np.ndarray:
    return (np.arange(int(np.prod(shape))) * 7 % 1000).astype(dtype).reshape(shape)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    shard_index_cache.clear()


# --------------------------------------------------------------------------------------
# zarr-python writes, gpuzarr reads


@pytest.mark.parametrize("index_location", ["start", "end"])
@pytest.mark.parametrize("crc", [True, False])
@pytest.mark.parametrize("compressor", [None, "zstd", "gzip"])
def test_read_zarr_python_shards(tmp_path: Path, index_location: str, crc: bool, compressor: str | None) -> None:
    data = _data((23, 17))
    index_codecs = [zarr.codecs.BytesCodec()] + ([zarr.codecs.Crc32cCodec()] if crc else [])
    comp = {"zstd": zarr.codecs.ZstdCodec(), "gzip": zarr.codecs.GzipCodec(), None: None}[compressor]
    z = zarr.create_array(
        tmp_path / "a",
        shape=data.shape,
        dtype=data.dtype,
        chunks=(3, 4),
        shards={"shape": (6, 8), "index_location": index_location},
        compressors=comp,
        fill_value=-1,
    )
    # Rewrite the sharding codec's index codecs as requested (zarr-python's default has crc32c).
    meta_path = tmp_path / "a" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"][0]["configuration"]["index_codecs"] = [c.to_dict() for c in index_codecs]
    meta_path.write_text(json.dumps(meta))
    z = zarr.open_array(tmp_path / "a", mode="r+")
    z[:] = data
    z[3:6, :] = -1  # sparse: a row of empty inner chunks
    expected = data.copy()
    expected[3:6, :] = -1

    a = gpuzarr.open_array(tmp_path / "a")
    assert a.chunks == (3, 4)
    assert a.shards == (6, 8)
    np.testing.assert_array_equal(a[:], expected)
    np.testing.assert_array_equal(a[5:20:3, ::-2], expected[5:20:3, ::-2])
    np.testing.assert_array_equal(a.oindex[[0, 22, 7], [16, 0]], expected[np.ix_([0, 22, 7], [16, 0])])
    np.testing.assert_array_equal(a.vindex[[0, 22, 7], [16, 0, 3]], expected[[0, 22, 7], [16, 0, 3]])


def test_read_nested_shards(tmp_path: Path) -> None:
    data = _data((16, 16), "float32")
    inner_sharding = {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [2, 2],
            "codecs": [BYTES_LE, {"name": "zstd", "configuration": {"level": 1, "checksum": False}}],
            "index_codecs": [BYTES_LE, CRC],
            "index_location": "end",
        },
    }
    a = gpuzarr.create_array(
        tmp_path / "n",
        shape=data.shape,
        dtype="float32",
        chunks=(8, 8),
        serializer={
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [4, 4],
                "codecs": [inner_sharding],
                "index_codecs": [BYTES_LE, CRC],
                "index_location": "start",
            },
        },
        compressors=None,
    )
    a[:] = data
    a[1:3, 5] = 0.5
    data[1:3, 5] = 0.5
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "n")[:], data)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "n", mode="r")[:], data)


def test_read_edge_and_absent_shards(tmp_path: Path) -> None:
    z = zarr.create_array(tmp_path / "e", shape=(10, 7), dtype="uint16", chunks=(2, 2), shards=(4, 4), fill_value=9)
    z[0:3, 0:3] = 1
    z[9, 6] = 2  # lone element in the corner edge shard
    expected = np.full((10, 7), 9, dtype="uint16")
    expected[0:3, 0:3] = 1
    expected[9, 6] = 2
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "e")[:], expected)


# --------------------------------------------------------------------------------------
# gpuzarr writes, peers read


@pytest.mark.parametrize("index_location", ["start", "end"])
@pytest.mark.parametrize("index_crc", [True, False])
def test_write_read_by_peers(tmp_path: Path, index_location: str, index_crc: bool) -> None:
    data = _data((20, 30), "float64")
    a = gpuzarr.create_array(
        tmp_path / "w",
        shape=data.shape,
        dtype="float64",
        chunks=(8, 10),
        serializer={
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [4, 5],
                "codecs": [BYTES_LE, {"name": "blosc", "configuration": {"cname": "lz4", "shuffle": "shuffle"}}],
                "index_codecs": [BYTES_LE, CRC] if index_crc else [BYTES_LE],
                "index_location": index_location,
            },
        },
        compressors=None,
        fill_value=np.nan,
    )
    a[:] = data
    a[2:7, 3:4] = -5.0  # partial shard writes
    data[2:7, 3:4] = -5.0
    a[16:, :] = np.nan  # a whole row of shards back to fill value: must be deleted
    data[16:, :] = np.nan
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "w", mode="r")[:], data)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp_path / "w")}}).result()
    np.testing.assert_array_equal(t.read().result(), data)
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "w")[:], data)
    assert not (tmp_path / "w" / "c" / "2").exists(), "shards holding only fill value must not be stored"


def test_create_with_shards_matches_zarr_python(tmp_path: Path) -> None:
    data = _data((20, 30), "uint8")
    gpuzarr.create_array(tmp_path / "g", shape=data.shape, dtype="uint8", chunks=(4, 5), shards=(8, 10), data=data)
    z = zarr.open_array(tmp_path / "g", mode="r")
    assert z.chunks == (4, 5) and z.shards == (8, 10)
    np.testing.assert_array_equal(z[:], data)


def test_tensorstore_writes_gpuzarr_reads(tmp_path: Path) -> None:
    data = _data((12, 9), "int16")
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(tmp_path / "t")},
        "metadata": {
            "shape": list(data.shape),
            "data_type": "int16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [6, 6]}},
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [3, 2],
                        "codecs": [BYTES_LE, {"name": "zstd", "configuration": {"level": 3, "checksum": True}}],
                        "index_codecs": [BYTES_LE, CRC],
                        "index_location": "end",
                    },
                }
            ],
            "fill_value": 0,
        },
        "create": True,
    }
    t = ts.open(spec).result()
    t[...] = data
    t[0:3, 0:2] = 0  # an empty inner chunk
    data[0:3, 0:2] = 0
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "t")[:], data)
    np.testing.assert_array_equal(gpuzarr.open_array(tmp_path / "t")[1:11:4, 8], data[1:11:4, 8])


def test_empty_inner_chunks_not_stored() -> None:
    store = MemoryStore()
    a = gpuzarr.create_array(store, shape=(8,), dtype="i4", chunks=(2,), shards=(8,), fill_value=0)
    a[0:2] = 5
    raw = store.get("c/0")
    assert raw is not None
    codec = a.serializer
    assert isinstance(codec, ShardingCodec)
    index = codec.decode_index(raw[-(4 * 16 + 4) :], a._layout.shard_spec)  # type: ignore[attr-defined]
    assert index.byte_range((0,)) is not None
    assert [index.byte_range((i,)) for i in (1, 2, 3)] == [None, None, None]
    a[0:2] = 0
    assert store.get("c/0") is None, "a shard with no stored inner chunk is deleted"


# --------------------------------------------------------------------------------------
# request counting


class CountingStore(MemoryStore):
    """A memory store that counts store requests (one per key per call) and bytes read."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[str] = Counter()
        self.bytes_read = 0

    def reset(self) -> None:
        self.requests.clear()
        self.bytes_read = 0

    def _note(self, kind: str, n: int, payload: Any) -> None:
        self.requests[kind] += n
        if isinstance(payload, (bytes, memoryview)):
            self.bytes_read += len(payload)
        elif isinstance(payload, list):
            for p in payload:
                self._note_payload(p)

    def _note_payload(self, p: Any) -> None:
        if isinstance(p, (bytes, memoryview)):
            self.bytes_read += len(p)
        elif isinstance(p, list):
            for q in p:
                self._note_payload(q)

    def _open_reader(self, key: str) -> ObjectReader | None:
        # The base reader, which reads through the (counted) store calls: counting
        # requests needs no snapshot of the object.
        return Store._open_reader(self, key)

    def get(self, key: str, **kw: Any) -> bytes | None:
        out = super().get(key, **kw)
        self._note("get", 1, out)
        return out

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        out = super().get_many(keys)
        self._note("get", len(keys), out)
        return out

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]], **kw: Any) -> list[bytes] | None:
        out = super().get_ranges(key, ranges, **kw)
        self._note("range", len(ranges), out)
        return out

    def get_many_ranges(self, requests: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[list[bytes] | None]:
        out = super().get_many_ranges(requests)
        self._note("range", sum(len(r) for _, r in requests), out)
        return out

    def get_suffix(self, key: str, length: int) -> bytes | None:
        out = super().get_suffix(key, length)
        self._note("suffix", 1, out)
        return out


@pytest.fixture
def counted() -> tuple[CountingStore, gpuzarr.Array, np.ndarray]:
    store = CountingStore()
    data = _data((64, 64), "float32")
    a = gpuzarr.create_array(store, shape=data.shape, dtype="float32", chunks=(8, 8), shards=(32, 32))
    a[:] = data
    shard_index_cache.clear()
    opened = gpuzarr.open_array(store)
    store.reset()  # count only the data reads, not the metadata read of opening
    return store, opened, data


Counted = tuple[CountingStore, gpuzarr.Array, np.ndarray]


def test_adjacent_inner_chunks_cost_two_requests_then_one(counted: Counted) -> None:
    store, a, data = counted
    # 4 adjacent inner chunks (one row of a shard) in one shard
    np.testing.assert_array_equal(a[8:16, 0:32], data[8:16, 0:32])
    assert sum(store.requests.values()) <= 2, store.requests
    assert store.requests["suffix"] == 1  # the index, read from the end
    store.reset()
    np.testing.assert_array_equal(a[8:16, 0:32], data[8:16, 0:32])
    assert sum(store.requests.values()) == 1, store.requests  # index cached: one coalesced read


def test_one_inner_chunk_reads_only_its_bytes(counted: Counted) -> None:
    store, a, data = counted
    np.testing.assert_array_equal(a[40, 50], data[40, 50])
    index_nbytes = 4 * 4 * 16 + 4
    shard = store.data["c/1/1"]
    codec = a.serializer
    assert isinstance(codec, ShardingCodec)
    index = codec.decode_index(shard[-index_nbytes:], a._layout.shard_spec)  # type: ignore[attr-defined]
    found = index.byte_range((1, 2))
    assert found is not None
    assert store.bytes_read == index_nbytes + found[1]


def test_cache_invalidated_by_writes_through_other_handles(tmp_path: Path) -> None:
    writer = gpuzarr.create_array(tmp_path / "c", shape=(16,), dtype="i8", chunks=(2,), shards=(8,))
    writer[:] = np.arange(16)
    reader = gpuzarr.open_array(tmp_path / "c")
    np.testing.assert_array_equal(reader[:], np.arange(16))  # caches the indexes
    writer[3] = 100  # rewrites shard 0 with a different layout
    writer[0:2] = 0  # makes inner chunk 0 empty: offsets shift
    expected = np.arange(16)
    expected[3] = 100
    expected[0:2] = 0
    np.testing.assert_array_equal(reader[:], expected)


def test_coalesce_ranges() -> None:
    ranges = [(100, 10), (0, 50), (50, 50), (300, 5), (120, 10)]
    merged = coalesce_ranges(ranges, max_gap=10)
    assert merged == [(0, 130, [1, 2, 0, 4]), (300, 5, [3])]
    assert coalesce_ranges(ranges, max_gap=0) == [(0, 110, [1, 2, 0]), (120, 10, [4]), (300, 5, [3])]


# --------------------------------------------------------------------------------------
# corruption


@pytest.fixture
def sharded_dir(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = _data((8, 8), "int32")
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(2, 2), shards=(4, 4))
    a[:] = data
    return tmp_path / "s", data


def test_corrupt_index_checksum(sharded_dir: tuple[Path, np.ndarray]) -> None:
    path, _ = sharded_dir
    shard = path / "c" / "0" / "1"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="c/0/1"):
        gpuzarr.open_array(path)[:]


def test_index_entry_past_end(tmp_path: Path) -> None:
    # No crc32c on the index, so a forged index passes its (absent) checksum.
    data = _data((8, 8), "int32")
    a = gpuzarr.create_array(
        tmp_path / "s",
        shape=data.shape,
        dtype="int32",
        chunks=(4, 4),
        serializer={
            "name": "sharding_indexed",
            "configuration": {"chunk_shape": [2, 2], "codecs": [BYTES_LE], "index_codecs": [BYTES_LE]},
        },
        compressors=None,
    )
    a[:] = data
    shard = tmp_path / "s" / "c" / "1" / "0"
    raw = shard.read_bytes()
    body, index = raw[: -4 * 16], np.frombuffer(raw[-4 * 16 :], "<u8").copy()
    index[2] = len(body) + 1000  # offset of inner chunk (0, 1) far past the end
    shard.write_bytes(body + index.tobytes())
    with pytest.raises(CorruptChunkError, match=r"c/1/0.*\(0, 1\)"):
        gpuzarr.open_array(tmp_path / "s")[:]
    with pytest.raises(CorruptChunkError, match=r"c/1/0.*\(0, 1\)"):
        gpuzarr.open_array(tmp_path / "s")[4:6, 2:4]  # a partial read of just that inner chunk


def test_truncated_shard(sharded_dir: tuple[Path, np.ndarray]) -> None:
    path, _ = sharded_dir
    shard = path / "c" / "1" / "1"
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(CorruptChunkError, match="c/1/1"):
        gpuzarr.open_array(path)[:]


def _shard_of(values: list[int]) -> bytes:
    """The one shard of an 8-element int64 array of 4 inner chunks holding ``values``."""
    store: dict[str, bytes] = {}
    a = gpuzarr.create_array(store, shape=(8,), chunks=(2,), shards=(8,), dtype="i8", compressors=None)
    a[:] = values
    return bytes(store["c/0"])


def test_cache_notices_memory_values_replaced_in_the_dict() -> None:
    # Same length, put straight into the dict: the new bytes may take the freed old
    # ones' address, so the version token must not be a bare id (it was: 50 of 50
    # reads of B gave A's layout).
    first, second = _shard_of([1, 1, 2, 2, 3, 3, 0, 0]), _shard_of([0, 0, 5, 5, 6, 6, 7, 7])
    assert len(first) == len(second)
    for _ in range(20):
        d: dict[str, bytes] = {}
        a = gpuzarr.create_array(MemoryStore(d), shape=(8,), chunks=(2,), shards=(8,), dtype="i8", compressors=None)
        d["c/0"] = bytes(bytearray(first))
        assert a[:].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
        d["c/0"] = bytes(bytearray(first))
        d["c/0"] = bytes(bytearray(second))
        assert a[:].tolist() == [0, 0, 5, 5, 6, 6, 7, 7]


def test_zip_handles_never_share_cached_indexes(tmp_path: Path) -> None:
    # Each handle reads its own snapshot of the archive, and members carry no version:
    # an index cached through one handle (or from the file before it was replaced)
    # must not serve another.
    def make(path: Path, values: list[int]) -> None:
        with ZipStore(path, mode="w") as store:
            a = gpuzarr.create_array(store, shape=(8,), chunks=(2,), shards=(8,), dtype="i4", compressors=None)
            a[:] = values

    make(tmp_path / "v1.zip", [1, 1, 2, 2, 3, 3, 0, 0])
    make(tmp_path / "v2.zip", [0, 0, 5, 5, 6, 6, 7, 7])
    target = tmp_path / "data.zip"
    shutil.copy(tmp_path / "v1.zip", target)
    with ZipStore(target) as store:
        assert gpuzarr.open_array(store)[:].tolist() == [1, 1, 2, 2, 3, 3, 0, 0]
    shutil.copy(tmp_path / "v2.zip", target)  # replaced by another program
    with ZipStore(target) as store:
        assert gpuzarr.open_array(store)[:].tolist() == [0, 0, 5, 5, 6, 6, 7, 7]
    reader = gpuzarr.open_array(ZipStore(target))
    writer_store = ZipStore(target, mode="a")
    writer = gpuzarr.open_array(writer_store, mode="r+")
    writer[0:4] = 9
    assert writer[:].tolist() == [9, 9, 9, 9, 6, 6, 7, 7]
    assert reader[:].tolist() == [0, 0, 5, 5, 6, 6, 7, 7], "the reader's own snapshot"
    writer_store.close()
    assert gpuzarr.open_array(ZipStore(target))[:].tolist() == [9, 9, 9, 9, 6, 6, 7, 7]


def test_closing_a_zip_handle_drops_its_cached_indexes(tmp_path: Path) -> None:
    # (Each handle is its own cache namespace: nothing cached for it can be hit once
    # it is closed, and a process opening zips again and again filled the cache.)
    path = tmp_path / "z.zip"
    with ZipStore(path, mode="w") as store:
        gpuzarr.create_array(store, shape=(64,), chunks=(4,), shards=(16,), dtype="u1")[:] = 7
    shard_index_cache.clear()
    for _ in range(5):
        with ZipStore(path) as store:
            assert gpuzarr.open_array(store)[::10].tolist() == [7] * 7
            assert len(shard_index_cache) == 4
        assert len(shard_index_cache) == 0


def test_cache_notices_shards_rewritten_by_another_library(tmp_path: Path) -> None:
    """A shard replaced behind gpuzarr's back (here by zarr-python) is never read with a stale index."""
    path = tmp_path / "x"
    data = _data((16, 16), "int32")
    z = zarr.create_array(path, shape=data.shape, dtype="int32", chunks=(2, 2), shards=(8, 8))
    z[:] = data
    handle = gpuzarr.open_array(path)
    np.testing.assert_array_equal(handle[:], data)  # indexes now cached
    z[0:2, 0:2] = 0  # empties an inner chunk: every later offset in that shard moves
    z[5, 5] = -7
    expected = data.copy()
    expected[0:2, 0:2] = 0
    expected[5, 5] = -7
    np.testing.assert_array_equal(handle[:], expected)
    np.testing.assert_array_equal(gpuzarr.open_array(path)[:8, :8], expected[:8, :8])


# --------------------------------------------------------------------------------------
# batched planning over many shards


def test_plan_reads_never_coalesces_across_shards() -> None:
    from gpuzarr.codecs.sharding import EMPTY, ShardIndex
    from gpuzarr.pipeline.layout import _plan_reads

    # Two shards whose inner chunks sit at the same offsets: a plan that merged ranges
    # across shards would read one shard's bytes for the other.
    entries = np.array([[0, 10], [10, 10], [EMPTY, EMPTY], [40, 5]], dtype=np.uint64).reshape(4, 2)
    indexes = [ShardIndex(entries.copy()), None, ShardIndex(entries.copy())]
    position = np.array([2, 0, 0, 1, 2, 0, 2])  # unit -> shard
    inner = np.array([[0], [1], [0], [0], [3], [2], [1]])
    planned = _plan_reads(indexes, position, inner, max_gap=100)
    assert planned is not None
    members, offsets, lengths, read_shard, read_start, read_end, bounds = planned
    assert read_shard == [0, 2]  # shard 1 is missing, inner chunk 2 is empty: neither is read
    assert [(s, e) for s, e in zip(read_start, read_end, strict=True)] == [(0, 20), (0, 45)]
    assert members[bounds[0] : bounds[1]] == [2, 1]  # shard 0: units at offsets 0 and 10
    assert members[bounds[1] : bounds[2]] == [0, 6, 4]  # shard 2: offsets 0, 10, 40
    assert offsets == [0, 10, 0, 10, 40] and lengths == [10, 10, 10, 10, 5]


@pytest.mark.parametrize("huge", [False, True])
def test_plan_reads_gap_threshold_per_shard(huge: bool) -> None:
    from gpuzarr.codecs.sharding import ShardIndex
    from gpuzarr.pipeline.layout import _plan_reads

    # `huge` offsets take the shard-by-shard path (too large to band the shards apart).
    base = 2**61 if huge else 0
    entries = np.array([[base, 8], [base + 20, 8], [base + 100, 8]], dtype=np.uint64)
    indexes = [ShardIndex(entries.copy()) for _ in range(3)]
    position = np.repeat([0, 1, 2], 3)
    inner = np.tile(np.arange(3), 3).reshape(-1, 1)
    planned = _plan_reads(indexes, position, inner, max_gap=12)
    assert planned is not None
    _, _, _, read_shard, read_start, read_end, _ = planned
    assert read_shard == [0, 0, 1, 1, 2, 2]
    assert [e - s for s, e in zip(read_start, read_end, strict=True)] == [28, 8] * 3
    assert read_start == [base, base + 100] * 3


def test_tiny_shard_groups_are_merged_per_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuzarr.pipeline import layout as layout_module

    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 0)  # (a group per shard, at most)
    data = _data((64, 16), "int32")
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(1, 16), shards=(4, 16))
    a[:] = data
    layout = a._layout  # type: ignore[attr-defined]
    rows = [1, 5, 6, 9, 17, 33, 34, 35, 50, 63]  # one or a few inner chunks in each of 7 shards
    projections = [p for r in rows for p in a._indexer((slice(r, r + 1),), "basic").chunk_projections()]
    groups = layout.worker_groups(projections, threads=3, min_group_bytes=2**20)
    assert len(groups) <= 3
    seen = [p.chunk_coords for g in groups for p in g.projections]
    assert sorted(seen) == sorted(p.chunk_coords for p in projections)
    shards_of = [{c[0] // 4 for c in (p.chunk_coords for p in g.projections)} for g in groups]
    for i, one in enumerate(shards_of):  # no shard is split between groups
        for other in shards_of[i + 1 :]:
            assert not one & other
    # Large shares of a read: groups never mix shards, and as the work runs out, shards
    # are cut into runs of inner chunks so that no thread idles (here the 3-unit shard,
    # into single units).
    split = layout.worker_groups(projections, threads=3, min_group_bytes=0)
    assert all(len({p.chunk_coords[0] // 4 for p in g.projections}) == 1 for g in split)
    assert 7 < len(split) <= len(projections)
    assert sorted(p.chunk_coords for g in split for p in g.projections) == sorted(p.chunk_coords for p in projections)
    one_thread = layout.worker_groups(projections, threads=1, min_group_bytes=0)
    assert len(one_thread) == 7  # one thread: no shard is cut, as none would idle
    for group in groups:
        for projection, raw in zip(group.projections, group.fetch(), strict=True):
            row = projection.chunk_coords[0]
            np.testing.assert_array_equal(layout.decode(projection.chunk_coords, raw), data[row : row + 1])
    # Each group carries where its units' shards are, as the worker would work it out.
    for group in [*groups, *split, *one_thread, *layout.worker_groups(projections[:1], 3)]:
        shards, position, inner = group.located
        want_shards, want_position, want_inner = layout.locate_shards(group.projections)
        assert shards == want_shards
        np.testing.assert_array_equal(position, want_position)
        np.testing.assert_array_equal(inner, want_inner)


def test_last_shards_of_a_read_are_cut_shorter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With many shards, each is a group at first; as the work runs out, runs of a shard's
    inner chunks get shorter (at most a quarter of what is left on 2 threads), so that
    threads run out of work together."""
    from gpuzarr.pipeline import layout as layout_module
    from gpuzarr.pipeline import read as read_module

    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 0)  # (a group per shard, at most)
    data = _data((64, 16), "int32")
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(1, 16), shards=(4, 16))
    a[:] = data
    layout = a._layout  # type: ignore[attr-defined]
    projections = list(a._indexer((slice(None),), "basic").chunk_projections())
    groups = layout.worker_groups(projections, threads=2, min_group_bytes=0)
    shard_of_group = [{p.chunk_coords[0] // 4 for p in g.projections} for g in groups]
    assert all(len(s) == 1 for s in shard_of_group)  # never mixing shards
    # 16 shards of 4: whole ones while a quarter of what is left is 4 or more, then
    # ceil(left / 4), cut at shard ends (12 left: 3, and the shard's last 1).
    assert [len(g.projections) for g in groups] == [4] * 13 + [3, 1, 2, 2, 1, 1, 1, 1]
    assert [p.chunk_coords for g in groups for p in g.projections] == [p.chunk_coords for p in projections]
    with gpuzarr.config.set(threads=2):
        monkeypatch.setattr(read_module, "GROUP_MIN_BYTES", 0)  # (else these tiny shards are merged)
        np.testing.assert_array_equal(a[:], data)
        monkeypatch.setattr(read_module, "DECODE_BATCH_MAX_BYTES", 3 * 64)  # several batches per group
        np.testing.assert_array_equal(a[:], data)
        np.testing.assert_array_equal(a[3:61, 2:15], data[3:61, 2:15])  # units through the scratch


@pytest.mark.parametrize("native", [False, True])
def test_groups_take_several_whole_shards_up_to_the_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """A worker's group takes whole shards, in storage order, while they hold at most
    ``SHARD_GROUP_SPAN_BYTES`` of the read's units (each group costs a fixed share of
    planning and checking); a shard holding more stays a group of its own; the tapering
    end of a read on several threads still cuts shards into shorter runs."""
    from gpuzarr import _native
    from gpuzarr.pipeline import layout as layout_module
    from gpuzarr.pipeline import read as read_module

    if native and _native.shard_reads is None:
        pytest.skip("gpuzarr's native helper is not built")
    if not native:
        monkeypatch.setattr(_native, "shard_reads", None)
    data = _data((64, 16), "int32")  # 64-byte inner chunks, 4 to a shard, 16 shards
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(1, 16), shards=(4, 16))
    a[:] = data
    layout = a._layout  # type: ignore[attr-defined]
    projections = list(a._indexer((slice(None),), "basic").chunk_projections())
    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 10 * 64)  # two shards and a half

    def shards_of(groups: list[Any]) -> list[list[int]]:
        return [sorted({p.chunk_coords[0] // 4 for p in g.projections}) for g in groups]

    one_thread = layout.worker_groups(projections, threads=1, min_group_bytes=0)
    assert shards_of(one_thread) == [[2 * i, 2 * i + 1] for i in range(8)]  # (no shard cut)
    two_threads = layout.worker_groups(projections, threads=2, min_group_bytes=0)
    # A quarter of what is left, at most the span (10), in whole shards: two shards
    # while that reaches 8 (64..32 left), then one (24..16 left: a quarter is 4-6), then
    # the last shards cut: 12 left -> 3 and the shard's last 1, and so on.
    assert [len(g.projections) for g in two_threads] == [8, 8, 8, 8, 8, 4, 4, 4, 3, 1, 2, 2, 1, 1, 1, 1]
    for groups in (one_thread, two_threads):
        assert [p.chunk_coords for g in groups for p in g.projections] == [p.chunk_coords for p in projections]
        for group in groups:  # (each group knows its own shards, as the worker would find them)
            shards, position, inner = group.located
            want_shards, want_position, want_inner = layout.locate_shards(group.projections)
            assert shards == want_shards
            np.testing.assert_array_equal(position, want_position)
            np.testing.assert_array_equal(inner, want_inner)
    # A shard holding more than the span stays whole (cut only by the tapering end).
    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 3 * 64)
    assert shards_of(layout.worker_groups(projections, threads=1, min_group_bytes=0)) == [[i] for i in range(16)]
    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 10 * 64)
    monkeypatch.setattr(read_module, "GROUP_MIN_BYTES", 0)  # (else these tiny shards are merged per thread)
    monkeypatch.setattr(read_module, "PARALLEL_MIN_BYTES", 0)  # (else this tiny read runs inline)
    for threads in (1, 2):
        with gpuzarr.config.set(threads=threads):
            np.testing.assert_array_equal(a[:], data)
            np.testing.assert_array_equal(a[3:61:2, 2:15:3], data[3:61:2, 2:15:3])  # (through the scratch)


@pytest.mark.parametrize("native", [False, True])
def test_shard_runs_keep_a_floor_and_read_cut_indexes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """Runs of a shard's inner chunks are at least ``min_group_bytes`` of units (a shorter
    rest before a shard's end is taken along), and the indexes of the shards cut into
    several runs are read once, up front, before any worker reads them (not where the
    native shard reads read each run's index from the file they open anyway)."""
    from gpuzarr import _native
    from gpuzarr.pipeline import layout as layout_module
    from gpuzarr.pipeline import read as read_module

    if native and _native.shard_reads is None:
        pytest.skip("gpuzarr's native helper is not built")
    if not native:
        monkeypatch.setattr(_native, "shard_reads", None)
    monkeypatch.setattr(layout_module, "SHARD_GROUP_SPAN_BYTES", 0)  # (a group per shard, at most)

    data = _data((64, 16), "int32")  # 64-byte inner chunks, 16 to a shard, 4 shards
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(1, 16), shards=(16, 16))
    a[:] = data
    layout = a._layout  # type: ignore[attr-defined]
    projections = list(a._indexer((slice(None),), "basic").chunk_projections())
    read_first: list[list[str]] = []
    real_read_indexes = type(layout).read_indexes

    def recording(self: Any, keys: Any, *, inline: bool = False) -> Any:
        read_first.append(list(keys))
        return real_read_indexes(self, keys, inline=inline)

    monkeypatch.setattr(type(layout), "read_indexes", recording)
    groups = layout.worker_groups(projections, threads=2, min_group_bytes=4 * 64)
    # 64 units, at most a quarter of what is left, at least 4: 16 | 12, 4 | 8, 8 (6 would
    # leave 2 before the shard's end) | 4, 4, 4, 4.
    assert [len(g.projections) for g in groups] == [16, 12, 4, 8, 8, 4, 4, 4, 4]
    assert [p.chunk_coords for g in groups for p in g.projections] == [p.chunk_coords for p in projections]
    cut = [layout.key((1, 0)), layout.key((2, 0)), layout.key((3, 0))]  # (shard 0 is whole)
    assert read_first == ([] if native else [cut])
    with gpuzarr.config.set(threads=2):
        monkeypatch.setattr(read_module, "GROUP_MIN_BYTES", 4 * 64)
        monkeypatch.setattr(read_module, "PARALLEL_MIN_BYTES", 0)  # (else this tiny read runs inline)
        np.testing.assert_array_equal(a[:], data)
        np.testing.assert_array_equal(a[5:60, 3:11], data[5:60, 3:11])


def test_one_thread_decodes_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuzarr import _native
    from gpuzarr.pipeline import read as read_module

    # (Fetched, then decoded in batches: without the native helper's reads that decode
    # each inner chunk as it is read.)
    monkeypatch.setattr(_native, "read_shards_call_shared", None)
    data = _data((64, 64), "float32")
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="float32", chunks=(4, 16), shards=(16, 64))
    a[:] = data
    monkeypatch.setattr(read_module, "DECODE_BATCH_MAX_BYTES", 5 * 4 * 16 * 4)  # 5 units a batch
    batches: list[int] = []
    layout_type = type(a._layout)  # type: ignore[attr-defined]
    real = layout_type.decode_many

    def counting(self: Any, coords: Any, raws: Any, outs: Any, spread: Any = None) -> None:
        batches.append(len(coords))
        real(self, coords, raws, outs, spread)

    monkeypatch.setattr(layout_type, "decode_many", counting)
    with gpuzarr.config.set(threads=1):
        np.testing.assert_array_equal(a[:], data)
        assert batches and max(batches) == 5
        batches.clear()
        np.testing.assert_array_equal(a[1:63, 3:61], data[1:63, 3:61])  # partial units, through the scratch
        assert batches and max(batches) == 5


def test_batch_of_windows_over_many_shards(tmp_path: Path) -> None:
    """Windows scattered over many shards, some absent and some with empty inner chunks."""
    data = _data((256, 32), "float32")
    data[64:128] = 0  # whole shards of fill value: not stored
    data[130:131] = 0  # one empty inner chunk inside a stored shard
    a = gpuzarr.create_array(
        tmp_path / "s", shape=data.shape, dtype="float32", chunks=(1, 32), shards=(16, 32), compressors={"name": "zstd"}
    )
    a[:] = data
    rng = np.random.default_rng(3)
    selections = [(slice(r, r + 1), slice(None)) for r in rng.choice(256, 40, replace=False).tolist()]
    selections.append((slice(130, 131), slice(None)))
    for threads in (1, 3):
        with gpuzarr.config.set(threads=threads):
            shard_index_cache.clear()
            got = gpuzarr.open_array(tmp_path / "s").read_batch(selections)
            for sel, window in zip(selections, got, strict=True):
                np.testing.assert_array_equal(window, data[sel])


def _batch_recording_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None, native: bool
) -> tuple[np.ndarray, gpuzarr.Array, list[tuple[int, bool]]]:
    """A (1024, 128) float32 array of 64-row zstd units (in shards of ``shards`` rows, if
    given), read as if on 2 cores, with or without the native helper (skipping where it
    is wanted but not built); every batch decode of the layout (or batch read and decoded
    natively) is recorded as (units, whether spread over threads). Returns the data, the
    array and the records."""
    from gpuzarr import _native
    from gpuzarr.pipeline import read as read_module

    if native and _native.call_shared is None:
        pytest.skip("gpuzarr's native helper is not built here")
    if not native:
        monkeypatch.setattr(_native, "call_shared", None)
    data = _data((1024, 128), "float32")
    a = gpuzarr.create_array(
        tmp_path / "s", shape=data.shape, dtype="float32", chunks=(64, 128), shards=shards, compressors="zstd"
    )
    a[:] = data
    monkeypatch.setattr(read_module, "usable_cores", lambda: 2)
    layout_type = type(a._layout)  # type: ignore[attr-defined]
    real = layout_type.decode_many
    batches: list[tuple[int, bool]] = []

    def recording(self: Any, coords: Any, raws: Any, outs: Any, spread: Any = None) -> None:
        batches.append((len(coords), spread is not None))
        real(self, coords, raws, outs, spread)

    monkeypatch.setattr(layout_type, "decode_many", recording)
    # (Unsharded, the native helper reads each chunk file and decodes it at once: the
    # same batches, by another call.)
    read_and_decode = layout_type.read_decode_natively

    def recording_reads(self: Any, projections: Any, addresses: Any, spread: Any = None) -> Any:
        batches.append((len(projections), spread is not None))
        return read_and_decode(self, projections, addresses, spread)

    monkeypatch.setattr(layout_type, "read_decode_natively", recording_reads)
    return data, a, batches


@pytest.mark.parametrize("shards", [None, (256, 128)])
@pytest.mark.parametrize("native", [True, False])
def test_batch_of_whole_units_is_one_batch_the_threads_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None, native: bool
) -> None:
    """Windows of whole units, fetched in one wave, decode as one batch that the caller
    and a worker share (each taking the next unit), where the native helper is built;
    without it, in parts the threads take in turn. A bad unit among them is named."""
    data, a, batches = _batch_recording_array(tmp_path, monkeypatch, shards, native)
    rows = [0, 256, 320, 704, 960, 448]
    windows = [(slice(r, r + 64), slice(None)) for r in rows]
    with gpuzarr.config.set(threads=2):
        for window, got in zip(windows, a.read_batch(windows), strict=True):
            np.testing.assert_array_equal(got, data[window])
        if native:
            assert batches == [(6, True)]
        else:  # parts for the threads to take in turn, none of them spread
            assert len(batches) > 1 and sum(n for n, _ in batches) == 6 and not any(s for _, s in batches)
        # One unit's zstd magic number damaged (rows 704-767: chunk 11, or inner chunk
        # 3 of shard 2): the batch fails, and one by one names the unit.
        key = "c/11/0" if shards is None else "c/2/0"
        raw = bytearray((tmp_path / "s" / key).read_bytes())
        start = 0 if shards is None else int(np.frombuffer(raw[-4 - 64 : -4], "<u8")[2 * 3])
        raw[start : start + 4] = bytes(4)
        (tmp_path / "s" / key).write_bytes(bytes(raw))
        shard_index_cache.clear()
        with pytest.raises(CorruptChunkError, match=key if shards is None else rf"{key}.*inner chunk \(3, 0\)"):
            gpuzarr.open_array(tmp_path / "s").read_batch(windows)


@pytest.mark.parametrize("shards", [None, (256, 128)])
@pytest.mark.parametrize(("threads", "native"), [(1, True), (2, True), (2, False)])
def test_a_batch_of_whole_and_staged_units_names_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None, threads: int, native: bool
) -> None:
    """A read whose units land partly whole in the output (decoded there by address) and
    partly in pieces (decoded into scratch, then placed) decodes both in one batch, which
    several threads share where the native helper is built (else in parts the threads
    take in turn); a damaged unit of either kind fails the batch, and decoding one by one
    names it."""
    from gpuzarr.pipeline import read as read_module

    data, a, batches = _batch_recording_array(tmp_path, monkeypatch, shards, native)
    selection = (slice(3, 1000), slice(None))  # units 0 and 15 in pieces, 1-14 whole
    with gpuzarr.config.set(threads=threads):
        np.testing.assert_array_equal(a[selection], data[selection])
        if threads == 1:
            assert batches == [(16, False)]
        elif native:
            assert batches == [(16, True)]
            # Staged units beyond the scratch bound start another shared batch.
            with monkeypatch.context() as patch:
                patch.setattr(read_module, "DECODE_BATCH_MAX_BYTES", 64 * 128 * 4)  # one unit
                batches.clear()
                np.testing.assert_array_equal(a[selection], data[selection])
                assert batches == [(15, True), (1, True)]
        else:
            assert len(batches) > 1 and sum(n for n, _ in batches) == 16 and not any(s for _, s in batches)
        units = (11, 0)  # whole, then in pieces
        keys = [f"c/{unit}/0" if shards is None else f"c/{unit // 4}/0" for unit in units]
        pristine = {key: (tmp_path / "s" / key).read_bytes() for key in keys}
        for unit, key in zip(units, keys, strict=True):
            shard_index_cache.clear()
            for other, raw in pristine.items():
                (tmp_path / "s" / other).write_bytes(raw)
            raw = bytearray(pristine[key])
            start = 0 if shards is None else int(np.frombuffer(raw[-4 - 64 : -4], "<u8")[2 * (unit % 4)])
            raw[start : start + 4] = bytes(4)  # the zstd magic number
            (tmp_path / "s" / key).write_bytes(bytes(raw))
            named = key if shards is None else rf"{key}.*inner chunk \({unit % 4}, 0\)"
            with pytest.raises(CorruptChunkError, match=named):
                gpuzarr.open_array(tmp_path / "s")[selection]


def test_indexes_of_many_shards_decoded_together_name_the_bad_one(tmp_path: Path) -> None:
    data = _data((32, 4), "int32")
    a = gpuzarr.create_array(tmp_path / "s", shape=data.shape, dtype="int32", chunks=(1, 4), shards=(4, 4))
    a[:] = data
    codec, spec = a.serializer, a._layout.shard_spec  # type: ignore[attr-defined]
    assert isinstance(codec, ShardingCodec)
    n = codec.index_nbytes(spec)
    keys = [f"c/{i}/0" for i in range(8)]
    raws = [(tmp_path / "s" / k).read_bytes()[-n:] for k in keys]
    indexes = codec.decode_indexes(raws, spec, keys)
    assert [i.byte_range((0, 0)) is not None for i in indexes] == [True] * 8
    bad = bytearray(raws[5])
    bad[3] ^= 1
    with pytest.raises(ChecksumError, match="c/5/0"):
        codec.decode_indexes([*raws[:5], bytes(bad), *raws[6:]], spec, keys)
    # A half-empty entry (offset set, length empty) is corrupt, named by shard and chunk.
    half = np.frombuffer(raws[6][:-4], "<u8").copy()
    half[2 * 2 + 1] = 2**64 - 1
    with pytest.raises(CorruptChunkError, match=r"c/6/0.*\(2, 0\)"):
        plain = ShardingCodec((1, 4), index_codecs=codec.index_codecs[:1])
        plain.decode_indexes([r[:-4] for r in raws[:6]] + [half.tobytes()], spec, keys[:7])


@pytest.mark.parametrize("shards", [None, (32, 64)])
@pytest.mark.parametrize("threads", [1, 2])
def test_local_reads_through_the_read_arena(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None, threads: int
) -> None:
    """Reads from local files land in reused arena memory; group after group, the data
    stays right (no view outlives its group)."""
    from gpuzarr.stores.base import ReadArena

    taken: list[int] = []
    original_take = ReadArena.take
    monkeypatch.setattr(ReadArena, "take", lambda self, n, *rest: taken.append(n) or original_take(self, n, *rest))
    data = _data((128, 64), "float32")
    # (zstd chunk files and inner chunks are read and decoded in the native helper,
    # without the arena: gzip's are read into it.)
    compressor = {"name": "gzip", "configuration": {"level": 1}}
    a = gpuzarr.create_array(
        str(tmp_path / "a"), shape=data.shape, dtype="float32", chunks=(8, 16), shards=shards, compressors=[compressor]
    )
    a[:] = data
    shard_index_cache.clear()
    with gpuzarr.config.set(threads=threads):
        for _ in range(2):
            np.testing.assert_array_equal(a[:], data)
            np.testing.assert_array_equal(a[3:101, 5:60], data[3:101, 5:60])
            windows = [(slice(r, r + 8), slice(c, c + 16)) for r in range(0, 128, 24) for c in (0, 48)]
            for sel, got in zip(windows, a.read_batch(windows), strict=True):
                np.testing.assert_array_equal(got, data[sel])
    assert taken  # the reads did go through the arena


def test_fetch_holds_a_bounded_number_of_shards_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch touching more shards than may be open at once is fetched in slices."""
    import gpuzarr.pipeline.layout as layout_module

    monkeypatch.setattr(layout_module, "MAX_OPEN_SHARDS", 3)
    data = _data((64, 64), "int32")
    a = gpuzarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype="int32", chunks=(4, 4), shards=(8, 16))
    a[:] = data
    a[8:16, 16:32] = 0  # an absent shard among them
    data[8:16, 16:32] = 0
    shard_index_cache.clear()
    windows = [(slice(r, r + 4), slice(c, c + 4)) for r in range(0, 64, 12) for c in range(0, 64, 20)]
    for sel, got in zip(windows, a.read_batch(windows), strict=True):
        np.testing.assert_array_equal(got, data[sel])
    np.testing.assert_array_equal(a[:], data)


@pytest.mark.parametrize("shards", [None, (16, 32)])
def test_local_partial_writes_read_old_bytes_through_the_arena(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: tuple[int, int] | None
) -> None:
    """Read-modify-write reads each old chunk (or shard) into the worker's arena; the
    kept inner chunks of a shard are copied out before the arena is reused."""
    from gpuzarr.stores.base import ReadArena

    taken: list[int] = []
    original_take = ReadArena.take
    monkeypatch.setattr(ReadArena, "take", lambda self, n, *rest: taken.append(n) or original_take(self, n, *rest))
    rng = np.random.default_rng(3)
    expected = rng.integers(0, 1000, (64, 64)).astype("int32")
    a = gpuzarr.create_array(
        str(tmp_path / "a"), shape=expected.shape, dtype="int32", chunks=(8, 8), shards=shards,
        compressors=[{"name": "zstd", "configuration": {"level": 1}}],
    )
    a[:] = expected
    for threads in (1, 2):
        with gpuzarr.config.set(threads=threads):
            for _ in range(6):
                r0, c0 = rng.integers(0, 60, 2)
                r1, c1 = r0 + rng.integers(1, 20), c0 + rng.integers(1, 20)
                value = rng.integers(0, 1000, (min(r1, 64) - r0, min(c1, 64) - c0)).astype("int32")
                a[r0:r1, c0:c1] = value
                expected[r0:r1, c0:c1] = value
    assert taken
    shard_index_cache.clear()
    np.testing.assert_array_equal(gpuzarr.open_array(str(tmp_path / "a"))[:], expected)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a"))[:], expected)


def test_chunks_stored_as_is_read_straight_into_the_output(tmp_path: Path) -> None:
    """Uncompressed native-order chunks on local files are read into the output itself;
    missing chunks are filled and a chunk of the wrong size is an error naming it."""
    data = _data((64, 32), "float32")
    a = gpuzarr.create_array(
        str(tmp_path / "a"), shape=data.shape, dtype="float32", chunks=(8, 32), compressors=None, fill_value=-1.0
    )
    assert a._layout.chain.stores_as_is  # type: ignore[attr-defined]
    a[:] = data
    (tmp_path / "a" / "c" / "3" / "0").unlink()
    data[24:32] = -1.0
    with gpuzarr.config.set(threads=2):
        np.testing.assert_array_equal(a[:], data)
        np.testing.assert_array_equal(a[5:50, 3:30], data[5:50, 3:30])
    (tmp_path / "a" / "c" / "5" / "0").write_bytes(b"\0" * 100)
    with pytest.raises(CorruptChunkError, match=r"c/5/0.*holds 100 bytes, expected 1024"):
        a[:]


@pytest.mark.parametrize("dtype", ["M8[s]", "m8[ms]"])
@pytest.mark.parametrize("compressors", [None, [{"name": "zstd", "configuration": {"level": 1}}]])
@pytest.mark.parametrize("shards", [None, (32, 64)])
def test_datetime_arrays_read_and_write_through_the_fast_paths(
    tmp_path: Path, dtype: str, compressors: Any, shards: tuple[int, int] | None
) -> None:
    """NumPy exports no buffer of datetime arrays: the decoders write through uint8 views."""
    data = np.arange(64 * 64).astype(dtype).reshape(64, 64)
    a = gpuzarr.create_array(
        str(tmp_path / "a"), shape=data.shape, dtype=dtype, chunks=(16, 32), shards=shards, compressors=compressors
    )
    a[:] = data
    with gpuzarr.config.set(threads=2):
        np.testing.assert_array_equal(a[:], data)
        a[3:5, 3:40] = data[:2, :37]  # read-modify-write
        data[3:5, 3:40] = data[:2, :37]
        np.testing.assert_array_equal(a[:], data)
        windows = [(slice(r, r + 16), slice(c, c + 32)) for r in (0, 48) for c in (0, 32)]
        for sel, got in zip(windows, a.read_batch(windows), strict=True):
            np.testing.assert_array_equal(got, data[sel])


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_failed_shard_open_closes_the_shards_already_opened(tmp_path: Path) -> None:
    import os

    from gpuzarr.errors import StoreError

    data = _data((64, 64), "int32")
    a = gpuzarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype="int32", chunks=(4, 4), shards=(8, 8))
    a[:] = data
    loop = tmp_path / "a" / "c" / "7" / "7"
    loop.unlink()
    os.symlink(loop, loop)  # opening it fails with ELOOP
    shard_index_cache.clear()
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(StoreError):
            a.read_batch([(slice(r, r + 4), slice(c, c + 4)) for r in range(0, 64, 8) for c in range(0, 64, 8)])
    assert _open_fds() == before


def test_open_shards_share_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    import gpuzarr.pipeline.layout as layout_module

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    with gpuzarr.config.set(threads=7):
        assert layout_module._max_open_shards() == 1024 // (4 * 8)
    with gpuzarr.config.set(threads=200):
        assert layout_module._max_open_shards() == 1  # never zero
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert layout_module._max_open_shards() == layout_module.MAX_OPEN_SHARDS


def test_store_subclasses_keep_their_read_hooks(tmp_path: Path) -> None:
    """A store overriding ``get(key)`` still reads; a LocalStore subclass overriding its
    read hooks sees every read (no arena, no open-file reader bypassing it)."""
    from gpuzarr.stores import LocalStore

    data = _data((32, 32), "float32")

    class PlainGet(MemoryStore):
        def get(self, key: str) -> bytes | None:  # type: ignore[override]
            return super().get(key)

    seen: list[str] = []

    class Audited(LocalStore):
        def _get(self, key: str) -> bytes | None:
            seen.append(key)
            return super()._get(key)

        def _get_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes] | None:
            seen.append(key)
            return super()._get_ranges(key, ranges)

    for store, shards in ((PlainGet(), None), (Audited(tmp_path / "x"), None), (Audited(tmp_path / "y"), (16, 16))):
        a = gpuzarr.create_array(store, shape=data.shape, dtype="float32", chunks=(8, 8), shards=shards)
        a[:] = data
        shard_index_cache.clear()
        seen.clear()
        np.testing.assert_array_equal(gpuzarr.open_array(store)[:], data)
        if isinstance(store, LocalStore):
            assert not store.fills_arenas and any(k.startswith("c/") for k in seen)


def test_a_chunk_cut_short_while_read_into_the_output_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file truncated between its fstat and the read reports the bytes read (the
    Python loop; the native one reports the bytes it read the same way)."""
    import gpuzarr.stores.local as local_module
    from gpuzarr import _native

    monkeypatch.setattr(_native, "file_reads", None)

    data = _data((64, 256), "float32")
    a = gpuzarr.create_array(str(tmp_path / "a"), shape=data.shape, dtype="float32", chunks=(8, 256), compressors=None)
    a[:] = data
    original = local_module._pread_into
    monkeypatch.setattr(local_module, "_pread_into", lambda fd, view, offset: original(fd, view[:-100], offset))
    out = np.zeros(data.shape, dtype="float32")
    with gpuzarr.config.set(threads=1):
        for _ in range(4):  # whichever path the aligned output takes
            with pytest.raises(CorruptChunkError, match="holds"):
                a.read(out=out)
            out = np.zeros((data.shape[0] + 16, data.shape[1]), dtype="float32")[16:]


@pytest.mark.parametrize("lend", ["thread_arena", "encode_arena"])
def test_thread_arenas_are_lent_once_per_thread(tmp_path: Path, lend: str) -> None:
    """A nested borrow on the same thread gets no arena (fresh bytes), never memory the
    outer block still uses; a memory store (which neither fills arenas nor writes out
    what it is given) gets none at all. The read and the encode arena are separate."""
    from gpuzarr.pipeline import pool
    from gpuzarr.stores import LocalStore

    arena_for, other = getattr(pool, lend), pool.encode_arena if lend == "thread_arena" else pool.thread_arena
    store = LocalStore(tmp_path)
    with arena_for(store) as outer:
        assert outer is not None
        view = outer.take(10)
        view[:] = b"0123456789"
        with arena_for(store) as inner:
            assert inner is None
        with other(store) as separate:
            assert separate is not None and separate is not outer
        assert bytes(view) == b"0123456789"
    with arena_for(store) as again:
        assert again is outer  # lent again once returned
    with arena_for(MemoryStore()) as none:
        assert none is None


def test_opening_a_sharded_array_builds_each_codec_chain_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The array's chain, and the inner and index chains the sharding codec builds when it
    # is evolved for the array (reused when it resolves, not built a second time).
    import gpuzarr.codecs.chain as chain_module

    path = str(tmp_path / "s.zarr")
    data = np.arange(64 * 64, dtype="f4").reshape(64, 64)
    gpuzarr.create_array(path, shape=data.shape, dtype="f4", chunks=(8, 8), shards=(32, 32))[...] = data
    built: list[str] = []
    real_init = chain_module.CodecChain.__init__

    def counting_init(self: Any, codecs: Any, spec: Any, where: str = "codecs") -> None:
        built.append(where)
        real_init(self, codecs, spec, where)

    monkeypatch.setattr(chain_module.CodecChain, "__init__", counting_init)
    a = gpuzarr.open_array(path, mode="r")
    assert sorted(built) == ["codecs", "sharding_indexed codecs", "sharding_indexed index_codecs"]
    np.testing.assert_array_equal(a[...], data)


def test_sharded_writes_in_waves_on_stores_without_cheap_reads() -> None:
    # Stores whose reads are not cheap get whole shards put in batches per wave (not
    # parts written by each worker): the same shards, read back alike, empty ones deleted.
    from gpuzarr.stores import MemoryStore

    batches: list[int] = []

    class BatchedStore(MemoryStore):
        cheap_reads = False

        def set_many(self, items: Any) -> None:
            batches.append(sum(key.startswith("c/") for key, _ in items))
            super().set_many(items)

    data = np.arange(64 * 64, dtype="f4").reshape(64, 64)
    stores = {}
    for kind in (MemoryStore, BatchedStore):
        store = kind()
        a = gpuzarr.create_array(store, shape=data.shape, dtype="f4", chunks=(8, 8), shards=(32, 32))
        a[...] = data
        a[5:20, 40:60] = -1  # read-modify-write of one shard
        a[32:, :32] = 0  # a whole shard of fill value: deleted
        stores[kind] = store
        expected = data.copy()
        expected[5:20, 40:60] = -1
        expected[32:, :32] = 0
        np.testing.assert_array_equal(a[...], expected)
    plain, batched = ({key: store.get(key) for key in store.list_prefix("")} for store in stores.values())
    assert plain == batched and "c/1/0" not in batched
    assert [n for n in batches if n] == [4, 1]  # every shard in one put, then the one partly rewritten


def test_sharding_without_inner_codecs_uses_little_endian_bytes() -> None:
    # (The spec requires "codecs"; gpuzarr takes the constructor's default instead of
    # failing on a bytes codec with no endian.)
    a = gpuzarr.create_array(
        {}, shape=(4,), dtype="f4", serializer={"name": "sharding_indexed", "configuration": {"chunk_shape": [2]}}
    )
    a[:] = np.arange(4)
    np.testing.assert_array_equal(a[:], np.arange(4, dtype="f4"))


def test_stores_without_a_batched_suffix_read_keep_their_get_suffix() -> None:
    """A store that does not batch suffixes (a user's subclass) has its indexes read
    through its public get_suffix, on the worker pool, as before the batched call."""
    from gpuzarr.stores import MemoryStore

    seen: list[str] = []

    class Remote(MemoryStore):
        cheap_reads = False

        def get_suffix(self, key: str, length: int) -> bytes | None:
            seen.append(key)
            return super().get_suffix(key, length)

    store = Remote()
    a = gpuzarr.create_array(store, shape=(64,), chunks=(4,), shards=(16,), dtype="i4")
    a[...] = np.arange(64)
    # (Some inner chunks of two shards: a read covering whole shards gets them whole.)
    assert gpuzarr.open_array(store, mode="r")[5:20].tolist() == list(range(5, 20))
    assert sorted(seen) == ["c/0", "c/1"]


def test_an_index_read_while_entries_are_dropped_is_not_cached() -> None:
    """On stores whose tokens tell no versions apart, an index read before a drop (a
    write, a delete, an array opened again) may be of the replaced shard: not cached."""
    from gpuzarr.pipeline.layout import shard_index_cache
    from gpuzarr.stores import MemoryStore

    store = MemoryStore()
    index = object()
    since = shard_index_cache.generation(store)
    shard_index_cache.discard_under(store, "")  # (meanwhile: an array opened again)
    shard_index_cache.put(store, "c/0", "token", index, since)  # type: ignore[arg-type]
    assert shard_index_cache.get(store, "c/0", "token") is None
    shard_index_cache.put(store, "c/0", "token", index, shard_index_cache.generation(store))  # type: ignore[arg-type]
    assert shard_index_cache.get(store, "c/0", "token") is index


class _RoundTrips(MemoryStore):
    """A memory store that says its reads are round trips (as object stores' are), and
    counts the whole-object gets and ranged reads it serves."""

    cheap_reads = False

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        super().__init__(data)
        self.gets = 0
        self.ranged = 0

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        self.gets += len(keys)
        return super()._get_many(keys)

    def _get_many_ranges(self, requests: Any) -> Any:
        self.ranged += len(requests)
        return super()._get_many_ranges(requests)


@pytest.mark.parametrize("index_location", ["end", "start"])
@pytest.mark.parametrize("shape", [(64, 8), (61, 7), (5, 3)])
def test_reads_covering_whole_shards_get_each_shard_once(shape: tuple[int, int], index_location: str) -> None:
    """On stores with round trips a read that covers whole shards (edge shards too) gets
    each shard in one request, its index and inner chunks together, instead of the index
    and then the ranges: the same values, missing shards and inner chunks as fill."""
    data: dict[str, bytes] = {}
    a = gpuzarr.create_array(data, shape=shape, chunks=(4, 4), dtype="i4", fill_value=-1,
                             shards={"shape": (16, 8), "index_location": index_location})
    values = np.arange(int(np.prod(shape)), dtype="i4").reshape(shape)
    a[...] = values
    a[:4, :4] = -1  # an inner chunk of fill: not stored
    values[:4, :4] = -1
    if shape[0] > 16:
        a[16:32] = -1  # a whole shard of fill: not stored
        values[16:32] = -1
    store = _RoundTrips(data)
    b = gpuzarr.open_array(store, mode="r")
    store.gets = store.ranged = 0
    np.testing.assert_array_equal(b[...], values)
    shards = [k for k in data if k.startswith("c/")]
    assert store.gets == -(-shape[0] // 16) * -(-shape[1] // 8) and store.ranged == 0
    assert len(shards) <= store.gets
    np.testing.assert_array_equal(b[2:9, 1:6], values[2:9, 1:6])
    if shape[0] > 16:  # (part of a shard: its index, then ranges)
        assert store.ranged > 0


def test_a_truncated_shard_read_whole_is_a_corrupt_chunk() -> None:
    data: dict[str, bytes] = {}
    a = gpuzarr.create_array(data, shape=(16,), chunks=(4,), shards=(16,), dtype="i4", compressors=None)
    a[...] = np.arange(16)
    data["c/0"] = data["c/0"][:30]  # (shorter than its index)
    with pytest.raises(CorruptChunkError, match="truncated"):
        gpuzarr.open_array(_RoundTrips(data), mode="r")[...]
    first: dict[str, bytes] = {}  # (the index first: cut after it, its entries reach past the end)
    b = gpuzarr.create_array(first, shape=(16,), chunks=(4,), shards={"shape": (16,), "index_location": "start"},
                             dtype="i4", compressors=None)
    b[...] = np.arange(16)
    first["c/0"] = first["c/0"][:100]
    with pytest.raises(CorruptChunkError, match="past the end of the shard"):
        gpuzarr.open_array(_RoundTrips(first), mode="r")[...]


class _CountingPuts(MemoryStore):
    """A memory store (cheap reads) counting the puts of each key, shard parts joined."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: Counter[str] = Counter()

    def set_parts(self, key: str, parts: Sequence[Any]) -> None:
        self.puts[key] += 1
        super().set_parts(key, parts)


@pytest.mark.parametrize("threads", [1, 3])
def test_shards_encoded_in_runs_are_each_stored_once(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On stores with cheap reads, the inner chunks of shards are encoded in runs by any
    threads (with 3 threads, also those of the few shards a partial write must merge
    with their old bytes); each shard is still stored whole, once, and reads back."""
    from gpuzarr.pipeline import write as write_module

    monkeypatch.setattr(write_module, "ENCODE_RUN_MIN_BYTES", 1)  # (runs of a few inner chunks)
    data = _data((32, 40)).astype("f4")
    store = _CountingPuts()
    with gpuzarr.config.set(threads=threads):
        a = gpuzarr.create_array(store, shape=data.shape, dtype="f4", chunks=(4, 5), shards=(16, 20))
        a[...] = data
        shards = sorted(k for k in store.puts if k.startswith("c/"))
        assert shards == ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]
        assert all(store.puts[k] == 1 for k in shards)
        np.testing.assert_array_equal(a[...], data)
        # A partial write: shard c/0/0 is merged with its old bytes, c/0/1 covered.
        a[1:16, 3:] = -data[1:16, 3:]
        expected = data.copy()
        expected[1:16, 3:] *= -1
        np.testing.assert_array_equal(a[...], expected)
        assert store.puts == Counter({"c/0/0": 2, "c/0/1": 2, "c/1/0": 1, "c/1/1": 1})
        # Runs whose inner chunks are all fill value: the shard is deleted.
        a[16:32, 20:] = 0
        assert "c/1/1" not in set(store.list_prefix("c/"))
    np.testing.assert_array_equal(gpuzarr.open_array(store, mode="r")[16:32, 20:], 0)


def _record_thread_caps(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int | None]:
    """The ``max_threads`` of every ``parallel_map`` call ``module`` makes from now on."""
    real = module.parallel_map
    caps: list[int | None] = []

    def recording(fn: Any, items: Any, **options: Any) -> Any:
        caps.append(options.get("max_threads"))
        return real(fn, items, **options)

    monkeypatch.setattr(module, "parallel_map", recording)
    return caps


#: Chains of each kind for the thread-cap tests: whether each is compute-bound (a
#: compressor other than the memory-speed ones).
_CHAINS_BY_COMPUTE = [
    ({"compressors": "zstd"}, True),
    ({"compressors": [{"name": "gzip", "configuration": {"level": 1}}, {"name": "crc32c"}]}, True),
    ({"compressors": None}, False),
    ({"compressors": [{"name": "crc32c"}]}, False),
    ({"compressors": {"name": "blosc", "configuration": {"cname": "zstd"}}}, True),
    ({"compressors": {"name": "blosc", "configuration": {"cname": "lz4"}}}, False),  # (fast)
    ({"compressors": {"name": "numcodecs.bz2", "configuration": {"level": 1}}}, True),
    ({"compressors": {"name": "numcodecs.lz4", "configuration": {}}}, False),
]


@pytest.mark.parametrize(("codecs", "compute_bound"), _CHAINS_BY_COMPUTE)
@pytest.mark.parametrize("large", [True, False])
@pytest.mark.parametrize("shards", [None, (16, 20)])
def test_compressing_writes_and_reads_keep_no_more_threads_at_work_than_cores(
    codecs: dict[str, Any],
    compute_bound: bool,
    large: bool,
    shards: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write whose chunks go through a compressor, in objects (chunks, or shards) of
    at least ``COMPUTE_BOUND_OBJECT_BYTES``, keeps at most one thread per usable core
    encoding (more only take turns on the cores); otherwise (no compressor, a checksum
    alone, smaller objects) it keeps ``config.threads``, which overlap file writes. A
    read of units (chunks, or inner chunks) of at least ``COMPUTE_BOUND_UNIT_BYTES``
    decodes on as few. Either way the data comes back right."""
    from gpuzarr.pipeline import pool as pool_module
    from gpuzarr.pipeline import read as read_module
    from gpuzarr.pipeline import write as write_module

    capped = compute_bound and large
    for module in (pool_module, read_module):
        monkeypatch.setattr(module, "usable_cores", lambda: 2)
    # (Units of 80 bytes: chunks, or inner chunks, of 4 x 5 float32; shards hold 16 of
    # them. Too small by one byte for the largest objects and units of these arrays.)
    monkeypatch.setattr(write_module, "COMPUTE_BOUND_OBJECT_BYTES", 80 if large else 80 * 16 + 1)
    monkeypatch.setattr(read_module, "COMPUTE_BOUND_UNIT_BYTES", 80 if large else 81)
    # (Tiny units, read as if large: through the worker groups, not batches or inline.)
    monkeypatch.setattr(read_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(read_module, "BATCH_UNIT_MAX_BYTES", 0)
    monkeypatch.setattr(read_module, "GROUP_MIN_BYTES", 0)
    write_caps = _record_thread_caps(monkeypatch, write_module)
    read_caps = _record_thread_caps(monkeypatch, read_module)
    data = _data((32, 40)).astype("f4")
    expected = data.copy()
    expected[1:15, 3:33] *= -1
    with gpuzarr.config.set(threads=5):
        a = gpuzarr.create_array(tmp_path / "a", shape=data.shape, dtype="f4", chunks=(4, 5), shards=shards, **codecs)
        assert write_module.encode_threads(a._layout) == (2 if capped else 5)  # type: ignore[attr-defined]
        assert read_module.decode_threads(a._layout) == (2 if capped else 5)
        a[...] = data
        a[1:15, 3:33] = -data[1:15, 3:33]  # (partial: old chunks or shards merged)
        reopened = gpuzarr.open_array(tmp_path / "a", mode="r")
        np.testing.assert_array_equal(reopened[...], expected)
        np.testing.assert_array_equal(reopened[3:29, 7:38], expected[3:29, 7:38])
    assert write_caps and set(write_caps) == {2 if capped else 5}
    assert read_caps and set(read_caps) == {2 if capped else 5}
    with gpuzarr.config.set(threads=1):
        assert write_module.encode_threads(a._layout) == 1  # type: ignore[attr-defined]
        assert read_module.decode_threads(a._layout) == 1


def test_a_failed_run_stores_nothing_of_its_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that fails leaves its shard as it was: the shard's other runs are never
    stored without it (a shard is one atomic put of all its inner chunks); the other
    shards are written."""
    from gpuzarr.pipeline import write as write_module

    monkeypatch.setattr(write_module, "ENCODE_RUN_MIN_BYTES", 1)
    store = _CountingPuts()
    a = gpuzarr.create_array(store, shape=(64,), dtype="i4", chunks=(4,), shards=(32,))
    a[...] = np.arange(64)
    real = ShardingCodec.encode_inners
    runs: list[int] = []

    def failing(self: ShardingCodec, chunks: Any, spec: Any, arena: Any = None) -> Any:
        runs.append(len(chunks))
        if any(chunk.reshape(-1)[0] == 108 for chunk in chunks):  # (a run in the middle of shard c/0)
            raise RuntimeError("encoder failed")
        return real(self, chunks, spec, arena)

    monkeypatch.setattr(ShardingCodec, "encode_inners", failing)
    with gpuzarr.config.set(threads=3), pytest.raises(RuntimeError, match="encoder failed"):
        a[...] = np.arange(64) + 100
    assert len(runs) > 2  # (the shards were cut into runs)
    assert store.puts["c/0"] == 1 and store.puts["c/1"] == 2
    values = gpuzarr.open_array(store, mode="r")[...]
    np.testing.assert_array_equal(values, np.concatenate([np.arange(32), np.arange(32, 64) + 100]))


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_shard_runs_write_each_shard_once_in_storage_order(kind: str, tmp_path: Path) -> None:
    """Runs cover each shard's touched inner chunks once; whatever order they finish
    in, the shard stored is the one assemble_parts lays out (kept old inner chunks in
    their place), written once all its runs are; a shard left with nothing stored is
    deleted."""
    from gpuzarr.pipeline.write import _ShardRuns
    from gpuzarr.stores import LocalStore, MemoryStore

    store = MemoryStore() if kind == "memory" else LocalStore(tmp_path)
    a = gpuzarr.create_array(store, shape=(64,), dtype="u1", chunks=(4,), shards=(32,), compressors=None)
    a[...] = 1
    layout = a._layout
    touched = {(0,): [((i,), None) for i in (0, 2, 3, 5)], (1,): [((i,), None) for i in range(8)]}
    reads: list[tuple[int, ...]] = []

    def read_old(shard: tuple[int, ...]) -> tuple[dict[tuple[int, ...], Any], dict[tuple[int, ...], Any]]:
        reads.append(shard)
        if shard != (0,):
            return {}, {}
        kept = {(1,): b"k1" * 2, (4,): b"k4" * 2, (7,): b"k7" * 2}
        return {**kept, (2,): b"o2" * 2}, kept

    runs = _ShardRuns(layout, touched, [0, 1, 2, 4, 7, 10, 12], read_old)
    assert runs.runs == [((0,), 0, 1), ((0,), 1, 2), ((0,), 2, 4), ((1,), 0, 3), ((1,), 3, 6), ((1,), 6, 8)]
    assert runs.count((0,)) == 3 and runs.count((1,)) == 3
    old_shard0, old_shard1 = store.get(layout.key((0,))), store.get(layout.key((1,)))
    for run in reversed(runs.runs):  # (each run waits for the one before it)
        shard, start, stop = run
        expected_old = {(1,): b"k1k1", (4,): b"k4k4", (7,): b"k7k7", (2,): b"o2o2"} if shard == (0,) else {}
        assert runs.old(shard) == expected_old
        if shard == (0,):
            assert store.get(layout.key((0,))) == old_shard0  # (stored once its first run is written)
            runs.finish(run, {inner: bytearray(b"n%d" % inner[0]) * 2 for inner, _ in touched[shard][start:stop]})
        else:
            assert store.get(layout.key((1,))) == old_shard1
            runs.finish(run, dict.fromkeys((inner for inner, _ in touched[shard][start:stop])))
    assert reads == [(1,), (0,)]
    chunks = {(i,): b"n%d" % i * 2 for i in (0, 2, 3, 5)} | {(1,): b"k1k1", (4,): b"k4k4", (7,): b"k7k7"}
    expected = b"".join(layout.codec.assemble_parts(chunks, layout.shard_spec))
    assert store.get(layout.key((0,))) == expected
    assert store.get(layout.key((1,))) is None  # (no inner chunk stored: the shard is deleted)


def test_shard_runs_abort_leaves_the_old_shard_and_no_temp_file(tmp_path: Path) -> None:
    from gpuzarr.pipeline.write import _ShardRuns
    from gpuzarr.stores import LocalStore

    store = LocalStore(tmp_path)
    a = gpuzarr.create_array(store, shape=(64,), dtype="u1", chunks=(4,), shards=(32,))
    a[...] = 7
    layout = a._layout
    before = sorted(p.name for p in tmp_path.rglob("*"))
    old = store.get(layout.key((0,)))
    runs = _ShardRuns(layout, {(0,): [((i,), None) for i in range(8)]}, [0, 4, 8], lambda shard: ({}, {}))
    runs.finish(runs.runs[0], {(i,): b"new" for i in range(4)})  # (its temp file written, not committed)
    assert len(list(tmp_path.rglob("*.tmp"))) == 1
    runs.abort()
    assert store.get(layout.key((0,))) == old
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
