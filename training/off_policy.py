"""Off-policy estimates: what a policy that did not serve would have earned, from another's logs.

obp's estimators on arrays (Saito et al., 2021): inverse propensity scoring (IPS), its
self-normalised form (SNIPS) and doubly robust (DR, with a logistic reward model fitted by
cross-fitting), each with a bootstrap interval over the logged rounds. Each estimate is of the
mean reward per impression (a click rate, on the Open Bandit logs), the same quantity as the
evaluation policy's own logged rate, which is what it is compared with where that policy also
logged (``logged_rate``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from longview.datasets.open_bandit import BanditLog

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def thompson_sampling_distribution(log: BanditLog, campaign: str = "all", samples: int = 100_000,
                                   seed: int = 12345) -> np.ndarray:
    """rounds x items x slots: the Bernoulli Thompson sampling policy ZOZOTOWN ran (its published
    prior, obp's ``is_zozotown_prior``), as the chance of each item in each slot, by simulation."""
    from obp.policy import BernoulliTS

    policy = BernoulliTS(n_actions=log.n_actions, len_list=log.len_list, is_zozotown_prior=True, campaign=campaign,
                         random_state=seed)
    return policy.compute_batch_action_dist(n_sim=samples, n_rounds=log.rounds)


def estimate(log: BanditLog, action_dist: np.ndarray, bootstrap: int = 1000, folds: int = 3,
             seed: int = 0, alpha: float = 0.05) -> dict[str, Interval]:
    """Each estimator's value of the policy with ``action_dist`` (rounds x items x slots) on ``log``,
    with its (1 - alpha) bootstrap interval."""
    from obp.ope import (
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        RegressionModel,
        SelfNormalizedInverseProbabilityWeighting,
    )
    from sklearn.linear_model import LogisticRegression

    expected = (log.rounds, log.n_actions, log.len_list)
    if action_dist.shape != expected:
        raise ValueError(f"action_dist has shape {action_dist.shape}, expected {expected}")
    if not np.allclose(action_dist.sum(axis=1), 1.0, atol=1e-6) or (action_dist < 0).any():
        raise ValueError("action_dist must be a distribution over items in every round and slot")
    reward_model = RegressionModel(n_actions=log.n_actions, len_list=log.len_list, action_context=log.action_context,
                                   base_model=LogisticRegression(max_iter=1000, random_state=seed))
    rewards = reward_model.fit_predict(context=log.context, action=log.action, reward=log.reward,
                                       position=log.position, pscore=log.pscore, n_folds=folds, random_state=seed)
    feedback = {"action": log.action, "reward": log.reward, "pscore": log.pscore, "position": log.position,
                "n_rounds": log.rounds, "n_actions": log.n_actions}
    named = {"ips": InverseProbabilityWeighting(estimator_name="ips"),
             "snips": SelfNormalizedInverseProbabilityWeighting(estimator_name="snips"),
             "dr": DoublyRobust(estimator_name="dr")}
    evaluation = OffPolicyEvaluation(bandit_feedback=feedback, ope_estimators=list(named.values()))
    values = evaluation.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=rewards)
    intervals = evaluation.estimate_intervals(action_dist=action_dist, estimated_rewards_by_reg_model=rewards,
                                              alpha=alpha, n_bootstrap_samples=bootstrap, random_state=seed)
    level = f"{100 * (1 - alpha)}% CI"  # obp's "mean" there is the bootstrap's: the value is the estimate's own
    return {name: Interval(float(values[name]), float(v[f"{level} (lower)"]), float(v[f"{level} (upper)"]))
            for name, v in intervals.items()}


def logged_rate(log: BanditLog, bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """The logging policy's own mean reward per impression, with its bootstrap interval."""
    from obp.utils import estimate_confidence_interval_by_bootstrap

    found = estimate_confidence_interval_by_bootstrap(samples=log.reward.astype(float), alpha=alpha,
                                                      n_bootstrap_samples=bootstrap, random_state=seed)
    level = f"{100 * (1 - alpha)}% CI"
    return Interval(float(log.reward.mean()), float(found[f"{level} (lower)"]), float(found[f"{level} (upper)"]))


# The top-slot reward model's prior: each item's logged click rate is shrunk towards the overall
# rate as if it had this many more showings at it.
PRIOR_SHOWS = 5.0


def top_slot_estimates(logged: np.ndarray, chosen: np.ndarray, pscore: np.ndarray, reward: np.ndarray,
                       n_items: int, seed: int = 0, bootstrap: int = 1000) -> dict[str, Interval]:
    """IPS, SNIPS and DR estimates, with 95% bootstrap intervals over the logged slates, of the
    top-slot click rate of a deterministic policy that would have put item ``chosen`` on top where
    the logging policy put ``logged`` with propensity ``pscore`` and earned ``reward`` (item indices
    below ``n_items``). DR's reward model comes from the log alone: each item's top-slot click rate,
    shrunk towards the overall rate (PRIOR_SHOWS)."""
    from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting

    n = len(logged)
    if not n or not (len(chosen) == len(pscore) == len(reward) == n):
        raise ValueError(f"need one chosen item, propensity and reward per logged slate ({n} logged)")
    if not np.all((pscore > 0) & (pscore <= 1)):
        raise ValueError("every logged propensity must lie in (0, 1]")
    action_dist = np.zeros((n, n_items, 1))
    action_dist[np.arange(n), chosen, 0] = 1.0
    arrays = {"reward": np.asarray(reward, float), "action": np.asarray(logged), "pscore": np.asarray(pscore, float),
              "action_dist": action_dist}
    shows = np.bincount(arrays["action"], minlength=n_items).astype(float)
    clicks = np.bincount(arrays["action"], weights=arrays["reward"], minlength=n_items)
    overall = float(arrays["reward"].mean())
    rates = (clicks + PRIOR_SHOWS * overall) / (shows + PRIOR_SHOWS)
    estimated = np.broadcast_to(rates[None, :, None], (n, n_items, 1))
    out = {}
    for name, estimator, extra in (("ips", InverseProbabilityWeighting(), {}),
                                   ("snips", SelfNormalizedInverseProbabilityWeighting(), {}),
                                   ("dr", DoublyRobust(), {"estimated_rewards_by_reg_model": estimated})):
        value = float(estimator.estimate_policy_value(**arrays, **extra))
        found = estimator.estimate_interval(**arrays, **extra, n_bootstrap_samples=bootstrap, random_state=seed)
        out[name] = Interval(value, float(found["95.0% CI (lower)"]), float(found["95.0% CI (upper)"]))
    return out
