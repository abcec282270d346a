"""The GPU suite's readers and ceilings: reads that end in device memory.

Peers (each result is a CuPy array on the current device, synchronised before the
clock stops):

* ``gpuzarr``: ``gpuzarr.open_array(path, device="cuda")[sel]``, windows with
  ``read_batch`` (one decode call per stage for the whole batch). Where the GPU path is
  not available (no CuPy, nvCOMP or device) this reader is reported as unavailable,
  with gpuzarr's own message;
* ``zarr-python``: ``zarr.open_array(path)[sel]`` inside ``zarr.config.enable_gpu()``
  (zarr-python decodes on the CPU and hands back device buffers);
* ``tensorstore``: tensorstore's read into host memory, then ``cupy.asarray`` (the
  host-to-device copy is part of the time);
* ``kvikio``: zarr-python with ``enable_gpu()`` over ``kvikio.zarr.GDSStore`` (GPUDirect
  Storage where the file system supports it, else kvikio's POSIX path).

Ceilings:

* ``h2d``: copy the dataset's stored (compressed) bytes from pinned host memory to the
  device: the PCIe/NVLink floor of any path that decodes on the GPU;
* ``nvcomp-decode``: nvCOMP's batched decoder on every chunk (or inner chunk), the
  compressed bytes already staged on the device: decode speed alone, no I/O (zstd,
  gzip via raw Deflate; nvCOMP has no blosc).

Availability: without CuPy or a CUDA device the whole suite is skipped with a note;
a peer whose package is missing is reported unavailable. This module imports CuPy,
kvikio and nvCOMP only inside the methods, so it loads on any machine.

NOTE: written without access to a GPU; the CPU machine it was developed on has no CUDA.
Every reader verifies its result against the source before it is timed, so an API
mistake shows up as ``error``/``mismatch`` in the results, not as a wrong number.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks.datasets import Dataset
from benchmarks.patterns import Selection, Task
from benchmarks.readers import (
    Reader,
    TensorstoreReader,
    ZarrPythonReader,
    compare_arrays,
    missing_modules,
    package_version,
)
from benchmarks.writers import GpuzarrWriter, TensorstoreWriter, Writer, ZarrPythonWriter

__all__ = [
    "GPU_CEILINGS",
    "GPU_DEFAULT_PEERS",
    "GPU_READERS",
    "GPU_WRITERS",
    "GpuzarrCudaReader",
    "GpuzarrCudaWriter",
    "H2DCeiling",
    "KvikioReader",
    "NvcompDecodeCeiling",
    "TensorstoreCupyReader",
    "TensorstoreCupyWriter",
    "ZarrPythonGpuReader",
    "ZarrPythonGpuWriter",
    "gpu_description",
    "gpu_unavailable",
]


def gpu_unavailable() -> str | None:
    """Why the GPU suite cannot run here (no CuPy, no CUDA device), or None."""
    reason = missing_modules("cupy")
    if reason:
        return f"CuPy is not available ({reason}); install the gpu extra: pip install -e '.[gpu]'"
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no usable CUDA device: {type(exc).__name__}: {exc}"
    return None if count > 0 else "no CUDA device"


def gpu_description() -> str | None:
    """The current device's name, memory and compute capability, or None."""
    if gpu_unavailable():
        return None
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB, sm_{props['major']}{props['minor']}"


def _synchronize() -> None:
    """Wait for all work on the device (libraries may use their own streams)."""
    import cupy

    cupy.cuda.runtime.deviceSynchronize()


def _on_device(result: Any) -> bool:
    return hasattr(result, "__cuda_array_interface__")


class _GpuReader(Reader):
    """A reader whose results live in device memory; verified after copying back."""

    #: Modules besides CuPy the reader needs.
    needs: ClassVar[tuple[str, ...]] = ()

    def unavailable(self) -> str | None:
        return gpu_unavailable() or (missing_modules(*self.needs) if self.needs else None)

    def run(self, handle: Any, ds: Dataset, task: Task) -> Any:
        result = super().run(handle, ds, task)
        _synchronize()
        return result

    def to_host(self, result: Any) -> Any:
        import cupy

        if not _on_device(result):
            return f"result in host memory ({type(result).__name__}), not on the GPU"
        return cupy.asnumpy(cupy.asarray(result))

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        items = result if task.batch and isinstance(result, list) else [result]
        for item in items:
            if not _on_device(item):
                return f"result is {type(item).__name__} in host memory, not a device array"
        return super().verify(result, ds, task, expected)


