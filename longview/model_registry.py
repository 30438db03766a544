"""The models `longview train` can train and register: each name mapped to its class's import path
("module:Class"). Adding a model is one module in training/models/ and one line here.

Paths, not classes: the settings validate a model name without importing torch, and training/models
(which travels inside every registered model) never has to import this."""

from __future__ import annotations

MODELS: dict[str, str] = {
    "popularity": "training.models.popularity:Popularity",
    "recent_popularity": "training.models.popularity:RecentPopularity",
    "ease": "training.models.item_matrix:EASE",
    "item_knn": "training.models.item_matrix:ItemKNN",
    "sequence": "training.models.sequence:SequenceModel",
    "engagement": "training.models.engagement:EngagementPolicy",
}

# What `longview train` evaluates beside its model by default (the `baselines` setting).
BASELINES: tuple[str, ...] = ("popularity", "recent_popularity", "ease", "item_knn")
