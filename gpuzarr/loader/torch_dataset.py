"""The loader as a ``torch.utils.data.IterableDataset`` (importing this module imports torch)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch.utils.data

if TYPE_CHECKING:
    from gpuzarr.loader.core import Loader

__all__ = ["TorchIterableDataset"]


class TorchIterableDataset(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """Yields the loader's batches; wrap it in ``DataLoader(ds, batch_size=None, num_workers=0)``.

    The loader already batches, prefetches and decodes in parallel in one process, so
    DataLoader workers would only duplicate it: iterating inside a worker raises.
    """

    def __init__(self, loader: Loader) -> None:
        super().__init__()
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            raise RuntimeError(
                "gpuzarr loader: use DataLoader(..., num_workers=0); the loader reads and decodes in "
                "parallel itself, and each worker would yield the whole epoch again"
            )
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Start over at the beginning of ``epoch``."""
        self.loader.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The loader's position (see :meth:`gpuzarr.loader.Loader.state_dict`)."""
        return self.loader.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a saved position."""
        self.loader.load_state_dict(state)
