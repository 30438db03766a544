"""The gate's rule ``simulated_retention_not_worse``: the challenger and the champion, each as the
service would serve it (training/served_policy.py), are served to the same simulated users (the
frozen user model, the data home's reported users) with the same fixed seeds, ``retention_days``
days (14) each time; the rule compares who is still active at that day.

Both models meet the same user with the same luck wherever their slates agree, so the difference
is measured where it arises: per user, averaged over the seeds. Its 95% interval over the users is
the seed noise of a tie; its half-width is the tolerance (unless
``LONGVIEW_GATE__RETENTION_TOLERANCE`` sets one). The challenger is refused when its retention is
below the champion's by more than the tolerance. The smallest drop the rule catches four times in
five at this size, (1.96 + 0.84) standard errors, is reported with every verdict."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from longview.settings import Settings

GATE_SEED = 2000  # the rule's own seeds: neither tuning's (0..) nor the reports' (1000..)
Z_POWER_80 = 0.841621  # with Z_95, the drop refused four times in five


@dataclass
class RetentionCheck:
    days: int
    users: int
    seeds: list[int]
    challenger: float  # share retained at ``days``
    champion: float
    difference: float  # challenger - champion
    low: float  # its 95% interval
    high: float
    tolerance: float
    measured_noise: float  # the interval's half-width
    detectable: float  # the smallest drop refused with 80% power
    seconds: float

    @property
    def passed(self) -> bool:
        return self.difference >= -self.tolerance


def paired_units(challenger, champion, settings: Settings) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per (seed, user), whether each policy's simulated user was retained at ``retention_days``."""
    from training.simulation.build import World
    from training.simulation.world import simulate

    gate = settings.gate
    world = World.of(settings, "reported", gate.retention_users)
    seeds = list(range(GATE_SEED, GATE_SEED + gate.retention_seeds))
    ours, theirs = [], []
    for seed in seeds:
        population = world.population(seed)
        for policy, out in ((challenger, ours), (champion, theirs)):
            run = simulate(policy, population, world.catalogue, world.calibration.model, gate.retention_days,
                           world.start, seed)
            out.append(run.retained(gate.retention_days))
    return np.concatenate(ours), np.concatenate(theirs), seeds


def check(settings: Settings, challenger, champion) -> RetentionCheck:
    """The rule's measurement for two policies (training/simulation/policies.py)."""
    from training.simulation.world import Z_95, paired_over_users

    started = time.perf_counter()
    ours, theirs, seeds = paired_units(challenger, champion, settings)
    d, se = paired_over_users(ours, theirs, len(seeds))
    half = Z_95 * se
    gate = settings.gate
    tolerance = half if gate.retention_tolerance is None else gate.retention_tolerance
    return RetentionCheck(gate.retention_days, len(ours) // len(seeds), seeds, float(ours.mean()),
                          float(theirs.mean()), d, d - half, d + half, tolerance, half, tolerance + Z_POWER_80 * se,
                          time.perf_counter() - started)


def retention_verdict(settings: Settings, challenger, challenger_tags: dict, champion, champion_tags: dict,
                      metrics: dict):
    """``simulated_retention_not_worse`` for two loaded versions (PackagedModels), with their tags."""
    from gate.verdicts import Verdict, one_line
    from training.served_policy import as_served
    from training.simulation.policies import PackagedPolicy

    rule = "simulated_retention_not_worse"
    if not settings.gate.simulated_retention:
        return Verdict(rule, True, "off (LONGVIEW_GATE__SIMULATED_RETENTION=false)")
    try:
        measured = check(settings, PackagedPolicy("challenger", as_served(settings, challenger, challenger_tags)),
                         PackagedPolicy("champion", as_served(settings, champion, champion_tags)))
    except Exception as exc:  # a challenger that cannot serve simulated users cannot serve real ones
        return Verdict(rule, False, f"the simulation failed: {one_line(exc)} "
                                    f"(LONGVIEW_GATE__SIMULATED_RETENTION=false turns the rule off)")
    metrics["retention"] = asdict(measured)
    m = measured
    source = ("measured: half-width of the 95% interval over users, each averaged over the seeds"
              if settings.gate.retention_tolerance is None else f"set; the measured noise is {m.measured_noise:.4f}")
    return Verdict(rule, m.passed,
                   f"day-{m.days} retention of {m.users} simulated users x {len(m.seeds)} seeds, each model as "
                   f"served: challenger {m.challenger:.4f}, champion {m.champion:.4f}, difference "
                   f"{m.difference:+.4f} [{m.low:+.4f}, {m.high:+.4f}] {'>=' if m.passed else '<'} -tolerance "
                   f"{m.tolerance:.4f} ({source}); smallest drop this size detects (80% power): "
                   f"{m.detectable:.4f}; {m.seconds:.0f} s")
