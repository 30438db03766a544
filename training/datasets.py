"""Point-in-time training and holdout sets, with user features joined by Feast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from longview.feature_store import content_features, feature_store, historical_user_features, text_embeddings_available
from longview.features import engagements, genre_matrix, genre_vocabulary
from longview.settings import Settings
from longview.store import dataset_clock, load_catalogue, load_events

# Feature rows are stamped at the engagement they follow; ask for the state just before the label.
JUST_BEFORE = pd.Timedelta(microseconds=1)


@dataclass
class Holdout:
    """A chronological holdout: each user's profile at the split time and what they engaged with after."""

    split_time: pd.Timestamp
    features: pd.DataFrame  # one row per user, as of split_time
    truth: dict[str, set[str]]  # items engaged with after the split, new to the user
    seen: dict[str, set[str]]  # items engaged with before the split


@dataclass
class TrainingData:
    train: pd.DataFrame  # user features as of just before each label, plus the label item
    holdout: Holdout
    catalogue: pd.DataFrame
    content: np.ndarray  # items x (genres [+ text embedding]): what the item tower projects
    popularity: pd.Series  # engagements per item before the split
    clock: pd.Timestamp


def split_time(eng: pd.DataFrame, holdout_share: float) -> pd.Timestamp:
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share}")
    return pd.Timestamp(eng["timestamp"].quantile(1.0 - holdout_share))


def build_holdout(settings: Settings, store, eng: pd.DataFrame, split: pd.Timestamp) -> Holdout:
    before, after = eng[eng["timestamp"] <= split], eng[eng["timestamp"] > split]
    seen = before.groupby("user_id")["item_id"].agg(set).to_dict()
    truth = {}
    for user, items in after.groupby("user_id")["item_id"]:
        fresh = set(items) - seen.get(user, set())
        if user in seen and fresh:
            truth[user] = fresh
    users = sorted(truth)
    if not users:
        raise ValueError("the holdout is empty: no user engaged with new items after the split time")
    entity = pd.DataFrame({"user_id": users, "event_timestamp": split})
    features = historical_user_features(store, entity).sort_values("user_id").reset_index(drop=True)
    return Holdout(split, features, truth, {u: seen[u] for u in users})


def item_content(settings: Settings, store, catalogue: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """One content vector per catalogue item: its genres, followed by its text embedding (from the
    Feast content service) where the data has item text; items without one get zeros there."""
    genres = genre_matrix(catalogue, genre_vocabulary(catalogue))
    if not text_embeddings_available(settings):
        return genres
    content = content_features(store, catalogue["item_id"].tolist(), as_of).set_index("item_id")
    text = content["text_embedding"].reindex(catalogue["item_id"])
    width = len(next(v for v in text if v is not None and len(v)))
    vectors = np.stack([np.asarray(v, np.float32) if v is not None and len(v) else np.zeros(width, np.float32)
                        for v in text])
    return np.hstack([genres, vectors])


def build_training_data(settings: Settings) -> TrainingData:
    events = load_events(settings)
    clock = dataset_clock(events)
    catalogue = load_catalogue(settings)
    eng = engagements(events)
    split = split_time(eng, settings.holdout_share)
    store = feature_store(settings)

    # Labels: every engagement before the split that has some history behind it.
    labels = eng[eng["timestamp"] <= split].copy()
    labels = labels[labels.groupby("user_id").cumcount() > 0]
    entity = pd.DataFrame({
        "user_id": labels["user_id"].to_numpy(),
        "event_timestamp": (labels["timestamp"] - JUST_BEFORE).to_numpy(),
        "label_item": labels["item_id"].to_numpy(),
    })
    train = historical_user_features(store, entity)
    train = train[train["recent_items"].notna()].reset_index(drop=True)
    popularity = eng[eng["timestamp"] <= split]["item_id"].value_counts()
    content = item_content(settings, store, catalogue, clock)
    return TrainingData(train, build_holdout(settings, store, eng, split), catalogue, content, popularity, clock)
