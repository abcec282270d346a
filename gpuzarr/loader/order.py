"""The sample order of an epoch, and the read schedule that serves it.

Everything here is index arithmetic, computed from ``(seed, epoch)`` and the block sizes
alone, so every rank derives the same global block permutation without talking to the
others, and a resumed loader regenerates the order instead of storing it.

Order of an epoch, for ``world_size`` ranks:

1. Blocks are permuted with a generator seeded by ``(seed, epoch)`` (storage order when
   not shuffling).
2. The permuted block list is cut into ``world_size`` contiguous runs whose block counts
   differ by at most one; rank ``r`` takes run ``r``. A block belongs to one rank, so no
   rank reads another's data.
3. Within a rank, samples are mixed by a shuffle buffer of ``K`` blocks: the ``j``-th
   block's samples get keys ``j + K * u`` (``u`` uniform in [0, 1), from a generator
   seeded by ``(seed, epoch, rank)``) and are emitted in key order. A sample is emitted
   at most ``K`` blocks after its block is read, so about ``K + 1`` blocks are held at a
   time; ``K = 1`` shuffles within blocks only, ``K`` at least the rank's block count is
   a uniform shuffle of the rank's samples.
4. Ranks are balanced to a per-epoch sample count that does not depend on the epoch:
   ``"pad"`` repeats a rank's last samples up to the most any rank can hold, ``"drop"``
   drops a rank's last samples down to the least any rank can hold.
5. ``drop_last`` drops a final partial batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["EpochOrder", "Schedule", "epoch_order", "make_schedule", "samples_per_rank"]

Balance = Literal["pad", "drop"]


def _generator(seed: int, *key: int) -> np.random.Generator:
    # spawn_key separates the streams (block permutation vs. per-rank mixing) of one seed.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def rank_blocks(num_blocks: int, world_size: int, rank: int) -> slice:
    """The run of the permuted block list that belongs to ``rank``."""
    q, r = divmod(num_blocks, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (1 if rank < r else 0))


def samples_per_rank(block_sizes: np.ndarray, world_size: int, balance: Balance) -> int:
    """Samples every rank yields per epoch (before ``drop_last``), the same in every epoch.

    A rank holds ``q`` or ``q + 1`` blocks (``q = num_blocks // world_size``) depending
    on the permutation, so the bound is taken over the blocks' sizes: the ``q (+1)``
    largest when padding, the ``q`` smallest when dropping.
    """
    num_blocks = len(block_sizes)
    q, r = divmod(num_blocks, world_size)
    ordered = np.sort(block_sizes)
    if balance == "pad":
        k = q + (1 if r else 0)
        return int(ordered[num_blocks - k:].sum())
    return int(ordered[:q].sum())


@dataclass(frozen=True)
class EpochOrder:
    """One rank's samples for an epoch, in the order they are yielded."""

    blocks: np.ndarray  #: block of each sample
    local: np.ndarray  #: index of the sample within its block

    def __len__(self) -> int:
        return len(self.blocks)


def epoch_order(
    block_sizes: np.ndarray,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    buffer_blocks: int,
    rank: int,
    world_size: int,
    balance: Balance,
    batch_size: int,
    drop_last: bool,
) -> EpochOrder:
    """The samples ``rank`` yields in ``epoch`` (see the module docstring)."""
    num_blocks = len(block_sizes)
    perm = _generator(seed, 0, epoch).permutation(num_blocks) if shuffle else np.arange(num_blocks)
    mine = perm[rank_blocks(num_blocks, world_size, rank)]
    sizes = block_sizes[mine]
    count = int(sizes.sum())
    blocks = np.repeat(mine, sizes)
    local = np.arange(count, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    if shuffle and count:
        rng = _generator(seed, 1, epoch, rank)
        if buffer_blocks >= len(mine):
            order = rng.permutation(count)
        else:
            keys = np.repeat(np.arange(len(mine), dtype=np.float64), sizes) + rng.random(count) * buffer_blocks
            order = np.argsort(keys, kind="stable")
        blocks, local = blocks[order], local[order]
    target = samples_per_rank(block_sizes, world_size, balance)
    if target > count:
        # Repeat the tail: its blocks are the ones still held at the end of the epoch,
        # so padding costs no extra reads (cycling only when a rank is tiny).
        extra = np.arange(count - (target - count), count) % count
        blocks = np.concatenate([blocks, blocks[extra]])
        local = np.concatenate([local, local[extra]])
    keep = (target // batch_size) * batch_size if drop_last else target
    return EpochOrder(blocks[:keep], local[:keep])


@dataclass(frozen=True)
class Schedule:
    """When each block is read and released, for batches ``start`` onward.

    ``loads[i]`` are the blocks first needed by batch ``start + i`` (in order of first
    use), ``frees[i]`` those last needed by it. ``capacity`` is the most blocks held at
    once, which sizes the in-memory pool.
    """

    start: int
    loads: list[np.ndarray]
    frees: list[np.ndarray]
    capacity: int

    @property
    def load_sequence(self) -> np.ndarray:
        """Every block to read, in reading order."""
        return np.concatenate(self.loads) if self.loads else np.empty(0, np.int64)


def make_schedule(order: EpochOrder, batch_size: int, start: int) -> Schedule:
    """The read schedule of ``order`` from batch ``start`` on (earlier batches are not read)."""
    blocks = order.blocks[start * batch_size:]
    num_batches = -(-len(blocks) // batch_size)
    if num_batches == 0:
        return Schedule(start, [], [], 0)
    batch_of = np.arange(len(blocks)) // batch_size
    uniq, first = np.unique(blocks, return_index=True)
    _, last_reversed = np.unique(blocks[::-1], return_index=True)
    first_batch = batch_of[first]
    last_batch = batch_of[len(blocks) - 1 - last_reversed]
    by_first = np.argsort(first, kind="stable")
    loads = np.split(uniq[by_first], np.searchsorted(first_batch[by_first], np.arange(1, num_batches)))
    by_last = np.argsort(last_batch, kind="stable")
    frees = np.split(uniq[by_last], np.searchsorted(last_batch[by_last], np.arange(1, num_batches)))
    # Held during batch i: read at or before i, released at or after i.
    delta = np.zeros(num_batches + 1, dtype=np.int64)
    np.add.at(delta, first_batch, 1)
    np.add.at(delta, last_batch + 1, -1)
    capacity = int(np.cumsum(delta)[:num_batches].max())
    return Schedule(start, loads, frees, capacity)
