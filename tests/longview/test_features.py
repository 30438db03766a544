"""The real Feast repo: apply, materialise, online reads and point-in-time joins."""

from __future__ import annotations

import pandas as pd
import pytest

from longview import pipeline
from longview.features import FEATURE_SERVICE, feature_store, historical_user_features, online_user_features


@pytest.fixture
def featured(home, monkeypatch):
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_USERS", "40")
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_DAYS", "20")
    from longview.settings import get_settings

    settings = get_settings()
    pipeline.generate_synthetic(settings)
    pipeline.ingest_landing(settings)
    result = pipeline.build_features(settings)
    table = pd.read_parquet(settings.features_dir / "user_profile.parquet")
    return settings, result, table


def test_apply_materialise_and_read_online(featured):
    settings, result, table = featured
    assert result.feature_service == FEATURE_SERVICE
    store = feature_store(settings)
    assert {fv.name for fv in store.list_feature_views()} == {"user_profile", "item_profile"}
    latest = table.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    user = latest.index[0]
    online = online_user_features(store, [user, "nobody-here"])
    assert online["recent_items"][0] == list(latest.loc[user, "recent_items"])
    assert online["events_30d"][0] == latest.loc[user, "events_30d"]
    assert online["recent_items"][1] is None, "an unknown user has no features, not someone else's"


def test_materialisation_uses_the_dataset_clock_not_the_wall_clock(featured):
    settings, result, table = featured
    clock = pd.Timestamp(result.clock)
    assert clock.year == 2024, "synthetic data lives in 2024; the clock must come from the data"
    from longview.store import load_events

    assert clock == load_events(settings)["timestamp"].max()
    assert clock >= table["event_timestamp"].max()


def test_historical_join_does_not_leak_later_values(featured):
    settings, _, table = featured
    rows = table.sort_values("event_timestamp")
    user = rows.groupby("user_id").size().idxmax()
    mine = rows[rows["user_id"] == user].reset_index(drop=True)
    first, second = mine.iloc[0], mine.iloc[1]
    between = first["event_timestamp"] + (second["event_timestamp"] - first["event_timestamp"]) / 2
    entity = pd.DataFrame({"user_id": [user, user], "event_timestamp": [between, mine["event_timestamp"].max()]})
    joined = historical_user_features(feature_store(settings), entity).sort_values("event_timestamp")
    assert list(joined["recent_items"].iloc[0]) == list(first["recent_items"])
    assert len(joined["recent_items"].iloc[1]) >= len(joined["recent_items"].iloc[0])
    assert list(joined["recent_items"].iloc[1]) == list(mine.iloc[-1]["recent_items"])


def test_user_profile_counts_are_consistent(featured):
    _, _, table = featured
    assert (table["events_1d"] <= table["events_7d"]).all()
    assert (table["events_7d"] <= table["events_30d"]).all()
    assert (table["days_since_prev"] >= 0).all()
    assert table["recent_items"].map(len).between(1, 20).all()
    taste = pd.DataFrame(table["taste"].tolist())
    assert ((taste.sum(axis=1) - 1).abs() < 1e-4).all()
