"""Side-by-side benchmarks of gpuzarr against the other Zarr readers.

Run ``python -m benchmarks read --help``. The pieces are reusable:

* :mod:`benchmarks.datasets`  generates and caches benchmark arrays (written by zarr-python),
* :mod:`benchmarks.readers`   the readers under test behind one small :class:`~benchmarks.readers.Reader` interface,
* :mod:`benchmarks.timing`    warm-up, verification and round-robin timing,
* :mod:`benchmarks.env`       the environment recorded with every result,
* :mod:`benchmarks.report`    the human table and the JSON-lines records,
* :mod:`benchmarks.read`      the full-read benchmark that ties them together.
"""
