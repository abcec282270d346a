"""Devices the GPU executor runs on: a CUDA GPU, or the host standing in for one.

The executor (:mod:`gpuzarr.gpu.executor`) is written against :class:`Backend`: an array
module (``xp``), the kernel launchers (``kernels``, with the signatures of
:mod:`gpuzarr.gpu.reference`), buffer upload, and one batched decompression call per
codec. Two implementations:

* :class:`CudaBackend`: CuPy arrays on one GPU, the CUDA kernels of ``kernels/``
  (:mod:`gpuzarr.gpu.ops`), nvCOMP's batched decompressors with raw bitstreams.
* :class:`HostBackend`: NumPy arrays, the NumPy kernel references, and the CPU
  compression libraries decompressing one stream after another. It runs the executor's
  whole control flow (planning, waves, stages, out-of-memory back-off, fallbacks) on
  any machine, which is how CI tests the GPU read path without a GPU; it is not a fast
  CPU path (that is :mod:`gpuzarr.pipeline.read`).

Nothing here imports CuPy or nvCOMP at module import.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from gpuzarr.errors import DeviceUnavailableError
from gpuzarr.gpu import reference
from gpuzarr.gpu.plan import CompressBatch, StreamBatch, aligned_slots, host_compress, host_decompress
from gpuzarr.metadata.dtypes import is_ml_dtype

__all__ = ["Backend", "CudaBackend", "HostBackend", "NVCOMP_ALGORITHMS", "cuda_backend"]

#: nvCOMP algorithm name of each decompressor the executor calls.
NVCOMP_ALGORITHMS = {"zstd": "Zstd", "gzip": "Gzip", "deflate": "Deflate", "lz4": "LZ4"}


class Backend(ABC):
    """What the executor needs from a device."""

    #: The array module: ``numpy`` or ``cupy``.
    xp: Any
    #: Kernel launchers with the signatures of :mod:`gpuzarr.gpu.reference`.
    kernels: Any
    #: Human-readable name (in warnings and benchmark records).
    name: str

    #: Alignment of each compressed and decompressed stream start the decompressors need.
    input_alignment = 8
    output_alignment = 8
    #: Largest stream each batched compressor takes, by codec (absent: no limit).
    max_stream_nbytes: dict[str, int] = {}  # noqa: RUF012 - read-only per class

    def holds(self, dtype: np.dtype) -> bool:
        """Whether arrays of ``dtype`` can live on this device (the host: any fixed size)."""
        return dtype.kind != "O"

    def empty(self, nbytes: int) -> Any:
        """An uninitialised 1-d ``uint8`` device buffer."""
        return self.xp.empty(max(0, nbytes), dtype=np.uint8)

    @abstractmethod
    def upload(self, host: np.ndarray) -> Any:
        """A device copy of a 1-d ``uint8`` host array (asynchronous where it can be)."""

    @abstractmethod
    def to_host(self, array: Any) -> np.ndarray:
        """A host copy of a device array (synchronises)."""

    @abstractmethod
    def decompress(self, batch: StreamBatch, src: Any, dst: Any) -> np.ndarray:
        """Decompress a batch in one call: stream i is
        ``src[batch.comp_offsets[i]:][:batch.comp_sizes[i]]`` and must produce exactly
        ``batch.decomp_sizes[i]`` bytes at ``dst[batch.decomp_offsets[i]:]``.

        ``batch.codec`` is ``"zstd"`` (frames), ``"gzip"`` (members), ``"deflate"`` (raw)
        or ``"lz4"`` (raw blocks). Returns a host bool array, True where stream i failed or
        decoded to another size (the caller names the chunk by ``batch.chunk[i]``).
        """

    @abstractmethod
    def compress(self, batch: CompressBatch, src: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """Compress a batch in one call (see :class:`~gpuzarr.gpu.plan.CompressBatch`).

        Returns ``(dst, offsets, sizes)``: compressed stream i is
        ``dst[offsets[i] : + sizes[i]]`` in a new device buffer, each stream starting at
        a multiple of :attr:`output_alignment`; ``offsets`` and ``sizes`` are host
        ``int64`` arrays (reading the sizes is the one synchronisation of the call).
        """

    def _pack(self, streams: list[Any]) -> tuple[Any, np.ndarray, np.ndarray]:
        """Pack compressed device streams into one buffer at aligned offsets."""
        sizes = np.array([int(s.size) for s in streams], dtype=np.int64)
        offsets = aligned_slots(0, sizes, self.output_alignment)
        dst = self.empty(int(offsets[-1] + sizes[-1]) if len(sizes) else 0)
        for stream, off, n in zip(streams, offsets.tolist(), sizes.tolist(), strict=True):
            dst[off : off + n] = stream
        return dst, offsets, sizes

    def read_files(self, reads: list[tuple[str, int, int]], dst: Any, offsets: np.ndarray) -> None:
        """Read ``(path, file offset, nbytes)`` ranges of local files into ``dst`` at
        ``offsets``, straight into device memory (``config.gpu_io = "kvikio"``).

        The default reads on the host and uploads (what the host backend emulates)."""
        for (path, file_offset, nbytes), off in zip(reads, offsets.tolist(), strict=True):
            with open(path, "rb") as f:
                f.seek(file_offset)
                data = f.read(nbytes)
            if len(data) != nbytes:
                raise OSError(f"{path}: {len(data)} bytes at offset {file_offset}, expected {nbytes} (file truncated?)")
            dst[off : off + nbytes] = self.upload(np.frombuffer(data, dtype=np.uint8))

    def out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the device running out of memory (the executor then
        retries with smaller waves)."""
        return isinstance(exc, MemoryError)

    def release_memory(self) -> None:  # noqa: B027 - nothing cached by default
        """Return cached device memory after an out-of-memory error."""


