"""The GPU read path: executor, device backends, CUDA kernels, their NumPy references, planning.

Nothing here imports CuPy at import time, and ``import gpuzarr`` does not import this
package: the GPU read path imports it when a read targets a CUDA device.

* :mod:`gpuzarr.gpu.reference`: NumPy references of the kernels in ``kernels/``;
* :mod:`gpuzarr.gpu.plan`: host-side planning of a wave (blosc stream tables for nvCOMP,
  scatter boxes), pure NumPy;
* :mod:`gpuzarr.gpu.kernels`: finds the ``.cu`` sources and compiles them with CuPy on
  first use;
* :mod:`gpuzarr.gpu.ops`: launchers taking CuPy arrays, with the references' signatures;
* :mod:`gpuzarr.gpu.backend`: the device the executor runs on: a CUDA GPU (CuPy, nvCOMP,
  the kernels) or the host emulating one (NumPy, the references, the CPU codecs);
* :mod:`gpuzarr.gpu.executor`: the GPU read path, one call per stage per wave.
"""
