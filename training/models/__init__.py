"""The models, one module each, behind one interface (training.models.base.Recommender). Which
names exist is the foundation's registry (longview/model_registry.py; classes by name:
training/registry.py). This package travels inside every registered model, so it imports
nothing outside itself."""

from __future__ import annotations

from .base import FitReport, Interactions, Queries, Recommender

__all__ = ["FitReport", "Interactions", "Queries", "Recommender"]
