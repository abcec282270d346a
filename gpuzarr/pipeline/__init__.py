"""Batched read and write of chunk selections (the CPU executor).

``layout`` maps decode units to stored bytes (plain chunks or inner chunks of shards),
``read`` and ``write`` run selections through it in waves on the worker pool.
"""

from gpuzarr.codecs.fill import is_fill_chunk
from gpuzarr.pipeline.layout import (
    ChunkLayout,
    ShardedLayout,
    coalesce_ranges,
    delete_node,
    delete_objects,
    forget_shard_indexes,
    make_layout,
    shard_index_cache,
)
from gpuzarr.pipeline.pool import parallel_map
from gpuzarr.pipeline.read import read_many_into
from gpuzarr.pipeline.write import write_from

__all__ = [
    "ChunkLayout",
    "ShardedLayout",
    "coalesce_ranges",
    "delete_node",
    "delete_objects",
    "forget_shard_indexes",
    "is_fill_chunk",
    "make_layout",
    "parallel_map",
    "read_many_into",
    "shard_index_cache",
    "write_from",
]
