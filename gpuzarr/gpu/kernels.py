"""The CUDA kernels: where their sources are, their signatures, lazy CuPy compilation.

The ``.cu`` files live in the repository's ``kernels/`` directory; the wheel ships them
as ``gpuzarr/kernels/``. A *module* is one or more sources compiled together (the shard
index parser uses the CRC code of ``crc32c.cu``), concatenated rather than
``#include``-d so that CuPy's compile cache, keyed by the source text, never serves a
stale build after a source it includes changed.

Importing this module does not import CuPy; :func:`get_kernel` does, on first use, and
compiles the module with ``cupy.RawModule`` (NVRTC) once per device and process.

:data:`KERNELS` declares every kernel's parameter types. The CuPy launchers
(:mod:`gpuzarr.gpu.ops`) convert arguments by it, the host test harness types its
``ctypes`` calls by it, and the tests check it against the kernels' source text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["KERNELS", "MODULES", "KernelSpec", "get_kernel", "get_module", "kernel_dir", "module_source"]

#: Module name -> its sources, compiled as one translation unit in this order.
MODULES: dict[str, tuple[str, ...]] = {
    "byteswap": ("byteswap.cu",),
    "shuffle": ("shuffle.cu",),
    "bitshuffle": ("bitshuffle.cu",),
    "crc32c": ("crc32c.cu",),
    "shard_index": ("crc32c.cu", "shard_index.cu"),
    "scatter": ("scatter.cu",),
    "fill_check": ("fill_check.cu",),
    "adler32": ("adler32.cu",),
    "xxh64": ("xxh64.cu",),
}

#: Options for NVRTC (and for nvcc in the tests): the kernels are C++17 without includes.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)


@dataclass(frozen=True)
class KernelSpec:
    """An ``extern "C" __global__`` kernel: its module and parameter types.

    Parameter types are spelled as in the source, without names and qualifiers such as
    ``__restrict__``: ``"const u8*"``, ``"u64*"``, ``"u32"``... (u8/u16/u32/u64/i64 are
    the kernels' fixed-width typedefs).
    """

    name: str
    module: str
    params: tuple[str, ...]


_BATCH_COPY = ("const u8*", "u8*", "const u64*", "const u64*", "const u64*", "u32", "u32")
#: (data, offsets, sizes, n, out): one uint32 checksum per buffer.
_BATCH_CHECKSUM = ("const u8*", "const u64*", "const u64*", "u32", "u32*")

#: Every kernel by name.
KERNELS: dict[str, KernelSpec] = {
    spec.name: spec
    for spec in (
        KernelSpec("byteswap_batch", "byteswap", ("u8*", "const u64*", "const u64*", "u32", "u32")),
        KernelSpec("blosc_unshuffle_batch", "shuffle", _BATCH_COPY),
        KernelSpec("blosc_shuffle_batch", "shuffle", _BATCH_COPY),
        KernelSpec("bitunshuffle_batch", "bitshuffle", _BATCH_COPY),
        KernelSpec("bitshuffle_batch", "bitshuffle", _BATCH_COPY),
        KernelSpec("crc32c_batch", "crc32c", _BATCH_CHECKSUM),
        KernelSpec("crc32_batch", "crc32c", _BATCH_CHECKSUM),
        KernelSpec("adler32_batch", "adler32", _BATCH_CHECKSUM),
        KernelSpec("xxh64_batch", "xxh64", ("const u8*", "const u64*", "const u64*", "u32", "u64*")),
        KernelSpec(
            "shard_index_parse",
            "shard_index",
            ("const u8*", "const u64*", "u32", "u32", "u32", "const u64*", "u64*", "u64*", "u8*", "u32*"),
        ),
        KernelSpec(
            "scatter_chunks",
            "scatter",
            ("const u8*", "const u64*", "u8*", "u32", "u32", "u32", "const i64*", "const i64*", "const i64*"),
        ),
        KernelSpec(
            "gather_chunks",
            "scatter",
            ("const u8*", "u8*", "const u64*", "u32", "u32", "u32", "const i64*", "const i64*", "const i64*"),
        ),
        KernelSpec("fill_regions", "scatter", ("u8*", "u32", "u32", "u32", "const i64*", "const i64*", "const u8*")),
        KernelSpec("copy_ranges", "scatter", ("const u8*", "u8*", "const u64*", "const u64*", "const u64*", "u32")),
        KernelSpec(
            "equals_fill_batch",
            "fill_check",
            ("const u8*", "const u64*", "const u64*", "u32", "u32", "const u8*", "u32*"),
        ),
    )
}


def kernel_dir() -> Path:
    """The directory holding the ``.cu`` sources.

    ``gpuzarr/kernels/`` in an installed wheel, the repository's ``kernels/`` in a
    source checkout.
    """
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "kernels", package.parent / "kernels"):
        if (candidate / "scatter.cu").is_file():
            return candidate
    raise FileNotFoundError(
        f"gpuzarr's CUDA sources were not found in {package / 'kernels'} or {package.parent / 'kernels'}"
    )


@cache
def module_source(module: str) -> str:
    """The source text of a module: its files concatenated, with ``#line`` markers so
    compiler messages name the original file and line."""
    try:
        files = MODULES[module]
    except KeyError:
        raise KeyError(f"unknown kernel module {module!r}; known: {sorted(MODULES)}") from None
    base = kernel_dir()
    parts = [f'#line 1 "{name}"\n{(base / name).read_text()}' for name in files]
    return "\n".join(parts)


_lock = threading.Lock()
_modules: dict[tuple[str, int], Any] = {}


def get_module(module: str) -> Any:
    """The compiled ``cupy.RawModule`` of a module on the current device (compiled once)."""
    import cupy  # deferred: importing gpuzarr never imports CuPy

    key = (module, cupy.cuda.runtime.getDevice())
    with _lock:
        compiled = _modules.get(key)
        if compiled is None:
            compiled = cupy.RawModule(code=module_source(module), options=COMPILE_OPTIONS)
            # Fetching a kernel compiles the module: errors surface here, not at a launch.
            compiled.get_function(next(k.name for k in KERNELS.values() if k.module == module))
            _modules[key] = compiled
    return compiled


def get_kernel(name: str) -> Any:
    """The ``cupy.RawKernel`` of a kernel by name (see :data:`KERNELS`)."""
    try:
        spec = KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}") from None
    return get_module(spec.module).get_function(name)
