"""Fixtures shared by the GPU path's tests: the device backends they run on."""

from __future__ import annotations

import pytest

from gpuzarr.gpu.backend import Backend, HostBackend


def cuda_backend_or_skip() -> Backend:
    """GPU 0's backend, or a skip where CuPy, nvCOMP or a CUDA device is missing."""
    from gpuzarr.device import gpu_path_available

    if not gpu_path_available():
        pytest.skip("no usable GPU (CuPy, nvCOMP and a CUDA device)")
    from gpuzarr.gpu.backend import cuda_backend

    return cuda_backend(0)


@pytest.fixture(params=["host", pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The emulated device (NumPy, in CI) and, under the ``gpu`` marker, a real GPU."""
    return HostBackend() if request.param == "host" else cuda_backend_or_skip()
