"""Type tests shared by every layer (bottom layer: imports nothing of gpuzarr).

``bool`` is a subclass of ``int`` in Python, so ``isinstance(True, int)`` holds: a
``true`` in a JSON document, or ``threads=True`` in a setting, would pass for the
number 1. Every place that takes an integer asks these instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_int", "is_integer"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python integer, not a bool: what parsed JSON and
    configuration fields hold."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer, Python's or NumPy's, not a bool: what user
    arguments such as sizes, seeds and counts may be."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
