"""Sequences and the two protocols' splits, from event-store rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longview.settings import get_settings
from training.sequences import loo_split, ordered_engagements, positive_engagement, temporal_split

T0 = pd.Timestamp("2020-01-01", tz="UTC")


def events(rows):
    """rows: (user, item, hours after T0, event_type, value)."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "hours", "event_type", "value"])
    frame["timestamp"] = T0 + pd.to_timedelta(frame.pop("hours"), unit="h")
    frame["event_id"] = [f"e{n}" for n in range(len(frame))]
    frame["session_id"] = None
    return frame


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    return get_settings()


def test_positive_engagement_follows_the_settings(settings):
    frame = events([("u", "a", 0, "rating", 5.0), ("u", "b", 1, "rating", 3.0), ("u", "c", 2, "click", None),
                    ("u", "d", 3, "view", 10.0), ("u", "e", 4, "view", 45.0), ("u", "f", 5, "purchase", None),
                    ("u", "g", 6, "rating", None)])
    assert positive_engagement(frame, settings).tolist() == [True, False, True, False, True, True, False]
    lenient = settings.model_copy(update={"positive_min_rating": 3.0, "positive_min_dwell_seconds": 5.0})
    assert positive_engagement(frame, lenient).tolist()[:4] == [True, True, True, True]


def test_loo_holds_out_the_last_two_positives(settings):
    frame = events([("u1", "a", 0, "rating", 5), ("u1", "b", 1, "rating", 4), ("u1", "c", 2, "rating", 5),
                    ("u1", "d", 3, "rating", 1),  # negative: input, never a target
                    ("u1", "e", 4, "rating", 4),
                    ("u2", "a", 0, "rating", 5)])  # too short to hold anything out: trains whole
    split = loo_split(frame, ["a", "b", "c", "d", "e"], settings, real_time=True)
    idx = {item: n + 1 for n, item in enumerate("abcde")}
    assert split.test.users == ["u1"] and split.validation.users == ["u1"]
    assert split.test.truth[0].tolist() == [idx["e"]]
    assert split.test.queries.histories[0].tolist() == [idx[i] for i in "abcd"]
    assert split.validation.truth[0].tolist() == [idx["c"]]
    assert split.validation.queries.histories[0].tolist() == [idx["a"], idx["b"]]
    assert [s.tolist() for s in split.train.sequences] == [[idx["a"], idx["b"]], [idx["a"]]]
    assert split.test.queries.now[0] == (T0 + pd.Timedelta(hours=4)).value / 1e9


def test_same_instant_events_are_not_ordered_by_item_id(settings):
    """Ties get a seeded hash order of item and time: over many instants, the item with the lower id
    comes last about half the time (ordering by id would put it first every time)."""
    rows = []
    for u in range(200):
        rows += [(f"u{u}", "i1", u, "click", None), (f"u{u}", "i2", u, "click", None)]
    eng = ordered_engagements(events(rows), settings)
    last = eng.groupby("user_id")["item_id"].last()
    assert 0.3 < (last == "i1").mean() < 0.7


def test_the_order_of_ties_does_not_depend_on_the_stored_ids(settings):
    """Stored user and event ids are pseudonyms that differ between data homes: the same data must
    still give the same sequences."""
    rows = [(f"u{u}", f"i{n}", u, "click", None) for u in range(50) for n in range(4)]
    first = events(rows)
    renamed = first.assign(user_id="p" + first["user_id"], event_id="x" + first["event_id"].str[::-1])
    a = ordered_engagements(first, settings).groupby("user_id")["item_id"].agg(list)
    b = ordered_engagements(renamed, settings).groupby("user_id")["item_id"].agg(list)
    assert a.tolist() == b.tolist()


def test_temporal_split_asks_for_new_positive_items_after_the_split(settings):
    rows = []
    for u in range(10):  # hours 0, 1 before the validation time (4.2 h), 5 before the split (8.5 h)
        rows += [(f"u{u}", "a", 0, "click", None), (f"u{u}", "b", 1, "click", None), (f"u{u}", "c", 5, "click", None)]
    rows += [("u0", "a", 10, "click", None), ("u0", "d", 11, "click", None), ("u0", "e", 12, "rating", 1.0)]
    rows += [("late", "d", 11, "click", None)]  # first seen after the split: a cold start, not in the holdout
    settings = settings.model_copy(update={"holdout_share": 0.1, "validation_share": 0.3})
    split = temporal_split(events(rows), ["a", "b", "c", "d", "e"], settings)
    assert split.test.users == ["u0"]
    assert split.test.truth[0].tolist() == [4], "d only: a was seen before, e was rated 1"
    assert split.test.queries.histories[0].tolist() == [1, 2, 3]
    # Validation asks the same question one window earlier: what users did between the two times.
    assert split.validation.users == [f"u{u}" for u in range(10)] and "late" not in split.validation.users
    assert all(t.tolist() == [3] for t in split.validation.truth)
    assert all(h.tolist() == [1, 2] for h in split.validation.queries.histories)
    assert split.validation.queries.now[0] < split.test.queries.now[0] == split.split_time.value / 1e9
    # Models train before the validation time, then are refit on everything before the split.
    assert all(s.tolist() == [1, 2] for s in split.train.sequences)
    assert all(s.tolist() == [1, 2, 3] for s in split.refit.sequences) and split.known is split.refit
    repeats = settings.model_copy(update={"exclude_seen": False})
    assert temporal_split(events(rows), list("abcde"), repeats).test.truth[0].tolist() == [1, 4]
    narrow = settings.model_copy(update={"validation_share": 0.05})
    with pytest.raises(ValueError, match="validation window is empty"):
        temporal_split(events(rows), list("abcde"), narrow)
    with pytest.raises(ValueError, match="add up to less than 1"):
        temporal_split(events(rows), list("abcde"), settings.model_copy(update={"validation_share": 0.95}))


def test_splits_say_when_there_is_nothing_to_hold_out(settings):
    frame = events([("u", "a", 0, "click", None)])
    with pytest.raises(ValueError, match="at least two positive"):
        loo_split(frame, ["a"], settings, real_time=True)
    with pytest.raises(ValueError, match="holdout is empty"):
        temporal_split(frame, ["a"], settings)


def test_items_missing_from_the_catalogue_are_still_indexed(settings):
    frame = events([("u", "a", 0, "click", None), ("u", "zz", 1, "click", None), ("u", "a2", 2, "click", None)])
    split = loo_split(frame, ["a", "a2"], settings, real_time=False)
    assert split.train.item_ids == ["a", "a2", "zz"] and split.test.queries.now is None
    assert np.array_equal(split.test.truth[0], [2])
