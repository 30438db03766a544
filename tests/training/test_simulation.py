"""The simulated users' mechanics: satisfaction and boredom move returns the way the model says, a
constant slate bores, a one-genre policy loses retention when repetition keeps users away, runs are
reproducible per seed, and the calibration on real visits meets its targets on held-out users."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from training.models.packaged import PackagedModel, Slot
from training.simulation import build
from training.simulation import calibration as cal
from training.simulation.calibration import DepthProcess, ReturnProcess
from training.simulation.policies import PackagedPolicy, RandomPolicy
from training.simulation.users import ChoiceModel, Population, UserModel
from training.simulation.world import Catalogue, simulate

GENRES = 4
ITEMS = [f"i{n:02d}" for n in range(40)]


def catalogue() -> Catalogue:
    shares = np.zeros((len(ITEMS), GENRES))
    shares[np.arange(len(ITEMS)), np.arange(len(ITEMS)) % GENRES] = 1.0  # item n has genre n % 4
    return Catalogue(ITEMS, shares, np.linspace(-1, 1, len(ITEMS)))


def user_model(satisfaction: float = 0.0, repetition: float = 0.0, **choice) -> UserModel:
    return UserModel(returns=ReturnProcess(log_rate=-1.5, rate_spread=0.3, shape=1.0, churn=0.05),
                     depth=DepthProcess(1.5, 0.5, 0.0), satisfaction_effect=satisfaction, repetition_effect=repetition,
                     repetition_mean=0.5, repetition_sd=0.25, choice=ChoiceModel(**choice))


def population(model: UserModel, users: int = 80, seed: int = 0) -> Population:
    """Users with random tastes; each history starts with a marker h<n> (no catalogue item)."""
    rng = np.random.default_rng(seed)
    taste = rng.dirichlet(np.ones(GENRES), users)
    return Population.of([f"u{n}" for n in range(users)], taste, [[f"h{n}"] for n in range(users)],
                         np.full(users, np.nan), model, rng)


class Fixed:
    """The same slate for everyone, every time."""

    name = "constant"

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def slate(self, history, now, last, k, seed):
        return [Slot(i, 1.0, False, 1.0) for i in self.items[:k]]


class ByUtility:
    """The user's best (or worst) unseen items by their taste and the items' quality: an oracle for
    the tests, which knows each user by the marker its history starts with (not a catalogue item)."""

    def __init__(self, name: str, pop: Population, cat: Catalogue, model: UserModel, best: bool) -> None:
        self.name, self.pop, self.cat, self.model, self.best = name, pop, cat, model, best

    def slate(self, history, now, last, k, seed):
        from training.simulation.users import utilities

        user = int(history[0][1:])
        u = utilities(self.model.choice, self.pop.taste[user], self.cat.unit, self.cat.quality,
                      np.zeros(GENRES))
        seen = set(history)
        order = np.argsort(-u if self.best else u)
        return [Slot(self.cat.item_ids[j], 0.0, False, 1.0) for j in order if self.cat.item_ids[j] not in seen][:k]


class OneGenre:
    """Only unseen items of the genre of the user's last item (their first genre to start with)."""

    def __init__(self, name: str, cat: Catalogue, same: bool) -> None:
        self.name, self.cat, self.same = name, cat, same

    def slate(self, history, now, last, k, seed):
        seen = set(history)
        genre = ITEMS.index(history[-1]) % GENRES if history[-1] in ITEMS else 0
        rng = np.random.default_rng(seed)
        pool = [i for n, i in enumerate(ITEMS) if i not in seen and ((n % GENRES == genre) == self.same
                                                                      or not self.same)]
        return [Slot(pool[j], 0.0, False, 1.0) for j in rng.permutation(len(pool))[:k]]


def run_with(policy, model: UserModel, seed: int = 1, days: int = 30, pop: Population | None = None):
    return simulate(policy, pop or population(model), catalogue(), model, days, 1e9, seed)


def test_the_return_process_brings_satisfied_users_back_sooner_and_bored_ones_later():
    process = ReturnProcess(log_rate=-1.5, rate_spread=0.0, shape=1.0, churn=0.0)
    rate = np.full(20_000, np.exp(-1.5))
    rng = np.random.default_rng(0)
    plain = process.draw_gap(rate, np.ones(20_000), rng).mean()
    assert process.draw_gap(rate, np.full(20_000, np.exp(0.5)), rng).mean() < plain * 0.8  # satisfied: sooner
    assert process.draw_gap(rate, np.full(20_000, np.exp(-0.5)), rng).mean() > plain * 1.2  # bored: later
    churning = replace(process, churn=1.0)
    assert np.isinf(churning.draw_gap(rate, np.ones(20_000), rng)).all()


def test_satisfying_slates_keep_more_users_than_poor_ones_when_satisfaction_matters():
    model = user_model(satisfaction=0.8)
    cat, pop = catalogue(), population(model)
    best, worst = (simulate(ByUtility(name, pop, cat, model, name == "best"), pop, cat, model, 30, 1e9, seed=3)
                   .measures(len(ITEMS)) for name in ("best", "worst"))
    assert best["retention_30"] > worst["retention_30"] and best["active_days"] > worst["active_days"]
    assert best["ndcg_at_10"] == pytest.approx(1.0) and worst["ndcg_at_10"] == 0.0


