"""The user-facing :class:`Array`, mirroring zarr-python 3's ``zarr.Array``."""

from __future__ import annotations

import itertools
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from gpuzarr._memo import BoundedMemo
from gpuzarr.codecs import (
    ArrayArrayCodec,
    ArrayBytesCodec,
    BytesBytesCodec,
    ChunkSpec,
    Codec,
    CodecChain,
    ShardingCodec,
    V2ArrayBytesCodec,
    codec_from_json,
    v2_compressor,
)
from gpuzarr.config import get_config
from gpuzarr.device import Device
from gpuzarr.errors import MetadataError, UnsupportedCodecError, UnsupportedDataTypeError
from gpuzarr.indexing import (
    Indexer,
    SelectionMode,
    array_module,
    block_selection_to_slices,
    indexer_for_geometry,
)
from gpuzarr.memory import CACHE_LINE, POOL_MIN_BYTES, result_pool
from gpuzarr.metadata import (
    V2_ARRAY_KEY,
    V3_KEY,
    ArrayMetadata,
    ArrayMetadataV2,
    ArrayMetadataV3,
    data_type_from_user,
)
from gpuzarr.metadata.dtypes import TORCH_ML_DATA_TYPES, int_limits, is_ml_dtype, v2_stored_dtype
from gpuzarr.nodes import Node, prefix_of, save_metadata
from gpuzarr.pipeline import (
    delete_objects,
    forget_shard_indexes,
    make_layout,
    parallel_map,
    read_many_into,
    write_from,
)
from gpuzarr.stores import Store

__all__ = ["Array", "Attributes", "build_codec_chain", "like_arguments", "summary_text"]


def build_codec_chain(metadata: ArrayMetadata) -> CodecChain:
    """The codec chain of an array's chunks, from either format's metadata."""
    spec = ChunkSpec(metadata.chunks, metadata.data_type, metadata.fill_value)
    if isinstance(metadata, ArrayMetadataV3):
        codecs: list[Codec] = [codec_from_json(c, "codecs") for c in metadata.codecs]
        return CodecChain(codecs, spec, "codecs")
    assert isinstance(metadata, ArrayMetadataV2)
    layout = V2ArrayBytesCodec.create(metadata.stored_dtype, metadata.order, list(metadata.filters))
    compressor = v2_compressor(metadata.compressor)
    return CodecChain([layout] + ([compressor] if compressor else []), spec, "compressor")


#: Codec chains built before, by the identity of their metadata (held in the entry, so
#: the identity stays its own): opening an array again finds its metadata parsed
#: before (gpuzarr.nodes keeps it by its documents' bytes) and so its chain, which
#: holds no state of any one array or store.
_CHAINS: BoundedMemo[int, tuple[ArrayMetadata, CodecChain]] = BoundedMemo(64)


def _chain_naming_key(metadata: ArrayMetadata, path: str) -> CodecChain:
    """:func:`build_codec_chain`, with errors naming the metadata document they come from.

    Codec specs validate their own configuration and know nothing of the store, so
    their messages name the codec only; the document key tells the user which file.
    """
    built = _CHAINS.get(id(metadata))
    if built is not None:  # (the entry holds its metadata: no other object has that id)
        return built[1]
    key = prefix_of(path) + (V3_KEY if metadata.zarr_format == 3 else V2_ARRAY_KEY)
    try:
        chain = build_codec_chain(metadata)
    except (MetadataError, UnsupportedCodecError, UnsupportedDataTypeError) as exc:
        message = str(exc)
        if message.startswith(key):
            raise
        raise type(exc)(f"{key}: {message}") from None
    _CHAINS.put(id(metadata), (metadata, chain))
    return chain


#: Serialises a handle's metadata edits (attributes, resize), each a read, change and
#: write of the whole document: threads editing through one handle must not lose each
#: other's changes. Edits are rare and quick, so one lock for the process is enough.
METADATA_EDITS = threading.RLock()


