"""A codec chain bound to one chunk spec: the per-chunk CPU decode and encode.

All chunks of a regular grid share one spec, so the chain resolves every codec's
input spec once, and the per-chunk work is just the codec calls. Decoding writes into
the caller's buffer when the codecs allow it (a compressor that decodes into ``out``
followed by the ``bytes`` codec), which saves a copy of every chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpuzarr.codecs.base import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    ChunkSpec,
    Codec,
    NativeDecoder,
    OutputArena,
    Spread,
    as_memoryview,
)
from gpuzarr.codecs.fill import is_fill_chunk
from gpuzarr.errors import MetadataError

__all__ = ["CodecChain"]


class CodecChain:
    """``array→array* , array→bytes , bytes→bytes*`` for chunks of ``spec``."""

    def __init__(self, codecs: Sequence[Codec], spec: ChunkSpec, where: str = "codecs") -> None:
        array_array: list[ArrayArrayCodec] = []
        array_bytes: ArrayBytesCodec | None = None
        bytes_bytes: list[BytesBytesCodec] = []
        for codec in codecs:
            if isinstance(codec, ArrayArrayCodec):
                if array_bytes is not None:
                    raise MetadataError(f"{where}: array→array codec {codec.name!r} after the array→bytes codec")
                array_array.append(codec)
            elif isinstance(codec, ArrayBytesCodec):
                if array_bytes is not None:
                    raise MetadataError(f"{where}: more than one array→bytes codec")
                array_bytes = codec
            elif isinstance(codec, BytesBytesCodec):
                if array_bytes is None:
                    raise MetadataError(f"{where}: bytes→bytes codec {codec.name!r} before the array→bytes codec")
                bytes_bytes.append(codec)
            else:  # pragma: no cover - codecs always have a kind
                raise MetadataError(f"{where}: {codec!r} is not a codec")
        if array_bytes is None:
            raise MetadataError(f"{where}: no array→bytes codec (e.g. 'bytes')")

        # Resolve each codec against the spec it sees, evolving array-dependent settings.
        self.spec = spec
        self.array_array: list[tuple[ArrayArrayCodec, ChunkSpec]] = []
        current = spec
        for codec in array_array:
            codec = codec.evolve(current)  # type: ignore[assignment]
            self.array_array.append((codec, current))
            current = codec.resolve(current)
        self.array_bytes = array_bytes.evolve(current)
        self.array_bytes.resolve(current)
        self.array_spec = current  # what the array→bytes codec serialises
        self.bytes_bytes: list[BytesBytesCodec] = [c.evolve(current) for c in bytes_bytes]  # type: ignore[misc]
        self.codecs: list[Codec] = [c for c, _ in self.array_array] + [self.array_bytes] + self.bytes_bytes
        # Decode straight into a caller's buffer: (compressor that decodes into out)?,
        # then an array→bytes codec that stores the plain elements (``bytes``, or a v2
        # layout without filters in C order).
        plain_dtype = None if self.array_array else self.array_bytes.plain_stored_dtype(current)
        # (The array→bytes codec's output is then the chunk's own bytes, for encode_many.)
        self._stores_native_elements = plain_dtype is not None and plain_dtype == current.dtype
        self._direct = (
            plain_dtype is not None and len(self.bytes_bytes) <= 1 and all(c.decodes_into for c in self.bytes_bytes)
        )
        # Resolved once: decode() runs per chunk, so it should only test and call.
        self._direct_compressor = self.bytes_bytes[0] if self._direct and self.bytes_bytes else None
        if self._direct and plain_dtype is not None:
            self._stored_dtype = plain_dtype
            self._swap = self._stored_dtype != self.array_spec.dtype
            self._nbytes = self.array_spec.nbytes
            self._as_is = self._direct_compressor is None and not self._swap
        else:
            self._direct_compressor = None
            self._as_is = False
        # Batches of whole chunks decode with one context when the compressor offers
        # it and the decoded bytes are the chunk as is (native byte order).
        self._batch_compressor = (
            self._direct_compressor
            if self._direct_compressor is not None and self._direct_compressor.decodes_batches and not self._swap
            else None
        )

    def to_json(self) -> list[dict[str, Any]]:
        """The v3 ``codecs`` list, with array-dependent settings filled in."""
        return [c.to_json() for c in self.codecs]

    @property
    def compute_bound(self) -> bool:
        """Whether encoding and decoding a chunk are compute-bound work (a compressor in
        the chain that is not one of the memory-speed ones)."""
        return any(codec.compute_bound for codec in self.bytes_bytes)

    @property
    def can_decode_into(self) -> bool:
        """Whether :meth:`decode` can write a whole chunk straight into ``out``."""
        return self._direct

    @property
    def stores_as_is(self) -> bool:
        """Whether a chunk's stored bytes are its decoded C-order bytes (the ``bytes``
        codec alone, native byte order): reading it is decoding it."""
        return self._as_is

    @property
    def decodes_batches(self) -> bool:
        """Whether :meth:`decode_many` decodes a batch of chunks with little Python per chunk."""
        return self._batch_compressor is not None

    @property
    def shares_batches(self) -> bool:
        """Whether :meth:`decode_many` spreads a batch over the threads its ``spread`` runs."""
        return self._batch_compressor is not None and self._batch_compressor.shares_batches

    @property
    def native_decoder(self) -> NativeDecoder | None:
        """A C decoder that turns a stored chunk into its decoded bytes in one call,
        straight into a C-contiguous buffer of ``spec`` (the compressor's own, where it has
        one and the chain is nothing else but native-order ``bytes``), for gpuzarr's
        native helper to call; else None."""
        return self._batch_compressor.native_decoder() if self._batch_compressor is not None else None

    def decode_many(self, datas: Sequence[Any], outs: Sequence[np.ndarray], spread: Spread | None = None) -> None:
        """Decode several stored chunks at once (requires :attr:`decodes_batches`), each
        into its ``out`` (C-contiguous, ``spec.shape``, native dtype), on the threads
        ``spread`` runs where the compressor can share a batch between threads.

        Raises CorruptChunkError or ChecksumError if any chunk is bad, without naming it
        (decode one by one to find it).
        """
        assert self._batch_compressor is not None
        self._batch_compressor.cpu_decode_many(datas, outs, spread)

    def decode(self, data: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Decode one stored chunk into an array of ``spec.shape``.

        With ``out`` (C-contiguous, ``spec.shape``, native dtype) and
        :attr:`can_decode_into`, the result is written into ``out`` and ``out`` returned.
        """
        spec = self.array_spec
        if out is not None and self._direct:
            compressor = self._direct_compressor
            if compressor is None:
                return self._assign(self.array_bytes.cpu_decode(data, spec, out=out), out)
            # Only decode into `out` when the header promises exactly a chunk's bytes: a
            # shorter stream would otherwise leave stale bytes in `out` without an error.
            if compressor.decoded_size(data) == self._nbytes:
                if not self._swap:
                    compressor.cpu_decode(data, spec, out=out)
                    return out
                raw = out.view(self._stored_dtype)
                compressor.cpu_decode(data, spec, out=raw)
                out[...] = raw.astype(spec.dtype)  # swap the stored byte order
                return out
        for codec in reversed(self.bytes_bytes):
            data = codec.cpu_decode(data, spec)
        arr = self.array_bytes.cpu_decode(data, spec)
        for codec, codec_spec in reversed(self.array_array):
            arr = codec.cpu_decode(arr, codec_spec)
        if out is not None:
            return self._assign(arr, out)
        return arr

    def decode_prefix(self, data: Any, out: np.ndarray, nbytes: int) -> bool:
        """Decode only the first ``nbytes`` of a chunk's C-order bytes into ``out``
        (C-contiguous, ``spec.shape``, native dtype; its other bytes are left as they
        were), where the chain allows it: elements stored as they are in native order
        under one compressor that decodes a stream it can stop early
        (:meth:`BytesBytesCodec.cpu_decode_prefix`), whose header records the chunk's
        full size. True once done; False where not (decode the chunk whole)."""
        compressor = self._direct_compressor
        if compressor is None or self._swap or compressor.decoded_size(data) != self._nbytes:
            return False
        # (A uint8 view first: NumPy exports no buffer of datetime or timedelta arrays.)
        return compressor.cpu_decode_prefix(data, memoryview(out.reshape(-1).view(np.uint8))[:nbytes])

    @staticmethod
    def _assign(arr: np.ndarray, out: np.ndarray) -> np.ndarray:
        if arr is not out:
            np.copyto(out, arr)
        return out

    def encode_many(
        self, arrs: Sequence[np.ndarray], *, skip_fill: bool = False, arena: OutputArena | None = None
    ) -> list[bytes | memoryview | None]:
        """:meth:`encode` of several chunks; with ``skip_fill``, None (and no encoding)
        for each chunk that holds nothing but the fill value, bit for bit. With
        ``arena``, compressors may write the encoded chunks into it
        (:meth:`~gpuzarr.codecs.base.BytesBytesCodec.cpu_encode_many`): the results are
        then valid until the caller resets the arena.

        Where the array→bytes codec stores the elements as they are (``bytes`` in
        native byte order, no array→array codec), the compressors see every chunk's
        bytes at once (one context set up per batch instead of per chunk: small chunks'
        Python is a share of their encoding)."""
        keep: Sequence[int] = range(len(arrs))
        if skip_fill:
            fill = self.spec.fill_value
            keep = [i for i, arr in enumerate(arrs) if not is_fill_chunk(arr, fill)]
        encoded: list[bytes | memoryview | None] = [None] * len(arrs)
        if not self._stores_native_elements:
            for i in keep:
                encoded[i] = self.encode(arrs[i])
            return encoded
        dtype = self.array_spec.dtype
        datas: list[Any] = [as_memoryview(arrs[i] if arrs[i].dtype == dtype else arrs[i].astype(dtype)) for i in keep]
        for codec in self.bytes_bytes:
            datas = codec.cpu_encode_many(datas, self.array_spec, arena)
        for i, data in zip(keep, datas, strict=True):
            encoded[i] = data if isinstance(data, bytes) else as_memoryview(data)
        return encoded

    def encode(self, arr: np.ndarray) -> bytes | memoryview:
        """Encode one chunk (``spec.shape``) into the bytes to store.

        The result may be a flat byte view of an array (of ``arr`` itself for data stored
        as is) rather than a ``bytes`` copy: stores copy what they keep anyway.
        """
        for codec, codec_spec in self.array_array:
            arr = codec.cpu_encode(arr, codec_spec)
        data: Any = self.array_bytes.cpu_encode(arr, self.array_spec)
        for codec in self.bytes_bytes:
            data = codec.cpu_encode(data, self.array_spec)
        if isinstance(data, bytes):
            return data
        return as_memoryview(data)
