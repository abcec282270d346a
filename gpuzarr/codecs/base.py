"""The codec contract.

A codec is written once as a *spec*: a frozen object holding its validated
configuration, its Zarr JSON (v3 ``{"name", "configuration"}``, and the v2 numcodecs
``{"id", ...}`` form where one exists) and how it transforms a chunk's description
(:meth:`Codec.resolve`). Device implementations hang off the spec:

* ``cpu_decode`` / ``cpu_encode`` run one chunk on NumPy buffers. The CPU pipeline calls
  them from a thread pool, so they must release the GIL for their heavy work (numcodecs,
  zlib and crc32c do).
* GPU implementations (``gpuzarr.codecs.gpu``) implement the batch contract over device
  buffers and are looked up by codec name, so importing a spec never imports CuPy.

Codecs come in the three kinds of the v3 spec and a chain is always
``array→array* , array→bytes , bytes→bytes*``.

Capabilities are data (class attributes), so the pipeline picks paths from them instead
of from type checks: ``fixed_size`` (encoded size known from the chunk spec, used for
shard indexes), ``decodes_into`` (``cpu_decode`` accepts an ``out`` buffer, and
``decoded_size`` reads the decoded size from the encoded header).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, overload

import numpy as np

from gpuzarr.errors import CorruptChunkError, MetadataError
from gpuzarr.metadata.dtypes import DataType

__all__ = [
    "ArrayArrayCodec",
    "ArrayBytesCodec",
    "BytesBytesCodec",
    "ChunkSpec",
    "Codec",
    "CodecKind",
    "Buffer",
    "DecodeTargets",
    "NativeDecoder",
    "OutputArena",
    "Spread",
    "as_memoryview",
]

CodecKind = Literal["array_array", "array_bytes", "bytes_bytes"]

#: What flows between bytes→bytes codecs on the CPU: any C-contiguous buffer.
Buffer = bytes | bytearray | memoryview | np.ndarray

#: Runs a function on several threads at once and returns when every call has returned
#: (the pipeline's :func:`~gpuzarr.pipeline.pool.run_together`): a codec that can share
#: one batch between threads hands it a function that takes work from the batch until
#: none is left.
Spread = Callable[[Callable[[], None]], None]


class DecodeTargets(Sequence[np.ndarray]):
    """Where each chunk of a batch decodes, given by address.

    Chunk ``i`` decodes into the ``nbytes`` C-contiguous, writable bytes at
    ``addresses[i]`` (``uintp``), which lie inside arrays that ``holders`` keeps alive
    for the decode. Batch decoders read the addresses; indexing makes chunk ``i``'s
    NumPy view through ``view_of``, for codecs that decode one chunk at a time. A batch
    of thousands of small chunks then needs no NumPy view per chunk: a view and its
    address cost about 4 us, a twentieth of decoding 64 KiB of zstd.

    Whoever builds one vouches for the addresses (the read pipeline works them out from
    the output's strides): nothing checks them before a decoder writes there.
    """

    __slots__ = ("addresses", "holders", "nbytes", "view_of")

    def __init__(
        self, addresses: np.ndarray, nbytes: int, holders: Sequence[object], view_of: Callable[[int], np.ndarray]
    ) -> None:
        self.addresses = addresses
        self.nbytes = nbytes
        self.holders = holders
        self.view_of = view_of

    def __len__(self) -> int:
        return len(self.addresses)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self.view_of(i) for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"decode target {index} of {n}")
        return self.view_of(index % n)


def as_memoryview(data: Buffer) -> memoryview:
    """A flat byte view of ``data`` without copying."""
    if isinstance(data, np.ndarray):
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return memoryview(data.reshape(-1).view(np.uint8))
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    """What a codec needs to know about the chunk it encodes or decodes.

    ``shape`` and ``data_type`` describe the array *on the decoded side* of the codec;
    ``fill_value`` is used where a codec needs to materialise missing data.
    """

    shape: tuple[int, ...]
    data_type: DataType
    fill_value: Any

    @property
    def dtype(self) -> np.dtype:
        """The in-memory NumPy dtype."""
        return self.data_type.dtype

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes of a fixed-size chunk (0 for variable-length data)."""
        n = 1
        for s in self.shape:
            n *= s
        return n * self.data_type.item_size

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n


class Codec(ABC):
    """Base of every codec spec. Subclasses are frozen dataclasses."""

    #: The v3 codec name (``"zstd"``, ``"numcodecs.delta"``...).
    name: ClassVar[str]
    kind: ClassVar[CodecKind]
    #: The encoded size depends only on the chunk spec (needed for shard indexes).
    fixed_size: ClassVar[bool] = False
    #: ``cpu_decode`` accepts ``out=`` and fills it in place.
    decodes_into: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Codec:
        """Build the codec from its v3 ``configuration`` object, validating it."""
        try:
            return cls(**config)  # type: ignore[call-arg]
        except TypeError as exc:
            raise MetadataError(f"codec {cls.name!r}: invalid configuration {dict(config)!r}: {exc}") from None

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The v3 metadata entry ``{"name": ..., "configuration": {...}}``."""

    def to_v2_json(self) -> dict[str, Any] | None:
        """The equivalent v2 numcodecs entry ``{"id": ...}``, or None if there is none."""
        return None

    def evolve(self, spec: ChunkSpec) -> Codec:
        """Fill in settings that depend on the array (e.g. blosc's typesize)."""
        return self

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        """The spec on the encoded side of this codec, given the decoded-side ``spec``.

        Also validates that the codec can handle ``spec`` (raising MetadataError).
        """
        return spec

    def decoded_size(self, data: Buffer) -> int | None:
        """The decoded size announced by the encoded data's header, if it has one.

        Codecs with ``decodes_into`` implement it, so a caller can check that a chunk
        will fill its ``out`` buffer exactly before decoding into it.
        """
        return None

    def encoded_size(self, decoded_size: int, spec: ChunkSpec) -> int:
        """Encoded size for ``fixed_size`` codecs."""
        raise NotImplementedError(f"codec {self.name!r} has no fixed encoded size")

    @abstractmethod
    def cpu_decode(self, data: Any, spec: ChunkSpec, out: np.ndarray | None = None) -> Any:
        """Decode one chunk on the CPU. ``spec`` is the decoded-side spec."""

    @abstractmethod
    def cpu_encode(self, data: Any, spec: ChunkSpec) -> Any:
        """Encode one chunk on the CPU. ``spec`` is the decoded-side spec."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json().get('configuration', {})})"


class ArrayArrayCodec(Codec):
    """Transforms an array into another array (transpose, delta, scale-offset...)."""

    kind: ClassVar[CodecKind] = "array_array"


class ArrayBytesCodec(Codec):
    """Serialises an array into bytes (bytes, vlen-utf8, sharding_indexed...)."""

    kind: ClassVar[CodecKind] = "array_bytes"

    def plain_stored_dtype(self, spec: ChunkSpec) -> np.dtype | None:
        """The dtype of the stored elements when the encoded bytes are the chunk's
        elements in C order and nothing else (so a chunk decodes straight into a
        C-contiguous buffer of ``spec``'s shape), else None."""
        return None


class BytesBytesCodec(Codec):
    """Transforms bytes into bytes (compressors, checksums)."""

    kind: ClassVar[CodecKind] = "bytes_bytes"

    #: Whether encoding and decoding cost far more CPU than moving the bytes
    #: (compressors; not checksums): threads coding such chunks gain nothing beyond one
    #: per core.
    compute_bound: ClassVar[bool] = True

    #: Whether :meth:`cpu_decode_many` decodes a batch with little Python per chunk.
    decodes_batches: ClassVar[bool] = False

    #: Whether :meth:`cpu_decode_many` spreads a batch over the threads its ``spread``
    #: runs (else it decodes the batch on the calling thread alone).
    shares_batches: ClassVar[bool] = False

    def cpu_decode_many(
        self, datas: Sequence[Buffer], outs: Sequence[np.ndarray], spread: Spread | None = None
    ) -> None:
        """Decode each chunk of ``datas`` into its ``out`` (C-contiguous), which it must fill.
        ``outs`` may be :class:`DecodeTargets`, which batch decoders read by address.

        Codecs with ``decodes_batches`` keep one decoding context for the whole batch and
        run little Python per chunk: for small chunks the Python around a one-by-one
        decode costs about as much as the decoding. With ``spread``, the batch may be
        decoded on several threads at once (a codec that cannot share a batch decodes
        it on the calling thread). Raises CorruptChunkError or ChecksumError if any
        chunk is bad, without saying which: callers decode one by one to find out.
        """
        raise NotImplementedError(f"codec {self.name!r} has no batched decoder")

    def cpu_decode_prefix(self, data: Buffer, out: memoryview) -> bool:
        """Decode only the first ``len(out)`` bytes of a chunk into ``out`` (writable
        bytes), where the codec decodes a stream it can stop early: True once done (a
        chunk too short for them raises CorruptChunkError), False where it cannot (the
        default: the caller decodes the whole chunk). A read that needs only the start
        of a chunk's C-order elements (a box at the top of it) decodes no more."""
        return False

    def cpu_encode_many(
        self, datas: Sequence[Buffer], spec: ChunkSpec, arena: OutputArena | None = None
    ) -> list[Any]:
        """Encode several chunks (each as :meth:`cpu_encode` would). Codecs with a
        per-thread context override it to set that up once per batch.

        With ``arena``, a codec may write the encoded chunks into memory taken from it
        (the results are then views, valid until the arena's owner resets it) instead
        of a fresh ``bytes`` object each: fresh memory is page-faulted in, chunk after
        chunk and write after write, where an arena's pages are touched once."""
        return [self.cpu_encode(data, spec) for data in datas]

    def native_decoder(self) -> NativeDecoder | None:
        """A C function gpuzarr's native helper can call to decode one chunk of this codec
        straight into a caller's buffer (where it reads and decodes files itself), or None
        (the default: the codec decodes through Python)."""
        return None


class OutputArena(Protocol):
    """Reusable memory encoders may write into (a :class:`~gpuzarr.stores.base.ReadArena`):
    its owner resets it once every view taken from it is dead."""

    def take(self, nbytes: int, source_offset: int = 0) -> memoryview:
        """A writable view of ``nbytes`` bytes, valid until the owner resets the arena
        (``source_offset``: see :meth:`~gpuzarr.stores.base.ReadArena.take`)."""


class NativeDecoder(Protocol):
    """A decoder gpuzarr's native helper calls without Python: a C function of the shape
    ``size_t decode(void *context, void *dst, size_t dst_nbytes, const void *src, size_t
    src_nbytes)`` (libzstd's ``ZSTD_decompressDCtx``) that returns ``dst_nbytes`` when the
    chunk filled ``dst`` exactly, and anything else when it did not."""

    @property
    def decode_address(self) -> int:
        """The function's address."""

    def thread_context_pointer(self) -> int:
        """This thread's context for the function (not shareable between threads; it
        lives as long as the thread)."""


def check_decoded_size(data: Buffer, expected: int, codec: str) -> None:
    """Raise CorruptChunkError when a decoder produced the wrong number of bytes."""
    n = data.nbytes if isinstance(data, (np.ndarray, memoryview)) else len(data)
    if n != expected:
        raise CorruptChunkError(
            f"codec {codec!r}: decoded {n} bytes, expected {expected} for the chunk"
        )
