"""The off-policy check in the simulator: the truth it compares with is right, and estimates from an
exploring champion's log cover a challenger's true top-slot click rate."""

from __future__ import annotations

import numpy as np

from tests.training.test_simulation import ITEMS, catalogue, population, user_model
from training.models.packaged import Slot
from training.simulation import ope_check
from training.simulation.users import take_chance, utilities


class Greedy:
    """Items by a fixed order (quality), with epsilon-greedy exploration per slot, logging the
    conditional propensities the served log would."""

    def __init__(self, name: str, order: list[int], epsilon: float) -> None:
        self.name, self.order, self.epsilon = name, order, epsilon

    def slate(self, history, now, last, k, seed):
        rng = np.random.default_rng(seed)
        left = [ITEMS[i] for i in self.order if ITEMS[i] not in set(history)]
        out = []
        for _ in range(min(k, len(left))):
            greedy = left[0]
            pick = left[rng.integers(len(left))] if rng.random() < self.epsilon else greedy
            share = self.epsilon / len(left)
            out.append(Slot(pick, 0.0, pick != greedy, share + (1 - self.epsilon if pick == greedy else 0.0)))
            left.remove(pick)
        return out


def test_the_cascade_top_slot_is_taken_with_the_chance_the_check_uses():
    model = user_model()
    cat, pop = catalogue(), population(model, users=1)
    utility = utilities(model.choice, pop.taste[0], cat.unit[:3], cat.quality[:3], np.zeros(4))
    from training.simulation.users import choose

    rng = np.random.default_rng(0)
    draws = [choose(model.choice, utility, np.zeros(3, bool), rng) == 0 for _ in range(20_000)]
    assert abs(np.mean(draws) - take_chance(model.choice, float(utility[0]))) < 0.01


def test_estimates_from_an_exploring_champion_cover_the_challengers_truth():
    model = user_model(satisfaction=0.3)
    cat = catalogue()
    champion = Greedy("champion", list(np.argsort(-cat.quality)), epsilon=0.3)
    challenger = Greedy("challenger", list(np.argsort(-cat.quality))[3:] + list(np.argsort(-cat.quality))[:3], 0.0)
    covered = []
    for seed in range(6):
        found = ope_check.check(champion, challenger, population(model, users=150, seed=seed), cat, model, 20, 1e9,
                                seed, bootstrap=300)
        assert 0 < found.truth < 1 and found.slates > 150 and found.matches > 0
        covered.append(found.covered("ips"))
    assert np.mean(covered) >= 4 / 6
