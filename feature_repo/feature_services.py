"""Feature services: the exact feature set a model version was trained and is served with.

Whether the content service carries text embeddings depends on the data: `longview features`
writes a manifest, and a dataset without item text gets a service that says so (its tags and
description) instead of silently zero-filled vectors."""

import json

from data_sources import features_dir
from feast import FeatureService
from features import item_profile, item_text, user_history, user_profile


def _has_text() -> bool:
    """What the manifest `longview features` wrote beside the tables says (none yet: no text)."""
    try:
        return bool(json.loads((features_dir() / "manifest.json").read_text()).get("text_embedding"))
    except (OSError, ValueError):
        return False


recommender_v1 = FeatureService(
    name="recommender_v1",
    features=[user_profile[["recent_items", "events_1d", "events_7d", "events_30d", "days_since_prev",
                            "active_days", "mean_dwell", "taste"]]],
    description="models trained before return gaps and session depth were features",
)
recommender_v2 = FeatureService(
    name="recommender_v2",
    features=[user_profile],
    description="GRU recommender: the whole user profile, including recent items and return gaps",
)
recommender_v3 = FeatureService(
    name="recommender_v3",
    features=[user_profile, user_history],
    description="models of training/models: the user's whole history (input and exclusions) and profile",
)

if _has_text():
    item_content_v1 = FeatureService(
        name="item_content_v1",
        features=[item_profile, item_text],
        description="content profile with text embeddings",
        tags={"text_embedding": "present"},
    )
else:
    item_content_v1 = FeatureService(
        name="item_content_v1",
        features=[item_profile],
        description="content profile WITHOUT text embeddings: this dataset has no item text",
        tags={"text_embedding": "absent: the dataset has no item text"},
    )