class GpuzarrCudaReader(_GpuReader):
    """gpuzarr's GPU read path: ``open_array(path, device="cuda")[sel]``."""

    name = "gpuzarr"
    description = "gpuzarr.open_array(path, device='cuda')[sel] (a device array); windows with a.read_batch(selections)"
    batch_mode = "Array.read_batch: all windows decoded on the device as one batch"
    needs = ("gpuzarr",)

    def unavailable(self) -> str | None:
        reason = missing_modules("gpuzarr")
        if reason:
            return reason
        from gpuzarr.device import resolve_device
        from gpuzarr.errors import DeviceUnavailableError

        try:
            resolve_device("cuda")
        except DeviceUnavailableError as exc:
            return f"gpuzarr's GPU path is not available: {exc}"
        return gpu_unavailable()

    def version(self) -> str | None:
        import gpuzarr

        return gpuzarr.__version__

    def settings(self) -> dict[str, Any]:
        import gpuzarr

        cfg = gpuzarr.config.get()
        return {"device": "cuda", "threads": cfg.threads, "gpu_fallback": cfg.gpu_fallback, "batch": self.batch_mode}

    def prepare(self, ds: Dataset, task: Task) -> None:
        from benchmarks.readers import clear_gpuzarr_caches

        clear_gpuzarr_caches()

    def open_array(self, ds: Dataset) -> Any:
        import gpuzarr

        return gpuzarr.open_array(str(ds.path), mode="r", device="cuda")

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        return handle[sel]

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        return handle.read_batch(selections)


class ZarrPythonGpuReader(_GpuReader, ZarrPythonReader):
    """zarr-python with ``zarr.config.enable_gpu()``: CPU decode, device output buffers."""

    name = "zarr-python"
    description = "with zarr.config.enable_gpu(): zarr.open_array(path)[sel] (cupy result); windows via asyncio.gather"
    needs = ("zarr",)

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import zarr

        return zarr.config.enable_gpu()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "enable_gpu": True}


class KvikioReader(ZarrPythonGpuReader):
    """zarr-python with ``enable_gpu()`` over kvikio's GPUDirect Storage store."""

    name = "kvikio"
    description = "with zarr.config.enable_gpu(): zarr.open_array(kvikio.zarr.GDSStore(path), mode='r')[sel]"
    needs = ("zarr", "kvikio", "kvikio.zarr")

    def version(self) -> str | None:
        return package_version("kvikio-cu13") or package_version("kvikio-cu12") or package_version("kvikio")

    def settings(self) -> dict[str, Any]:
        settings = super().settings()
        with contextlib.suppress(Exception):
            import kvikio.defaults

            settings["kvikio"] = {
                "compat_mode": str(kvikio.defaults.compat_mode()),
                "num_threads": kvikio.defaults.num_threads(),
            }
        return settings

    def open_array(self, ds: Dataset) -> Any:
        import zarr
        from kvikio.zarr import GDSStore

        try:
            store = GDSStore(root=str(ds.path), read_only=True)
        except TypeError:  # versions without read_only
            store = GDSStore(root=str(ds.path))
        return zarr.open_array(store=store, mode="r")


class TensorstoreCupyReader(_GpuReader, TensorstoreReader):
    """tensorstore into host memory, then ``cupy.asarray`` (host-to-device copy included)."""

    name = "tensorstore"
    description = "tensorstore read (as on the CPU suite) then cupy.asarray(result); windows in one ts.Batch"
    needs = ("tensorstore",)

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        import cupy

        return cupy.asarray(super().read_full(handle, ds))

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        import cupy

        return cupy.asarray(super().read_selection(handle, ds, sel))

    def read_batch(self, handle: Any, ds: Dataset, selections: Sequence[Selection]) -> list[Any]:
        import cupy

        return [cupy.asarray(x) for x in super().read_batch(handle, ds, selections)]


# --------------------------------------------------------------------------------------
# writers: the value is a CuPy array on the device (uploaded untimed), as a GPU user has it


class _GpuWriter(Writer):
    """A writer whose value lives in device memory (issue: GPU write path)."""

    needs: ClassVar[tuple[str, ...]] = ()

    def unavailable(self) -> str | None:
        return gpu_unavailable() or (missing_modules(*self.needs) if self.needs else None)

    def set_value(self, ds: Dataset, task: Task, value: np.ndarray) -> None:
        import cupy

        super().set_value(ds, task, cupy.asarray(value))
        _synchronize()


class GpuzarrCudaWriter(_GpuWriter, GpuzarrWriter):
    """gpuzarr's GPU write path: ``a[sel] = cupy_value`` on an array opened with device="cuda"."""

    name = "gpuzarr"
    description = (
        "gpuzarr.create_array(path, device='cuda', ...) or open_array(path, mode='r+', device='cuda'); "
        "a[sel] = cupy_value"
    )
    needs = ("gpuzarr",)

    def unavailable(self) -> str | None:
        return GpuzarrCudaReader().unavailable()

    def create(self, ds: Dataset, dest: Path) -> Any:
        import gpuzarr

        return gpuzarr.create_array(str(dest), device="cuda", **self.metadata(ds))

    def open_existing(self, ds: Dataset, dest: Path) -> Any:
        import gpuzarr

        return gpuzarr.open_array(str(dest), mode="r+", device="cuda")


