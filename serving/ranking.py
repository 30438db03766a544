"""Ranking for one user with the registered model. The user's whole history, read from the online
store, is the model's input and, by the model's exclude_seen rule (the one in
training/models/ranking.py that evaluation also uses), what it will not recommend again. A user
with no history the model knows gets its cold-start list (popularity), labelled as a fallback."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.models.packaged import PackagedModel

NO_FEATURES = "popularity: no online features for this user"
NOTHING_KNOWN = "popularity: none of this user's items are known to the model"


def rank_for_user(model: PackagedModel, model_version: str, user_id: str, features: Mapping, k: int,
                  why: str = NO_FEATURES, now: float | None = None) -> dict:
    history = features.get("history")
    # The gap since the last visit: the profile's last engagement time, from the same online row.
    # and the profile (activity, return gaps, taste) the sequence model reads beside it.
    ranked = model.rank([history or []], [time.time() if now is None else now], k,
                        [features.get("last_event_epoch")], [dict(features)])[0]
    if history is None:
        fallback: str | None = why
    else:
        fallback = None if len(model.encode(history)) else NOTHING_KNOWN
    return {
        "user_id": user_id,
        "model_version": model_version,
        "model_name": model.model_name,
        "items": [{"item_id": item, "score": round(score, 6)} for item, score in ranked],
        "fallback": fallback,
    }
