"""The ``sharding_indexed`` codec: many inner chunks in one stored object.

A shard holds the encoded inner chunks (laid out in C order of their grid position)
and an index of ``(offset, nbytes)`` uint64 pairs, one per inner chunk, encoded with
the ``index_codecs`` (``bytes`` little-endian, optionally ``crc32c``) and stored at the
start or the end of the shard. An inner chunk equal to the fill value is not stored:
its index entry is ``(2**64-1, 2**64-1)``.

This module holds the codec spec, the whole-shard CPU decode and encode (used for
nested sharding and for writes), and the index helpers the pipeline uses to read only
the inner chunks a selection needs (:class:`ShardIndex`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np

from gpuzarr._checks import is_int
from gpuzarr.codecs.base import ArrayBytesCodec, Buffer, ChunkSpec, Codec, OutputArena, as_memoryview
from gpuzarr.codecs.bytes import BytesCodec
from gpuzarr.codecs.chain import CodecChain
from gpuzarr.codecs.crc32c import Crc32cCodec, crc32c_checksum
from gpuzarr.codecs.registry import codec_from_json, codec_from_user, register_codec
from gpuzarr.config import get_config
from gpuzarr.errors import ChecksumError, CorruptChunkError, MetadataError
from gpuzarr.metadata.dtypes import data_type_from_numpy

__all__ = ["EMPTY", "ShardIndex", "ShardingCodec"]

#: Offset and length of an inner chunk that is not stored.
EMPTY = np.uint64(2**64 - 1)
_UINT64 = data_type_from_numpy(np.dtype(np.uint64))


#: Index entries (offset, offset + nbytes) must stay below this (int64's limit).
_MAX_ENTRY = np.uint64(2**63)


def check_index_checksum(index: Buffer, key: str) -> None:
    """Raise ChecksumError unless the encoded index ``index`` (little-endian entries, then
    their crc32c) holds its entries' checksum."""
    view = as_memoryview(index)
    stored, actual = int.from_bytes(view[-4:], "little"), crc32c_checksum(view[:-4])
    if stored != actual:
        raise ChecksumError(
            f"shard {key!r}: index codec 'crc32c': checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"
        )


def check_index_checksums(indexes: Sequence[Buffer], keys: Sequence[str]) -> None:
    """:func:`check_index_checksum` of several encoded indexes (``keys`` name them): the
    first that fails raises. One pass with no Python call per index but the checksum's:
    a read touching many shards checks an index per shard."""
    for index, key in zip(indexes, keys, strict=True):
        if crc32c_checksum(index[:-4]) != int.from_bytes(index[-4:], "little"):
            check_index_checksum(index, key)  # (raises, with both checksums)


def half_empty_entry_error(key: str, coords: tuple[int, ...]) -> CorruptChunkError:
    """The error for an index entry with only one of its offset and length empty."""
    return CorruptChunkError(f"shard {key!r}: index entry of inner chunk {coords} is half empty")


def huge_entry_error(key: str, coords: tuple[int, ...], offset: int, nbytes: int) -> CorruptChunkError:
    """The error for an index entry reaching past 2**63 bytes (no object is that large)."""
    return CorruptChunkError(
        f"shard {key!r}: index entry of inner chunk {coords} "
        f"(offset {offset}, {nbytes} bytes) lies past any possible end of the shard"
    )


