"""Model classes by name, imported on demand from the foundation's registry (longview/model_registry.py)."""

from __future__ import annotations

import importlib

from longview.model_registry import BASELINES
from longview.model_registry import MODELS as MODEL_PATHS
from training.models.base import Recommender


def model_class(name: str) -> type[Recommender]:
    if name not in MODEL_PATHS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_PATHS)}")
    module, _, attribute = MODEL_PATHS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


# Every registered model's class (importing this module imports training/models' model modules).
MODELS: dict[str, type[Recommender]] = {name: model_class(name) for name in MODEL_PATHS}

__all__ = ["BASELINES", "MODELS", "model_class"]