class Attributes(MutableMapping[str, Any]):
    """A node's user attributes; every change is written to the store at once."""

    def __init__(self, read: Callable[[], dict[str, Any]], write: Callable[[dict[str, Any]], None]) -> None:
        self._read = read
        self._write = write

    def __getitem__(self, key: str) -> Any:
        return self._read()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with METADATA_EDITS:
            attrs = dict(self._read())
            attrs[key] = value
            self._write(attrs)

    def __delitem__(self, key: str) -> None:
        with METADATA_EDITS:
            attrs = dict(self._read())
            del attrs[key]
            self._write(attrs)

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Update several attributes with one metadata write."""
        with METADATA_EDITS:
            attrs = dict(self._read())
            attrs.update(*args, **kwargs)
            self._write(attrs)

    def put(self, attributes: dict[str, Any]) -> None:
        """Replace all attributes."""
        with METADATA_EDITS:
            self._write(dict(attributes))

    def asdict(self) -> dict[str, Any]:
        """A plain copy of the attributes."""
        return dict(self._read())

    def __repr__(self) -> str:
        return repr(self._read())


class _SelectionView:
    """``a.oindex[...]`` / ``a.vindex[...]``: the same array read in another selection mode."""

    def __init__(self, array: Array, mode: SelectionMode) -> None:
        self._array = array
        self._mode = mode

    def __getitem__(self, selection: Any) -> Any:
        return self._array._get(selection, self._mode)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._array._set(selection, value, self._mode)


class _BlockView:
    """``a.blocks[...]``: whole blocks (the chunk grid's cells) selected by block number."""

    def __init__(self, array: Array) -> None:
        self._array = array

    def __getitem__(self, selection: Any) -> Any:
        return self._array.get_block_selection(selection)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._array.set_block_selection(selection, value)


def _result_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new array for a read's result.

    Large ones start on a cache line, like the file offsets chunks are read from:
    NumPy puts large arrays 16 bytes past one, where the kernel copies page-cache
    bytes about 3.5x slower, so chunks stored as is could not be read straight into
    them. (Such a result is a view of a slightly larger buffer.) They come from the
    pool of freed results' memory (:data:`gpuzarr.memory.result_pool`), which spares
    a read in a loop the kernel's zeroing of fresh pages.
    """
    # (math.prod, not np.prod: this runs once per selection, a data loader's many windows.)
    if math.prod(shape) * dtype.itemsize < POOL_MIN_BYTES or dtype.hasobject or dtype.kind == "T":
        return np.empty(shape, dtype=dtype)
    return result_pool.empty(shape, dtype, get_config().result_pool_bytes)


#: A batch of selections whose results together reach this size gets one buffer that
#: each result is a view of (see :func:`_result_buffers`).
_SHARED_RESULTS_MIN_BYTES = 4 * 2**20


def _result_buffers(shapes: Sequence[tuple[int, ...]], dtype: np.dtype) -> list[np.ndarray]:
    """New arrays for the results of a batch of selections.

    Results that together reach :data:`_SHARED_RESULTS_MIN_BYTES` are carved out of
    one buffer, each starting on a cache line: NumPy backs an allocation of 4 MiB or
    more with transparent huge pages where the kernel offers them, which the decoders
    then fault in 512 times less often. (Measured, 32 results of 1 MiB: 8161 page
    faults and 24.6 ms to fill them one array each, 528 faults and 5.2 ms in one
    buffer; a batch of 1 MiB windows spent its extra CPU time against tensorstore in
    those faults.) The buffer comes from the pool of freed results' memory, and goes
    back to it once the last of its results is freed.
    """
    sizes = [math.prod(shape) * dtype.itemsize for shape in shapes]
    if len(shapes) < 2 or sum(sizes) < _SHARED_RESULTS_MIN_BYTES or dtype.hasobject or dtype.kind == "T":
        return [_result_buffer(shape, dtype) for shape in shapes]
    starts = [0, *itertools.accumulate(-(-n // CACHE_LINE) * CACHE_LINE for n in sizes)]
    block = result_pool.empty(starts[-1], np.uint8, get_config().result_pool_bytes)
    return [
        block[start : start + n].view(dtype).reshape(shape)
        for start, n, shape in zip(starts[:-1], sizes, shapes, strict=True)
    ]


class Array(Node):
    """A Zarr array (format 2 or 3) in a store.

    Reading: ``a[sel]`` with NumPy semantics, ``a.oindex[sel]`` (orthogonal),
    ``a.vindex[sel]`` (coordinates), ``a.read(sel, out=...)`` into a preallocated array.
    Writing: ``a[sel] = value`` (and through ``oindex``/``vindex``). Results are NumPy
    arrays on the CPU device.

    Create arrays with :func:`gpuzarr.create_array` and open them with
    :func:`gpuzarr.open_array`.
    """

    kind = "array"

    def __init__(
        self,
        store: Store,
        path: str,
        metadata: ArrayMetadata,
        *,
        read_only: bool = False,
        device: Device | str = "cpu",
    ) -> None:
        super().__init__(store, path, read_only=read_only, device=device)
        self._metadata = metadata
        self._chain = _chain_naming_key(metadata, path)
        self._layout = make_layout(store, prefix_of(path), metadata, self._chain)
        if not store.tells_versions:
            # Nothing tells a shard index cached through this store from one of a shard
            # another handle has replaced since: opening an array is the point at which
            # such changes are picked up (as a new handle would).
            forget_shard_indexes(store, path)

    # -- description ----------------------------------------------------------------

    @property
    def metadata(self) -> ArrayMetadata:
        """The parsed metadata document."""
        return self._metadata






    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape."""
        return self._metadata.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype of the data as returned (native byte order)."""
        return self._metadata.data_type.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape: the unit of compression (for sharded arrays, the inner chunks)."""
        sharding = self._sharding
        return sharding.chunk_shape if sharding is not None else self._metadata.chunks

    @property
    def shards(self) -> tuple[int, ...] | None:
        """Shard shape (the unit of storage), or None for an unsharded array."""
        return self._metadata.chunks if self._sharding is not None else None

    @property
    def _sharding(self) -> ShardingCodec | None:
        codec = self._chain.array_bytes
        return codec if isinstance(codec, ShardingCodec) else None

    @property
    def fill_value(self) -> Any:
        """Value of elements never written."""
        return self._metadata.fill_value

    @property
    def order(self) -> str:
        """Memory order of chunks: the v2 ``order`` field, ``"C"`` for v3."""
        return getattr(self._metadata, "order", "C")

    @property
    def dimension_names(self) -> tuple[str | None, ...] | None:
        """v3 dimension names, if any."""
        return self._metadata.dimension_names  # type: ignore[attr-defined,no-any-return]

    @property
    def attrs(self) -> Attributes:
        """User attributes (changes are written to the store at once)."""
        return Attributes(lambda: self._metadata.attributes, self._write_attributes)

    @property
    def nbytes(self) -> int:
        """Logical size in bytes (elements x item size; 0 item size for variable-length)."""
        return self.size * self._metadata.data_type.item_size

    @property
    def nchunks(self) -> int:
        """Number of chunks in the grid (inner chunks for sharded arrays, as zarr-python)."""
        return math.prod(self.cdata_shape)

    @property
    def nshards(self) -> int:
        """Number of shards in the grid (equal to nchunks for unsharded arrays)."""
        return math.prod(self._metadata.chunk_grid_shape)

    @property
    def cdata_shape(self) -> tuple[int, ...]:
        """Number of chunks along each dimension."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))



    @property
    def codecs(self) -> tuple[Codec, ...]:
        """The whole codec chain, array-dependent settings resolved."""
        return tuple(self._chain.codecs)

    @property
    def filters(self) -> tuple[Codec, ...]:
        """Array→array codecs (v3) or the v2 filters."""
        return tuple(c for c in self._chain.codecs if isinstance(c, ArrayArrayCodec))

    @property
    def serializer(self) -> Codec:
        """The array→bytes codec."""
        return next(c for c in self._chain.codecs if isinstance(c, ArrayBytesCodec))

    @property
    def compressors(self) -> tuple[Codec, ...]:
        """Bytes→bytes codecs."""
        return tuple(c for c in self._chain.codecs if isinstance(c, BytesBytesCodec))

    def chunk_keys(self) -> Iterator[str]:
        """Store keys of every stored object of the grid (chunks or shards), in C order."""
        for coords in itertools.product(*(range(n) for n in self._metadata.chunk_grid_shape)):
            yield self._layout.key(coords)

    def stored_chunk_keys(self) -> list[str]:
        """Keys of the chunks (shards for sharded arrays) present in the store."""
        present = set(self._store.list_prefix(prefix_of(self._path)))
        return [k for k in self.chunk_keys() if k in present]

    @property
    def nchunks_initialized(self) -> int:
        """Number of stored objects present: chunks, or shards for sharded arrays."""
        return len(self.stored_chunk_keys())

    def nbytes_stored(self) -> int:
        """Bytes the array occupies in the store (chunks and metadata)."""
        keys = list(self._store.list_prefix(prefix_of(self._path)))
        return sum(parallel_map(lambda k: self._store.size(k) or 0, keys))

    @property
    def info(self) -> str:
        """A summary of the array, as zarr-python's ``Array.info`` prints it (reads no
        chunk and lists nothing in the store; see :meth:`info_complete`)."""
        return summary_text(self._summary(), width=18)  # (zarr-python's fixed width for arrays)

    def info_complete(self) -> str:
        """:attr:`info` and what the store holds: bytes stored, the storage ratio (bytes
        over bytes stored) and the stored chunks (shards when sharded), as zarr-python's
        ``info_complete()``; this lists the array's keys in the store."""
        stored = self.nbytes_stored()
        return summary_text([
            *self._summary(),
            ("No. bytes stored", stored),
            ("Storage ratio", round(self.nbytes / stored, 1) if stored else "-"),
            ("Chunks Initialized", self.nchunks_initialized),
        ], width=18)

    def _summary(self) -> list[tuple[str, Any]]:
        return [
            ("Type", "Array"),
            ("Zarr format", self.zarr_format),
            ("Data type", self._metadata.data_type.name),
            ("Fill value", self.fill_value),
            ("Shape", self.shape),
            ("Chunk shape", self.chunks),
            *([("Shard shape", self.shards)] if self.shards else []),
            ("Order", self.order),
            ("Read-only", self.read_only),
            ("Store type", type(self._store).__name__),
            ("Filters", tuple(c.to_json()["name"] for c in self.filters)),
            ("Serializer", self.serializer.to_json()["name"]),
            ("Compressors", tuple(c.to_json()["name"] for c in self.compressors)),
            ("No. bytes", self.nbytes),
        ]

    def __repr__(self) -> str:
        return f"<gpuzarr.Array {self.name!r} shape={self.shape} dtype={self.dtype} chunks={self.chunks}>"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self) -> Iterator[Any]:
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        for i in range(self.shape[0]):
            yield self[i]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # NumPy's protocol: copy=False promises no copy, but reading always makes a new
        # array from the stored chunks, so refuse it as zarr-python does.
        if copy is False:
            raise ValueError("copy=False is not supported: reading a gpuzarr Array always creates a new array")
        data = np.asarray(self.read())
        return data if dtype is None else data.astype(dtype, copy=False)

    # -- reading ----------------------------------------------------------------------

    def _indexer(self, selection: Any, mode: SelectionMode) -> Indexer:
        # Selections are planned over the decode units of the layout: inner chunks when
        # shards can be read partially, whole stored objects otherwise.
        return indexer_for_geometry(selection, self.shape, self._layout.unit_shape, mode)

    def _out_array(self, out: Any, indexer: Indexer, xp: Any = np) -> Any:
        """``out`` as an array of ``xp`` (NumPy, or CuPy on a GPU) over the caller's
        memory, refused before anything is read unless it has the selection's shape and
        the array's dtype and is writable.

        Any tensor that exports DLPack (a torch tensor, pinned or not, in this device's
        memory) is taken through ``xp.from_dlpack``: the read decodes into its memory.
        """
        if not isinstance(out, xp.ndarray) and hasattr(out, "__dlpack__") and not isinstance(out, np.generic):
            for lazy in ("is_neg", "is_conj"):  # (torch views whose writes are negated or conjugated)
                flag = getattr(out, lazy, None)
                if callable(flag) and flag():
                    raise TypeError(f"out: a {type(out).__name__} view with {lazy}() set; resolve it first")
            try:
                out = _from_dlpack(xp, out)
            except (BufferError, RuntimeError, TypeError, ValueError) as exc:
                # (another device's memory, a dtype DLPack or NumPy lacks, a tensor
                # that requires grad)
                raise TypeError(f"out: cannot read into this {type(out).__name__} through DLPack: {exc}") from None
        if not isinstance(out, xp.ndarray):  # a NumPy scalar has a shape but is no buffer
            raise TypeError(
                f"out must be a {xp.__name__}.ndarray or a tensor that exports DLPack, got {type(out).__name__}"
            )
        if tuple(out.shape) != indexer.out_shape:
            raise ValueError(f"out has shape {out.shape}, the selection has shape {indexer.out_shape}")
        if out.dtype != self.dtype:
            raise ValueError(f"out has dtype {out.dtype}, the array has dtype {self.dtype}")
        if not getattr(out.flags, "writeable", True):  # (CuPy arrays are always writable)
            raise ValueError("out is read-only")
        if _may_overlap(out):
            raise ValueError("out has elements that may share memory (a broadcast or overlapping view)")
        return out

    @staticmethod
    def _results(
        indexers: Sequence[Indexer],
        outs: Sequence[Any],
        targets: Sequence[Any],
        buffers: Sequence[Any],
        direct: Sequence[bool],
    ) -> list[Any]:
        """Each selection's result: the caller's ``out`` where one was given (read into
        in place, or the finished buffer copied into its array ``target``), else the
        finished buffer."""
        results = []
        for indexer, out, target, buffer, into_out in zip(indexers, outs, targets, buffers, direct, strict=True):
            if not into_out:
                result = indexer.finalize(buffer)
                if target is None:
                    results.append(result)
                    continue
                target[...] = result
            results.append(out)  # (the caller's own object: a tensor read into stays one)
        return results

    def _read_requests(self, indexers: Sequence[Indexer], outs: Sequence[np.ndarray | None]) -> list[Any]:
        """Read every indexer's selection in one batched pipeline call."""
        if self._device.kind == "cuda":
            from gpuzarr.gpu.backend import cuda_backend

            return self._read_on_backend(indexers, outs, cuda_backend(self._device.index))
        targets = [None if o is None else self._out_array(o, ix) for ix, o in zip(indexers, outs, strict=True)]
        # The caller's `out`, where the selection can be read into it.
        views = [None if t is None else indexer.buffer_view(t) for indexer, t in zip(indexers, targets, strict=True)]
        direct = [view is not None for view in views]
        unfilled = [indexer.buffer_shape for indexer, view in zip(indexers, views, strict=True) if view is None]
        fresh = iter(_result_buffers(unfilled, self.dtype))
        buffers = [view if view is not None else next(fresh) for view in views]
        read_many_into(self._layout, list(zip(indexers, buffers, strict=True)))
        _mark_tensors_written(outs)
        return self._results(indexers, outs, targets, buffers, direct)

    def _read_on_backend(self, indexers: Sequence[Indexer], outs: Sequence[Any], backend: Any) -> list[Any]:
        """The device read path (:mod:`gpuzarr.gpu.executor`) on ``backend``: results are
        arrays of the backend's array module (CuPy on a GPU)."""
        from gpuzarr.gpu.executor import read_into_device

        xp = backend.xp
        if not backend.holds(self.dtype):
            raise UnsupportedDataTypeError(
                f"data type {self._metadata.data_type.name!r} ({self.dtype}): arrays of it cannot be held in "
                f"{backend.name} memory; read this array with device='cpu'"
            )
        buffers: list[Any] = []
        direct: list[bool] = []
        targets = [
            None if o is None else self._out_array(o, indexer, xp) for indexer, o in zip(indexers, outs, strict=True)
        ]
        device = getattr(backend, "device", None)
        for target in targets:
            # (A tensor on another GPU imports as an array there: the kernels, launched on
            # this array's device, must not write into it.)
            if target is not None and device is not None and getattr(target, "device", device).id != device.id:
                raise TypeError(f"out is on device {target.device.id}, this array reads on device {device.id}")
        for indexer, target in zip(indexers, targets, strict=True):
            # A C-contiguous ``out`` laid out like the selection's buffer is filled in place.
            in_place = target is not None and target.shape == indexer.buffer_shape and target.flags.c_contiguous
            direct.append(in_place)
            buffers.append(target if in_place else xp.empty(indexer.buffer_shape, dtype=self.dtype))
        read_into_device(self._layout, list(zip(indexers, buffers, strict=True)), backend)
        _mark_tensors_written(outs)
        return self._results(indexers, outs, targets, buffers, direct)

    def _get(self, selection: Any, mode: SelectionMode, out: Any = None) -> Any:
        return self._read_requests([self._indexer(selection, mode)], [out])[0]

    def read_batch(
        self,
        selections: Sequence[Any],
        *,
        mode: SelectionMode = "basic",
        out: Sequence[Any] | None = None,
    ) -> list[Any]:
        """Read several selections as one batched read: a list of arrays, one per selection.

        Every selection's chunks are planned, fetched and decoded together, so many small
        reads (a data loader's random windows) use all threads like one large read, where
        reading them one after another would decode one small chunk at a time. ``out``
        optionally gives a preallocated array per selection.

        Results that together take 4 MiB or more share one buffer (each is a view of it,
        which is freed once every one of them is): one allocation is faulted in far
        faster than many (see ``_result_buffers``).
        """
        indexers = [self._indexer(sel, mode) for sel in selections]
        if out is not None and len(out) != len(indexers):
            raise ValueError(f"out has {len(out)} arrays for {len(indexers)} selections")
        return self._read_requests(indexers, list(out) if out is not None else [None] * len(indexers))

    def __getitem__(self, selection: Any) -> Any:
        result = self._get(selection, "basic")
        return result[()] if result.ndim == 0 else result

    def read(self, selection: Any = Ellipsis, *, out: Any = None, mode: SelectionMode = "basic") -> Any:
        """Read ``selection`` (NumPy semantics by default), optionally into ``out``.

        ``out`` is an array (NumPy; CuPy on a GPU) or any tensor that exports DLPack in
        the same memory (a torch tensor, pinned ones included): the read decodes into it
        and returns it, the caller's own object.

        Without ``out``, a result of 1 MiB or more is a cache-line-aligned view of a
        slightly larger buffer (``flags.owndata`` is False), so chunks stored as is are
        read straight into it.
        """
        return self._get(selection, mode, out)

    @property
    def oindex(self) -> _SelectionView:
        """Orthogonal (outer) indexing: each dimension selected independently."""
        return _SelectionView(self, "orthogonal")

    @property
    def vindex(self) -> _SelectionView:
        """Vectorized (coordinate) indexing: integer arrays broadcast together, or a mask."""
        return _SelectionView(self, "vectorized")

    def get_basic_selection(self, selection: Any = Ellipsis, *, out: Any = None) -> Any:
        """zarr-python spelling of ``a[selection]`` / ``read``."""
        return self._get(selection, "basic", out)

    def get_orthogonal_selection(self, selection: Any, *, out: Any = None) -> Any:
        """zarr-python spelling of ``a.oindex[selection]``."""
        return self._get(selection, "orthogonal", out)

    def get_coordinate_selection(self, selection: Any, *, out: Any = None) -> Any:
        """zarr-python spelling of ``a.vindex[selection]``."""
        return self._get(selection, "vectorized", out)

    def get_mask_selection(self, mask: Any, *, out: Any = None) -> Any:
        """zarr-python spelling of ``a.vindex[mask]``."""
        return self._get(mask, "vectorized", out)

    @property
    def blocks(self) -> _BlockView:
        """Block indexing, as zarr-python's ``a.blocks[...]``: see :meth:`get_block_selection`."""
        return _BlockView(self)

    def _block_slices(self, selection: Any) -> tuple[slice, ...]:
        # Blocks are the cells of the chunk grid, the unit of storage: shards for a
        # sharded array, as in zarr-python (whose ``chunks`` also names inner chunks).
        return block_selection_to_slices(selection, self.shape, self._metadata.chunks)

    def get_block_selection(self, selection: Any, *, out: Any = None) -> Any:
        """Read whole blocks by block number: ``selection`` takes, per dimension, an
        integer (negative counts from the end) or a slice with step 1; an integer keeps
        its dimension. Blocks are the stored chunks (shards when sharded, as in zarr-python)."""
        return self._get(self._block_slices(selection), "basic", out)

    def set_block_selection(self, selection: Any, value: Any) -> None:
        """Write whole blocks by block number (see :meth:`get_block_selection`);
        ``value`` broadcasts to the blocks' shape."""
        self._set(self._block_slices(selection), value, "basic")

    # -- writing ----------------------------------------------------------------------


    def _coerce(self, value: Any) -> np.ndarray:
        if isinstance(value, Array):
            value = value.read()
        if self._metadata.data_type.kind == "bytes":
            return np.asarray(value, dtype=object)
        # NumPy's assignment rules: arrays are cast as ``ndarray[...] = array`` casts them
        # (unsafely); a scalar goes through NumPy's own assignment (300 into uint8 or NaN
        # into int32 raises); sequences are built in the array's type, not through a type
        # NumPy infers first (2**63 + 1 in a list would pass through float64).
        value = _torch_ml_as_numpy(value)
        if self._metadata.data_type.kind in ("int", "uint") and is_ml_dtype(self.dtype):
            _check_narrow_int_range(value, self.dtype)
        if isinstance(value, np.ndarray):
            return value if value.dtype == self.dtype else value.astype(self.dtype)
        if value is None or isinstance(value, int | float | complex | str | bytes | np.generic):
            scalar = np.empty((), dtype=self.dtype)
            scalar[()] = value
            return scalar
        return np.asarray(value, dtype=self.dtype)

    def _set(self, selection: Any, value: Any, mode: SelectionMode) -> None:
        self._check_writable()
        try:
            self._write_selection(selection, value, mode)
        finally:
            # (Its time includes what the store finishes in the background: releasing
            # the files it replaced.)
            self._layout.store.finish_writes()

    def _write_selection(self, selection: Any, value: Any, mode: SelectionMode) -> None:
        indexer = self._indexer(selection, mode)
        # On a GPU: arrays opened with device="cuda", and CuPy values whatever the
        # array's device (the data is on the GPU already: encode it there). Data types
        # the device cannot hold (variable length, datetimes, strings, raw) write on the CPU.
        device_index: int | None = self._device.index if self._device.kind == "cuda" else None
        if device_index is None and array_module(value) is not np:
            device_index = int(value.device.id)
        if device_index is not None:
            from gpuzarr.gpu.backend import cuda_backend

            backend = cuda_backend(device_index)
            if backend.holds(self.dtype):
                self._write_on_backend(indexer, value, backend)
                return
        buffer = indexer.prepare_value(self._coerce(value))
        write_from(self._layout, indexer, buffer)

    def _write_on_backend(self, indexer: Indexer, value: Any, backend: Any) -> None:
        """The device write path (:mod:`gpuzarr.gpu.write`) on ``backend``: ``value`` is
        a NumPy or backend (CuPy) array, or anything NumPy turns into one."""
        from gpuzarr.gpu.write import write_from_device

        xp = backend.xp
        if isinstance(value, Array):
            value = value.read()
        if array_module(value) is np or xp is np:
            value = self._coerce(value)
            host = np.ascontiguousarray(indexer.prepare_value(value))
            device_value = host if xp is np else backend.upload(host.reshape(-1).view(np.uint8))
            device_value = device_value.view(self.dtype).reshape(indexer.buffer_shape)
        else:
            device_value = xp.ascontiguousarray(indexer.prepare_value(xp.asarray(value, dtype=self.dtype)))
            # ascontiguousarray makes 0-d arrays 1-d (NumPy's rule): back to the buffer's shape.
            device_value = device_value.reshape(indexer.buffer_shape)
        write_from_device(self._layout, indexer, device_value, backend)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._set(selection, value, "basic")

    def write(self, selection: Any, value: Any, *, mode: SelectionMode = "basic") -> None:
        """Write ``value`` into ``selection`` (the method twin of ``a[sel] = value``)."""
        self._set(selection, value, mode)

    def set_basic_selection(self, selection: Any, value: Any) -> None:
        """zarr-python spelling of ``a[selection] = value``."""
        self._set(selection, value, "basic")

    def set_orthogonal_selection(self, selection: Any, value: Any) -> None:
        """zarr-python spelling of ``a.oindex[selection] = value``."""
        self._set(selection, value, "orthogonal")

    def set_coordinate_selection(self, selection: Any, value: Any) -> None:
        """zarr-python spelling of ``a.vindex[selection] = value``."""
        self._set(selection, value, "vectorized")

    def set_mask_selection(self, mask: Any, value: Any) -> None:
        """zarr-python spelling of ``a.vindex[mask] = value`` (``mask``: a boolean array
        of the array's shape)."""
        self._set(mask, value, "vectorized")

    def update_attributes(self, new_attributes: Mapping[str, Any]) -> Array:
        """Merge ``new_attributes`` into the attributes (one metadata write); returns
        this array, as zarr-python does."""
        self.attrs.update(new_attributes)
        return self

    def append(self, data: Any, axis: int = 0) -> tuple[int, ...]:
        """Grow the array along ``axis`` by ``data``'s extent there and write ``data``
        into the new part; returns the new shape (as zarr-python's ``append``).

        ``data`` must match the array's shape on every other axis, and convert to the
        array's type. The array is resized first, so a write that fails later (a store
        error) leaves it grown, the new part reading as the fill value.
        """
        self._check_writable()
        if not -self.ndim <= axis < self.ndim:
            raise ValueError(f"append: axis {axis} is out of range for an array of {self.ndim} dimensions")
        axis %= self.ndim
        data_shape = tuple(np.shape(data))
        others = [d for d in range(self.ndim) if d != axis]
        if len(data_shape) != self.ndim or any(data_shape[d] != self.shape[d] for d in others):
            raise ValueError(f"append: data of shape {data_shape} does not fit shape {self.shape} along axis {axis}")
        old = self.shape[axis]
        new_shape = tuple(s + data_shape[axis] if d == axis else s for d, s in enumerate(self.shape))
        value = self._coerce(data)  # (values the type cannot hold fail before anything grows)
        self.resize(new_shape)
        self[tuple(slice(old, None) if d == axis else slice(None) for d in range(self.ndim))] = value
        return new_shape

    def _write_attributes(self, attributes: dict[str, Any]) -> None:
        self._check_writable()
        metadata = self._metadata.with_attributes(attributes)
        save_metadata(self._store, self._path, metadata)
        self._metadata = metadata
        self._layout = make_layout(self._store, prefix_of(self._path), metadata, self._chain)

    def resize(self, new_shape: Sequence[int]) -> None:
        """Change the shape; chunks wholly outside the new shape are deleted.

        Data inside the old bounds keeps its position; elements added by growing read as
        the fill value, except where a trimmed edge chunk still holds old values (as in
        zarr-python) that no write has replaced since: a write covering every element of
        such a chunk that lies inside the array stores the chunk afresh, its part outside
        the array as the fill value (zarr-python keeps the old values there for some
        selections and not others).
        """
        self._check_writable()
        new_shape = tuple(int(s) for s in new_shape)
        if len(new_shape) != self.ndim or any(s < 0 for s in new_shape):
            raise ValueError(f"resize: new shape {new_shape} must have {self.ndim} non-negative dimensions")
        old_keys = set(self.chunk_keys())
        with METADATA_EDITS:  # (an attribute edit on this handle keeps the new shape)
            metadata = self._metadata.with_shape(new_shape)
            new_layout = make_layout(self._store, prefix_of(self._path), metadata, self._chain)
            save_metadata(self._store, self._path, metadata)
            self._metadata = metadata
            self._layout = new_layout
        new_keys = {
            new_layout.key(c)
            for c in itertools.product(*(range(n) for n in metadata.chunk_grid_shape))
        }
        delete_objects(self._store, sorted(old_keys - new_keys))