@dataclass(frozen=True)
class ShardIndex:
    """The decoded index of one shard: ``entries[*inner_coords] == (offset, nbytes)``."""

    entries: np.ndarray  # uint64, shape (*inner_grid, 2)

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of inner chunks along each dimension."""
        return self.entries.shape[:-1]

    def byte_range(self, coords: Sequence[int]) -> tuple[int, int] | None:
        """``(offset, nbytes)`` of an inner chunk, or None if it is not stored."""
        offset, nbytes = self.entries[tuple(coords)]
        if offset == EMPTY and nbytes == EMPTY:
            return None
        return int(offset), int(nbytes)

    @classmethod
    def empty(cls, grid: Sequence[int]) -> ShardIndex:
        """An index with no inner chunk stored."""
        return cls(np.full((*grid, 2), EMPTY, dtype=np.uint64))


def _parse_codecs(value: Any, where: str) -> tuple[Codec, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise MetadataError(f"{where}: must be a non-empty list of codecs")
    return tuple(v if isinstance(v, Codec) else codec_from_json(v, where) for v in value)


@dataclass(frozen=True)
class ShardingCodec(ArrayBytesCodec):
    """Shards of ``chunk_shape`` inner chunks encoded with ``codecs`` and an index."""

    chunk_shape: tuple[int, ...]
    codecs: tuple[Codec, ...] = (BytesCodec(), )
    index_codecs: tuple[Codec, ...] = (BytesCodec(), Crc32cCodec())
    index_location: Literal["start", "end"] = "end"

    name: ClassVar[str] = "sharding_indexed"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ShardingCodec:
        where = "codec 'sharding_indexed'"
        extra = set(config) - {"chunk_shape", "codecs", "index_codecs", "index_location"}
        if extra:
            raise MetadataError(f"{where}: unknown configuration fields {sorted(extra)}")
        shape = config.get("chunk_shape")
        if not isinstance(shape, (list, tuple)) or not all(
            is_int(s) and s >= 1 for s in shape
        ):
            raise MetadataError(f"{where}: chunk_shape must be a list of positive integers, got {shape!r}")
        location = config.get("index_location", "end")
        if location not in ("start", "end"):
            raise MetadataError(f"{where}: index_location must be 'start' or 'end', got {location!r}")
        # (The spec requires "codecs"; without, the constructor's little-endian bytes.)
        codecs = _parse_codecs(
            config.get("codecs", [{"name": "bytes", "configuration": {"endian": "little"}}]), f"{where}: codecs"
        )
        index_codecs = _parse_codecs(
            config.get("index_codecs", [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]),
            f"{where}: index_codecs",
        )
        return cls(tuple(shape), codecs, index_codecs, location)

    @classmethod
    def create(
        cls,
        chunk_shape: Sequence[int],
        codecs: Sequence[Any] = ({"name": "bytes", "configuration": {"endian": "little"}},),
        index_codecs: Sequence[Any] = ({"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}),
        index_location: Literal["start", "end"] = "end",
    ) -> ShardingCodec:
        """Build from Python values (codecs as objects or JSON)."""
        where = "codec 'sharding_indexed'"
        return cls(
            tuple(int(c) for c in chunk_shape),
            tuple(codec_from_user(c, f"{where}: codecs") for c in codecs),
            tuple(codec_from_user(c, f"{where}: index_codecs") for c in index_codecs),
            index_location,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "configuration": {
                "chunk_shape": list(self.chunk_shape),
                "codecs": [c.to_json() for c in self.codecs],
                "index_codecs": [c.to_json() for c in self.index_codecs],
                "index_location": self.index_location,
            },
        }

    # -- shapes -------------------------------------------------------------------------

    def inner_grid(self, shard_shape: Sequence[int]) -> tuple[int, ...]:
        """Inner chunks per shard along each dimension."""
        return tuple(s // c for s, c in zip(shard_shape, self.chunk_shape, strict=True))

    def inner_spec(self, spec: ChunkSpec) -> ChunkSpec:
        """The spec of one inner chunk."""
        return ChunkSpec(self.chunk_shape, spec.data_type, spec.fill_value)

    def _check_shape(self, spec: ChunkSpec) -> None:
        """Refuse a ``chunk_shape`` of another rank than the shard, or not dividing it."""
        if len(self.chunk_shape) != len(spec.shape):
            raise MetadataError(
                f"codec 'sharding_indexed': chunk_shape {list(self.chunk_shape)} does not match "
                f"the {len(spec.shape)} dimensions of the shard {list(spec.shape)}"
            )
        if any(s % c for s, c in zip(spec.shape, self.chunk_shape, strict=True)):
            raise MetadataError(
                f"codec 'sharding_indexed': shard shape {list(spec.shape)} is not a multiple of the "
                f"inner chunk shape {list(self.chunk_shape)}"
            )

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        self._check_shape(spec)
        self.inner_chain(spec)  # validates the inner codecs
        self.index_nbytes(spec)  # validates the index codecs
        return spec

    def evolve(self, spec: ChunkSpec) -> ShardingCodec:
        self._check_shape(spec)  # (before the index spec divides the shard by chunk_shape)
        inner = CodecChain(self.codecs, self.inner_spec(spec), "sharding_indexed codecs")
        index = CodecChain(self.index_codecs, self._index_spec(spec), "sharding_indexed index_codecs")
        evolved = ShardingCodec(self.chunk_shape, tuple(inner.codecs), tuple(index.codecs), self.index_location)
        # The chains hold exactly the evolved codecs: they serve the evolved codec for
        # `spec` too, instead of being built again when it resolves (opening an array).
        evolved._remember_chains(spec, (inner, index))
        return evolved

    def inner_chain(self, spec: ChunkSpec) -> CodecChain:
        """The codec chain of the inner chunks of a shard of ``spec``."""
        return self._chains(spec)[0]

    def _index_spec(self, spec: ChunkSpec) -> ChunkSpec:
        return ChunkSpec((*self.inner_grid(spec.shape), 2), _UINT64, EMPTY)

    def _chains(self, spec: ChunkSpec) -> tuple[CodecChain, CodecChain]:
        # Runs for every shard index read: look the (long-lived) spec object up by
        # identity first; the value key (whose repr is slow) only for new spec objects.
        by_id = self._chain_cache.get(id(spec))
        if by_id is not None and by_id[0] is spec:
            return by_id[1]
        chains = self._chain_cache.get(self._chain_key(spec))
        if chains is None:
            chains = (
                CodecChain(self.codecs, self.inner_spec(spec), "sharding_indexed codecs"),
                CodecChain(self.index_codecs, self._index_spec(spec), "sharding_indexed index_codecs"),
            )
        self._remember_chains(spec, chains)
        return chains

    @staticmethod
    def _chain_key(spec: ChunkSpec) -> tuple[Any, ...]:
        return (spec.shape, repr(spec.data_type), repr(spec.fill_value))

    def _remember_chains(self, spec: ChunkSpec, chains: tuple[CodecChain, CodecChain]) -> None:
        self._chain_cache[self._chain_key(spec)] = chains
        self._chain_cache[id(spec)] = (spec, chains)  # type: ignore[assignment]

    @cached_property
    def _chain_cache(self) -> dict[Any, tuple[CodecChain, CodecChain]]:
        return {}

    def index_nbytes(self, spec: ChunkSpec) -> int:
        """Encoded size of a shard's index (the index codecs must have fixed sizes)."""
        index_spec = self._index_spec(spec)
        chain = self._chains(spec)[1]
        if chain.array_array or not all(c.fixed_size for c in chain.codecs):
            raise MetadataError(
                "codec 'sharding_indexed': index_codecs must have a fixed encoded size "
                "(e.g. bytes and crc32c)"
            )
        size = index_spec.nbytes
        for codec in chain.codecs:
            size = codec.encoded_size(size, index_spec)
        return size

    # -- index ---------------------------------------------------------------------------

    def index_range(self, spec: ChunkSpec) -> tuple[Literal["start", "end"], int]:
        """Where the index lies: ``("start", n)`` = first n bytes, ``("end", n)`` = last n."""
        return self.index_location, self.index_nbytes(spec)

    @cached_property
    def plain_index(self) -> bool | None:
        """For the common index codecs (little-endian bytes, optionally crc32c): whether a
        crc32c is present; None for any other index codecs (decoded generically)."""
        codecs = self.index_codecs
        if not codecs or not isinstance(codecs[0], BytesCodec) or codecs[0].endian != "little":
            return None
        if len(codecs) == 1:
            return False
        if len(codecs) == 2 and isinstance(codecs[1], Crc32cCodec):
            return True
        return None

    def decode_index(self, raw: Buffer, spec: ChunkSpec, key: str = "shard") -> ShardIndex:
        """Decode an encoded index, checking its checksum and its entries."""
        return self.decode_indexes([raw], spec, [key])[0]

    def decode_indexes(self, raws: Sequence[Buffer], spec: ChunkSpec, keys: Sequence[str]) -> list[ShardIndex]:
        """Decode the encoded indexes of several shards (``keys`` name them in errors).

        The usual index codecs (little-endian bytes, optionally crc32c) are decoded for
        the whole batch at once: a read touching many shards decodes an index per shard,
        and NumPy calls per index would cost more than the index bytes themselves.
        """
        expected = self.index_nbytes(spec)
        views = [as_memoryview(raw) for raw in raws]
        for view, key in zip(views, keys, strict=True):
            if len(view) != expected:
                raise CorruptChunkError(f"shard {key!r}: index holds {len(view)} bytes, expected {expected}")
        grid = self.inner_grid(spec.shape)
        with_crc = self.plain_index
        if with_crc is None:
            decoded = [self._decode_index_generic(raw, spec, key) for raw, key in zip(raws, keys, strict=True)]
            entries = np.stack(decoded)
        else:
            payloads = [view[:-4] for view in views] if with_crc else views
            if with_crc:
                check_index_checksums(views, keys)
            joined = payloads[0] if len(payloads) == 1 else b"".join(payloads)
            entries = np.frombuffer(joined, dtype="<u8").reshape(len(payloads), *grid, 2)
        empty = entries == EMPTY
        half_empty = empty[..., 0] != empty[..., 1]
        if half_empty.any():
            shard, *coords = (int(i) for i in np.argwhere(half_empty)[0])
            raise half_empty_entry_error(keys[shard], tuple(coords))
        # No object holds 2**63 bytes: such an entry is corrupt (and would turn negative
        # in the int64 arithmetic that plans the reads).
        huge = ~empty[..., 0] & ((entries[..., 0] >= _MAX_ENTRY) | (entries[..., 1] >= _MAX_ENTRY - entries[..., 0]))
        if huge.any():
            shard, *coords = (int(i) for i in np.argwhere(huge)[0])
            offset, nbytes = (int(v) for v in entries[(shard, *coords)])
            raise huge_entry_error(keys[shard], tuple(coords), offset, nbytes)
        return [ShardIndex(e) for e in entries]

    def _decode_index_generic(self, raw: Buffer, spec: ChunkSpec, key: str) -> np.ndarray:
        try:
            return np.array(self._chains(spec)[1].decode(raw), dtype=np.uint64, copy=True)
        except ChecksumError as exc:
            raise ChecksumError(f"shard {key!r}: index {exc}") from None
        except CorruptChunkError as exc:
            raise CorruptChunkError(f"shard {key!r}: index {exc}") from None

    def encode_index(self, index: ShardIndex, spec: ChunkSpec) -> bytes:
        """Encode an index with the index codecs."""
        return self._chains(spec)[1].encode(index.entries)

    def index_of(self, ranges: Mapping[tuple[int, ...], tuple[int, int]], spec: ChunkSpec) -> bytes:
        """The encoded index of a shard of ``spec`` that stores the inner chunks in
        ``ranges`` (inner coords: ``(offset, nbytes)`` in the shard), in any order."""
        index = ShardIndex.empty(self.inner_grid(spec.shape))
        for coords, (offset, nbytes) in ranges.items():
            index.entries[coords] = (offset, nbytes)
        return self.encode_index(index, spec)

    def check_range(
        self, index: ShardIndex, coords: Sequence[int], shard_nbytes: int | None, key: str
    ) -> tuple[int, int] | None:
        """An inner chunk's byte range, validated against the shard size when known."""
        found = index.byte_range(coords)
        if found is None:
            return None
        offset, nbytes = found
        if shard_nbytes is not None and offset + nbytes > shard_nbytes:
            raise CorruptChunkError(
                f"shard {key!r}: inner chunk {tuple(coords)} at bytes [{offset}, {offset + nbytes}) "
                f"lies past the end of the {shard_nbytes}-byte shard"
            )
        return offset, nbytes

    # -- whole-shard CPU path ----------------------------------------------------------

    def split(self, data: Buffer, spec: ChunkSpec, key: str = "shard") -> tuple[ShardIndex, memoryview]:
        """Decode the index of a whole shard and return it with the shard's bytes."""
        view = as_memoryview(data)
        n = self.index_nbytes(spec)
        if len(view) < n:
            raise CorruptChunkError(f"shard {key!r}: {len(view)} bytes is too short for its {n}-byte index")
        raw_index = view[:n] if self.index_location == "start" else view[len(view) - n :]
        return self.decode_index(raw_index, spec, key), view

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        index, view = self.split(data, spec)
        chain = self.inner_chain(spec)
        shard = out if out is not None else np.empty(spec.shape, dtype=spec.dtype)
        for coords in np.ndindex(*index.grid):
            region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, self.chunk_shape, strict=True))
            found = self.check_range(index, coords, len(view), "shard")
            if found is None:
                shard[region] = spec.fill_value
                continue
            offset, nbytes = found
            try:
                shard[region] = chain.decode(view[offset : offset + nbytes])
            except (ChecksumError, CorruptChunkError) as exc:
                raise type(exc)(f"inner chunk {coords}: {exc}") from None
        return shard

    def encode_inner(self, chunk: np.ndarray, spec: ChunkSpec) -> bytes | None:
        """Encode one inner chunk, or None when it is all fill value (and may be skipped)."""
        return self.encode_inners([chunk], spec)[0]

    def encode_inners(
        self, chunks: Sequence[np.ndarray], spec: ChunkSpec, arena: OutputArena | None = None
    ) -> list[Buffer | None]:
        """:meth:`encode_inner` of several inner chunks of a shard of ``spec``, as one
        batch for the codecs (see :meth:`CodecChain.encode_many`; with ``arena``, the
        results may live in it, valid until the caller resets it)."""
        skip_fill = not get_config().write_empty_chunks
        return self.inner_chain(spec).encode_many(chunks, skip_fill=skip_fill, arena=arena)

    def assemble(self, encoded: Mapping[tuple[int, ...], Buffer], spec: ChunkSpec) -> bytes | None:
        """Lay out encoded inner chunks (C order) and the index; None if nothing is stored."""
        parts = self.assemble_parts(encoded, spec)
        return None if parts is None else b"".join(as_memoryview(p) for p in parts)

    def assemble_parts(self, encoded: Mapping[tuple[int, ...], Buffer], spec: ChunkSpec) -> list[Buffer] | None:
        """:meth:`assemble`'s shard as its parts in storage order (the encoded inner
        chunks in C order, and the index first or last), for stores that write parts
        without joining them (:meth:`~gpuzarr.stores.base.Store.set_parts`)."""
        if not encoded:
            return None
        offset = self.index_nbytes(spec) if self.index_location == "start" else 0
        parts: list[Buffer] = []
        ranges: dict[tuple[int, ...], tuple[int, int]] = {}
        for coords in sorted(encoded):
            data = encoded[coords]
            size = len(data) if type(data) is bytes else len(as_memoryview(data))  # (bytes: a compressor's)
            ranges[coords] = (offset, size)
            parts.append(data)
            offset += size
        raw_index = self.index_of(ranges, spec)
        if self.index_location == "start":
            parts.insert(0, raw_index)
        else:
            parts.append(raw_index)
        return parts

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> bytes:
        encoded: dict[tuple[int, ...], bytes] = {}
        for coords in np.ndindex(*self.inner_grid(spec.shape)):
            region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, self.chunk_shape, strict=True))
            inner = self.encode_inner(np.ascontiguousarray(data[region]), spec)
            if inner is not None:
                encoded[coords] = inner
        # A nested shard must still be stored (its parent decides about emptiness), so an
        # all-empty shard becomes just an index of empty entries.
        assembled = self.assemble(encoded, spec)
        if assembled is None:
            return bytes(self.encode_index(ShardIndex.empty(self.inner_grid(spec.shape)), spec))
        return assembled


register_codec(ShardingCodec)
