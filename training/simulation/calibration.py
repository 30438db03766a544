"""What the simulated users are calibrated on: a dataset's real visits, its users split into those
the population is fitted on and those it is checked against, the fit, and the effects of
satisfaction and boredom on the next return estimated from the data, with intervals.

A *visit* is a user's day with events (the simulator's clock ticks in days): its *depth* is how many
items the user engaged with that day, its *gap* the days to the user's next visit day. The data's
window ends somewhere, so a gap is only seen when the window goes on long enough; and the simulator
runs for D days (30 by default), so it never sees a gap beyond D either. Both are therefore
compared the same way, as Instacart's capped ``days_since_prior_order`` must be: the share of visits
followed by a return within the horizon, among visits with the whole horizon still to come, and the
distribution of the gaps within the horizon."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

HORIZON_DAYS = 30


@dataclass(frozen=True)
class Visits:
    """One row per visit (a user's day with events), in user and day order."""

    user: np.ndarray  # user ids (str)
    day: np.ndarray  # day number (Unix days)
    depth: np.ndarray  # items engaged with that day
    satisfaction: np.ndarray  # the day's mean rating minus the user's mean (nan: no ratings)
    repetition: np.ndarray  # genre concentration of the day's items (Herfindahl index of genre shares)
    gap: np.ndarray  # days to the next visit (nan: none in the window)
    follow_up: np.ndarray  # days from the visit to the window's end

    def subset(self, mask: np.ndarray) -> "Visits":
        return Visits(**{name: value[mask] for name, value in self.__dict__.items()})

    @property
    def returning(self) -> np.ndarray:
        """Visits after the user's first in the data. A first visit in MovieLens is the sign-up,
        where a new user rates at least 20 films (median depth 47, against 4 for later visits);
        simulated users are existing users, so their depths are compared with returning visits."""
        return np.r_[True, self.user[1:] != self.user[:-1]] == False  # noqa: E712 (an array, not a bool)


def genre_matrix(items: pd.DataFrame, item_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """items x genres, each row's genres with equal shares (rows of items without genres: zeros)."""
    genres = items.set_index("item_id")["genres"].reindex(item_ids).fillna("")
    split = genres.str.split("|").map(lambda gs: [g for g in gs if g and g != "unknown"])
    names = sorted({g for gs in split for g in gs})
    column = {g: j for j, g in enumerate(names)}
    matrix = np.zeros((len(item_ids), len(names)))
    for row, gs in enumerate(split):
        for g in gs:
            matrix[row, column[g]] = 1.0 / len(gs)
    return matrix, names


def real_visits(events: pd.DataFrame, items: pd.DataFrame) -> Visits:
    """A dataset's visits from its canonical events (``user_id``, ``item_id``, ``timestamp``,
    ``value``: the rating where there is one)."""
    frame = pd.DataFrame({"user": events["user_id"].astype(str), "item": events["item_id"].astype(str),
                          "day": (pd.to_datetime(events["timestamp"], utc=True).astype("int64") // 86_400 // 10**9),
                          "rating": pd.to_numeric(events["value"], errors="coerce")})
    item_ids = sorted(frame["item"].unique())
    genres, _ = genre_matrix(items, item_ids)
    frame["row"] = pd.Index(item_ids).get_indexer(frame["item"])
    frame["centred"] = frame["rating"] - frame.groupby("user")["rating"].transform("mean")
    grouped = frame.groupby(["user", "day"], sort=True)
    shares = pd.DataFrame(genres[frame["row"]], index=frame.index).groupby([frame["user"], frame["day"]]).sum()
    totals = shares.sum(axis=1).replace(0, np.nan)
    repetition = ((shares.div(totals, axis=0)) ** 2).sum(axis=1).where(totals.notna())
    visits = grouped.agg(depth=("item", "size"), satisfaction=("centred", "mean")).reset_index()
    visits["repetition"] = repetition.to_numpy()
    visits["gap"] = visits.groupby("user")["day"].shift(-1) - visits["day"]
    end = int(frame["day"].max())
    return Visits(user=visits["user"].to_numpy(object), day=visits["day"].to_numpy(np.int64),
                  depth=visits["depth"].to_numpy(np.int64), satisfaction=visits["satisfaction"].to_numpy(float),
                  repetition=visits["repetition"].to_numpy(float), gap=visits["gap"].to_numpy(float),
                  follow_up=(end - visits["day"]).to_numpy(np.int64))


def fingerprints(events: pd.DataFrame) -> pd.Series:
    """Per user id, a name made of their data alone (first event's time and item, number of
    events): the same user gets the same one in any data home, whatever its pseudonym key."""
    seconds = pd.to_datetime(events["timestamp"], utc=True).astype("int64") // 10**9  # text or typed, the same
    ordered = events.assign(seconds=seconds).sort_values(["seconds", "item_id"], kind="stable")
    first = ordered.groupby("user_id").agg(time=("seconds", "first"), item=("item_id", "first"),
                                           n=("item_id", "size"))
    return first["time"].astype(str) + "|" + first["item"].astype(str) + "|" + first["n"].astype(str)


def buckets(keys, salt: str = "longview-simulator") -> np.ndarray:
    """Per user (by its fingerprint), a fixed number in [0, 1): the same every run and in every data home."""
    return np.array([int.from_bytes(hashlib.sha256(f"{salt}:{k}".encode()).digest()[:8], "big") / 2**64
                     for k in keys])


def held_out(keys, share: float = 0.3) -> np.ndarray:
    """Per user, whether it is held out of the fit (the reported users)."""
    return buckets(keys) < share


@dataclass(frozen=True)
class GapTargets:
    """The return statistics the simulator must reproduce, within the horizon."""

    return_rate: float  # share of visits (with the whole horizon to come) followed by a return within it
    gaps: np.ndarray  # the gaps within the horizon
    depths: np.ndarray  # depths of returning visits (Visits.returning)

    @classmethod
    def of(cls, visits: Visits, horizon: int = HORIZON_DAYS) -> "GapTargets":
        full = visits.follow_up >= horizon
        returned = full & (visits.gap <= horizon)
        within = visits.gap[np.isfinite(visits.gap) & (visits.gap <= horizon)]
        return cls(float(returned.sum() / max(full.sum(), 1)), within.astype(float),
                   visits.depth[visits.returning].astype(float))


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov distance (1 where either sample is empty)."""
    return float(stats.ks_2samp(a, b).statistic) if len(a) and len(b) else 1.0


@dataclass(frozen=True)
class ReturnProcess:
    """Days to the next visit: a user churns at a visit with probability ``churn``; otherwise the
    daily chance of coming back after t days is a discrete Weibull hazard,
    1 - exp(-rate * ((t)^shape - (t-1)^shape)), rate per user from LogNormal(log_rate, rate_spread)
    (heterogeneity: some users come back every few days, some every few months), scaled by the
    last visit's satisfaction and boredom (training/simulation/users.py)."""

    log_rate: float
    rate_spread: float
    shape: float
    churn: float

    def draw_gap(self, rate: np.ndarray, multiplier: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Days to each user's next visit (inf: churned), by inverting the survival exp(-rate m t^k)."""
        u = rng.random(len(rate))
        churned = rng.random(len(rate)) < self.churn
        t = (-np.log(np.maximum(u, 1e-300)) / (rate * multiplier)) ** (1.0 / self.shape)
        return np.where(churned, np.inf, np.maximum(np.ceil(t), 1.0))


def fit_return_process(visits: Visits, horizon: int = HORIZON_DAYS, seed: int = 0,
                       users: int = 10_000) -> tuple[ReturnProcess, float]:
    """The return process whose simulated visits (users started on the real users' first days, run
    to the window's end) best match ``visits``' return rate and gap distribution within the
    horizon; returns it and the objective (KS of gaps + |return-rate difference|)."""
    target = GapTargets.of(visits, horizon)
    starts = np.sort(pd.Series(visits.day).groupby(visits.user).min().to_numpy())  # in any home the same
    end = int(visits.day.max() + visits.follow_up.min())
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal(users)
    start = rng.choice(starts, users)

    def objective(x: np.ndarray) -> float:
        process = ReturnProcess(float(x[0]), float(abs(x[1])), float(np.clip(x[2], 0.2, 3.0)),
                                float(np.clip(x[3], 0.0, 0.95)))
        found = GapTargets.of(simulate_return_visits(process, normal, start, end, np.random.default_rng(seed)),
                              horizon)
        return ks(found.gaps, target.gaps) + abs(found.return_rate - target.return_rate)

    best = min((optimize.minimize(objective, x0, method="Nelder-Mead", options={"maxiter": 300, "xatol": 1e-3})
                for x0 in ([-2.5, 1.0, 0.8, 0.3], [-4.0, 1.5, 1.0, 0.1])), key=lambda r: r.fun)
    x = best.x
    return ReturnProcess(float(x[0]), float(abs(x[1])), float(np.clip(x[2], 0.2, 3.0)),
                         float(np.clip(x[3], 0.0, 0.95))), float(best.fun)


def simulate_return_visits(process: ReturnProcess, normal: np.ndarray, start: np.ndarray, end: int,
                           rng: np.random.Generator) -> Visits:
    """Visit days of users following ``process`` alone (no policy: satisfaction and boredom at
    their means) from ``start`` to ``end``, as Visits (depth 1)."""
    rate = np.exp(process.log_rate + process.rate_spread * normal)
    users, days = [], []
    day = start.astype(float).copy()
    alive = day <= end
    index = np.arange(len(rate))
    while alive.any():
        users.append(index[alive])
        days.append(day[alive])
        day[alive] = day[alive] + process.draw_gap(rate[alive], np.ones(alive.sum()), rng)
        alive &= day <= end
    user = np.concatenate(users)
    visit_day = np.concatenate(days)
    order = np.lexsort((visit_day, user))
    user, visit_day = user[order], visit_day[order]
    gap = np.r_[np.where(user[1:] == user[:-1], visit_day[1:] - visit_day[:-1], np.nan), np.nan]
    n = len(user)
    return Visits(user=user.astype(str).astype(object), day=visit_day.astype(np.int64), depth=np.ones(n, np.int64),
                  satisfaction=np.zeros(n), repetition=np.zeros(n), gap=gap,
                  follow_up=(end - visit_day).astype(np.int64))


@dataclass(frozen=True)
class DepthProcess:
    """A user's chance of going on after each item of a visit: logit(go_on) ~ Normal(centre,
    spread), so a visit's depth is a mixture of geometric distributions, tied to the user's return
    rate with ``correlation`` (in the data, users who come back often make shallower visits: the log
    of a user's visits and of their median depth correlate at about -0.7 in ml-100k)."""

    centre: float
    spread: float
    correlation: float

    def go_on(self, rate_normal: np.ndarray, own_normal: np.ndarray) -> np.ndarray:
        z = self.correlation * rate_normal + np.sqrt(1 - self.correlation**2) * own_normal
        return 1.0 / (1.0 + np.exp(-(self.centre + self.spread * z)))


def fit_depth(visits: Visits, process: ReturnProcess, cap: int, seed: int = 0,
              users: int = 10_000) -> tuple[DepthProcess, float]:
    """The depth process whose simulated visits (the return process's, users started as in the
    data) match the depths of ``visits``' returning visits best (KS; depths over ``cap``, the
    simulator's most items in a visit, count as ``cap`` on both sides); returns it and the KS."""
    starts = np.sort(pd.Series(visits.day).groupby(visits.user).min().to_numpy())  # in any home the same
    end = int(visits.day.max() + visits.follow_up.min())
    rng = np.random.default_rng(seed)
    normal, own, start = rng.standard_normal(users), rng.standard_normal(users), rng.choice(starts, users)
    replay = simulate_return_visits(process, normal, start, end, np.random.default_rng(seed))
    uniforms = np.random.default_rng(seed + 1).random(len(replay.user))
    owner = replay.user.astype(int)
    target = np.minimum(visits.depth[visits.returning], cap).astype(float)

    def process(x: np.ndarray) -> DepthProcess:
        return DepthProcess(float(x[0]), float(abs(x[1])), float(np.tanh(x[2])))

    def distance(x: np.ndarray) -> float:
        return ks(geometric_depths(process(x).go_on(normal, own)[owner], uniforms, cap), target)

    best = min((optimize.minimize(distance, x0, method="Nelder-Mead", options={"maxiter": 400})
                for x0 in ([2.5, 1.5, -0.5], [1.5, 2.5, 0.0])), key=lambda r: r.fun)
    return process(best.x), float(best.fun)


def replay_depths(depth: DepthProcess, replay: Visits, normal: np.ndarray, own: np.ndarray,
                  rng: np.random.Generator, cap: int) -> np.ndarray:
    """A depth for each replayed visit, from its user's go-on chance."""
    go_on = depth.go_on(normal, own)[replay.user.astype(int)]
    return geometric_depths(go_on, rng.random(len(go_on)), cap)


def geometric_depths(go_on: np.ndarray, uniforms: np.ndarray, cap: int) -> np.ndarray:
    """Items taken in a visit that goes on after each item with chance ``go_on`` (1 to ``cap``)."""
    depth = np.floor(np.log(np.maximum(uniforms, 1e-300)) / np.log(np.clip(go_on, 1e-12, 1 - 1e-12))) + 1.0
    return np.minimum(depth, cap)


@dataclass(frozen=True)
class Effect:
    """A covariate's log hazard ratio of returning, per standard deviation, with its 95% interval."""

    coefficient: float
    low: float
    high: float
    sd: float  # the covariate's standard deviation in the data (what "one SD" is)

    @property
    def tells(self) -> bool:
        """Whether the data tells the direction (the interval excludes 0)."""
        return self.low > 0 or self.high < 0


def estimate_effects(visits: Visits) -> dict[str, Effect]:
    """Does a more satisfying visit (its mean rating above the user's own mean), or one more
    concentrated in a few genres (repetition), bring the user back sooner? A Cox proportional-hazards
    model of the days to the next visit (censored at the window's end), controlling for activity
    (the visit's depth and how many visits the user made before), with standard errors clustered
    by user; coefficients per standard deviation of each covariate."""
    from lifelines import CoxPHFitter

    frame = pd.DataFrame({"user": visits.user, "satisfaction": visits.satisfaction, "repetition": visits.repetition,
                          "depth": np.log(visits.depth), "event": np.isfinite(visits.gap).astype(int),
                          "T": np.where(np.isfinite(visits.gap), visits.gap, visits.follow_up)})
    frame["earlier_visits"] = np.log1p(frame.groupby("user").cumcount())
    frame = frame[(frame["T"] > 0)].dropna()
    sd = {name: float(frame[name].std()) for name in ("satisfaction", "repetition")}
    for name, value in sd.items():
        frame[name] = (frame[name] - frame[name].mean()) / value
    model = CoxPHFitter()
    model.fit(frame[["T", "event", "satisfaction", "repetition", "depth", "earlier_visits", "user"]], "T", "event",
              cluster_col="user")
    summary = model.summary
    return {name: Effect(float(summary.loc[name, "coef"]), float(summary.loc[name, "coef lower 95%"]),
                         float(summary.loc[name, "coef upper 95%"]), sd[name])
            for name in ("satisfaction", "repetition")}
