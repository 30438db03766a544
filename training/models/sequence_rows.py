"""Training rows of the sequence model: which users train, on which inputs and labels (and
request contexts), and the canonical order that makes the batches independent of user ids."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from .base import request_context

if TYPE_CHECKING:
    from .base import Interactions


def training_rows(data: Interactions, max_len: int, context: bool = False, profiles: bool = False,
                  all_targets: bool = False
                  ) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Per user with a label: the user's position in ``data``, inputs (the last max_len items
    before each label), labels (the next item where it is a positive engagement, else 0; with
    ``all_targets`` the next item whatever the engagement) and, with
    ``context`` (the data must have times), each label's request context: the next event's time
    and the gap since the input's event, what a request at that moment would have said, followed
    with ``profiles`` by the user's profile as Feast knew it just before the label's event."""
    users, inputs, labels, contexts = [], [], [], []
    for user, (seq, pos) in enumerate(zip(data.sequences, data.positive, strict=True)):
        seq, pos = seq[-(max_len + 1):], pos[-(max_len + 1):]
        if len(seq) < 2 or not (all_targets or pos[1:].any()):
            continue
        users.append(user)
        inputs.append(seq[:-1])
        labels.append(seq[1:] if all_targets else np.where(pos[1:], seq[1:], 0))
        if context:
            times = data.times[user][-(max_len + 1):]  # type: ignore[index]
            rows = request_context(times[1:], times[:-1])
            if profiles:
                rows = np.concatenate([rows, data.profiles[user][-(max_len + 1):][1:]], axis=1)  # type: ignore[index]
            contexts.append(rows)
    return users, inputs, labels, (contexts if context else None)


def canonical_order(inputs: list[np.ndarray], labels: list[np.ndarray]) -> list[int]:
    """Row positions sorted by a digest of each row's items and labels: the same rows in any order
    come out the same (identical rows are interchangeable)."""
    digests = [hashlib.blake2b(x.astype(np.int64).tobytes() + b"|" + y.astype(np.int64).tobytes(),
                               digest_size=16).digest() for x, y in zip(inputs, labels, strict=True)]
    return sorted(range(len(digests)), key=digests.__getitem__)
