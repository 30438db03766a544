"""The simulation: each day, every user due asks the policy for a slate (the packaged model's
``slots``, the call /recommend makes), takes items from it or leaves, and their next visit is
drawn from how the visit went. A run records what every policy is judged on."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.simulation.policies import Policy
from training.simulation.users import Population, UserModel, choose, repetition, utilities

DAY = 86_400.0


@dataclass(frozen=True)
class Catalogue:
    item_ids: list[str]
    shares: np.ndarray  # items x genres, each row's genre shares (zeros: no genres)
    quality: np.ndarray  # standardised Bayesian-averaged rating per item

    @property
    def unit(self) -> np.ndarray:
        norms = np.linalg.norm(self.shares, axis=1, keepdims=True)
        return self.shares / np.where(norms > 0, norms, 1.0)


@dataclass
class Run:
    """What happened to each user in one run of one policy."""

    days: int
    visit_days: list[list[int]]  # per user, the days they visited
    depths: list[list[int]]  # per user, items taken at each visit
    shown: set[str] = field(default_factory=set)  # every item any slate showed
    first_slates: list[list[str]] = field(default_factory=list)  # each user's first slate of day 0
    ideal: list[set[str]] = field(default_factory=list)  # each user's 10 best unseen items on day 0
    requests: int = 0

    def retained(self, day: int, window: int = 7) -> np.ndarray:
        """Per user, whether they came back in the ``window`` days up to ``day`` (day 0, everyone's
        first visit, never counts)."""
        return np.array([any(max(day - window, 0) < d <= day for d in v) for v in self.visit_days], dtype=bool)

    def retention(self, day: int, window: int = 7) -> float:
        """Share of the users retained at ``day`` (``retained``)."""
        return float(self.retained(day, window).mean())

    def curve(self) -> np.ndarray:
        return np.array([self.retention(day) for day in range(1, self.days + 1)])

    def measures(self, catalogue_size: int) -> dict[str, float]:
        gaps = [b - a for v in self.visit_days for a, b in zip(v, v[1:])]
        visits = [len(v) for v in self.visit_days]
        depths = [d for ds in self.depths for d in ds]
        return {
            **{f"retention_{d}": self.retention(d) for d in sorted({d for d in (7, 14, 30) if d <= self.days}
                                                                  | {self.days})},
            "returned": float(np.mean([n > 1 for n in visits])),
            "return_days": float(np.mean(gaps)) if gaps else float("nan"),
            "active_days": float(np.mean(visits)),
            "session_depth": float(np.mean(depths)) if depths else 0.0,
            "engagement": float(np.mean([sum(ds) for ds in self.depths])),
            "coverage": len(self.shown) / catalogue_size,
            "ndcg_at_10": float(np.mean([_ndcg(s, i) for s, i in zip(self.first_slates, self.ideal, strict=True)])),
        }


def _ndcg(slate: list[str], ideal: set[str], k: int = 10) -> float:
    gains = [1.0 / np.log2(p + 2) for p, item in enumerate(slate[:k]) if item in ideal]
    best = sum(1.0 / np.log2(p + 2) for p in range(min(k, len(ideal))))
    return sum(gains) / best if best else 0.0


@dataclass(frozen=True)
class SlateSeen:
    """One served slate as a log sees it: the request (history, times), the user's state then, the
    slate, and the slot of the user's first pick from it (None: nothing taken)."""

    user: int
    history: tuple[str, ...]
    now: float
    last: float | None
    exposure: np.ndarray
    slate: tuple  # the policy's Slots
    first_pick: int | None


def simulate(policy: Policy, population: Population, catalogue: Catalogue, model: UserModel, days: int,
             start_time: float, seed: int, progress: Callable[[int], None] | None = None,
             observe: Callable[[SlateSeen], None] | None = None) -> Run:
    """One run of ``policy`` over ``days`` days from ``start_time`` (Unix seconds of day 0). Every
    user visits on day 0. Each user draws from their own stream, seeded by (``seed``, user), so two
    policies meet the same users with the same luck wherever their slates agree. ``observe`` sees
    every served slate (a served log)."""
    import torch

    # The policy scores one request at a time, as a service worker does (serving.torch_threads, 1):
    # a second thread only hands small matrices back and forth, and with another process on the
    # machine the two spin against each other (a sensitivity run went from ~4 minutes a variant
    # to ~20 s with one thread).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(policy, population, catalogue, model, days, start_time, seed, progress, observe)
    finally:
        torch.set_num_threads(threads)


