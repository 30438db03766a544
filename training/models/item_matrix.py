"""Item-to-item models over the user x item matrix: EASE (Steck, 2019: a closed-form linear
autoencoder) and item-kNN (cosine neighbours). Both pick their one hyper-parameter on validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .base import FitReport, Interactions, Queries, Recommender, Validate, cold_start, no_padding

if TYPE_CHECKING:  # the models load without the platform: only training needs settings
    from longview.settings import Settings

# Above this many items the dense item x item matrix no longer fits comfortably in memory.
MAX_ITEMS = 40_000


def presence(histories: list[np.ndarray], n_items: int) -> torch.Tensor:
    """users x (n_items + 1) binary matrix: has the user interacted with the item."""
    out = torch.zeros(len(histories), n_items + 1)
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    if len(rows):
        out[torch.from_numpy(rows), torch.from_numpy(np.concatenate(histories))] = 1.0
    out[:, 0] = 0.0
    return out


def cooccurrence(data: Interactions) -> torch.Tensor:
    """Item x item counts of users who interacted with both (float64: EASE inverts it)."""
    x = presence(data.sequences, data.n_items).double()
    return x.T @ x


class ItemMatrixModel(Recommender):
    """Scores = the user's presence row times an item x item weight matrix."""

    grid: tuple[float, ...] = ()
    parameter = ""

    def __init__(self, weights: torch.Tensor | None = None, value: float = 0.0,
                 popularity: np.ndarray | None = None) -> None:
        self.weights, self.value, self.popularity = weights, value, popularity

    def weights_for(self, gram: torch.Tensor, value: float) -> torch.Tensor:
        raise NotImplementedError

    def default(self, settings: Settings) -> float:
        raise NotImplementedError

    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        if data.n_items > MAX_ITEMS:
            raise ValueError(f"{self.name} keeps an item x item matrix: {data.n_items:,} items is more than "
                             f"{MAX_ITEMS:,}; use the sequence model")
        self.popularity = data.counts()  # for users with no known history
        gram = cooccurrence(data)
        candidates = sorted({self.default(settings), *self.grid}) if validate is not None else [self.default(settings)]
        report = FitReport()
        best = (-1.0, None, 0.0)
        for value in candidates:
            self.weights, self.value = self.weights_for(gram, value).float(), value
            if validate is None:
                break
            metric = validate(self)
            report.curve.append({self.parameter: value, "validation": metric})
            if metric > best[0]:
                best = (metric, self.weights, value)
        if validate is not None:
            self.weights, self.value = best[1], best[2]
        report.chosen = {self.parameter: self.value}
        return report

    def refit(self, data: Interactions, settings: Settings) -> None:
        """The weights again from ``data``, with the parameter validation chose."""
        self.popularity = data.counts()
        self.weights = self.weights_for(cooccurrence(data), self.value).float()

    def score(self, queries: Queries) -> torch.Tensor:
        assert self.weights is not None and self.popularity is not None, "fit the model first"
        scores = no_padding(presence(queries.histories, self.weights.shape[0] - 1) @ self.weights)
        return cold_start(scores, queries.histories, self.popularity)

    def item_similarity(self, item: int) -> tuple[torch.Tensor, str] | None:
        """The item's column of the item x item weights: how much having engaged with ``item``
        adds to each item's score (co-engagement)."""
        if self.weights is None:
            return None
        likeness = self.weights[item].clone().float()
        likeness[0] = float("-inf")
        return likeness, f"co-engagement ({self.name} weights)"

    def config(self) -> dict:
        return {self.parameter: self.value}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "popularity": torch.as_tensor(self.popularity)}

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]):
        return cls(tensors["weights"], float(config[cls.parameter]), tensors["popularity"].numpy())


class EASE(ItemMatrixModel):
    name, parameter = "ease", "l2"
    grid = (10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0)

    def default(self, settings: Settings) -> float:
        return settings.ease_l2

    def weights_for(self, gram: torch.Tensor, value: float) -> torch.Tensor:
        g = gram.clone()
        g.diagonal().add_(value)
        precision = torch.linalg.inv(g)
        weights = -precision / precision.diagonal()
        weights.diagonal().zero_()
        return weights


class ItemKNN(ItemMatrixModel):
    name, parameter = "item_knn", "neighbours"
    grid = (20.0, 50.0, 200.0)

    def default(self, settings: Settings) -> float:
        return float(settings.item_knn_neighbours)

    def weights_for(self, gram: torch.Tensor, value: float) -> torch.Tensor:
        norms = gram.diagonal().sqrt().clamp(min=1e-12)
        cosine = gram / norms[:, None] / norms[None, :]
        cosine.diagonal().zero_()
        k = min(int(value), cosine.shape[0])
        top = torch.topk(cosine, k, dim=0)  # each item keeps its k most similar items
        sparse = torch.zeros_like(cosine)
        sparse.scatter_(0, top.indices, top.values)
        return sparse
