"""Where batches are assembled and what type they are handed out as (the device seam).

A :class:`BatchBackend` owns the memory a loader works in: it allocates the block pool
and each batch buffer, gathers samples into a batch, and turns the filled buffer into
the object the consumer receives. The loader itself only does index arithmetic and
calls these, so the GPU path plugs in as one more backend, with no change to the
loader's API: a CUDA backend allocates the pool and batches with CuPy, has the GPU read
path decode blocks into the pool, gathers with ``cupy.take`` and hands out CuPy arrays
(or torch/JAX tensors on the GPU through DLPack). Today :func:`make_backend` accepts the
CPU only, and :func:`gpuzarr.device.resolve_device` refuses ``"cuda"`` with
:class:`gpuzarr.errors.DeviceUnavailableError` before a backend is asked for.

Host batches are 64-byte aligned: JAX adopts such NumPy buffers through DLPack without
a copy (it copies less aligned ones).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from gpuzarr.config import get_config
from gpuzarr.device import Device
from gpuzarr.errors import DeviceUnavailableError
from gpuzarr.memory import aligned_empty, result_pool
from gpuzarr.metadata.dtypes import TORCH_ML_DATA_TYPES, is_ml_dtype

__all__ = ["OUTPUTS", "BatchBackend", "HostBackend", "aligned_empty", "make_backend"]

Output = Literal["numpy", "torch", "jax", "cupy"]
OUTPUTS: tuple[str, ...] = ("numpy", "torch", "jax", "cupy")


def _torch_ml_dtype(torch: Any, dtype: np.dtype) -> Any:
    """torch's dtype for an ml_dtypes ``dtype`` (TypeError where torch has none alike).

    ``torch.from_numpy`` takes no ml_dtypes array: batches pass to torch as their bits,
    in an integer tensor of the element's size viewed as torch's type."""
    found = getattr(torch, dtype.name, None) if dtype.name in TORCH_ML_DATA_TYPES else None
    if found is None:
        raise TypeError(f"torch {torch.__version__} has no dtype that holds {dtype.name} elements")
    return found


class BatchBackend:
    """Memory and output type of a loader (see the module docstring)."""

    device: Device
    output: str

    def empty_pool(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """Memory for ``shape[0]`` samples of held blocks."""
        raise NotImplementedError

    def empty_batch(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Any, Any]:
        """A batch buffer: (array the samples are gathered into, handle for :meth:`finish`)."""
        raise NotImplementedError

    def gather(self, pool: Any, addresses: np.ndarray, out: Any) -> None:
        """``out[i] = pool[addresses[i]]``."""
        raise NotImplementedError

    def finish(self, handle: Any) -> Any:
        """The object handed to the consumer for a filled batch buffer."""
        raise NotImplementedError


class HostBackend(BatchBackend):
    """Batches in host memory, handed out as NumPy arrays, torch tensors or JAX arrays."""

    def __init__(self, device: Device, output: str, pin_memory: bool) -> None:
        self.device = device
        self.output = output
        self.pin_memory = False
        self._torch: Any = None
        self._jnp: Any = None
        if output == "torch":
            import torch

            self._torch = torch
            if pin_memory:
                if _accelerator_available(torch):
                    self.pin_memory = True
                else:
                    # As torch's DataLoader does: pinning is an optimisation, not a requirement.
                    warnings.warn("pin_memory=True but no accelerator is available; batches are not pinned",
                                  UserWarning, stacklevel=4)
        elif output == "jax":
            import jax.numpy

            self._jnp = jax.numpy
        elif pin_memory:
            raise ValueError("pin_memory applies to output='torch' only")

    def check_dtype(self, dtype: np.dtype) -> None:
        """Raise early (at construction, not mid-epoch) for a dtype the output type cannot hold."""
        if dtype.kind == "O" or isinstance(dtype, np.dtypes.StringDType):
            # Batches are gathered into fixed-size pools: variable-length items have no slot size.
            raise TypeError(
                f"batches cannot hold the variable-length dtype {dtype} (strings or objects); "
                "store fixed-size items (e.g. '<U16' or 'S16') to load them"
            )
        if self._torch is not None:
            try:
                self._tensor(np.empty(0, dtype=dtype))
            except (TypeError, ValueError) as e:  # (ValueError: a byte order other than the native one)
                raise TypeError(f"output='torch' cannot hold dtype {dtype}: {e}") from None
        if self._jnp is not None and is_ml_dtype(dtype):
            # JAX takes ml_dtypes' types, but its XLA runtime lacks some (the float6
            # formats): try one element now rather than fail on the first batch.
            try:
                self._jnp.asarray(np.zeros(1, dtype=dtype)).block_until_ready()
            except Exception as e:  # (jax.errors.JaxRuntimeError and others of the runtime)
                raise TypeError(f"output='jax' cannot hold dtype {dtype}: {e}") from None

    def _tensor(self, array: np.ndarray) -> Any:
        """A torch tensor sharing ``array``'s memory."""
        if is_ml_dtype(array.dtype):
            torch_dtype = _torch_ml_dtype(self._torch, array.dtype)
            return self._torch.from_numpy(array.view(f"i{array.dtype.itemsize}")).view(torch_dtype)
        return self._torch.from_numpy(array)

    def empty_pool(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return aligned_empty(shape, dtype)

    def empty_batch(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, Any]:
        if self.pin_memory:
            # Gather straight into pinned memory: no extra copy before the host-to-device one.
            torch_dtype = self._tensor(np.empty(0, dtype=dtype)).dtype
            tensor = self._torch.empty(shape, dtype=torch_dtype, pin_memory=True)
            if is_ml_dtype(dtype):  # (tensor.numpy() refuses torch's bfloat16 and float8)
                bits = getattr(self._torch, f"int{8 * dtype.itemsize}")
                return tensor.view(bits).numpy().view(dtype), tensor
            return tensor.numpy(), tensor
        # From the pool of freed results' memory: a training loop drops each batch before
        # long, and fresh memory would be zeroed by the kernel as the gather first writes
        # it (measured, an epoch of 16 batches of 16 MiB: 389-460 ms fresh, 332-354 ms
        # pooled).
        buf = result_pool.empty(shape, dtype, get_config().result_pool_bytes)
        return buf, buf

    def gather(self, pool: np.ndarray, addresses: np.ndarray, out: np.ndarray) -> None:
        # mode="clip": with the default "raise" NumPy buffers ``out`` (an extra copy);
        # the addresses are valid by construction.
        np.take(pool, addresses, axis=0, out=out, mode="clip")

    def finish(self, handle: Any) -> Any:
        if self.output == "numpy":
            return handle
        if self.output == "torch":
            return handle if self.pin_memory else self._tensor(handle)
        if is_ml_dtype(handle.dtype):
            # (NumPy exports no ml_dtypes array through DLPack; JAX holds these types
            # natively, at the cost of one copy.)
            return self._jnp.asarray(handle)
        return self._jnp.from_dlpack(handle)


def _accelerator_available(torch: Any) -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


def make_backend(device: Device, output: str | None, pin_memory: bool) -> BatchBackend:
    """The backend for ``device`` and ``output`` (None: NumPy on the CPU, CuPy on a GPU)."""
    if output is not None and output not in OUTPUTS:
        raise ValueError(f"loader: output must be one of {OUTPUTS}, got {output!r}")
    if device.kind == "cpu":
        output = output or "numpy"
        if output == "cupy":
            raise ValueError("loader: output='cupy' needs device='cuda'")
        return HostBackend(device, output, pin_memory)
    # The GPU backend (CuPy pool and batches, GPU decode into the pool) slots in here.
    raise DeviceUnavailableError(f"loader: device {device} has no batch backend in this version of gpuzarr")
