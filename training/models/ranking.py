"""Turning scores into lists, the same way offline and online: what a user is not recommended
again, and a stable top-k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def exclude_seen(scores: torch.Tensor, histories: Sequence[np.ndarray], exclude: bool = True) -> torch.Tensor:
    """The one rule for what a user is not recommended again (evaluation and serving alike): every
    item in their history, unless consumption repeats (the exclude_seen setting off)."""
    if exclude:
        for row, history in enumerate(histories):
            if len(history):
                scores[row, torch.from_numpy(np.asarray(history, dtype=np.int64))] = float("-inf")
    return scores


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, ties broken by lower index (a stable, reproducible
    order); excluded (-inf) items come last and are cut by the caller if need be."""
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]


def rank_of(scores: torch.Tensor, row: int, item: int) -> int:
    """0-based place of ``item`` in row ``row`` under top_k's order."""
    s = scores[row]
    value = s[item]
    return int((s > value).sum() + ((s == value) & (torch.arange(len(s)) < item)).sum())
