"""Feature tables (as of the dataset clock) and the Feast store that serves them offline and online."""

from __future__ import annotations

import importlib
import os
import string
import sys
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import yaml

from longview.settings import Settings
from longview.store import INTERACTIONS, dataset_clock, load_catalogue, load_events

FEATURE_SERVICE = "recommender_v1"
USER_VIEW = "user_profile"
DEFINITION_MODULES = ("entities", "data_sources", "features", "feature_services")


@dataclass
class FeaturesResult:
    users: int
    items: int
    user_rows: int
    item_rows: int
    clock: str
    feature_service: str


def genre_vocabulary(catalogue: pd.DataFrame) -> list[str]:
    genres = catalogue["genres"].fillna("").str.split("|").explode()
    return sorted(g for g in genres.unique() if g)


def genre_matrix(catalogue: pd.DataFrame, vocabulary: list[str]) -> np.ndarray:
    """items x genres, one row per catalogue row, 1.0 where the item has the genre."""
    index = {g: i for i, g in enumerate(vocabulary)}
    out = np.zeros((len(catalogue), max(1, len(vocabulary))), dtype=np.float32)
    for row, genres in enumerate(catalogue["genres"].fillna("")):
        for g in genres.split("|"):
            if g in index:
                out[row, index[g]] = 1.0
    return out


def engagements(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item, session) showing interest: the first click, view, rating or purchase."""
    inter = events[events["event_type"].isin(INTERACTIONS)]
    session = inter["session_id"].fillna(inter["event_id"])
    first = ~pd.DataFrame({"u": inter["user_id"], "i": inter["item_id"], "s": session}).duplicated()
    return inter[first].sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)


def _window_counts(eng: pd.DataFrame, days: int) -> np.ndarray:
    counts = (
        eng.assign(one=1.0)
        .groupby("user_id", sort=False)
        .rolling(f"{days}D", on="timestamp")["one"]
        .sum()
    )
    return counts.reset_index(level=0, drop=True).sort_index().to_numpy().astype(np.int64)


def user_profile_table(events: pd.DataFrame, catalogue: pd.DataFrame, recent_n: int) -> pd.DataFrame:
    """A user's profile as it stood right after each of their engagements (point-in-time rows)."""
    eng = engagements(events)
    if eng.empty:
        raise ValueError("no engagement events (click, view, rating, purchase) in the event store")
    eng = eng.sort_values(["user_id", "timestamp", "event_id"], kind="stable").reset_index(drop=True)
    vocab = genre_vocabulary(catalogue)
    genres = genre_matrix(catalogue, vocab)
    item_row = {item: i for i, item in enumerate(catalogue["item_id"])}
    eng_genres = np.zeros((len(eng), genres.shape[1]), dtype=np.float32)
    known = eng["item_id"].map(item_row)
    mask = known.notna().to_numpy()
    eng_genres[mask] = genres[known[mask].astype(int).to_numpy()]

    by_user = eng.groupby("user_id", sort=False)
    taste_cum = pd.DataFrame(eng_genres).groupby(eng["user_id"].to_numpy(), sort=False).cumsum().to_numpy()
    taste = taste_cum / np.maximum(taste_cum.sum(axis=1, keepdims=True), 1e-9)

    # Dwell comes from the view events, which may follow the engagement row: use all views so far.
    views = events[events["event_type"] == "view"][["user_id", "timestamp", "value"]].sort_values("timestamp")
    views = views.assign(dwell_sum=views.groupby("user_id")["value"].cumsum(),
                         dwell_n=views.groupby("user_id").cumcount() + 1)
    dwell = pd.merge_asof(eng[["user_id", "timestamp"]].reset_index().sort_values("timestamp"),
                          views[["user_id", "timestamp", "dwell_sum", "dwell_n"]],
                          on="timestamp", by="user_id").set_index("index").sort_index()
    mean_dwell = (dwell["dwell_sum"] / dwell["dwell_n"]).fillna(0.0).to_numpy()

    prev = by_user["timestamp"].shift(1)
    days_since_prev = ((eng["timestamp"] - prev).dt.total_seconds() / 86400.0).fillna(0.0)
    day = eng["timestamp"].dt.floor("D")
    active_days = (~pd.DataFrame({"u": eng["user_id"], "d": day}).duplicated()).groupby(eng["user_id"]).cumsum()

    recent: list[list[str]] = []
    for _, items in by_user["item_id"]:
        history: list[str] = []
        for item in items:
            history.append(item)
            recent.append(history[-recent_n:])

    table = pd.DataFrame({
        "user_id": eng["user_id"].astype(str),
        "event_timestamp": eng["timestamp"],
        "recent_items": recent,
        "events_1d": _window_counts(eng, 1),
        "events_7d": _window_counts(eng, 7),
        "events_30d": _window_counts(eng, 30),
        "days_since_prev": days_since_prev.astype(np.float32),
        "active_days": active_days.to_numpy().astype(np.int64),
        "mean_dwell": mean_dwell.astype(np.float32),
        "taste": [row.astype(np.float32).tolist() for row in taste],
    })
    # Two engagements at the same instant: keep the later row (it has seen both).
    table = table.drop_duplicates(["user_id", "event_timestamp"], keep="last")
    table["created_timestamp"] = table["event_timestamp"]
    return table.reset_index(drop=True)


