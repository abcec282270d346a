"""GPU groundwork: CUDA kernel loading, their NumPy references, batch planning.

Nothing here imports CuPy at import time, and ``import gpuzarr`` does not import this
package: the GPU read path imports it when a read targets a CUDA device.

* :mod:`gpuzarr.gpu.reference`: NumPy references of the kernels in ``kernels/``;
* :mod:`gpuzarr.gpu.plan`: host-side planning of a wave (blosc stream tables for nvCOMP,
  scatter boxes), pure NumPy;
* :mod:`gpuzarr.gpu.kernels`: finds the ``.cu`` sources and compiles them with CuPy on
  first use;
* :mod:`gpuzarr.gpu.ops`: launchers taking CuPy arrays, with the references' signatures.
"""
