"""gpuzarr: read and write Zarr arrays (v2 and v3) into NumPy, or into GPU memory as
CuPy arrays (a preview: the GPU path has not yet run on a GPU).

``import gpuzarr`` is CPU-only: it imports no CUDA library and touches no GPU.

Quick start::

    import gpuzarr
    a = gpuzarr.create_array("data.zarr", shape=(1000, 1000), chunks=(100, 100), dtype="f4")
    a[:10] = 1.0
    b = gpuzarr.open_array("data.zarr")
    b[:10, :5]
"""

from gpuzarr import codecs, errors, stores
from gpuzarr.api import (
    consolidate_metadata,
    create_array,
    create_group,
    open,
    open_array,
    open_group,
)
from gpuzarr.array import Array
from gpuzarr.config import config
from gpuzarr.convenience import (
    empty,
    empty_like,
    from_array,
    full,
    full_like,
    ones,
    ones_like,
    open_consolidated,
    zeros,
    zeros_like,
)
from gpuzarr.device import Device
from gpuzarr.group import Group
from gpuzarr.loader import Loader
from gpuzarr.stores import LocalStore, MemoryStore, Store, ZipStore

__version__ = "0.1.0"

__all__ = [
    "Array",
    "Device",
    "Group",
    "Loader",
    "LocalStore",
    "MemoryStore",
    "Store",
    "ZipStore",
    "__version__",
    "codecs",
    "config",
    "consolidate_metadata",
    "create_array",
    "create_group",
    "empty",
    "empty_like",
    "errors",
    "from_array",
    "full",
    "full_like",
    "ones",
    "ones_like",
    "open",
    "open_array",
    "open_consolidated",
    "open_group",
    "stores",
    "zeros",
    "zeros_like",
]
