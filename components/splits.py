"""Deterministic, stratified train/eval/test assignment that keeps each book in one split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def book_key(title: str, authors: Sequence[str]) -> str:
    """Identity of a book across rows: case- and space-insensitive title and authors."""
    normal = " ".join(title.lower().split())
    return normal + "|" + ";".join(sorted(" ".join(a.lower().split()) for a in authors))


def stable_order(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def split_targets(total: int, buckets: Sequence[int]) -> list[int]:
    """How many items each split should get; rounding leftovers go to the first splits."""
    weight = sum(buckets)
    targets = [total * b // weight for b in buckets]
    for i in range(total - sum(targets)):
        targets[i % len(targets)] += 1
    return targets


def assign_groups(group_sizes: Sequence[int], buckets: Sequence[int]) -> list[int]:
    """Split index for each group (in the given order), filling splits to their targets.

    Groups are whole books: a group never straddles two splits, so a split may
    end up a few items over or under its target.
    """
    targets = split_targets(sum(group_sizes), buckets)
    filled = [0] * len(buckets)
    assignment = []
    for size in group_sizes:
        # The split furthest below its target takes the group: keeps ratios even.
        split = max(range(len(buckets)), key=lambda s: (targets[s] - filled[s], -s))
        filled[split] += size
        assignment.append(split)
    return assignment
