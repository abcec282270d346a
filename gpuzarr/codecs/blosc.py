"""The ``blosc`` codec (c-blosc 1 via numcodecs), with shuffle, bitshuffle and typesize."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, partial
from typing import Any, ClassVar, Literal

import numcodecs
import numpy as np

from gpuzarr import _native
from gpuzarr.codecs._compressor import buffer_address, decode_with
from gpuzarr.codecs.base import Buffer, BytesBytesCodec, ChunkSpec, OutputArena, as_memoryview
from gpuzarr.errors import CorruptChunkError, MetadataError

__all__ = ["BloscCodec", "SHUFFLE_IDS"]

BLOSC_CNAMES = ("lz4", "lz4hc", "blosclz", "zstd", "snappy", "zlib")
#: v3 shuffle names and the integers numcodecs / c-blosc / v2 metadata use.
SHUFFLE_IDS = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


#: Bytes of the c-blosc 1 header: version, versionlz, flags, typesize, nbytes, blocksize, cbytes.
_HEADER_BYTES = 16

#: c-blosc 1's largest buffer (BLOSC_MAX_BUFFERSIZE: INT_MAX minus its 16-byte overhead).
_MAX_BUFFER_BYTES = 2**31 - 1 - 16

#: The oldest c-blosc whose context call is used: 1.21 checks the compressed streams
#: against the buffer size its header states (older releases trusted them further).
_MIN_CBLOSC = (1, 21)


@cache
def _context_decompress() -> Callable[[int, int, int, int], int] | None:
    """``decompress(source, source_nbytes, target, target_nbytes)``: c-blosc's
    ``blosc_decompress_ctx`` from the library numcodecs ships (its result too), or None.

    numcodecs decodes with c-blosc's global context, behind a process-wide lock and
    with c-blosc's own threads, whenever it is called from the main thread, and the
    pipeline's calling thread decodes alongside its workers: 128 blosc-lz4 chunks of
    1 MiB on two threads took 28.7 ms that way and 21.8 ms through the context call
    with one thread per chunk. (c-blosc's threads do not pay off for a lone chunk
    either: the context call starts them anew each time; 1-4 MiB chunks read alone
    measured faster with one.) The call releases the GIL (ctypes does). It is
    c-blosc 1's public API, exported by the extension numcodecs builds; where a build
    does not export it, or holds another c-blosc, numcodecs decodes.

    Where gpuzarr's helper is built and the CPU has AVX2, the helper makes the call and
    undoes bitshuffles itself (``bitshuffle.c``; numcodecs builds c-blosc without AVX2):
    1 MiB int16 zstd chunks decoded in 0.54 ms instead of 0.73.
    """
    try:
        library = ctypes.CDLL(numcodecs.blosc.__file__)
        function = library.blosc_decompress_ctx
        version_string = library.blosc_get_version_string
    except (OSError, AttributeError):
        return None
    version_string.argtypes = ()
    version_string.restype = ctypes.c_char_p
    try:
        version = tuple(int(part) for part in version_string().decode("ascii").split(".")[:2])
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    if version[0] != 1 or version < _MIN_CBLOSC:
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    unshuffling = _native.blosc_decompress
    try:
        address = ctypes.cast(function, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):  # (not a C function: nothing to hand the helper)
        address = None
    if unshuffling is not None and address is not None:
        # gpuzarr's helper calls it, and undoes bitshuffles with AVX2 itself (bitshuffle.c).
        return partial(unshuffling, address)  # type: ignore[no-any-return]

    def decompress(source: int, source_nbytes: int, target: int, target_nbytes: int) -> int:
        return function(source, target, target_nbytes, 1)  # type: ignore[no-any-return]

    return decompress


@cache
def _context_compress() -> Callable[..., int] | None:
    """c-blosc's ``blosc_compress_ctx`` from the library numcodecs ships, or None (where
    the build does not export it, or holds another c-blosc than the decoder accepts:
    numcodecs then encodes). The call releases the GIL (ctypes does) and compresses on
    the calling thread alone, as numcodecs does off the main thread (on it, numcodecs
    takes c-blosc's global context, behind its lock)."""
    if _context_decompress() is None:  # (the same library and version checks)
        return None
    try:
        function = ctypes.CDLL(numcodecs.blosc.__file__).blosc_compress_ctx
    except (OSError, AttributeError):
        return None
    function.argtypes = (
        ctypes.c_int,  # clevel
        ctypes.c_int,  # doshuffle
        ctypes.c_size_t,  # typesize
        ctypes.c_size_t,  # nbytes
        ctypes.c_void_p,  # src
        ctypes.c_void_p,  # dest
        ctypes.c_size_t,  # destsize
        ctypes.c_char_p,  # compressor
        ctypes.c_size_t,  # blocksize
        ctypes.c_int,  # numinternalthreads
    )
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


@cache
def _built_compressors() -> frozenset[str]:
    """The compressors numcodecs' c-blosc was built with (snappy is often left out)."""
    return frozenset(numcodecs.blosc.list_compressors())


def _decode_in_context(
    decompress: Callable[[int, int, int, int], int], view: memoryview, nbytes: int, out: np.ndarray | None
) -> np.ndarray:
    """Decode the blosc buffer ``view`` (its header's compressed size checked against
    its length; ``nbytes`` its decoded size) into ``out`` (writable and C-contiguous;
    or a new array) with ``decompress``, on this thread alone."""
    if out is None:
        out = np.empty(nbytes, dtype=np.uint8)
    target = out.reshape(-1).view(np.uint8)  # (a view: `out` is C-contiguous)
    if target.nbytes < nbytes:
        raise CorruptChunkError(
            f"codec 'blosc': chunk decodes to {nbytes} bytes, more than the {target.nbytes} expected"
        )
    # (The holders, locals until this returns, keep both buffers exported over the call.)
    source, _, _source_holder = buffer_address(view)
    target_address, target_nbytes, _target_holder = buffer_address(target, writable=True)
    written = decompress(source, len(view), target_address, target_nbytes)
    if written != nbytes:
        raise CorruptChunkError(f"codec 'blosc': cannot decode chunk (c-blosc returned {written})")
    return out


#: Blosc compressors fast enough that encoding is not compute-bound.
_FAST_CNAMES = frozenset({"lz4", "blosclz", "snappy"})


@dataclass(frozen=True)
class BloscCodec(BytesBytesCodec):
    """Blosc meta-compressor: ``cname`` at ``clevel`` after an optional byte/bit shuffle.

    ``typesize`` is the element size the shuffle works on; it is taken from the array's
    data type when not given (as zarr-python does).
    """

    cname: str = "zstd"
    clevel: int = 5
    shuffle: Literal["noshuffle", "shuffle", "bitshuffle"] = "shuffle"
    typesize: int | None = None
    blocksize: int = 0

    name: ClassVar[str] = "blosc"
    decodes_into: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BloscCodec:
        extra = set(config) - {"cname", "clevel", "shuffle", "typesize", "blocksize"}
        cname = config.get("cname", "zstd")
        clevel = config.get("clevel", 5)
        shuffle = config.get("shuffle", "shuffle")
        typesize = config.get("typesize")
        blocksize = config.get("blocksize", 0)
        problems = []
        if extra:
            problems.append(f"unknown fields {sorted(extra)}")
        if cname not in BLOSC_CNAMES:
            problems.append(f"cname must be one of {BLOSC_CNAMES}")
        if not isinstance(clevel, int) or not 0 <= clevel <= 9:
            problems.append("clevel must be an integer 0-9")
        if not isinstance(shuffle, str) or shuffle not in SHUFFLE_IDS:
            problems.append(f"shuffle must be one of {tuple(SHUFFLE_IDS)}")
        if typesize is not None and (not isinstance(typesize, int) or typesize < 1):
            problems.append("typesize must be a positive integer")
        if not isinstance(blocksize, int) or blocksize < 0:
            problems.append("blocksize must be a non-negative integer")
        if problems:
            raise MetadataError(f"codec 'blosc': {'; '.join(problems)} (got {dict(config)!r})")
        return cls(cname, clevel, shuffle, typesize, blocksize)

    @property
    def compute_bound(self) -> bool:  # type: ignore[override]
        """Whether blosc's compressor is one of the slow ones (zstd, zlib, lz4hc): lz4,
        blosclz and snappy compress at memory-like speeds, where a write of their chunks
        is as much file work as compression (a partial write of 1 MiB lz4 chunks with one
        thread per core took 1.06x the time of one with ``config.threads``)."""
        return self.cname not in _FAST_CNAMES

    def evolve(self, spec: ChunkSpec) -> BloscCodec:
        if self.typesize is None:
            size = spec.data_type.item_size or 1
            return BloscCodec(self.cname, self.clevel, self.shuffle, size, self.blocksize)
        return self

    def to_json(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "cname": self.cname,
            "clevel": self.clevel,
            "shuffle": self.shuffle,
            "blocksize": self.blocksize,
        }
        if self.typesize is not None:
            config["typesize"] = self.typesize
        return {"name": "blosc", "configuration": config}

    def to_v2_json(self) -> dict[str, Any]:
        return {
            "id": "blosc",
            "cname": self.cname,
            "clevel": self.clevel,
            "shuffle": SHUFFLE_IDS[self.shuffle],
            "blocksize": self.blocksize,
        }

    @cached_property
    def _impl(self) -> numcodecs.Blosc:
        return numcodecs.Blosc(
            cname=self.cname, clevel=self.clevel, shuffle=SHUFFLE_IDS[self.shuffle], blocksize=self.blocksize
        )

    def decoded_size(self, data: Buffer) -> int | None:
        """Uncompressed size from the blosc header, or None if there is no valid header."""
        view = as_memoryview(data)
        if len(view) < _HEADER_BYTES or int.from_bytes(view[12:16], "little") != len(view):
            return None  # truncated or padded: let the checked path report it
        return int.from_bytes(view[4:8], "little")

    def cpu_decode(self, data: Buffer, spec: ChunkSpec, out: np.ndarray | None = None) -> Buffer:
        view = as_memoryview(data)
        # c-blosc (numcodecs too) trusts the header, and the header's compressed size:
        # a chunk shorter than either would be decoded from memory past its end.
        if len(view) < _HEADER_BYTES:
            raise CorruptChunkError(f"codec 'blosc': chunk of {len(view)} bytes is shorter than its 16-byte header")
        cbytes = int.from_bytes(view[12:16], "little")
        if cbytes < _HEADER_BYTES:
            raise CorruptChunkError(f"codec 'blosc': header says the chunk holds {cbytes} bytes, less than itself")
        if cbytes > len(view):
            raise CorruptChunkError(
                f"codec 'blosc': chunk is truncated: its header says {cbytes} bytes, it holds {len(view)}"
            )
        view = view[:cbytes]  # (bytes after the chunk, as numcodecs ignores them)
        if (promised := int.from_bytes(view[4:8], "little")) > _MAX_BUFFER_BYTES:
            # numcodecs would fail untyped (its size wraps negative) or allocate it.
            raise CorruptChunkError(
                f"codec 'blosc': header promises {promised} bytes, more than c-blosc 1 can hold ({_MAX_BUFFER_BYTES})"
            )
        decompress = _context_decompress()
        # An `out` the decoder cannot write in place takes numcodecs' path (which
        # rejects it), as does every chunk where numcodecs' build exports no context call.
        writable_in_place = out is None or (out.flags.c_contiguous and out.flags.writeable)
        if decompress is not None and writable_in_place and (nbytes := self.decoded_size(view)) is not None:
            return _decode_in_context(decompress, view, nbytes, out)

        def run(buf: Buffer, dest: np.ndarray | None) -> Buffer:
            return self._impl.decode(buf, out=dest)

        return decode_with("blosc", run, view, out)

    def _typesize_for(self, nbytes: int) -> int:
        """The element size c-blosc shuffles ``nbytes`` bytes by: ``typesize``, or 1
        where it does not divide them (as numcodecs, which takes it from the buffer)."""
        typesize = self.typesize or 1
        return typesize if nbytes % typesize == 0 else 1

    def cpu_encode(self, data: Buffer, spec: ChunkSpec) -> bytes:
        # numcodecs takes blosc's typesize from the buffer's item size.
        flat = np.frombuffer(as_memoryview(data), dtype=np.uint8)
        typesize = self._typesize_for(flat.size)
        if typesize > 1:
            flat = flat.view(f"V{typesize}") if typesize not in (2, 4, 8) else flat.view(f"u{typesize}")
        return self._impl.encode(flat)

    def cpu_encode_many(
        self, datas: Sequence[Buffer], spec: ChunkSpec, arena: OutputArena | None = None
    ) -> list[Any]:
        compress = _context_compress() if arena is not None else None
        views = [as_memoryview(data) for data in datas]
        if (
            compress is None
            or self.cname not in _built_compressors()
            or any(view.nbytes > _MAX_BUFFER_BYTES for view in views)
        ):  # (numcodecs then encodes, or says what it refuses)
            return super().cpu_encode_many(views, spec)
        assert arena is not None
        # Into the arena, with the arguments numcodecs passes off the main thread: the
        # same bytes, without a fresh output object per chunk.
        cname, shuffle = self.cname.encode("ascii"), SHUFFLE_IDS[self.shuffle]
        encoded = []
        for view in views:
            nbytes = view.nbytes
            target = arena.take(nbytes + _HEADER_BYTES)  # (c-blosc's most: a copy and its header)
            target_address, target_nbytes, _target_holder = buffer_address(target, writable=True)
            source, _, _source_holder = buffer_address(view)
            typesize = self._typesize_for(nbytes)
            written = compress(
                self.clevel, shuffle, typesize, nbytes, source, target_address, target_nbytes, cname, self.blocksize, 1
            )
            if written <= 0:
                raise RuntimeError(f"codec 'blosc': c-blosc could not compress a chunk (it returned {written})")
            encoded.append(target[:written])
        return encoded
