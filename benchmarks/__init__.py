"""Side-by-side benchmarks of gpuzarr against the other Zarr libraries.

Run ``python -m benchmarks cpu --help`` (or ``gpu``, ``read``, ``report``); see
benchmarks/README.md. The pieces are reusable:

* :mod:`benchmarks.datasets`  dataset specs (kind, codec, chunking, format), generation and caching,
* :mod:`benchmarks.patterns`  access patterns: what is read or written, and what must come back,
* :mod:`benchmarks.readers`   the Subject/Reader interface, the CPU readers and the read ceilings,
* :mod:`benchmarks.writers`   the writers, the write ceiling and read-back verification,
* :mod:`benchmarks.gpu`       the GPU readers and ceilings (CuPy, kvikio, nvCOMP imported lazily),
* :mod:`benchmarks.timing`    warm-up, verification, interleaved (balanced-order) timing, contention metering,
* :mod:`benchmarks.memory`    peak memory of a full read, in a subprocess per reader,
* :mod:`benchmarks.report`    console tables, JSON-lines records, the target table, markdown,
* :mod:`benchmarks.plots`     PNG plots,
* :mod:`benchmarks.suite`     the cpu and gpu suites that tie them together,
* :mod:`benchmarks.publish`   ``report``: results/README.md from the results files,
* :mod:`benchmarks.env`       the environment recorded with every result.
"""
