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
    order); excluded (-inf) items come last and are cut by the caller if need be.

    Without a full sort of the catalogue: torch.topk finds each row's k-th best score, and only the
    items at or above it (k of them, more where ties straddle the cut) are put in the stable order."""
    n = scores.shape[1]
    k = min(k, n)
    if k * 8 >= n:  # a small catalogue: the stable sort is as cheap
        return _stable_order(scores)[:, :k]
    top = torch.topk(scores, k, dim=1, sorted=False)
    cut = top.values.min(dim=1, keepdim=True).values
    width = int((scores >= cut).sum(dim=1).max())
    if width == k:  # no tie straddles the cut: topk's k are exactly the items at or above it
        candidates = top.indices
    elif width * 8 >= n:  # ties at the cut span much of the catalogue (e.g. many -inf)
        return _stable_order(scores)[:, :k]
    else:
        candidates = torch.topk(scores, width, dim=1, sorted=False).indices
    # Every item scoring at or above a row's cut is among its candidates; order them stably.
    candidates = torch.sort(candidates, dim=1).values
    order = _stable_order(scores.gather(1, candidates))
    return candidates.gather(1, order)[:, :k]


def _stable_order(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores, dim=1, descending=True, stable=True).indices


def rank_of(scores: torch.Tensor, row: int, item: int) -> int:
    """0-based place of ``item`` in row ``row`` under top_k's order."""
    s = scores[row]
    value = s[item]
    return int((s > value).sum() + ((s == value) & (torch.arange(len(s)) < item)).sum())
