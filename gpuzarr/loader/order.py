"""The sample order of an epoch, and the read schedule that serves it.

Everything here is index arithmetic, computed from ``(seed, epoch)`` and the block sizes
alone, so every rank derives the same global block permutation without talking to the
others, and a resumed loader regenerates the order instead of storing it.

Order of an epoch, for ``world_size`` ranks:

1. Blocks are permuted with a generator seeded by ``(seed, epoch)`` (storage order when
   not shuffling); the permuted blocks' samples, each block's in storage order, form
   the epoch's global sequence.
2. The global sequence is cut into ``world_size`` contiguous runs of samples whose
   lengths differ by at most one; rank ``r`` takes run ``r``. A rank reads the blocks
   its run touches: its run's first and last blocks may be shared with the neighbouring
   ranks (each reads them whole and takes its own samples), every other block belongs
   to one rank.
3. Within a rank, samples are mixed by a shuffle buffer of ``K`` blocks: the samples of
   the rank's ``j``-th block get keys ``j + K * u`` (``u`` uniform in [0, 1), from a
   generator seeded by ``(seed, epoch, rank)``) and are emitted in key order. A sample
   is emitted at most ``K`` blocks after its block is read, so about ``K + 1`` blocks
   are held at a time; ``K = 1`` shuffles within blocks only, ``K`` at least the rank's
   block count is a uniform shuffle of the rank's samples.
4. Ranks are balanced to the same sample count, as ``torch``'s ``DistributedSampler``
   balances them: ``"pad"`` brings every rank up to ``ceil(samples / world_size)`` by
   repeating its last sample (a rank with no run at all, when there are fewer samples
   than ranks, takes the sample at position ``rank % samples`` of the global
   sequence), ``"drop"`` brings every rank down to ``floor(samples / world_size)`` by
   dropping its last sample. At most one sample per rank is repeated or dropped.
5. ``drop_last`` drops a final partial batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["EpochOrder", "Schedule", "epoch_order", "make_schedule", "rank_run", "samples_per_rank"]

Balance = Literal["pad", "drop"]


def _generator(seed: int, *key: int) -> np.random.Generator:
    # spawn_key separates the streams (block permutation vs. per-rank mixing) of one seed.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def rank_run(num_samples: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, stop)`` of ``rank``'s run of the epoch's global sample sequence (before
    balancing): ``world_size`` contiguous runs whose lengths differ by at most one."""
    q, r = divmod(num_samples, world_size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


def samples_per_rank(num_samples: int, world_size: int, balance: Balance) -> int:
    """Samples every rank yields per epoch (before ``drop_last``), the same in every
    epoch: ``ceil(num_samples / world_size)`` when padding, the floor when dropping."""
    if balance == "pad":
        return -(-num_samples // world_size)
    return num_samples // world_size


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
    num_samples = int(block_sizes.sum())
    perm = _generator(seed, 0, epoch).permutation(len(block_sizes)) if shuffle else np.arange(len(block_sizes))
    sizes = block_sizes[perm]
    ends = np.cumsum(sizes)

    def locate(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Place in ``perm``, block and local index of global sequence positions."""
        slot = np.searchsorted(ends, positions, side="right")
        return slot, perm[slot], positions - (ends[slot] - sizes[slot])

    start, stop = rank_run(num_samples, world_size, rank)
    slot, blocks, local = locate(np.arange(start, stop, dtype=np.int64))
    count = stop - start
    if shuffle and count:
        rng = _generator(seed, 1, epoch, rank)
        # The rank's j-th block (its run touches consecutive places of the permutation).
        ordinal = slot - slot[0]
        if buffer_blocks > int(ordinal[-1]):
            order = rng.permutation(count)
        else:
            keys = ordinal.astype(np.float64) + rng.random(count) * buffer_blocks
            order = np.argsort(keys, kind="stable")
        blocks, local = blocks[order], local[order]
    target = samples_per_rank(num_samples, world_size, balance)
    if target > count:  # (one sample: padding to ceil(num_samples / world_size))
        if count:
            # Repeat the last sample: its block is still held at the end of the epoch,
            # so padding costs no read.
            extra = np.full(target - count, count - 1)
            blocks, local = np.concatenate([blocks, blocks[extra]]), np.concatenate([local, local[extra]])
        else:  # fewer samples than ranks: the one at position rank % num_samples
            _, blocks, local = locate(np.arange(rank, rank + target, dtype=np.int64) % num_samples)
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
