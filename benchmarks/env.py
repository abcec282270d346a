"""The environment a benchmark ran in, recorded with every result."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.readers import package_version

__all__ = ["REPO_ROOT", "collect_environment", "cpu_model", "git_info", "gpu_models", "loadavg", "source_digest"]

REPO_ROOT = Path(__file__).resolve().parent.parent

_PACKAGES = (
    "numpy",
    "gpuzarr",
    "zarr",
    "zarrs",
    "tensorstore",
    "numcodecs",
    "crc32c",
    "deflate",
    "cupy-cuda13x",
    "kvikio-cu13",
    "nvidia-nvcomp-cu13",
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_models() -> list[str] | None:
    """Each NVIDIA GPU's name, memory and driver from ``nvidia-smi`` (None without one); no CUDA import."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] or None


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages (other work on the machine skews timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_info() -> dict[str, Any]:
    """HEAD commit and whether the working tree differs from it."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def source_digest(package_dir: Path | None = None) -> str | None:
    """SHA-256 over gpuzarr's source files: pins the code measured even in a dirty tree."""
    root = package_dir or REPO_ROOT / "gpuzarr"
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".cu", ".cuh", ".pyi"} and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def collect_environment() -> dict[str, Any]:
    """Machine, software versions, code revision and time."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    versions = {name: package_version(name) for name in _PACKAGES}
    gpuzarr_dir = None
    try:
        import gpuzarr

        gpuzarr_dir = Path(gpuzarr.__file__).resolve().parent
        versions["gpuzarr"] = versions["gpuzarr"] or gpuzarr.__version__  # run from a checkout
    except ImportError:
        pass
    now = _dt.datetime.now(_dt.UTC)
    return {
        "date_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "gpus": gpu_models(),
        "mem_total_bytes": _mem_total_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "versions": versions,
        "gpuzarr_path": str(gpuzarr_dir) if gpuzarr_dir else None,
        "gpuzarr_source_sha256_16": source_digest(gpuzarr_dir),
        "git": git_info(),
        "loadavg_start": loadavg(),
    }
