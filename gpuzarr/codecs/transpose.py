"""The ``transpose`` codec: permutes the dimensions of a chunk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from gpuzarr._checks import is_int
from gpuzarr.codecs.base import ArrayArrayCodec, ChunkSpec
from gpuzarr.errors import MetadataError

__all__ = ["TransposeCodec"]


@dataclass(frozen=True)
class TransposeCodec(ArrayArrayCodec):
    """Permute dimensions: encoded axis ``i`` is decoded axis ``order[i]``.

    The legacy string orders ``"C"`` (identity) and ``"F"`` (reversal) from early v3
    drafts are accepted and turned into permutations once the number of dimensions is
    known.
    """

    order: tuple[int, ...] | str

    name: ClassVar[str] = "transpose"
    fixed_size: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransposeCodec:
        order = config.get("order")
        if set(config) - {"order"}:
            raise MetadataError(f"codec 'transpose': unknown configuration fields {sorted(set(config) - {'order'})}")
        if isinstance(order, str) and order in ("C", "F"):
            return cls(order)
        if not isinstance(order, (list, tuple)) or not all(
            is_int(i) for i in order
        ):
            raise MetadataError(f"codec 'transpose': order must be a list of integers, got {order!r}")
        if sorted(order) != list(range(len(order))):
            raise MetadataError(f"codec 'transpose': order {list(order)} is not a permutation")
        return cls(tuple(order))

    def to_json(self) -> dict[str, Any]:
        return {"name": "transpose", "configuration": {"order": list(self.order)}}

    def evolve(self, spec: ChunkSpec) -> TransposeCodec:
        return TransposeCodec(self._permutation(len(spec.shape)))

    def _permutation(self, ndim: int) -> tuple[int, ...]:
        if isinstance(self.order, str):
            return tuple(range(ndim)) if self.order == "C" else tuple(reversed(range(ndim)))
        if len(self.order) != ndim:
            raise MetadataError(
                f"codec 'transpose': order {list(self.order)} has {len(self.order)} entries, "
                f"the array has {ndim} dimensions"
            )
        return self.order

    def resolve(self, spec: ChunkSpec) -> ChunkSpec:
        order = self._permutation(len(spec.shape))
        return ChunkSpec(tuple(spec.shape[i] for i in order), spec.data_type, spec.fill_value)

    def encoded_size(self, decoded_size: int, spec: ChunkSpec) -> int:
        return decoded_size

    def cpu_decode(self, data: np.ndarray, spec: ChunkSpec, out: np.ndarray | None = None) -> np.ndarray:
        order = self._permutation(len(spec.shape))
        return np.transpose(data, np.argsort(order))

    def cpu_encode(self, data: np.ndarray, spec: ChunkSpec) -> np.ndarray:
        return np.transpose(data, self._permutation(len(spec.shape)))
