"""The models, one module each, behind one interface (training.models.base.Recommender)."""

from __future__ import annotations

from .base import FitReport, Interactions, Queries, Recommender
from .engagement import EngagementPolicy
from .item_matrix import EASE, ItemKNN
from .popularity import Popularity, RecentPopularity
from .sequence import SequenceModel

MODELS: dict[str, type[Recommender]] = {m.name: m for m in (Popularity, RecentPopularity, EASE, ItemKNN,
                                                           SequenceModel, EngagementPolicy)}
BASELINES = ("popularity", "recent_popularity", "ease", "item_knn")


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[name]


__all__ = ["BASELINES", "MODELS", "FitReport", "Interactions", "Queries", "Recommender", "model_class"]
