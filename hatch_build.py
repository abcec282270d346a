"""Hatch build hook: compile gpuzarr's optional native helper.

``gpuzarr/_native/call_each.c`` and ``bitshuffle.c`` are plain C (no Python headers, no
libraries) that gpuzarr loads with ctypes, as one library. Where no C compiler works the
build goes on without it, and gpuzarr loops in Python instead (slower, same results).
"""

from __future__ import annotations

import os
import runpy
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SOURCES = ("gpuzarr/_native/call_each.c", "gpuzarr/_native/bitshuffle.c")
# (The name gpuzarr loads it by, from the one module that spells it: the build cannot
# import gpuzarr, whose dependencies need not be installed in the build environment.)
_LIBRARY = "gpuzarr/_native/" + runpy.run_path(os.path.join(os.path.dirname(__file__), "gpuzarr/_native/_name.py"))[
    "LIBRARY_NAME"
]


def _compilers() -> list[list[str]]:
    """C compiler commands to try: $CC, the one Python was built with, then cc/gcc/clang."""
    configured = [shlex.split(command or "") for command in (os.environ.get("CC"), sysconfig.get_config_var("CC"))]
    found = [command for command in configured if command and shutil.which(command[0])]
    return found + [[name] for name in ("cc", "gcc", "clang") if shutil.which(name)]


def _compile(target: str, sources: list[str]) -> list[str]:
    """Build the helper at ``target``, trying each compiler in turn; the errors of the
    attempts that failed (all of them, when none worked and ``target`` is absent)."""
    flags = shlex.split(os.environ.get("CFLAGS", "")) + shlex.split(os.environ.get("LDFLAGS", ""))
    position_independent = [] if sys.platform == "win32" else ["-fPIC"]
    errors = []
    for compiler in _compilers():
        partial = target + ".partial"  # (a failed link leaves no half-written library behind)
        command = [*compiler, "-O2", "-shared", *position_independent, *flags, "-o", partial, *sources]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{shlex.join(command)}: {getattr(exc, 'stderr', None) or exc}")
            if os.path.exists(partial):
                os.remove(partial)
            continue
        os.replace(partial, target)
        return []
    return errors or ["no C compiler found"]


def _platform_tag() -> str:
    """The wheel's platform tag: the helper uses no Python ABI, so one wheel serves every
    Python 3 on the platform."""
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


class NativeHelperHook(BuildHookInterface):
    """Builds the helper: into the source tree for an editable install (which loads it
    from there), else into a temporary folder from which it goes into the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        sources = [os.path.join(self.root, source) for source in _SOURCES]
        in_tree = os.path.join(self.root, _LIBRARY)
        if os.path.exists(in_tree):  # never leave an earlier build to be loaded instead
            os.remove(in_tree)
        if version == "editable":
            target = in_tree
        else:
            self._build_dir = tempfile.mkdtemp(prefix="gpuzarr-native-")
            target = os.path.join(self._build_dir, os.path.basename(_LIBRARY))
        errors = _compile(target, sources)
        if errors:
            self.app.display_warning(
                f"gpuzarr: native helper not built ({'; '.join(errors)}); gpuzarr loops in Python instead"
            )
            return
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{_platform_tag()}"
        if version != "editable":
            build_data["force_include"][target] = _LIBRARY

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        build_dir = getattr(self, "_build_dir", None)
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)
