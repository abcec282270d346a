"""Hatch build hook: compile gpuzarr's optional native helper.

``gpuzarr/_native/call_each.c`` is a few lines of plain C (no Python headers, no
libraries) that gpuzarr loads with ctypes. Where no C compiler works the build goes on
without it, and gpuzarr loops in Python instead (slower for small chunks, same results).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SOURCE = "gpuzarr/_native/call_each.c"
# (As gpuzarr/_native/__init__.py names it: the build cannot import gpuzarr.)
_LIBRARY = "gpuzarr/_native/_call_each" + (
    ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"
)


def _compilers() -> list[list[str]]:
    """C compiler commands to try: $CC, the one Python was built with, then cc/gcc/clang."""
    found = []
    for configured in (os.environ.get("CC"), sysconfig.get_config_var("CC")):
        if configured and shlex.split(configured) and shutil.which(shlex.split(configured)[0]):
            found.append(shlex.split(configured))
    found += [[name] for name in ("cc", "gcc", "clang") if shutil.which(name)]
    return found


class NativeHelperHook(BuildHookInterface):
    """Builds the helper into the source tree (an editable install uses it there) and
    adds it to the wheel as a platform-specific artifact."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        source = os.path.join(self.root, _SOURCE)
        target = os.path.join(self.root, _LIBRARY)
        errors = []
        for compiler in _compilers():
            command = [*compiler, "-O2", "-shared", "-fPIC", "-o", target, source]
            try:
                subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{shlex.join(command)}: {getattr(exc, 'stderr', None) or exc}")
                continue
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            build_data["artifacts"].append(_LIBRARY)
            return
        reason = "; ".join(errors) or "no C compiler found"
        self.app.display_warning(f"gpuzarr: native helper not built ({reason}); gpuzarr loops in Python instead")
