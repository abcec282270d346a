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
    """Whether this build of gpuzarr has its GPU read path.

    The GPU pipeline (kvikio + nvCOMP + CuPy kernels) is a separate component; until it
    ships, every read runs on the CPU and ``"auto"`` resolves to the CPU.
    """
    return False


def resolve_device(device: str | Device | None) -> Device:
    """Turn a user's ``device`` argument into a :class:`Device`.

    ``"auto"`` (and None) picks a usable GPU when the GPU path is available, else the CPU.
    ``"cuda"``/``"cuda:N"`` raise :class:`DeviceUnavailableError` when it is not.
    """
    if isinstance(device, Device):
        return device
    if device is None or device == "auto":
        return CPU
    if device == "cpu":
        return CPU
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', got {device!r}")
    match = _CUDA_RE.match(device)
    if match is None:
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")
    raise DeviceUnavailableError(
        f"device {device!r}: the GPU read path is not available in this version of gpuzarr; "
        "use device='cpu' or device='auto'"
    )