class ZarrPythonGpuWriter(_GpuWriter, ZarrPythonWriter):
    """zarr-python with ``enable_gpu()``: device buffers in, CPU codecs encode."""

    name = "zarr-python"
    description = "with zarr.config.enable_gpu(): zarr.create_array/open_array; a[sel] = cupy_value"
    needs = ("zarr",)

    def session(self) -> contextlib.AbstractContextManager[Any]:
        import zarr

        return zarr.config.enable_gpu()


class TensorstoreCupyWriter(_GpuWriter, TensorstoreWriter):
    """``cupy.asnumpy`` then tensorstore's write (the device-to-host copy is timed)."""

    name = "tensorstore"
    description = "cupy.asnumpy(value), then tensorstore h[sel].write(host).result()"
    needs = ("tensorstore",)

    def write(self, handle: Any, task: Task, value: Any) -> None:
        import cupy

        super().write(handle, task, cupy.asnumpy(value))


# --------------------------------------------------------------------------------------
# ceilings


class _GpuCeiling(_GpuReader):
    """Full reads only; stages the dataset's bytes once per dataset (untimed)."""

    is_reference = True

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self._staged_for: str | None = None

    def supports(self, ds: Dataset, task: Task) -> str | None:
        return None if task.full and task.kind == "read" else "ceilings are measured for full reads only"

    def read_selection(self, handle: Any, ds: Dataset, sel: Selection) -> Any:
        raise NotImplementedError("ceilings read whole arrays only")

    def prepare(self, ds: Dataset, task: Task) -> None:
        if self._staged_for != ds.name:
            self.stage(ds)
            self._staged_for = ds.name

    def stage(self, ds: Dataset) -> None:
        """Put the dataset's bytes where the measured step starts from."""
        raise NotImplementedError

    def close(self) -> None:
        self._staged_for = None


class H2DCeiling(_GpuCeiling):
    """Reference point: host-to-device copy of the stored (compressed) bytes from pinned memory."""

    name = "h2d"
    description = (
        "ceiling: copy the dataset's stored (compressed) bytes from one pinned host buffer to the device "
        "(no file reads, no decoding)"
    )

    def stage(self, ds: Dataset) -> None:
        import cupyx

        self._host = cupyx.empty_pinned(ds.stored_bytes, dtype=np.uint8)
        offset = 0
        for path in ds.chunk_paths:
            data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
            self._host[offset : offset + len(data)] = data
            offset += len(data)

    def open_array(self, ds: Dataset) -> Any:
        import cupy

        return cupy.empty(ds.stored_bytes, dtype=np.uint8)

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        handle.set(self._host)
        return handle

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        import cupy

        if not np.array_equal(cupy.asnumpy(result), self._host):
            return "device copy differs from the host bytes"
        return None

    def close(self) -> None:
        super().close()
        self._host = None


_GZIP_FEXTRA, _GZIP_FNAME, _GZIP_FCOMMENT, _GZIP_FHCRC = 4, 8, 16, 2


def gzip_to_deflate(member: bytes) -> bytes:
    """The raw Deflate stream inside a single-member gzip file (RFC 1952 header and trailer removed)."""
    if member[:2] != b"\x1f\x8b" or member[2] != 8:
        raise ValueError("not a gzip member with Deflate compression")
    flags = member[3]
    pos = 10
    if flags & _GZIP_FEXTRA:
        pos += 2 + int.from_bytes(member[pos : pos + 2], "little")
    for flag in (_GZIP_FNAME, _GZIP_FCOMMENT):
        if flags & flag:
            pos = member.index(b"\x00", pos) + 1
    if flags & _GZIP_FHCRC:
        pos += 2
    return member[pos:-8]


def _unit_coords(ds: Dataset, rel: str) -> tuple[int, int]:
    """Grid coordinates from a chunk key (``c/1/0`` in v3, ``1.0`` in v2)."""
    parts = [p for p in re.split(r"[/.]", rel) if p.isdigit()]
    return int(parts[-2]), int(parts[-1])


