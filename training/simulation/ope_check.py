"""Off-policy estimates checked where the truth is known: an exploring champion serves simulated
users and its served log is kept (each slate's top slot, with the propensity the policy logged for
it, and whether the user's first pick from the slate was that slot); a challenger's click rate on
the top slot is estimated from that log alone with obp's IPS and SNIPS (bootstrap intervals over the
logged slates), and compared with the challenger's true rate on the same requests, which the
simulator knows exactly: for each logged request, the chance that the user, as they were then,
takes the challenger's top item (the top slot is always looked at, and in the cascade the other
slots do not change it).

The top slot's propensity is the one the served log records for slot 1 (no slots above it, so the
conditional propensity is the marginal one): 1 - epsilon + epsilon / n for the policy's greedy
pick among n candidates, epsilon / n for another."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.off_policy import Interval, top_slot_estimates
from training.simulation.policies import Policy
from training.simulation.users import Population, UserModel, take_chance, utilities
from training.simulation.world import Catalogue, SlateSeen, simulate


@dataclass(frozen=True)
class Check:
    truth: float  # the challenger's true top-slot click rate on the logged requests
    ips: Interval
    snips: Interval
    dr: Interval
    slates: int  # slates logged
    matches: int  # slates whose top item the challenger would have shown too

    def covered(self, name: str = "ips") -> bool:
        return getattr(self, name).contains(self.truth)

    def half_width(self, name: str = "ips") -> float:
        """The interval's half-width relative to the true value."""
        found = getattr(self, name)
        return (found.high - found.low) / 2 / self.truth if self.truth else float("inf")


def check(champion: Policy, challenger: Policy, population: Population, catalogue: Catalogue, model: UserModel,
          days: int, start_time: float, seed: int, bootstrap: int = 1000) -> Check:
    """Log ``champion`` for ``days``, estimate ``challenger``'s top-slot click rate from the log."""
    seen: list[SlateSeen] = []
    simulate(champion, population, catalogue, model, days, start_time, seed, observe=seen.append)
    if not seen:
        raise ValueError("the champion served no slate: nothing to estimate from")
    index = {item: i for i, item in enumerate(catalogue.item_ids)}
    unit = catalogue.unit
    logged, chosen, pscore, reward, truth = [], [], [], [], []
    for request in seen:
        theirs = challenger.slate(list(request.history), request.now, request.last, model.page_size, seed)
        logged.append(index[request.slate[0].item])
        chosen.append(index[theirs[0].item])
        pscore.append(request.slate[0].propensity)
        reward.append(float(request.first_pick == 0))
        top = index[theirs[0].item]
        utility = utilities(model.choice, population.taste[request.user], unit[top:top + 1],
                            catalogue.quality[top:top + 1], request.exposure)
        truth.append(take_chance(model.choice, float(utility[0])))
    found = top_slot_estimates(np.array(logged), np.array(chosen), np.array(pscore), np.array(reward),
                               len(catalogue.item_ids), seed, bootstrap)
    return Check(float(np.mean(truth)), found["ips"], found["snips"], found["dr"], len(seen),
                 int(np.sum(np.array(logged) == np.array(chosen))))
