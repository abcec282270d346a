"""The GPU read and write paths: executors, device backends, CUDA kernels, their NumPy
references, planning.

Nothing here imports CuPy at import time, and ``import gpuzarr`` does not import this
package: it is imported when a read or write targets a CUDA device.

* :mod:`gpuzarr.gpu.reference`: NumPy references of the kernels in ``kernels/``;
* :mod:`gpuzarr.gpu.plan`: host-side planning of a wave (blosc stream tables for nvCOMP,
  scatter boxes), pure NumPy;
* :mod:`gpuzarr.gpu.kernels`: finds the ``.cu`` sources and compiles them with CuPy on
  first use;
* :mod:`gpuzarr.gpu.ops`: launchers taking CuPy arrays, with the references' signatures;
* :mod:`gpuzarr.gpu.backend`: the device the executor runs on: a CUDA GPU (CuPy, nvCOMP,
  the kernels) or the host emulating one (NumPy, the references, the CPU codecs);
* :mod:`gpuzarr.gpu.executor`: the GPU read path, one call per stage per wave;
* :mod:`gpuzarr.gpu.encode_plan`: host-side planning of the write path's framing
  (gzip/zlib/LZ4 containers, blosc headers and blocks), pure NumPy;
* :mod:`gpuzarr.gpu.write`: the GPU write path, one call per stage per wave.
"""