def summary_text(rows: Sequence[tuple[str, Any]], width: int | None = None) -> str:
    """``info``'s text: one ``name : value`` line per row, names padded to ``width``
    (the longest name's by default), as zarr-python prints its summaries."""
    width = width or max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}} : {value}" for name, value in rows)


#: v2 filters that gpuzarr's creation adds itself for variable-length data types.
_IMPLIED_V2_FILTERS = ("vlen-utf8", "vlen-bytes")


def _check_narrow_int_range(value: Any, dtype: np.dtype) -> None:
    """Raise OverflowError for integers an ml_dtypes integer type cannot hold: its
    assignment wraps them (9 into int4 is -7), where NumPy's own types raise."""
    values = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if values.dtype.kind == "O":  # (Python ints held as objects: NumPy checks those too)
        ints = [v for v in values.ravel().tolist() if isinstance(v, int) and not isinstance(v, bool)]
        values = np.asarray(ints if ints else [0], dtype=object)
    elif values.dtype.kind not in "iu" or not values.size:
        return
    low, high = int_limits(dtype)
    if int(values.min()) < low or int(values.max()) > high:
        raise OverflowError(f"values out of the range [{low}, {high}] of {dtype.name}")


def _may_overlap(array: Any) -> bool:
    """Whether elements of ``array`` may share memory (a broadcast or expanded view, or
    strides that interleave): reading into it would leave one value in several of them.

    Exact for every view made by slicing and transposing: with the axes ordered by
    stride, each stride must step over everything the smaller ones span (the layout of
    any view of a plain array). Views that break the rule may still be disjoint, but
    telling needs an integer search: they are refused as well.
    """
    if array.size <= 1:
        return False
    reach = array.itemsize
    for n, stride in sorted(
        ((n, abs(stride)) for n, stride in zip(array.shape, array.strides, strict=True) if n > 1),
        key=lambda axis: axis[1],
    ):
        if stride < reach:
            return True
        reach = stride * (n - 1) + reach
    return False


