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
    if n >= BLOCKED_FROM and k * BLOCK * 8 < n:
        return _blocked_top_k(scores, k)
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


# A large catalogue is cut in blocks of BLOCK items whose maxima are found first: torch.topk over a
# million scores took 6.8 ms on one thread here, a pass of block maxima and a topk over the few
# blocks that can hold a winner 0.3 ms, for the same items.
BLOCKED_FROM = 65_536
BLOCK = 1024


def _blocked_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """top_k through block maxima, exactly: with c the k-th best block maximum, k blocks hold a score
    of at least c, so a row's k-th best score is at least c and each of its top k lies in a block
    whose maximum is at least c. Those blocks (more than k where maxima tie at c), plus the ragged
    tail, are the candidates, ordered by top_k's rule."""
    rows, n = scores.shape
    full = n - n % BLOCK
    maxima = scores[:, :full].reshape(rows, -1, BLOCK).amax(dim=2)
    cut = torch.topk(maxima, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    width = int((maxima >= cut).sum(dim=1).max())
    if width * BLOCK * 8 >= n:  # maxima tie across much of the catalogue (e.g. most of it excluded)
        return _stable_order(scores)[:, :k]
    # Every block at or above the cut, in catalogue order (so that ties keep going to the lower index).
    blocks = torch.sort(torch.topk(maxima, width, dim=1, sorted=False).indices, dim=1).values
    candidates = (blocks[:, :, None] * BLOCK + torch.arange(BLOCK)).reshape(rows, -1)
    candidates = torch.cat([candidates, torch.arange(full, n).expand(rows, -1)], dim=1)
    return candidates.gather(1, top_k(scores.gather(1, candidates), k))


def _stable_order(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores, dim=1, descending=True, stable=True).indices


def rank_of(scores: torch.Tensor, row: int, item: int) -> int:
    """0-based place of ``item`` in row ``row`` under top_k's order."""
    s = scores[row]
    value = s[item]
    return int((s > value).sum() + ((s == value) & (torch.arange(len(s)) < item)).sum())