def _run(policy: Policy, population: Population, catalogue: Catalogue, model: UserModel, days: int,
         start_time: float, seed: int, progress: Callable[[int], None] | None,
         observe: Callable[[SlateSeen], None] | None) -> Run:
    users = copy.deepcopy(population)  # the population's state is the run's own
    n = len(users.user_ids)
    index = {item: i for i, item in enumerate(catalogue.item_ids)}
    unit = catalogue.unit
    streams = [np.random.default_rng([seed, u]) for u in range(n)]
    next_day = np.zeros(n)
    run = Run(days, [[] for _ in range(n)], [[] for _ in range(n)])
    choice = model.choice
    for day in range(days + 1):
        if day:
            users.exposure *= choice.exposure_decay
        for u in np.flatnonzero(next_day == day):
            rng = streams[u]
            now = start_time + day * DAY + float(rng.integers(8 * 3600, 23 * 3600))
            base = utilities(choice, users.taste[u], unit, catalogue.quality, users.exposure[u])
            scale = _standardiser(base, users.histories[u], index)
            if day == 0:
                seen = {index[i] for i in users.histories[u] if i in index}
                order = [j for j in np.argsort(-base) if j not in seen][:10]
                run.ideal.append({catalogue.item_ids[j] for j in order})
            taken_rows, satisfaction = _visit(policy, users, u, catalogue, model, index, unit, now, rng, run,
                                              first=day == 0, scale=scale, observe=observe)
            run.visit_days[u].append(day)
            run.depths[u].append(len(taken_rows))
            sat = float(np.mean(satisfaction)) if satisfaction else -1.0  # leaving empty-handed: a poor visit
            rep = (repetition(catalogue.shares[taken_rows]) - model.repetition_mean) / model.repetition_sd \
                if taken_rows else 0.0
            multiplier = np.exp(model.satisfaction_effect * sat + model.repetition_effect * rep)
            gap = model.returns.draw_gap(users.rate[u:u + 1], np.array([multiplier]), rng)[0]
            next_day[u] = day + gap
        if progress is not None:
            progress(day)
    return run


def _standardiser(utility: np.ndarray, history: list[str], index: dict[str, int]) -> tuple[float, float]:
    """The mean and SD of the user's utility over the items they have not seen (what S is in SDs of)."""
    mask = np.ones(len(utility), dtype=bool)
    mask[[index[i] for i in history if i in index]] = False
    values = utility[mask] if mask.any() else utility
    return float(values.mean()), float(values.std() or 1.0)


def _visit(policy: Policy, users: Population, u: int, catalogue: Catalogue, model: UserModel,
           index: dict[str, int], unit: np.ndarray, now: float, rng: np.random.Generator, run: Run, *,
           first: bool, scale: tuple[float, float],
           observe: Callable[[SlateSeen], None] | None = None) -> tuple[list[int], list[float]]:
    """One visit: slates until the user leaves; returns the rows taken and each one's satisfaction."""
    choice = model.choice
    taken_rows: list[int] = []
    satisfaction: list[float] = []
    empty = 0  # slates in a row with nothing taken
    while len(taken_rows) < choice.max_depth and empty < choice.patience:
        last = None if np.isnan(users.last_event[u]) else float(users.last_event[u])
        before = (tuple(users.histories[u]), now, last, users.exposure[u].copy()) if observe else None
        slate = policy.slate(users.histories[u], now, last, model.page_size, int(rng.integers(2**63)))
        run.requests += 1
        rows = np.array([index[s.item] for s in slate if s.item in index], dtype=np.int64)
        if first:  # the visit's first slate of day 0: what day-0 NDCG is measured on
            run.first_slates.append([catalogue.item_ids[r] for r in rows])
            first = False
        run.shown.update(catalogue.item_ids[r] for r in rows)
        if not len(rows):
            break
        taken = np.zeros(len(rows), dtype=bool)
        done, first_pick = False, None
        while not taken.all():
            utility = utilities(choice, users.taste[u], unit[rows], catalogue.quality[rows], users.exposure[u])
            pick = choose(choice, utility, taken, rng)
            if pick is None:  # nothing more from this slate: the next one, unless patience runs out
                break
            taken[pick] = True
            first_pick = pick if first_pick is None else first_pick
            row = int(rows[pick])
            taken_rows.append(row)
            satisfaction.append((float(utility[pick]) - scale[0]) / scale[1])
            users.exposure[u] += catalogue.shares[row]
            users.histories[u].append(catalogue.item_ids[row])
            users.last_event[u] = now
            now += 60.0  # the next item a minute later
            if rng.random() >= users.go_on[u] or len(taken_rows) >= choice.max_depth:
                done = True
                break
        if observe is not None:
            observe(SlateSeen(u, before[0], before[1], before[2], before[3], tuple(slate), first_pick))
        if done:
            break
        empty = 0 if taken.any() else empty + 1
    return taken_rows, satisfaction


Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


def paired_over_users(ours: np.ndarray, theirs: np.ndarray, seeds: int) -> tuple[float, float]:
    """The mean difference of two policies' per-(seed, user) outcomes (seed-major, the same users in
    each seed) and its standard error over users: each user's difference is averaged over the seeds
    first, since one user's runs share their taste and history."""
    per_user = (ours.astype(float) - theirs.astype(float)).reshape(seeds, -1).mean(axis=0)
    se = float(per_user.std(ddof=1) / np.sqrt(len(per_user))) if len(per_user) > 1 else 0.0
    return float(per_user.mean()), se
