"""The policies a simulated user can be served by, behind one small interface:

    slate(history, now, last, k, seed) -> list of Slot (item, score, explored, propensity)

``history``: the user's item ids, oldest first; ``now``: the request's Unix seconds; ``last``: the
time of the user's last event (None: none); ``seed``: the request's exploration seed. A registered
or trained model answers through ``PackagedModel.slots``, the very call /recommend makes
(serving/ranking.py); another simulator plugs in with an adapter of the same size."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from training.models.packaged import PackagedModel, Slot


class Policy(Protocol):
    name: str

    def slate(self, history: list[str], now: float, last: float | None, k: int, seed: int) -> list[Slot]: ...


class PackagedPolicy:
    """A packaged model (a registered version, or a model trained here) as served."""

    def __init__(self, name: str, model: PackagedModel) -> None:
        self.name, self.model = name, model

    def slate(self, history: list[str], now: float, last: float | None, k: int, seed: int) -> list[Slot]:
        return self.model.slots([history], [now], k, [last], None, seeds=[seed])[0]


class RandomPolicy:
    """Items drawn uniformly from those the user has not seen; each slot's propensity is 1 over
    the items left (the conditional propensity, as the served log records it)."""

    name = "random"

    def __init__(self, item_ids: list[str]) -> None:
        self.item_ids = list(item_ids)

    def slate(self, history: list[str], now: float, last: float | None, k: int, seed: int) -> list[Slot]:
        seen = set(history)
        left = [i for i in self.item_ids if i not in seen]
        picked = np.random.default_rng(seed).permutation(len(left))[:k]
        return [Slot(left[j], 0.0, True, 1.0 / (len(left) - n)) for n, j in enumerate(picked)]
