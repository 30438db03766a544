"""Users' lists from the served version. A user's whole history, read from the online store, is the
model's input and, by the model's exclude_seen rule (training/models/ranking.py, the one evaluation
uses) unless the request overrides it, what it will not recommend again. A user with no history the
model knows gets the cold-start list (popularity), labelled as a fallback.

A policy's exploration draws for each user from a stream seeded by the user and the request's second,
and users are scored one at a time, so a user's list is the same asked alone or in a batch, and a
logged impression can be replayed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from longview.ids import new_request_id
from serving.champion import Served
from serving.schemas import Recommendation, RecommendedItem
from training.models.packaged import Slot

NO_FEATURES = "popularity: no online features for this user"
NOTHING_KNOWN = "popularity: none of this user's items are known to the model"
STORE_DOWN = "popularity: the online feature store is unavailable"
# The label each fallback is counted under in /metrics.
FALLBACK_LABELS = {NO_FEATURES: "no_features", NOTHING_KNOWN: "nothing_known", STORE_DOWN: "store_down"}


def exploration_seed(seed: int, user_key: str, now: float) -> int:
    digest = hashlib.blake2b(f"{seed}:{user_key}:{int(now)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def exploration_share(served: Served) -> float:
    """The share of slots the served policy explores (0: a deterministic ranking)."""
    weights = getattr(getattr(served.model, "model", None), "weights", None) or {}
    return float(weights.get("exploration", 0.0))


def recommend(served: Served, user_ids: Sequence[str], rows: Sequence[Mapping], seeds: Sequence[int], k: int, *,
              now: float, exclude_seen: bool | None = None, why: str = NO_FEATURES,
              degraded: bool = False) -> list[Recommendation]:
    """One answer per user; ``rows``: each user's online row (empty where there is none)."""
    model = served.model
    histories = [row.get("history") for row in rows]
    fallbacks = [None if h is not None and len(model.encode(h)) else (NOTHING_KNOWN if h is not None else why)
                 for h in histories]
    # The gap since the last visit comes from the same online row, with the profile the model reads.
    # One user at a time: a batched forward pass pads and multiplies differently, and a last-bit
    # difference can swap two near-tied items; alone, each answer is exactly what /recommend gives.
    lists = []
    for history, row, seed in zip(histories, rows, seeds, strict=True):
        inputs = ([history or []], [now], k, [row.get("last_event_epoch")], [dict(row)])
        if hasattr(model, "slots"):
            lists += model.slots(*inputs, exclude=exclude_seen, seeds=[seed])
        else:  # a version registered before models answered with slots: its ranking, deterministic
            lists += [[Slot(item, score, False, 1.0) for item, score in ranked] for ranked in model.rank(*inputs)]
    own = "engagement" if served.policy == "engagement" else "model"
    return [Recommendation(
        request_id=new_request_id(), user_id=user_id, policy=served.policy, model_name=served.model_name,
        model_version=served.version,
        feature_service=served.feature_service, data_version=served.data_version, fallback=fallback,
        degraded=degraded,
        items=[RecommendedItem(item_id=s.item, score=round(s.score, 6), propensity=round(s.propensity, 6),
                               reason="popular" if fallback else "exploration" if s.explored else own)
               for s in slots])
        for user_id, fallback, slots in zip(user_ids, fallbacks, lists, strict=True)]
