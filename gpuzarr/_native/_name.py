"""The file name of gpuzarr's built native helper, in a module of its own that imports
nothing of gpuzarr: the build hook (``hatch_build.py``), which cannot import gpuzarr,
reads it from here too."""

import sys

#: File name of the built helper, next to this module.
LIBRARY_NAME = "_call_each" + (".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so")