def _mark_tensors_written(outs: Sequence[Any]) -> None:
    """Tell torch that its tensors among ``outs`` were written in place (through DLPack it
    cannot see it): autograd then refuses a backward pass through their old values."""
    for out in outs:
        if out is not None and type(out).__module__.startswith("torch"):
            increment = getattr(sys.modules["torch"].autograd.graph, "increment_version", None)
            if increment is not None:
                increment(out)


def _torch_ml_dtype(value: Any) -> np.dtype | None:
    """ml_dtypes' dtype of a torch tensor of bfloat16 or a float8 type (None for anything
    else). Neither NumPy nor DLPack takes these tensors: they pass as the integers of
    their bits (:func:`_torch_bits`), viewed as this dtype."""
    if not type(value).__module__.startswith("torch"):
        return None
    name = str(getattr(value, "dtype", "")).removeprefix("torch.")
    return data_type_from_user(name).dtype if name in TORCH_ML_DATA_TYPES else None


def _torch_bits(tensor: Any, dtype: np.dtype) -> Any:
    """``tensor`` viewed as torch's signed integers of ``dtype``'s size (its bits)."""
    return tensor.view(getattr(sys.modules["torch"], f"int{8 * dtype.itemsize}"))


def _from_dlpack(xp: Any, tensor: Any) -> Any:
    """``xp``'s array over ``tensor``'s memory, never a copy (a copy would be filled and
    dropped). torch's bfloat16 and float8 tensors go as their bits (see _torch_ml_dtype)."""
    as_ml = _torch_ml_dtype(tensor)
    if as_ml is not None:
        if tensor.requires_grad:  # (the integer view below would export where torch refuses)
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
        tensor = _torch_bits(tensor, as_ml)
    try:
        array = xp.from_dlpack(tensor, copy=False)
    except TypeError:  # (an array module without the copy keyword: it never copies)
        array = xp.from_dlpack(tensor)
    return array if as_ml is None else array.view(as_ml)


