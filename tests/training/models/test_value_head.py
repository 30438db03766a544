"""The long-term value head: labels from visits, the survival loss, forecasts, and the head trained
with the sequence encoder on a world where what users consume decides whether they come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from training.models import Interactions, Queries
from training.models.sequence import SequenceModel
from training.models.value_head import (
    ValueHead,
    bin_edges,
    forecast,
    returns_after,
    survival_loss,
    survival_targets,
    value_anchors,
)

DAY = 86_400.0


def test_bin_edges_hold_h_and_end_at_the_horizon():
    edges = bin_edges(4.0, 20.0)
    assert edges[0] == 0.0 and edges[-1] == 20.0 and 4.0 in edges
    assert np.all(np.diff(edges) > 0)
    with pytest.raises(ValueError, match="at most horizon_days"):
        bin_edges(40.0, 30.0)


def test_returns_are_measured_from_each_visit_end_and_the_last_is_censored():
    times = np.array([0.0, 60.0, 2 * DAY, 2 * DAY + 60, 10 * DAY])
    visits = np.array([True, False, True, False, True])
    ends, days, returned = returns_after(times, visits, observed_until=12 * DAY)
    assert ends.tolist() == [1, 3, 4]
    assert days == pytest.approx([(2 * DAY - 60) / DAY, (8 * DAY - 60) / DAY, 2.0])
    assert returned.tolist() == [True, True, False]


def test_survival_targets_censor_past_the_horizon_and_mid_bin():
    edges = bin_edges(7.0, 30.0)
    bins, event = survival_targets(np.array([0.5, 6.0, 45.0, 12.0]), np.array([True, True, True, False]), edges)
    last = len(edges) - 1
    assert bins.tolist()[:3] == [0, int(np.searchsorted(edges, 6.0, side="right") - 1), last]
    assert event.tolist() == [True, True, False, False]  # a return after the horizon counts as "not back by then"


def test_survival_loss_rewards_the_right_bin():
    bins, events = torch.tensor([2]), torch.tensor([True])
    right = torch.full((1, 5), -3.0)
    right[0, 2] = 3.0
    wrong = torch.full((1, 5), -3.0)
    wrong[0, 0] = 3.0
    assert survival_loss(right, bins, events) < survival_loss(wrong, bins, events)
    # censored at bin 2: only surviving bins 0 and 1 counts, whatever bin 2 says
    a, b = torch.full((1, 5), -3.0), torch.full((1, 5), -3.0)
    b[0, 2:] = 3.0
    assert survival_loss(a, bins, torch.tensor([False])) == pytest.approx(float(survival_loss(b, bins, torch.tensor([False]))))


@hypothesis_settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=4, max_size=4), st.integers(0, 4), st.booleans())
def test_survival_loss_is_a_finite_negative_log_likelihood(logits, bin_, event):
    loss = survival_loss(torch.tensor([logits]), torch.tensor([bin_]), torch.tensor([event]))
    assert torch.isfinite(loss) and float(loss) >= 0.0


def test_forecast_follows_from_the_hazards():
    edges = bin_edges(7.0, 30.0)
    hazards = torch.tensor([[0.1] * (len(edges) - 1), [0.5] * (len(edges) - 1)])
    survival = ValueHead.survival(torch.logit(hazards))
    result = forecast(survival, edges, 7.0)
    bins_to_h = int(np.searchsorted(edges, 7.0))
    assert result.within == pytest.approx([1 - 0.9 ** bins_to_h, 1 - 0.5 ** bins_to_h], rel=1e-5)
    assert result.expected_days[1] < result.expected_days[0] <= 30.0


def visit_world(users: int, items: int, seed: int, draw, gap_days) -> Interactions:
    """Six visits of three items per user (``draw(rng, user)`` picks each), the next visit
    ``gap_days(user, last item)`` days later (+-20%); each user's last visit is followed by 40 days
    of silence (a censored visit)."""
    rng = np.random.default_rng(seed)
    sequences, times, visits = [], [], []
    for user in range(users):
        t, seq, ts, vs = 1_000_000.0, [], [], []
        for _visit in range(6):
            for j in range(3):
                seq.append(int(draw(rng, user)))
                ts.append(t + 60.0 * j)
                vs.append(j == 0)
            t += DAY * gap_days(user, seq[-1]) * rng.uniform(0.8, 1.2)
        sequences.append(np.array(seq, dtype=np.int64))
        times.append(np.array(ts))
        visits.append(np.array(vs))
    return Interactions([f"i{n}" for n in range(1, items + 1)], sequences, [np.ones(len(s), bool) for s in sequences],
                        times, visits=visits, observed_until=np.array([t[-1] + 40 * DAY for t in times]))


def returning_world(users: int = 120, items: int = 30, seed: int = 0) -> Interactions:
    """Users of items 1-15 come back half a day after each visit, users of items 16-30 after 20 days."""
    def draw(rng, user):
        return rng.integers(1, 16) if user % 2 == 0 else rng.integers(16, items + 1)
    return visit_world(users, items, seed, draw, lambda user, _last: 0.5 if user % 2 == 0 else 20.0)


def fit_with_head(world: Interactions, home) -> tuple[SequenceModel, object, object]:
    """A brief sequence model with a value head on ``world``: (model, settings, fit report)."""
    from longview.settings import get_settings

    settings = get_settings(home=home, sequence={"dim": 16, "ensemble": 1, "epochs": 10, "dropout": 0.0, "max_len": 8,
                                                 "batch_size": 16, "learning_rate": 0.01, "time_signals": False})
    model = SequenceModel()
    report = model.fit(world, settings, progress=False)
    return model, settings, report


def visit_end_queries(data: Interactions, position: int) -> Queries:
    now = np.array([t[position] for t in data.times])
    return Queries([s[:position + 1] for s in data.sequences], now, now.copy())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, _, report = fit_with_head(returning_world(), tmp_path_factory.mktemp("home"))
    return model, report


def test_the_head_learns_who_comes_back_on_new_users(trained):
    model, report = trained
    test = returning_world(40, seed=1)
    sticky = np.arange(40) % 2 == 0
    # Visit ends after which these users do come back; every history is cut there, as at a request.
    # (In this world everyone leaves after the sixth visit, and the head learns that too: position 17.)
    for position in (5, 8, 14):
        result = model.forecast_returns(visit_end_queries(test, position))
        assert roc_auc_score(sticky, result.within) > 0.95
        # calibrated enough to act on: the sticky users are likely back within a week, the others not
        assert result.within[sticky].mean() > 0.6 and result.within[~sticky].mean() < 0.2
        assert result.expected_days[sticky].mean() < result.expected_days[~sticky].mean()
    assert any(note.startswith("value head of network 1: fitted on 720 visits") for note in report.notes)


def test_the_head_survives_a_save_and_restore(trained):
    model, _ = trained
    queries = visit_end_queries(returning_world(10, seed=2), 8)
    again = SequenceModel.restore(model.config(), model.tensors())
    assert again.forecast_returns(queries).within == pytest.approx(model.forecast_returns(queries).within, abs=1e-6)
    assert model.config()["value"]["return_days"] == 7.0


def test_no_head_without_real_time_or_when_switched_off(trained, tmp_path):
    from longview.settings import get_settings

    model, _ = trained
    assert model.forecast_returns(Queries([np.array([1, 2])])) is None  # a request without a time
    world = returning_world(30)
    settings = get_settings(home=tmp_path, value={"enabled": False},
                            sequence={"dim": 8, "ensemble": 1, "epochs": 1, "max_len": 8, "time_signals": False})
    off = SequenceModel()
    off.fit(world, settings, progress=False)
    assert off.forecast_returns(visit_end_queries(world, 5)) is None and off.config()["value"] is None
    ordinal = Interactions(world.item_ids, world.sequences, world.positive)
    blind = SequenceModel()
    blind.fit(ordinal, settings.model_copy(update={"value": settings.value.model_copy(update={"enabled": True})}),
              progress=False)
    assert blind.value is None


def test_anchors_read_the_profile_just_after_the_visit():
    world = returning_world(2)
    width = 3
    world.profiles = [np.arange(len(s) * width, dtype=np.float32).reshape(len(s), width) for s in world.sequences]
    world.final_profiles = np.full((2, width), -1.0, dtype=np.float32)
    edges = bin_edges(7.0, 30.0)
    (anchors, _) = value_anchors(world, [0, 1], edges, width)
    assert anchors.positions.tolist() == [2, 5, 8, 11, 14, 17]
    # the profile stored at position p is the one just before event p: after event 2 it is row 3's
    assert anchors.features[0, -width:].tolist() == world.profiles[0][3].tolist()
    assert anchors.features[-1, -width:].tolist() == [-1.0] * width  # after the last event: the final profile
    assert anchors.returned.tolist() == [True] * 5 + [False]


def test_refit_fits_the_head_again_on_the_returns_seen_since(trained):
    """Brought up to the split, the head learns from the newer returns: in this world the item
    halves swap behaviour, and the refitted head follows."""
    model, _ = trained
    model = SequenceModel.restore(model.config(), model.tensors())
    swapped = returning_world(120, seed=3)
    for user, seq in enumerate(swapped.sequences):  # even users now consume the far-returning half, odd the sticky
        swapped.sequences[user] = np.where(seq <= 15, seq + 15, seq - 15)
    queries = visit_end_queries(returning_world(40, seed=1), 8)
    before = model.forecast_returns(queries).within
    from longview.settings import get_settings

    model.refit(swapped, get_settings(value={"head_steps": 1000}))
    after = model.forecast_returns(queries).within
    sticky = np.arange(40) % 2 == 0
    assert before[sticky].mean() > before[~sticky].mean() and after[sticky].mean() < after[~sticky].mean()


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), max_size=12), min_size=1, max_size=5),
       st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e12, 1e12)), min_size=5, max_size=5))
def test_forecasts_are_probabilities_whatever_the_request(trained, histories, times):
    """Padding ids, empty histories and times that are no time at all (NaN, infinite, far off):
    a chance between 0 and 1 and a finite expected wait, never NaN."""
    model, _ = trained
    queries = Queries([np.array(h, dtype=np.int64).clip(0, 30) for h in histories], np.array(times[:len(histories)]),
                      np.array(times[:len(histories)]))
    result = model.forecast_returns(queries)
    assert np.all((result.within >= 0) & (result.within <= 1))
    assert np.all(np.isfinite(result.expected_days)) and np.all(result.expected_days <= 30.0)
