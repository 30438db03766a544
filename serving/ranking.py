"""One user's list from the served version. The user's whole history, read from the online store, is
the model's input and, by the model's exclude_seen rule (training/models/ranking.py, the one
evaluation uses) unless the request overrides it, what it will not recommend again. A user with no
history the model knows gets the cold-start list (popularity), labelled as a fallback."""

from __future__ import annotations

import time
from collections.abc import Mapping

from serving.champion import Served
from serving.schemas import Recommendation, RecommendedItem

NO_FEATURES = "popularity: no online features for this user"
NOTHING_KNOWN = "popularity: none of this user's items are known to the model"
STORE_DOWN = "popularity: the online feature store is unavailable"
# The label each fallback is counted under in /metrics.
FALLBACK_LABELS = {NO_FEATURES: "no_features", NOTHING_KNOWN: "nothing_known", STORE_DOWN: "store_down"}


def recommend(served: Served, user_id: str, features: Mapping, k: int, *, now: float | None = None,
              exclude_seen: bool | None = None, why: str = NO_FEATURES, degraded: bool = False) -> Recommendation:
    model = served.model
    history = features.get("history")
    known = history is not None and len(model.encode(history)) > 0
    fallback = None if known else (NOTHING_KNOWN if history is not None else why)
    # The gap since the last visit comes from the same online row, with the profile the model reads.
    (slots,) = model.slots([history or []], [time.time() if now is None else now], k,
                           [features.get("last_event_epoch")], [dict(features)], exclude=exclude_seen)
    own = "engagement" if served.policy == "engagement" else "model"
    items = [RecommendedItem(item_id=s.item, score=round(s.score, 6), propensity=round(s.propensity, 6),
                             reason="popular" if fallback else "exploration" if s.explored else own)
             for s in slots]
    return Recommendation(user_id=user_id, items=items, policy=served.policy, model_name=served.model_name,
                          model_version=served.version, feature_service=served.feature_service,
                          data_version=served.data_version, fallback=fallback, degraded=degraded)
