"""Evaluating the long-term value head: visits and their returns from sequences, the churn
baseline, the metrics and their paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.long_term_value import (
    BASELINE_FIELDS,
    ReturnBaseline,
    Visits,
    compare,
    concordance,
    paired_bootstrap,
    return_auc,
    visit_ends_between,
)
from training.models import Queries
from training.models.base import PROFILE_FIELDS
from training.models.value_head import ReturnForecast, bin_edges
from training.sequences import UserSequence, visit_starts

DAY = 86_400.0


def user(name: str, times: list[float], visits: list[bool]) -> UserSequence:
    n = len(times)
    return UserSequence(name, np.arange(1, n + 1), np.ones(n, bool), np.asarray(times, dtype=float),
                        np.asarray(visits, dtype=bool))


def profiles_at(log: list):
    """A profile source that records what it was asked and answers with the time as every field."""
    def source(users, seconds):
        log.append((list(users), np.asarray(seconds)))
        return np.repeat(np.asarray(seconds, dtype=np.float32)[:, None], len(PROFILE_FIELDS) + 2, axis=1)
    return source


def test_visit_starts_follow_sessions_or_silence():
    t = pd.to_datetime([0, 60, 7200, 7260, 0, 4000], unit="s", utc=True)
    eng = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b", "b"], "timestamp": t,
                        "session_id": ["s1", "s1", "s1", "s2", None, None]})
    # a's third event is two hours later but in the same session; b has no sessions: silence decides
    assert visit_starts(eng).tolist() == [True, False, False, True, True, True]


def test_visits_in_a_window_see_returns_only_up_to_its_end():
    log: list = []
    a = user("a", [0, 60, 3 * DAY, 3 * DAY + 60, 20 * DAY], [True, False, True, False, True])
    visits = visit_ends_between([a], start=DAY, stop=30 * DAY, until=10 * DAY, profiles=profiles_at(log))
    # the visit ending at 3 days is in the window; the one at 20 days happened after `until`: unseen
    assert visits.users == ["a"] and visits.queries.histories[0].tolist() == [1, 2, 3, 4]
    assert visits.days == pytest.approx([7.0 - 60 / DAY]) and visits.returned.tolist() == [False]
    assert log[0][1].tolist() == [3 * DAY + 60 + 1.0]  # the profile just after the visit's last event
    later = visit_ends_between([a], start=0, stop=30 * DAY, until=30 * DAY, profiles=profiles_at([]))
    assert later.returned.tolist() == [True, True, False] and later.days[-1] == pytest.approx(10.0)


def test_return_within_h_is_known_only_when_seen_or_watched_long_enough():
    v = Visits(["a", "b", "c", "d"], Queries([np.array([1])] * 4), np.array([2.0, 9.0, 3.0, 8.0]),
               np.array([True, True, False, False]))
    known, label = v.within(7.0)
    assert known.tolist() == [True, True, False, True] and label.tolist() == [True, False, False, False]


def baseline_visits(n: int, seed: int) -> Visits:
    """Visits whose return within 7 days follows the 7-day activity (the profile's log count)."""
    rng = np.random.default_rng(seed)
    profiles = rng.normal(size=(n, len(PROFILE_FIELDS))).astype(np.float32)
    active = profiles[:, PROFILE_FIELDS.index("events_7d")]
    days = np.where(active + rng.normal(scale=0.5, size=n) > 0, 2.0, 15.0)
    return Visits([f"u{i % 50}" for i in range(n)], Queries([np.array([1])] * n, profiles=profiles), days,
                  np.ones(n, dtype=bool))


def test_the_baseline_learns_from_recency_and_frequency():
    assert "events_7d" in BASELINE_FIELDS and "last_return_gap" in BASELINE_FIELDS
    baseline = ReturnBaseline(7.0).fit(baseline_visits(400, 0))
    test = baseline_visits(200, 1)
    known, label = test.within(7.0)
    assert return_auc(label[known], baseline.within(test)[known]) > 0.85


def test_the_baseline_refuses_visits_that_all_end_alike():
    same = baseline_visits(50, 0)
    same.days[:] = 2.0
    with pytest.raises(ValueError, match="both did and did not come back within 7 days"):
        ReturnBaseline(7.0).fit(same)
    no_profiles = Visits(["a"], Queries([np.array([1])]), np.array([1.0]), np.array([True]))
    with pytest.raises(ValueError, match="without user profiles"):
        no_profiles.baseline_features()


def test_concordance_orders_times_and_truncates_at_the_horizon():
    days = np.array([1.0, 5.0, 10.0, 40.0])
    returned = np.array([True, True, True, True])
    assert concordance(days, returned, days, 30.0) == 1.0
    assert concordance(days, returned, -days, 30.0) == 0.0
    # past the horizon the return is censored there: 40 days ranks as "more than 30", not as 40
    assert concordance(days, returned, np.array([1.0, 5.0, 10.0, 31.0]), 30.0) == 1.0
    assert np.isnan(return_auc(np.array([True, True]), np.array([0.1, 0.2])))


def forecast_of(within: np.ndarray) -> ReturnForecast:
    edges = bin_edges(7.0, 30.0)
    return ReturnForecast(within, 30.0 * (1 - within), 7.0, 30.0, np.ones((len(within), len(edges) - 1)), edges)


@pytest.mark.slow
def test_a_clearly_better_model_is_better_beyond_the_noise():
    rng = np.random.default_rng(0)
    n = 600
    returned_soon = rng.random(n) < 0.4
    visits = Visits([f"u{i % 120}" for i in range(n)], Queries([np.array([1])] * n),
                    np.where(returned_soon, 1.0, 20.0), np.ones(n, dtype=bool))
    good = np.where(returned_soon, 0.8, 0.2) + rng.normal(scale=0.05, size=n)
    report = compare(forecast_of(good), rng.random(n), visits, samples=200, seed=0)
    assert report.auc["model"] > 0.95 and abs(report.auc["baseline"] - 0.5) < 0.1
    assert report.intervals["auc"]["difference"][0] > 0 and "better" in report.lines()[1]
    assert report.users == 120 and report.known == n
    lo, hi = report.intervals["concordance"]["model"]
    assert lo <= report.concordance["model"] <= hi


def test_paired_bootstrap_of_identical_scores_is_a_zero_difference():
    groups = [np.array([i, i + 1]) for i in range(0, 20, 2)]
    values = np.linspace(0, 1, 20)
    metric = lambda idx: float(values[idx].mean())  # noqa: E731
    ci = paired_bootstrap(groups, metric, metric, samples=100, seed=0)
    assert ci["difference"] == (0.0, 0.0) and ci["model"][0] < values.mean() < ci["model"][1]
