"""Devices reads can target: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

Resolving a device never imports CuPy or touches CUDA for ``"cpu"``; ``import gpuzarr``
stays CPU-only and fork-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gpuzarr.errors import DeviceUnavailableError

__all__ = ["Device", "gpu_path_available", "resolve_device"]

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


@dataclass(frozen=True, slots=True)
class Device:
    """A resolved device: the CPU, or one CUDA GPU by ordinal."""

    kind: Literal["cpu", "cuda"]
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


CPU = Device("cpu")


def gpu_path_available() -> bool:
    """Whether reads can target a GPU here: CuPy and nvCOMP import and a CUDA device exists.

    Imports CuPy (so it is only called when a user asks for ``"cuda"`` or ``"auto"``,
    never by ``import gpuzarr``); any failure means no.
    """
    try:
        import cupy
        from nvidia import nvcomp  # noqa: F401 - only checking that it imports
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return False


def resolve_device(device: str | Device | None) -> Device:
    """Turn a user's ``device`` argument into a :class:`Device`.

    ``"auto"`` (and None) picks GPU 0 when the GPU path is available (see
    :func:`gpu_path_available`), else the CPU. ``"cuda"``/``"cuda:N"`` raise
    :class:`DeviceUnavailableError` when it is not. ``"cpu"`` never imports CuPy.
    """
    if isinstance(device, Device):
        return device
    if device == "cpu":
        return CPU
    if device is None or device == "auto":
        return Device("cuda", 0) if gpu_path_available() else CPU
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', got {device!r}")
    match = _CUDA_RE.match(device)
    if match is None:
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if not gpu_path_available():
        raise DeviceUnavailableError(
            f"device {device!r}: no usable GPU here (the GPU path needs a CUDA device, CuPy and nvCOMP: "
            "pip install 'gpuzarr[gpu]'); use device='cpu'"
        )
    return Device("cuda", int(match.group(1) or 0))