def test_a_constant_slate_bores_users():
    """The same ten items every visit: what is left of them is of genres the user has already taken,
    so visits get shallower and less satisfying."""
    model = user_model(boredom_weight=3.0, outside_utility=0.5)
    run = run_with(Fixed(ITEMS[:10]), model, days=30)
    depths = [d for ds in run.depths for d in ds[:1]]
    later = [d for ds in run.depths for d in ds[1:]]
    assert later and np.mean(later) < np.mean(depths)
    assert run.measures(len(ITEMS))["coverage"] == pytest.approx(10 / 40)


def test_repeating_the_last_genre_loses_retention_when_repetition_keeps_users_away():
    model = user_model(repetition=-0.8)
    cat = catalogue()
    pop = population(model, users=300)
    same = run_with(OneGenre("same genre", cat, same=True), model, seed=5, pop=pop)
    mixed = run_with(OneGenre("any genre", cat, same=False), model, seed=5, pop=pop)
    assert (same.curve() < mixed.curve()).all()  # fewer users back on every day of the month
    assert same.curve()[-10:].mean() < mixed.curve()[-10:].mean() - 0.02
    assert same.measures(len(ITEMS))["active_days"] < mixed.measures(len(ITEMS))["active_days"]


def test_a_run_is_reproducible_per_seed_and_differs_across_seeds():
    model = user_model(satisfaction=0.3)
    policy = RandomPolicy(ITEMS)
    first = run_with(policy, model, seed=7)
    again = run_with(policy, model, seed=7)
    other = run_with(policy, model, seed=8)
    assert first.visit_days == again.visit_days and first.depths == again.depths
    assert first.visit_days != other.visit_days


def test_the_random_policy_leaves_seen_items_out_and_logs_conditional_propensities():
    slate = RandomPolicy(ITEMS).slate(ITEMS[:30], 0.0, None, 5, seed=1)
    assert not {s.item for s in slate} & set(ITEMS[:30]) and len({s.item for s in slate}) == 5
    assert [s.propensity for s in slate] == pytest.approx([1 / 10, 1 / 9, 1 / 8, 1 / 7, 1 / 6])


def test_a_packaged_model_serves_the_simulated_users_through_slots():
    """The world asks a PackagedModel for slates with the call /recommend makes."""
    from training.models.base import Interactions
    from training.models.popularity import Popularity
    from training.packaging import model_config

    data = Interactions(item_ids=ITEMS, sequences=[np.array([1, 2, 2, 2, 3, 3])], positive=[np.ones(6, bool)])
    model = Popularity()
    model.fit(data, type("S", (), {"exclude_seen": True, "recent_popularity_days": 7.0})(), progress=False)
    packaged = PackagedModel().load(model_config(model, ITEMS, type("S", (), {"exclude_seen": True})()),
                                    model.tensors())
    calls = []
    original = packaged.slots
    packaged.slots = lambda *a, **kw: calls.append(a) or original(*a, **kw)
    run = run_with(PackagedPolicy("popularity", packaged), user_model(), days=3)
    assert calls and run.requests == len(calls)
    assert run.first_slates[0][:2] == ["i01", "i02"]  # the most engaged-with items first


@pytest.mark.slow
def test_the_calibration_meets_its_targets_on_held_out_users(tmp_path):
    from longview import datasets
    from longview.settings import get_settings
    from tests.conftest import real_data

    settings = get_settings()
    info = datasets.spec("ml-100k")
    tables = datasets.load(info, real_data("ml-100k"), settings.session_gap_minutes)
    calibration = build.calibrate(tables.events, tables.items, seed=settings.seed)
    # the committed user model is exactly what `longview simulate --calibrate` makes from the data
    assert calibration.model.digest() == build.load(build.FROZEN_DIR / "ml-100k.json").model.digest()
    report = calibration.report
    held, crossed = report["held_out"], report["cross_validated"]
    assert held["gap_ks"] <= 0.1 and held["depth_ks"] <= 0.1, held  # the reported users
    assert crossed["gap_ks_mean"] <= 0.1 and crossed["depth_ks_mean"] <= 0.1, crossed  # five folds of all users
    assert set(calibration.report["effects"]) == {"satisfaction", "repetition"}
    for effect in calibration.report["effects"].values():
        assert effect["low"] <= effect["per_sd"] <= effect["high"]
    path = tmp_path / "model.json"
    digest = build.save(calibration, path)
    assert build.load(path).model.digest() == digest
    tampered = json.loads(path.read_text())
    tampered["model"]["repetition_effect"] = 5.0
    path.write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="changed after it was frozen"):
        build.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a frozen user model"):
        build.load(path)
    with pytest.raises(FileNotFoundError, match="--calibrate"):
        build.load(tmp_path / "absent.json")


def test_the_committed_user_model_is_intact():
    """The frozen ml-100k user model every report prints the digest of."""
    frozen = build.load(build.FROZEN_DIR / "ml-100k.json")
    assert frozen.model.digest() == json.loads((build.FROZEN_DIR / "ml-100k.json").read_text())["digest"]


def test_users_are_split_the_same_way_whatever_the_pseudonyms():
    events = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["x", "y", "x", "z"],
                           "timestamp": pd.to_datetime([1, 2, 3, 4], unit="D", utc=True)})
    renamed = events.assign(user_id=events["user_id"].map({"a": "p", "b": "q", "c": "r"}),
                            timestamp=events["timestamp"].map(lambda t: t.isoformat()))  # as text, as loaded
    keys, again = cal.fingerprints(events), cal.fingerprints(renamed)
    assert list(keys) == list(again)
    parts = [build.users_of(events, part) for part in ("reported", "tuning")]
    assert sorted(parts[0] + parts[1]) == ["a", "b", "c"] and not set(parts[0]) & set(parts[1])
    with pytest.raises(ValueError, match="unknown part"):
        build.users_of(events, "all")