class NvcompDecodeCeiling(_GpuCeiling):
    """Reference point: nvCOMP's batched decode of every unit, compressed bytes already on the device."""

    name = "nvcomp-decode"
    description = (
        "ceiling: nvCOMP batched decode of every chunk/inner chunk, the compressed bytes pre-staged in device "
        "memory (no I/O); zstd (RAW bitstream) and gzip (raw Deflate after stripping the gzip header)"
    )
    needs = ("nvidia.nvcomp",)
    _ALGORITHMS: ClassVar[dict[str, str]] = {"zstd": "Zstd", "gzip": "Deflate"}

    def version(self) -> str | None:
        return package_version("nvidia-nvcomp-cu13") or package_version("nvidia-nvcomp-cu12")

    def supports(self, ds: Dataset, task: Task) -> str | None:
        if ds.codec == "none":
            return "uncompressed: nothing to decode (see the h2d ceiling)"
        if ds.codec not in self._ALGORITHMS:
            return f"nvCOMP has no decoder for {ds.codec}"
        return super().supports(ds, task)

    def _units(self, ds: Dataset) -> list[tuple[tuple[int, int], bytes]]:
        """Every unit's compressed bytes with its grid coordinates."""
        units = []
        spec = ds.spec
        for path in ds.chunk_paths:
            rel = str(path.relative_to(ds.path))
            blob = path.read_bytes()
            if spec.shards is None:
                units.append((_unit_coords(ds, rel), blob))
                continue
            si, sj = _unit_coords(ds, rel)
            gi, gj = spec.shards[0] // spec.chunks[0], spec.shards[1] // spec.chunks[1]
            index = np.frombuffer(blob[-(gi * gj * 16 + 4) : -4], dtype="<u8").reshape(gi * gj, 2)
            for k, (offset, nbytes) in enumerate(index.tolist()):
                if offset == 2**64 - 1:
                    continue  # empty inner chunk
                i, j = divmod(k, gj)
                units.append(((si * gi + i, sj * gj + j), blob[offset : offset + nbytes]))
        return units

    def stage(self, ds: Dataset) -> None:
        import cupy
        from nvidia import nvcomp

        units = self._units(ds)
        if ds.codec == "gzip":
            units = [(c, gzip_to_deflate(b)) for c, b in units]
        self._coords = [c for c, _ in units]
        self._device = [cupy.asarray(np.frombuffer(b, dtype=np.uint8)) for _, b in units]
        self._arrays = [nvcomp.as_array(d) for d in self._device]
        self._codec = nvcomp.Codec(algorithm=self._ALGORITHMS[ds.codec], bitstream_kind=nvcomp.BitstreamKind.RAW)
        _synchronize()

    def open_array(self, ds: Dataset) -> Any:
        return self._arrays

    def read_full(self, handle: Any, ds: Dataset) -> Any:
        return self._codec.decode(handle)

    def verify(self, result: Any, ds: Dataset, task: Task, expected: Any) -> str | None:
        import cupy

        if len(result) != len(self._coords):
            return f"decoded {len(result)} units, expected {len(self._coords)}"
        ch, cw = ds.spec.chunks
        for (i, j), out in zip(self._coords, result, strict=True):
            got = cupy.asnumpy(cupy.asarray(out).view(cupy.uint8))
            want = np.ascontiguousarray(expected[i * ch : (i + 1) * ch, j * cw : (j + 1) * cw])
            if got.nbytes != want.nbytes:
                return f"unit ({i}, {j}) decoded to {got.nbytes} bytes, expected {want.nbytes}"
            problem = compare_arrays(got.view(ds.dtype).reshape(want.shape), want, f"unit ({i}, {j})")
            if problem:
                return problem
        return None

    def close(self) -> None:
        super().close()
        self._device = []
        self._arrays = []


#: Every GPU reader by name; the order here is the order of the tables.
GPU_READERS: dict[str, type[Reader]] = {
    cls.name: cls for cls in (GpuzarrCudaReader, ZarrPythonGpuReader, TensorstoreCupyReader, KvikioReader)
}
GPU_CEILINGS: dict[str, type[Reader]] = {cls.name: cls for cls in (H2DCeiling, NvcompDecodeCeiling)}
GPU_DEFAULT_PEERS = ("gpuzarr", "zarr-python", "tensorstore", "kvikio")
#: Every GPU writer by name (the value is a CuPy array).
GPU_WRITERS: dict[str, type[Writer]] = {
    cls.name: cls for cls in (GpuzarrCudaWriter, ZarrPythonGpuWriter, TensorstoreCupyWriter)
}


def gpu_versions() -> dict[str, str | None]:
    """Versions of the GPU stack (recorded with the environment)."""
    dists = ("cupy-cuda13x", "cupy-cuda12x", "kvikio-cu13", "kvikio-cu12", "nvidia-nvcomp-cu13", "nvidia-nvcomp-cu12")
    found = {d: package_version(d) for d in dists}
    found = {k: v for k, v in found.items() if v}
    with contextlib.suppress(Exception):
        if not gpu_unavailable():
            import cupy

            found["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
            found["cuda_driver"] = str(cupy.cuda.runtime.driverGetVersion())
    found["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return found
