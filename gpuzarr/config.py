"""Runtime settings, global and overridable in a ``with config.set(...)`` block.

``threads``            worker threads for CPU decode/encode (default: usable cores + 1; the
                       extra thread keeps the cores busy while one waits on a read).
``write_empty_chunks`` store chunks equal to the fill value (default False: delete them,
                       as zarr-python does).
``wave_bytes``         target decoded bytes per pipeline wave; bounds memory in flight
                       on large reads and writes (default 32 MiB).
``coalesce_gap_bytes`` byte ranges of one shard closer than this are read as one
                       request (default 64 KiB).
``shard_index_cache_entries`` shard indexes kept in the process-wide LRU (default 16384).
``result_pool_bytes``  host memory of freed read results (of 1 MiB and more) kept to back
                       new results, counting the memory results still use (default
                       256 MiB; 0: every result is fresh memory, and
                       ``gpuzarr.memory.result_pool.free_all_blocks()`` releases what the
                       pool holds). Fresh memory is zeroed by the kernel page by page as the
                       read first writes it, which costs a read in a loop about as much CPU
                       time as decoding; see ``gpuzarr.memory.ResultPool``.
``gpu_fallback``       what a GPU read or write does with a codec that has no GPU
                       implementation (or a chunk the device cannot take): ``"warn"``
                       (decode or encode on the CPU, with a ``GpuFallbackWarning``, shown
                       once per place by Python's default filter) or ``"error"`` (raise
                       ``UnsupportedCodecError``).
``gpu_io``             how a GPU read moves stored bytes to the device: ``"staging"``
                       (read into host memory, one pinned copy per wave; the default) or
                       ``"kvikio"`` (local files read by kvikio straight into device
                       memory, GPUDirect Storage where present, for zstd, gzip and
                       uncompressed chunks; other chains use staging). Not yet measured
                       on a GPU: staging stays the default until it is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from gpuzarr._checks import is_int

__all__ = ["Config", "config", "get_config", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    """A snapshot of gpuzarr's settings."""

    threads: int = field(default_factory=lambda: usable_cores() + 1)
    write_empty_chunks: bool = False
    wave_bytes: int = 32 * 2**20
    gpu_fallback: Literal["warn", "error"] = "warn"
    gpu_io: Literal["staging", "kvikio"] = "staging"
    coalesce_gap_bytes: int = 64 * 2**10
    shard_index_cache_entries: int = 16384
    result_pool_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        # (threads=True is a mistake, not one thread: see is_int.)
        if not is_int(self.threads) or self.threads < 1:
            raise ValueError(f"config: threads must be a positive integer, got {self.threads!r}")
        if not isinstance(self.write_empty_chunks, bool):
            # A truthy string such as "no" would otherwise silently mean True.
            raise ValueError(f"config: write_empty_chunks must be True or False, got {self.write_empty_chunks!r}")
        if not is_int(self.wave_bytes) or self.wave_bytes < 1:
            raise ValueError(f"config: wave_bytes must be a positive integer, got {self.wave_bytes!r}")
        for name in ("coalesce_gap_bytes", "shard_index_cache_entries", "result_pool_bytes"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"config: {name} must be a non-negative integer, got {value!r}")
        if self.gpu_fallback not in ("warn", "error"):
            raise ValueError(f"config: gpu_fallback must be 'warn' or 'error', got {self.gpu_fallback!r}")
        if self.gpu_io not in ("staging", "kvikio"):
            raise ValueError(f"config: gpu_io must be 'staging' or 'kvikio', got {self.gpu_io!r}")


class _ConfigHolder:
    """The process-wide settings; ``set`` changes them globally or for a ``with`` block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = Config()

    def get(self) -> Config:
        """The settings in force."""
        return self._current

    @contextmanager
    def _restoring(self, previous: Config) -> Iterator[Config]:
        try:
            yield self._current
        finally:
            with self._lock:
                self._current = previous

    def set(self, **changes: Any) -> Any:
        """Change settings. Used as a context manager, the change is undone on exit."""
        known = {f.name for f in fields(Config)}
        unknown = set(changes) - known
        if unknown:
            raise KeyError(f"config: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        with self._lock:
            previous = self._current
            self._current = replace(previous, **changes)
        return self._restoring(previous)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``config.threads = 1`` changes the setting globally, validated, as ``set`` does
        # (an attribute of the holder would shadow it while the pipeline kept the old one).
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name not in {f.name for f in fields(Config)}:
            raise AttributeError(f"config: unknown setting {name!r}; known: {sorted(f.name for f in fields(Config))}")
        self.set(**{name: value})

    def __repr__(self) -> str:
        return f"gpuzarr.config({self._current})"


config = _ConfigHolder()


def get_config() -> Config:
    """The settings in force."""
    return config.get()
