"""Grouping for batching: which items can go through a model (or share a crop) together."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def group_by(indices: Iterable[int], key: Callable[[int], K]) -> dict[K, list[int]]:
    """``indices`` grouped by ``key(i)``: groups in order of first appearance, each in
    the order given (frames of one size, crops of one input size: one batch a group)."""
    groups: dict[K, list[int]] = {}
    for i in indices:
        groups.setdefault(key(i), []).append(i)
    return groups
