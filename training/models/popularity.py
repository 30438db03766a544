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


class RecentPopularity(Recommender):
    """Positive engagements per item in the ``days`` before each request; ties go to all-time
    popularity. Without a request time, the window ends at the last training event."""

    name = "recent_popularity"
    needs_time = True

    def __init__(self, days: float = 7.0, items: np.ndarray | None = None, times: np.ndarray | None = None,
                 n_items: int = 0) -> None:
        self.days, self.items, self.times, self.n_items = days, items, times, n_items

    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        if data.times is None:
            raise ValueError("recent popularity needs real event times; this dataset only orders events")
        self.days, self.n_items = settings.recent_popularity_days, data.n_items
        items = np.concatenate([s[p] for s, p in zip(data.sequences, data.positive, strict=True)])
        times = np.concatenate([t[p] for t, p in zip(data.times, data.positive, strict=True)])
        order = np.argsort(times, kind="stable")
        self.items, self.times = items[order], times[order]
        return FitReport(chosen={"days": self.days})

    def score(self, queries: Queries) -> torch.Tensor:
        assert self.items is not None and self.times is not None, "fit the model first"
        now = queries.now if queries.now is not None else np.full(len(queries), self.times[-1] + 1.0)
        out = np.empty((len(queries), self.n_items + 1), dtype=np.float32)
        ends = np.searchsorted(self.times, now, side="left")  # strictly before the request
        starts = np.searchsorted(self.times, now - self.days * DAY_SECONDS, side="left")
        # Requests in time order: both window edges only move forward, so running counts suffice.
        order = np.argsort(now, kind="stable")
        before_end = np.zeros(self.n_items + 1)
        before_start = np.zeros(self.n_items + 1)
        at_end = at_start = 0
        for row in order:
            np.add.at(before_end, self.items[at_end:ends[row]], 1.0)
            np.add.at(before_start, self.items[at_start:starts[row]], 1.0)
            at_end, at_start = int(ends[row]), int(starts[row])
            # Ties go to all-time popularity up to the request, scaled below one engagement.
            out[row] = before_end - before_start + before_end / max(before_end.sum(), 1.0) * 1e-3
        return no_padding(torch.from_numpy(out))

    def config(self) -> dict:
        return {"days": self.days, "n_items": self.n_items}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"items": torch.as_tensor(self.items), "times": torch.as_tensor(self.times)}

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "RecentPopularity":
        return cls(float(config["days"]), tensors["items"].numpy(), tensors["times"].numpy(), int(config["n_items"]))
