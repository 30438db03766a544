"""Model classes by name, imported on demand from the foundation's registry (longview/model_registry.py)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from longview.model_registry import BASELINES
from longview.model_registry import MODELS as MODEL_PATHS
from training.models.base import Recommender


def model_class(name: str) -> type[Recommender]:
    if name not in MODEL_PATHS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_PATHS)}")
    module, _, attribute = MODEL_PATHS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


class _Classes(Mapping[str, type[Recommender]]):
    """The registry's names, each resolved to its class when looked up."""

    def __getitem__(self, name: str) -> type[Recommender]:
        if name not in MODEL_PATHS:
            raise KeyError(name)
        return model_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(MODEL_PATHS)

    def __len__(self) -> int:
        return len(MODEL_PATHS)


MODELS: Mapping[str, type[Recommender]] = _Classes()

__all__ = ["BASELINES", "MODELS", "model_class"]
