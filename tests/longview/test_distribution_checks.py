"""Distribution checks catch a broken feed (the whole batch fails) yet pass clean, bursty real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longview.ingestion import BatchRejected, as_text, ingest_frame
from longview.store import load_events
from tests.conftest import real_data

ML100K = "ml-100k"


def feed(n: int, users: int, items: int, start: str, days: int, seed: int = 0, prefix: str = "e") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(rng.uniform(0, days * 86400, n), unit="s")
    return as_text(pd.DataFrame({
        "event_id": [f"{prefix}{k}" for k in range(n)],
        "user_id": [f"u{k}" for k in rng.integers(0, users, n)],
        "item_id": [f"i{k}" for k in rng.integers(0, items, n)],
        "event_type": "click",
        "timestamp": times,
        "value": np.nan,
        "session_id": "s",
    }))


def test_one_user_flooding_the_feed_fails_the_batch(home):
    batch = feed(2000, 500, 300, "2024-01-01", 10)
    batch.loc[: 1199, "user_id"] = "u-bot"
    with pytest.raises(BatchRejected, match="one user takes an impossible share"):
        ingest_frame(home, batch, "events")
    assert load_events(home).empty


def test_one_item_flooding_the_feed_fails_the_batch(home):
    batch = feed(2000, 500, 300, "2024-01-01", 10)
    batch.loc[: 999, "item_id"] = "i-stuck"
    with pytest.raises(BatchRejected, match="one item takes an impossible share"):
        ingest_frame(home, batch, "events")


@pytest.mark.slow
def test_a_day_far_above_recent_history_fails_the_batch(home):
    history = feed(3000, 500, 300, "2024-01-01", 30)  # ~100 events a day
    assert ingest_frame(home, history, "events").accepted == 3000
    burst = feed(40_000, 5000, 3000, "2024-02-01", 1, seed=1, prefix="b")  # 400x a normal day
    with pytest.raises(BatchRejected, match="a day's volume is far above"):
        ingest_frame(home, burst, "events")
    normal = feed(1500, 500, 300, "2024-02-01", 14, seed=2, prefix="n")
    assert ingest_frame(home, normal, "events").accepted == 1500


def test_small_batches_are_not_judged_by_their_distribution(home):
    batch = feed(50, 1, 1, "2024-01-01", 1)
    assert ingest_frame(home, batch, "events").accepted == 50


@pytest.mark.slow
def test_clean_bursty_movielens_passes_in_chronological_halves(home):
    from longview import datasets

    tables = datasets.load(ML100K, real_data(ML100K))
    events = tables.events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    scale = {"rating_min": 1.0, "rating_max": 5.0}
    half = len(events) // 2
    first = ingest_frame(home, events.iloc[:half], "events", parameters=scale)
    second = ingest_frame(home, events.iloc[half:], "events", parameters=scale)
    assert (first.quarantined, second.quarantined) == (0, 0)
    assert first.accepted + second.accepted == 100_000
