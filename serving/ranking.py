"""Ranking for one user, with a popularity fallback that says so."""

from __future__ import annotations

from collections.abc import Mapping

from training.packaged_model import PackagedRecommender


def rank_for_user(model: PackagedRecommender, model_version: str, user_id: str, features: Mapping, k: int,
                  why: str = "popularity: no online features for this user") -> dict:
    if features.get("recent_items") is None:
        # Unknown user (or features not materialised yet): the most popular items, clearly labelled.
        ranked, fallback = model.popular(k), why
    else:
        ranked, fallback = model.recommend([features], k)[0], None
    return {
        "user_id": user_id,
        "model_version": model_version,
        "items": [{"item_id": item, "score": round(score, 6)} for item, score in ranked],
        "fallback": fallback,
    }