def item_profile_table(events: pd.DataFrame, catalogue: pd.DataFrame, clock: pd.Timestamp) -> pd.DataFrame:
    """Each item's popularity at the end of every day it was active in the last 30 days."""
    eng = engagements(events)
    day = eng["timestamp"].dt.floor("D")
    counts = pd.crosstab(day, eng["item_id"]).sort_index()
    full_days = pd.date_range(counts.index.min(), clock.floor("D"), freq="D", tz="UTC")
    counts = counts.reindex(full_days, fill_value=0)
    pop7 = counts.rolling(7, min_periods=1).sum().stack()
    pop30 = counts.rolling(30, min_periods=1).sum().stack()
    table = pd.DataFrame({"popularity_7d": pop7, "popularity_30d": pop30})
    table = table[table["popularity_30d"] > 0].reset_index()
    table.columns = ["day", "item_id", "popularity_7d", "popularity_30d"]
    # A day's snapshot is stamped at its end (or at the clock for the last, partial day).
    table["event_timestamp"] = (table["day"] + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).clip(upper=clock)
    release = catalogue.set_index("item_id")["release_time"] if "release_time" in catalogue else pd.Series(dtype=object)
    released = pd.to_datetime(table["item_id"].map(release), utc=True)
    table["age_days"] = ((table["event_timestamp"] - released).dt.total_seconds() / 86400.0).fillna(-1.0)
    table["created_timestamp"] = table["event_timestamp"]
    return table[["item_id", "event_timestamp", "created_timestamp", "popularity_7d", "popularity_30d", "age_days"]].astype(
        {"popularity_7d": np.int64, "popularity_30d": np.int64, "age_days": np.float32})


def repo_config(settings: Settings):
    """The profile's feature_store.yaml, filled in from the settings."""
    from feast import RepoConfig

    name = "feature_store.yaml" if settings.profile == "embedded" else "feature_store.production.yaml"
    text = (settings.feature_repo_dir / name).read_text()
    values = {
        "LONGVIEW_HOME": str(settings.home),
        "LONGVIEW_FEAST_REGISTRY_URL": settings.postgres_url.rsplit("/", 1)[0] + "/feast",
        "LONGVIEW_REDIS_URL": settings.redis_url,
    }
    raw = yaml.safe_load(string.Template(text).substitute(values))
    return RepoConfig(repo_path=settings.feature_repo_dir, **raw)


def feature_store(settings: Settings):
    from feast import FeatureStore

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings))


def load_definitions(settings: Settings) -> list:
    """Import the feature repo's modules afresh for this data home (its sources point into it)."""
    from feast import Entity, FeatureService, FeatureView, FileSource

    repo = str(settings.feature_repo_dir)
    for name in DEFINITION_MODULES:
        sys.modules.pop(name, None)
    previous = os.environ.get("LONGVIEW_HOME")
    os.environ["LONGVIEW_HOME"] = str(settings.home)  # data_sources.py reads the settings
    sys.path.insert(0, repo)
    try:
        modules = [importlib.import_module(name) for name in DEFINITION_MODULES]
    finally:
        sys.path.remove(repo)
        if previous is None:
            os.environ.pop("LONGVIEW_HOME", None)
        else:
            os.environ["LONGVIEW_HOME"] = previous
    objects: list = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, (Entity, FileSource, FeatureView, FeatureService)) and value not in objects:
                objects.append(value)
    return objects


def write_feature_tables(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    events = load_events(settings)
    clock = dataset_clock(events)
    catalogue = load_catalogue(settings)
    if catalogue.empty:
        raise ValueError("the item catalogue is empty: ingest it first (longview ingest items.csv --table items)")
    users = user_profile_table(events, catalogue, settings.recent_items)
    items = item_profile_table(events, catalogue, clock)
    settings.features_dir.mkdir(parents=True, exist_ok=True)
    users.to_parquet(settings.features_dir / "user_profile.parquet", index=False)
    items.to_parquet(settings.features_dir / "item_profile.parquet", index=False)
    return users, items, clock


def build_features(settings: Settings) -> FeaturesResult:
    """Compute the feature tables, apply the Feast repo and materialise up to the dataset clock."""
    users, items, clock = write_feature_tables(settings)
    store = feature_store(settings)
    store.apply(load_definitions(settings))
    ttl = timedelta(days=365)
    store.materialize(start_date=(clock - ttl).to_pydatetime(), end_date=(clock + timedelta(seconds=1)).to_pydatetime())
    return FeaturesResult(
        users=int(users["user_id"].nunique()), items=int(items["item_id"].nunique()),
        user_rows=len(users), item_rows=len(items), clock=clock.isoformat(), feature_service=FEATURE_SERVICE,
    )


def online_user_features(store, user_ids: list[str]) -> dict[str, list]:
    """The serving feature set for these users, read from the online store."""
    service = store.get_feature_service(FEATURE_SERVICE)
    return store.get_online_features(features=service, entity_rows=[{"user_id": u} for u in user_ids]).to_dict()


def historical_user_features(store, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time correct join of the user profile onto (user_id, event_timestamp) rows."""
    service = store.get_feature_service(FEATURE_SERVICE)
    return store.get_historical_features(entity_df=entity_df, features=service).to_df()