def _torch_ml_as_numpy(value: Any) -> Any:
    """A torch tensor of bfloat16 or a float8 type as the NumPy array (ml_dtypes) of its
    values, which ``np.asarray`` cannot make; anything else as it is."""
    dtype = _torch_ml_dtype(value)
    if dtype is None:
        return value
    return _torch_bits(value.detach().cpu().contiguous(), dtype).numpy().view(dtype)


def like_arguments(source: Any) -> dict[str, Any]:
    """:func:`gpuzarr.create_array` arguments that give a new array ``source``'s shape,
    data type, chunking, encoding and fill value, but not its data or attributes: what
    zarr-python's ``full_like`` (and the like) and ``from_array(..., "keep")`` copy.

    ``source`` is a gpuzarr :class:`Array` or anything with ``shape`` and ``dtype``
    (NumPy, CuPy, PyTorch...), which gives just those two. A sharded array is described
    as ``create_array(chunks=inner, shards={"shape": ..., "index_location": ...})``
    takes it, with the inner chunks' codecs, when that reproduces it; when it does not
    (index codecs other than the default, or codecs outside the sharding codec),
    ``chunks`` is the shard shape and ``serializer`` the whole ``sharding_indexed``
    codec, so nothing is lost.
    """
    if not isinstance(source, Array):
        if not hasattr(source, "shape") or not hasattr(source, "dtype"):
            raise TypeError(f"expected an array with a shape and a dtype, got {type(source).__name__}")
        dtype = source.dtype
        if not isinstance(dtype, np.dtype):  # PyTorch and others: NumPy's name for their type
            name = str(dtype).removeprefix("torch.")
            try:  # (through gpuzarr's resolution: "bfloat16" needs ml_dtypes imported)
                dtype = data_type_from_user(name).dtype
            except (TypeError, ValueError):
                raise TypeError(f"data type {dtype} has no NumPy equivalent: pass dtype= explicitly") from None
        return {"shape": tuple(int(n) for n in source.shape), "dtype": dtype}
    meta = source.metadata
    if isinstance(meta, ArrayMetadataV2):
        stored = v2_stored_dtype(meta.stored_dtype)
        return {
            "shape": source.shape,
            # (the stored dtype keeps a big-endian array big-endian)
            "dtype": meta.data_type if stored.kind == "O" else stored,
            "fill_value": meta.fill_value_v2,
            "zarr_format": 2,
            "chunks": meta.chunks,
            "order": meta.order,
            "filters": [dict(f) for f in meta.filters if f.get("id") not in _IMPLIED_V2_FILTERS] or None,
            "compressors": [dict(meta.compressor)] if meta.compressor else None,
            "chunk_key_encoding": {"name": "v2", "configuration": {"separator": meta.dimension_separator}},
        }
    assert isinstance(meta, ArrayMetadataV3)
    sharding = source._sharding
    as_inner = sharding is not None and len(source.codecs) == 1 and [
        c.to_json() for c in sharding.index_codecs
    ] == [c.to_json() for c in ShardingCodec(sharding.chunk_shape).index_codecs]
    codecs = list(sharding.codecs) if as_inner else list(source.codecs)  # type: ignore[union-attr]
    return {
        "shape": source.shape,
        "dtype": meta.data_type,
        "fill_value": meta.fill_value,
        "zarr_format": 3,
        "chunks": source.chunks if as_inner else meta.chunks,
        "shards": {"shape": source.shards, "index_location": sharding.index_location} if as_inner else None,  # type: ignore[union-attr]
        "filters": [c.to_json() for c in codecs if c.kind == "array_array"] or None,
        "serializer": next(c.to_json() for c in codecs if c.kind == "array_bytes"),
        "compressors": [c.to_json() for c in codecs if c.kind == "bytes_bytes"] or None,
        "dimension_names": meta.dimension_names,
        "chunk_key_encoding": meta.chunk_key_encoding.to_json(),
    }
