"""The gate's behavioural tests and latency measure: a real packaged model passes them, and each
check catches the fault it names."""

from __future__ import annotations

import pytest

from gate.behaviour import behaviour, latency_ms
from tests.training.conftest import chain_world
from training.models.engagement import EngagementPolicy
from training.models.packaged import PackagedModel
from training.models.popularity import Popularity
from training.models.sequence import SequenceModel


def packaged(model, world, exclude: bool = True) -> PackagedModel:
    return PackagedModel().load({"model": model.name, "model_config": model.config(), "item_ids": world.item_ids,
                                 "exclude_seen": exclude}, model.tensors())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Popularity, a brief sequence model and the policy over it (trained once for the module)."""
    from longview.settings import get_settings

    settings = get_settings(home=tmp_path_factory.mktemp("home"),
                            sequence={"dim": 16, "ensemble": 1, "epochs": 10, "max_len": 8, "batch_size": 16})
    world = chain_world()
    popularity, sequence = Popularity(), SequenceModel()
    popularity.fit(world, settings)
    sequence.fit(world, settings, progress=False)
    return world, {"popularity": popularity, "sequence": sequence,
                   "engagement": EngagementPolicy.around(sequence, settings)}


@pytest.mark.parametrize("kind", ["popularity", "sequence", "engagement"])
def test_real_models_pass_and_are_timed(kind, fitted):
    world, models = fitted
    served = packaged(models[kind], world)
    histories = [[world.item_ids[i - 1] for i in s[:6]] for s in world.sequences[:10]]
    checked = behaviour(served, histories)
    assert checked.passed, checked.failures
    assert checked.checked == 12  # the holdout users, a cold user and a junk history
    timing = latency_ms(served, histories)
    assert 0 < timing["p50_ms"] <= timing["p95_ms"] and timing["requests"] == 10


class Faulty:
    """What a broken model would answer through the serving path (one fault at a time)."""

    def __init__(self, fault: str) -> None:
        self.item_ids = [f"i{n}" for n in range(1, 21)]
        self.index = {item: n + 1 for n, item in enumerate(self.item_ids)}
        self.exclude, self.fault = True, fault

    def rank(self, histories, now=None, k=10, last=None, profiles=None):
        history = [h for h in histories[0] if h in self.index]
        items = [i for i in self.item_ids if i not in history][:k]
        scores = [float(-n) for n in range(len(items))]
        if self.fault == "seen" and history:
            items[0] = history[0]
        elif self.fault == "short":
            items, scores = items[:3], scores[:3]
        elif self.fault == "twice":
            items[1] = items[0]
        elif self.fault == "rising":
            scores = scores[::-1]
        elif self.fault == "unknown":
            items[-1] = "not-in-the-catalogue"
        elif self.fault == "junk" and any(h not in self.index for h in histories[0]):
            raise KeyError(histories[0][0])
        return [list(zip(items, scores, strict=True))]


@pytest.mark.parametrize("fault, message", [
    ("seen", "a holdout user: a seen item recommended again"),
    ("short", "3 items instead of 10"),
    ("twice", "an item twice in one list"),
    ("rising", "scores that are not finite or rise down the list"),
    ("unknown", "an item outside the catalogue"),
    ("junk", "a junk history: KeyError"),
])
def test_each_check_catches_its_fault(fault, message):
    checked = behaviour(Faulty(fault), [["i1", "i2"], ["i5"]])
    assert not checked.passed and any(message in f for f in checked.failures), checked.failures


def test_latency_needs_a_request():
    with pytest.raises(ValueError, match="at least one request"):
        latency_ms(Faulty("none"), [])
