"""Point-in-time training and holdout sets, with user features joined by Feast."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from longview.feature_store import feature_store, historical_user_features
from longview.features import engagements
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
    return TrainingData(train, build_holdout(settings, store, eng, split), catalogue, popularity, clock)
