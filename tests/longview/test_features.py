"""The feature tables: user and content profiles computed from the event store, as of each row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longview.features import keep_superseded, user_history_table, user_profile_table


def test_user_profile_counts_are_consistent(featured):
    settings, _ = featured
    table = pd.read_parquet(settings.features_dir / "user_profile.parquet")
    assert (table["events_1d"] <= table["events_7d"]).all()
    assert (table["events_7d"] <= table["events_30d"]).all()
    assert (table["days_since_prev"] >= 0).all()
    assert (table["last_return_gap"] >= 0).all() and (table["mean_return_gap"] >= 0).all()
    assert (table["mean_session_depth"] >= 1).all()
    assert table["recent_items"].map(len).between(1, 20).all()
    taste = pd.DataFrame(table["taste"].tolist())
    assert ((taste.sum(axis=1) - 1).abs() < 1e-4).all()
    assert (table["created_timestamp"] >= table["event_timestamp"]).all()


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(user, item, session, time) rows as stored events, all arrived on time."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "session_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["event_id"] = [f"e{n}" for n in range(len(frame))]
    frame["event_type"] = "click"
    frame["value"] = np.nan
    frame["arrived_at"] = frame["timestamp"]
    return frame


def test_activity_counts_cover_each_users_own_past_window():
    """Counts restart with every user and cover (time - window, time]."""
    events = _events([
        ("a", "i1", "s1", "2024-03-01T10:00"), ("a", "i2", "s1", "2024-03-01T11:00"),
        ("a", "i3", "s2", "2024-03-05T10:00"), ("a", "i4", "s3", "2024-04-10T10:00"),
        ("b", "i1", "s4", "2024-02-01T10:00"), ("b", "i2", "s4", "2024-02-01T10:30"),
    ])
    catalogue = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "genres": ["X"] * 4})
    table = user_profile_table(events, catalogue, 20).set_index(["user_id", "event_timestamp"]).sort_index()
    assert table.loc["a", "events_1d"].tolist() == [1, 2, 1, 1]
    assert table.loc["a", "events_7d"].tolist() == [1, 2, 3, 1]
    assert table.loc["a", "events_30d"].tolist() == [1, 2, 3, 1]
    assert table.loc["b", "events_30d"].tolist() == [1, 2]
    assert table.loc["a", "active_days"].tolist() == [1, 1, 2, 3]


def test_return_gaps_and_session_depth_follow_the_sessions():
    events = _events([
        ("a", "i1", "s1", "2024-03-01T10:00"), ("a", "i2", "s1", "2024-03-01T10:05"),
        ("a", "i3", "s2", "2024-03-03T10:05"),  # back after 2 days
        ("a", "i4", "s3", "2024-03-09T10:05"), ("a", "i5", "s3", "2024-03-09T10:10"),  # after 6 days
    ])
    catalogue = pd.DataFrame({"item_id": [f"i{n}" for n in range(1, 6)], "genres": "drama"})
    table = user_profile_table(events, catalogue, recent_n=3)
    assert table["last_return_gap"].tolist() == pytest.approx([0, 0, 2, 6, 6])
    assert table["mean_return_gap"].tolist() == pytest.approx([0, 0, 2, 4, 4])
    assert table["mean_session_depth"].tolist() == pytest.approx([1, 2, 1.5, 4 / 3, 5 / 3])
    assert table["recent_items"].iloc[-1] == ["i3", "i4", "i5"]
    assert table["last_event_epoch"].iloc[-1] == pd.Timestamp("2024-03-09T10:10", tz="UTC").timestamp()


def test_late_events_make_new_versions_and_old_ones_stay():
    catalogue = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "genres": "drama"})
    on_time = _events([("a", "i1", "s1", "2024-03-01T10:00"), ("a", "i2", "s2", "2024-03-05T10:00")])
    before = user_profile_table(on_time, catalogue, 5)
    late = _events([("a", "i3", "s9", "2024-03-03T10:00")]).assign(
        event_id="late", arrived_at=pd.Timestamp("2024-03-06T00:00", tz="UTC"))
    after = user_profile_table(pd.concat([on_time, late], ignore_index=True), catalogue, 5)
    # The late event changes the 03-05 row, which is now known only from the late arrival on.
    row = after.set_index("event_timestamp").loc[pd.Timestamp("2024-03-05T10:00", tz="UTC")]
    assert row["recent_items"] == ["i1", "i3", "i2"]
    assert row["created_timestamp"] == pd.Timestamp("2024-03-06T00:00", tz="UTC")
    versions = keep_superseded(before, after, ["user_id", "event_timestamp"])
    at_0305 = versions[versions["event_timestamp"] == pd.Timestamp("2024-03-05T10:00", tz="UTC")]
    assert [list(r) for r in at_0305["recent_items"]] == [["i1", "i2"], ["i1", "i3", "i2"]]
    # Rebuilding with nothing new keeps exactly the same versions.
    again = keep_superseded(versions, after, ["user_id", "event_timestamp"])
    assert len(again) == len(versions) == len(after) + 1


def test_user_history_holds_every_item_once_per_user_at_the_last_engagement():
    events = _events([("a", f"i{n}", f"s{n}", f"2024-03-{1 + n:02d}T10:00") for n in range(25)]
                     + [("b", "i7", "s1", "2024-03-02T10:00"), ("b", "i8", "s1", "2024-03-02T10:00"),
                        ("b", "i9", "s2", "2024-03-04T10:00")])
    table = user_history_table(events, seed=7).set_index("user_id")
    assert table.loc["a", "history"] == [f"i{n}" for n in range(25)], "the whole history, not the recent 20"
    assert table.loc["a", "event_timestamp"] == pd.Timestamp("2024-03-25T10:00", tz="UTC")
    # Same-instant items keep one seeded order, whatever the order they arrived in.
    assert set(table.loc["b", "history"][:2]) == {"i7", "i8"} and table.loc["b", "history"][2] == "i9"
    shuffled = user_history_table(events.sample(frac=1.0, random_state=3), seed=7).set_index("user_id")
    assert shuffled.loc["b", "history"] == table.loc["b", "history"]