class HostBackend(Backend):
    """The host standing in for a GPU (see the module docstring).

    ``memory_limit`` (bytes) makes buffer allocations beyond it raise MemoryError, so
    the executor's out-of-memory back-off can be tested.
    """

    xp = np
    kernels = reference
    name = "host (GPU emulation)"

    def __init__(self, memory_limit: int | None = None) -> None:
        self.memory_limit = memory_limit
        self.decompress_calls: list[tuple[str, int]] = []  # (codec, streams): one per batched call
        self.compress_calls: list[tuple[str, int]] = []

    def empty(self, nbytes: int) -> np.ndarray:
        if self.memory_limit is not None and nbytes > self.memory_limit:
            raise MemoryError(f"emulated device: {nbytes} bytes requested, limit {self.memory_limit}")
        return np.empty(max(0, nbytes), dtype=np.uint8)

    def upload(self, host: np.ndarray) -> np.ndarray:
        out = self.empty(host.nbytes)
        out[...] = host.reshape(-1).view(np.uint8)
        return out

    def to_host(self, array: Any) -> np.ndarray:
        return np.array(array, copy=True)

    def decompress(self, batch: StreamBatch, src: Any, dst: Any) -> np.ndarray:
        self.decompress_calls.append((batch.codec, len(batch)))
        failed = np.zeros(len(batch), dtype=bool)
        rows = zip(
            batch.comp_offsets.tolist(),
            batch.comp_sizes.tolist(),
            batch.decomp_offsets.tolist(),
            batch.decomp_sizes.tolist(),
            strict=True,
        )
        for i, (off, size, doff, dsize) in enumerate(rows):
            stream = bytes(src[off : off + size])
            try:
                out = self.decompress_stream(batch.codec, stream, dsize)
            except Exception:  # any library error is a failed stream, as nvCOMP reports it
                failed[i] = True
                continue
            if len(out) != dsize:
                failed[i] = True
                continue
            dst[doff : doff + dsize] = np.frombuffer(out, dtype=np.uint8)
        return failed

    def decompress_stream(self, codec: str, stream: bytes, nbytes: int) -> bytes:
        """One stream of a :meth:`decompress` batch, by the CPU library standing in for
        nvCOMP's decompressor (tests override it to model what nvCOMP may not check)."""
        return host_decompress(codec, memoryview(stream), nbytes)

    def compress(self, batch: CompressBatch, src: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        self.compress_calls.append((batch.codec, len(batch)))
        pieces = zip(batch.offsets.tolist(), batch.sizes.tolist(), strict=True)
        streams = [
            np.frombuffer(host_compress(batch.codec, memoryview(src[o : o + n]), batch.level), dtype=np.uint8)
            for o, n in pieces
        ]
        return self._pack(streams)


class CudaBackend(Backend):
    """One CUDA GPU: CuPy arrays, the ``kernels/`` CUDA kernels, nvCOMP batched decoding.

    Constructing it imports CuPy and nvCOMP and selects the device; it raises
    :class:`DeviceUnavailableError` when either is missing or the device does not exist.
    Host-to-device copies go through a pinned staging buffer, reused while large enough.
    """

    name = "cuda"
    # nvCOMP's batched compressors: raw deflate streams of at most 64 KiB, LZ4 and zstd
    # streams of at most 16 MiB (nvcompBatched*CompressionMaxAllowedChunkSize).
    max_stream_nbytes = {"deflate": 1 << 16, "lz4": 1 << 24, "zstd": 1 << 24}  # noqa: RUF012

    def __init__(self, device_index: int = 0) -> None:
        try:
            import cupy
            from nvidia import nvcomp
        except ImportError as exc:
            raise DeviceUnavailableError(
                f"device 'cuda:{device_index}': the GPU path needs CuPy and nvCOMP "
                f"(pip install 'gpuzarr[gpu]'): {exc}"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise DeviceUnavailableError(f"device 'cuda:{device_index}': no usable CUDA driver: {exc}") from None
        if not 0 <= device_index < count:
            raise DeviceUnavailableError(f"device 'cuda:{device_index}': this machine has {count} CUDA device(s)")
        from gpuzarr.gpu import ops

        self.xp = cupy
        self.kernels = ops
        self._nvcomp = nvcomp
        self.device = cupy.cuda.Device(device_index)
        self._codecs: dict[str, Any] = {}
        self._pinned: Any = None

    def holds(self, dtype: np.dtype) -> bool:
        # CuPy arrays: NumPy's booleans and numbers only (no datetimes, strings, raw or
        # structured, nor ml_dtypes' bfloat16 and float8 types, one of which is kind "f").
        return dtype.kind in "biufc" and not is_ml_dtype(dtype)

    def _codec(self, codec: str) -> Any:
        found = self._codecs.get(codec)
        if found is None:
            nvcomp = self._nvcomp
            stream = self.xp.cuda.get_current_stream()
            found = nvcomp.Codec(
                algorithm=NVCOMP_ALGORITHMS[codec], bitstream_kind=nvcomp.BitstreamKind.RAW, cuda_stream=stream.ptr
            )
            self._codecs[codec] = found
        return found

    def empty(self, nbytes: int) -> Any:
        with self.device:
            return self.xp.empty(max(0, nbytes), dtype=np.uint8)

    def upload(self, host: np.ndarray) -> Any:
        cupy = self.xp
        nbytes = host.nbytes
        if self._pinned is None or self._pinned.nbytes < nbytes:
            import cupyx

            self._pinned = cupyx.empty_pinned(max(nbytes, 1), dtype=np.uint8)
        staged = self._pinned[:nbytes]
        staged[...] = host.reshape(-1).view(np.uint8)
        out = self.empty(nbytes)
        out.set(staged, stream=cupy.cuda.get_current_stream())
        # The staging buffer is reused by the next upload: wait for this copy first.
        cupy.cuda.get_current_stream().synchronize()
        return out

    def to_host(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def decompress(self, batch: StreamBatch, src: Any, dst: Any) -> np.ndarray:
        nvcomp = self._nvcomp
        pieces = zip(batch.comp_offsets.tolist(), batch.comp_sizes.tolist(), strict=True)
        inputs = nvcomp.as_arrays([src[o : o + n] for o, n in pieces])
        slots = zip(batch.decomp_offsets.tolist(), batch.decomp_sizes.tolist(), strict=True)
        outputs = [dst[o : o + n] for o, n in slots]
        decoded = self._codec(batch.codec).decode(inputs)
        failed = np.zeros(len(outputs), dtype=bool)
        for i, (got, want) in enumerate(zip(decoded, outputs, strict=True)):
            arr = self.xp.asarray(got).view(np.uint8).reshape(-1)
            if arr.size != want.size:
                failed[i] = True
                continue
            want[...] = arr
        return failed

    def compress(self, batch: CompressBatch, src: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        # nvCOMP's batched encoder with raw bitstreams: standard zstd frames, raw deflate,
        # raw LZ4 blocks. nvCOMP picks its own compression levels (README support matrix).
        pieces = zip(batch.offsets.tolist(), batch.sizes.tolist(), strict=True)
        inputs = self._nvcomp.as_arrays([src[o : o + n] for o, n in pieces])
        encoded = self._codec(batch.codec).encode(inputs)
        return self._pack([self.xp.asarray(e).view(np.uint8).reshape(-1) for e in encoded])

    def read_files(self, reads: list[tuple[str, int, int]], dst: Any, offsets: np.ndarray) -> None:
        # kvikio: one asynchronous pread per range straight into device memory (GDS where
        # the file system allows it, kvikio's bounce buffers otherwise), then wait for all.
        try:
            import kvikio
        except ImportError as exc:
            raise DeviceUnavailableError(f"config gpu_io='kvikio' needs kvikio: {exc}") from None
        futures, files = [], []
        try:
            for (path, file_offset, nbytes), off in zip(reads, offsets.tolist(), strict=True):
                f = kvikio.CuFile(path, "r")
                files.append(f)
                futures.append((path, nbytes, f.pread(dst[off : off + nbytes], nbytes, file_offset)))
            for path, nbytes, future in futures:
                got = future.get()
                if got != nbytes:
                    raise OSError(f"{path}: kvikio read {got} bytes, expected {nbytes} (file truncated?)")
        finally:
            for f in files:
                f.close()

    def out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, (self.xp.cuda.memory.OutOfMemoryError, MemoryError))

    def release_memory(self) -> None:
        self.xp.get_default_memory_pool().free_all_blocks()


_backends: dict[int, CudaBackend] = {}
_backends_lock = threading.Lock()


def cuda_backend(device_index: int) -> CudaBackend:
    """The process's backend for GPU ``device_index`` (created on first use)."""
    with _backends_lock:
        backend = _backends.get(device_index)
        if backend is None:
            backend = _backends[device_index] = CudaBackend(device_index)
        return backend


def _forget_backends_in_child() -> None:
    # CUDA contexts do not survive fork: a child builds its own on first GPU use.
    global _backends_lock
    _backends.clear()
    _backends_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_backends_in_child)
