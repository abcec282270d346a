"""Feed a training loop from Zarr arrays: shuffled, rank-sharded, resumable batches.

``Loader(arrays, batch_size, ...)`` yields batches (NumPy arrays, torch tensors or JAX
arrays; dicts of them for named arrays) read block by block at decode speed, from one
process with a background prefetch thread. See :class:`Loader`.

Importing this package imports neither torch nor JAX; ``TorchIterableDataset`` (and
``Loader.as_torch_dataset()``) import torch when first used.
"""

from __future__ import annotations

from typing import Any

from gpuzarr.loader.core import Loader, LoaderIterator

__all__ = ["Loader", "LoaderIterator", "TorchIterableDataset"]


def __getattr__(name: str) -> Any:
    # Lazy: only an explicit use of the torch integration imports torch.
    if name == "TorchIterableDataset":
        from gpuzarr.loader.torch_dataset import TorchIterableDataset

        return TorchIterableDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
