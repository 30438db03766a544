"""Popularity baselines: all-time, and over the last N days before the request (recency matters:
on a temporal holdout, last week's popular items are hard to beat)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import DAY_SECONDS, FitReport, Interactions, Queries, Recommender, Validate, no_padding

if TYPE_CHECKING:  # the models load without the platform: only training needs settings
    from longview.settings import Settings


class Popularity(Recommender):
    """Positive engagements per item over the whole training period."""

    name = "popularity"

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = counts

    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        self.counts = data.counts()
        return FitReport()

    def score(self, queries: Queries) -> torch.Tensor:
        assert self.counts is not None, "fit the model first"
        share = torch.as_tensor(self.counts / max(self.counts.sum(), 1.0), dtype=torch.float32)
        return no_padding(share.repeat(len(queries), 1))

    def config(self) -> dict:
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"counts": torch.as_tensor(self.counts)}

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "Popularity":
        return cls(tensors["counts"].numpy())


class ItemClock:
    """Positive engagements in time order, so that per-item counts in any window before any request
    time can be read: what recent popularity ranks by and what the sequence model's time signals
    are made of."""

    def __init__(self, items: np.ndarray, times: np.ndarray, n_items: int) -> None:
        self.items, self.times, self.n_items = items, times, n_items

    @classmethod
    def of(cls, data: Interactions) -> "ItemClock":
        if data.times is None:
            raise ValueError("counts before a request time need real event times; this dataset only orders events")
        items = np.concatenate([s[p] for s, p in zip(data.sequences, data.positive, strict=True)])
        times = np.concatenate([t[p] for t, p in zip(data.times, data.positive, strict=True)])
        order = np.argsort(times, kind="stable")
        return cls(items[order], times[order], data.n_items)

    def request_times(self, queries: Queries) -> np.ndarray:
        """Each query's time; without one, just after the last training event."""
        return queries.now if queries.now is not None else np.full(len(queries), self.times[-1] + 1.0)

    def counts(self, now: np.ndarray, days: float | None) -> np.ndarray:
        """requests x (n_items + 1): engagements per item in the ``days`` strictly before each
        request time (all of them before it when ``days`` is None)."""
        out = np.empty((len(now), self.n_items + 1), dtype=np.float32)
        ends = np.searchsorted(self.times, now, side="left")
        starts = (np.zeros(len(now), dtype=np.int64) if days is None
                  else np.searchsorted(self.times, now - days * DAY_SECONDS, side="left"))
        # Requests in time order: both window edges only move forward, so running counts suffice.
        before_end = np.zeros(self.n_items + 1)
        before_start = np.zeros(self.n_items + 1)
        at_end = at_start = 0
        width = self.n_items + 1
        for row in np.argsort(now, kind="stable"):  # bincount: np.add.at is ~10x slower on a served request
            before_end += np.bincount(self.items[at_end:ends[row]], minlength=width)
            before_start += np.bincount(self.items[at_start:starts[row]], minlength=width)
            at_end, at_start = int(ends[row]), int(starts[row])
            out[row] = before_end - before_start
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"items": torch.as_tensor(self.items), "times": torch.as_tensor(self.times)}

    @classmethod
    def restore(cls, tensors: dict[str, torch.Tensor], n_items: int) -> "ItemClock":
        return cls(tensors["items"].numpy(), tensors["times"].numpy(), n_items)


class RecentPopularity(Recommender):
    """Positive engagements per item in the ``days`` before each request; ties go to all-time
    popularity up to the request. Without a request time, the window ends at the last training event."""

    name = "recent_popularity"
    needs_time = True

    def __init__(self, days: float = 7.0, clock: ItemClock | None = None) -> None:
        self.days, self.clock = days, clock

    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        if data.times is None:
            raise ValueError("recent popularity needs real event times; this dataset only orders events")
        self.days, self.clock = settings.recent_popularity_days, ItemClock.of(data)
        return FitReport(chosen={"days": self.days})

    def score(self, queries: Queries) -> torch.Tensor:
        assert self.clock is not None, "fit the model first"
        now = self.clock.request_times(queries)
        recent, ever = self.clock.counts(now, self.days), self.clock.counts(now, None)
        # Ties go to all-time popularity up to the request, scaled below one engagement.
        out = recent + ever / np.maximum(ever.sum(axis=1, keepdims=True), 1.0) * 1e-3
        return no_padding(torch.from_numpy(out.astype(np.float32)))

    def config(self) -> dict:
        assert self.clock is not None
        return {"days": self.days, "n_items": self.clock.n_items}

    def tensors(self) -> dict[str, torch.Tensor]:
        assert self.clock is not None
        return self.clock.tensors()

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "RecentPopularity":
        return cls(float(config["days"]), ItemClock.restore(tensors, int(config["n_items"])))
