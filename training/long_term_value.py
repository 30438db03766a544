"""Evaluating the long-term value head on a temporal holdout, against its baseline.

Every visit that ends after the split time is a question: will this user come back within H days,
and when? The truth comes from the data's own later events, censored at its last event (a visit
too close to the end to know is left out of the return-within-H figure, and counts as censored in
the concordance). The model reads the user's history up to the visit's end and the profile Feast
held then; it was trained on what came before the validation time.

The baseline is the standard churn model: a logistic regression on recency (the last return gap),
frequency (engagements in the last 7 and 30 days), the mean return gap and active days, read from
the same Feast profile, fitted on every visit before the split whose outcome was known by then.

Return AUC and Harrell's concordance index of the time to return (lifelines) come with 95%
intervals from a bootstrap over users (a user's visits are not independent), paired: both models
are scored on the same resampled users."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from training.models.base import PROFILE_FIELDS, Queries
from training.models.value_head import ReturnForecast, returns_after
from training.sequences import ProfileSource, Split, UserSequence

if TYPE_CHECKING:
    from longview.settings import Settings

# The baseline's features: the profile columns (log-scaled by profile_vectors) that churn models use.
BASELINE_FIELDS = ("last_return_gap", "events_7d", "events_30d", "mean_return_gap", "active_days")
BASELINE_COLUMNS = [PROFILE_FIELDS.index(name) for name in BASELINE_FIELDS]


@dataclass
class Visits:
    """Visit ends in a time window, one row each: who, the history and profile then (``queries``:
    ``now`` is the visit's last event), the days until the next visit or censoring, and whether
    that return was seen."""

    users: list[str]
    queries: Queries
    days: np.ndarray
    returned: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def within(self, return_days: float) -> tuple[np.ndarray, np.ndarray]:
        """(known, label): whether a return within ``return_days`` is known (seen, or watched that
        long without one), and whether it happened."""
        label = self.returned & (self.days <= return_days)
        return label | (self.days >= return_days), label

    def groups(self) -> list[np.ndarray]:
        """Each user's visit indices: what a bootstrap over users resamples."""
        names = np.asarray(self.users)
        return [np.flatnonzero(names == user) for user in dict.fromkeys(self.users)]

    def baseline_features(self) -> np.ndarray:
        if self.queries.profiles is None:
            raise ValueError("the visits were built without user profiles: the baseline reads them")
        return self.queries.profiles[:, BASELINE_COLUMNS]


def visit_ends_between(users: list[UserSequence], start: float, stop: float, until: float,
                       profiles: ProfileSource) -> Visits:
    """Every visit ending in [start, stop), its return looked for up to ``until`` (later events
    are not seen), with each user's history to that point and profile just after it."""
    who, histories, now, days, returned = [], [], [], [], []
    for u in users:
        seen = int(np.searchsorted(u.times, until, side="right"))
        if not seen:
            continue
        ends, gap, back = returns_after(u.times[:seen], u.visits[:seen], until)
        keep = (u.times[ends] >= start) & (u.times[ends] < stop)
        for end, d, r in zip(ends[keep], gap[keep], back[keep], strict=True):
            who.append(u.user)
            histories.append(u.items[:end + 1])
            now.append(u.times[end])
            days.append(d)
            returned.append(r)
    times = np.asarray(now, dtype=np.float64)
    vectors = profiles(who, times + 1.0) if who else None  # the source looks a second before the time
    return Visits(who, Queries(histories, times, times.copy(), vectors), np.asarray(days, dtype=np.float64),
                  np.asarray(returned, dtype=bool))


class ReturnBaseline:
    """Logistic regression of a return within H days on the profile's recency, frequency and
    regularity (BASELINE_FIELDS), standardised."""

    def __init__(self, return_days: float) -> None:
        self.return_days = return_days
        self.model = None

    def fit(self, visits: Visits) -> "ReturnBaseline":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        known, label = visits.within(self.return_days)
        if known.sum() < 2 or len(np.unique(label[known])) < 2:
            raise ValueError("the baseline needs visits before the split that both did and did not come back "
                             f"within {self.return_days:g} days")
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.model.fit(visits.baseline_features()[known], label[known])
        return self

    def within(self, visits: Visits) -> np.ndarray:
        assert self.model is not None, "fit the baseline first"
        return self.model.predict_proba(visits.baseline_features())[:, 1]


def return_auc(label: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(label, score)) if len(np.unique(label)) == 2 else float("nan")


def auc_metric(known: np.ndarray, label: np.ndarray, scores: np.ndarray) -> Metric:
    """Return AUC of ``scores`` on the visits of an index array whose outcome is ``known``."""
    return lambda idx: return_auc(label[idx[known[idx]]], scores[idx[known[idx]]])


def concordance(days: np.ndarray, returned: np.ndarray, predicted_days: np.ndarray, horizon: float) -> float:
    """Harrell's C of the time to return, truncated at the horizon (later returns are censored
    there, as the head models them): 1 orders every comparable pair right, 0.5 is chance."""
    from lifelines.utils import concordance_index

    observed = returned & (days <= horizon)
    try:
        return float(concordance_index(np.minimum(days, horizon), predicted_days, observed))
    except ZeroDivisionError:  # no comparable pair
        return float("nan")


Metric = Callable[[np.ndarray], float]  # anchor indices -> the metric on them


def paired_bootstrap(groups: list[np.ndarray], model: Metric, baseline: Metric, samples: int, seed: int
                     ) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the model's metric, the baseline's and their difference, over
    resamples of ``groups`` (each user's anchor indices)."""
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, 3))
    for n in range(samples):
        picked = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        a, b = model(picked), baseline(picked)
        draws[n] = a, b, a - b
    lo, hi = np.nanpercentile(draws, 2.5, axis=0), np.nanpercentile(draws, 97.5, axis=0)
    return {key: (float(lo[i]), float(hi[i])) for i, key in enumerate(("model", "baseline", "difference"))}


@dataclass
class ValueReport:
    """The head against the baseline on the holdout's visits."""

    return_days: float
    horizon_days: float
    visits: int
    users: int
    known: int  # visits whose return within H is known
    return_share: float  # of those, the share that did return
    auc: dict[str, float]
    concordance: dict[str, float]
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # What the figures came from (for plots), not reported.
    forecast: ReturnForecast | None = field(default=None, repr=False)
    holdout: Visits | None = field(default=None, repr=False)
    baseline_within: np.ndarray | None = field(default=None, repr=False)

    def figures(self) -> dict:
        """The report as JSON-ready figures (4 decimals)."""
        return {"return_auc": {k: round(v, 4) for k, v in self.auc.items()},
                "concordance": {k: round(v, 4) for k, v in self.concordance.items()},
                "return_days": self.return_days, "horizon_days": self.horizon_days, "visits": self.visits,
                "users": self.users,
                "intervals": {m: {k: [round(x, 4) for x in v] for k, v in ci.items()}
                              for m, ci in self.intervals.items()}}

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow."""
        return {f"{who}.{name}": float(v) for name, values in (("return_auc", self.auc), ("concordance", self.concordance))
                for who, v in values.items()}

    @staticmethod
    def verdict(interval: tuple[float, float]) -> str:
        return "better" if interval[0] > 0 else "worse" if interval[1] < 0 else "within noise"

    def lines(self) -> list[str]:
        out = [f"{self.visits:,} visits of {self.users:,} users after the split; return within "
               f"{self.return_days:g} days known for {self.known:,}, of which {self.return_share:.1%} returned"]
        for name, figures, what in (("auc", self.auc, f"return within {self.return_days:g} days, AUC"),
                                    ("concordance", self.concordance,
                                     f"time to return (to {self.horizon_days:g} days), concordance")):
            ci = self.intervals.get(name, {})
            parts = [f"{who} {figures[who]:.4f}" + (f" [{ci[who][0]:.4f}, {ci[who][1]:.4f}]" if who in ci else "")
                     for who in ("model", "baseline")]
            line = f"{what}: " + ", ".join(parts)
            if "difference" in ci:
                diff = figures["model"] - figures["baseline"]
                line += (f"; model - baseline {diff:+.4f} [{ci['difference'][0]:+.4f}, {ci['difference'][1]:+.4f}]: "
                         f"{self.verdict(ci['difference'])}")
            out.append(line)
        return out


def compare(forecast: ReturnForecast, baseline: np.ndarray, visits: Visits, samples: int, seed: int) -> ValueReport:
    """The head's forecast and the baseline's probabilities on the same visits, with paired
    intervals (none when ``samples`` is 0)."""
    h, horizon = forecast.return_days, forecast.horizon_days
    known, label = visits.within(h)
    groups = visits.groups()

    def auc_of(scores: np.ndarray) -> Metric:
        return auc_metric(known, label, scores)

    def c_of(predicted_days: np.ndarray) -> Metric:
        return lambda idx: concordance(visits.days[idx], visits.returned[idx], predicted_days[idx], horizon)

    everyone = np.arange(len(visits))
    # The baseline ranks by its probability of a return within H: sooner returns, higher scores.
    model_auc, base_auc = auc_of(forecast.within), auc_of(baseline)
    model_c, base_c = c_of(forecast.expected_days), c_of(-baseline)
    intervals = {} if not samples else {"auc": paired_bootstrap(groups, model_auc, base_auc, samples, seed),
                                        "concordance": paired_bootstrap(groups, model_c, base_c, samples, seed)}
    return ValueReport(h, horizon, len(visits), len(groups), int(known.sum()),
                       float(label[known].mean()) if known.any() else float("nan"),
                       {"model": model_auc(everyone), "baseline": base_auc(everyone)},
                       {"model": model_c(everyone), "baseline": base_c(everyone)}, intervals,
                       forecast, visits, baseline)


def evaluate_head(settings: Settings, split: Split, model, samples: int,
                  visits: tuple[Visits, Visits] | None = None) -> ValueReport | None:
    """The model's value head against the baseline on the temporal split's later visits (``visits``:
    holdout_visits's, if already built); None where there is nothing to evaluate (no head, no real
    time, no visit after the split)."""
    if split.split_time is None or getattr(model, "value", None) is None:
        return None
    before, after = visits if visits is not None else holdout_visits(settings, split)
    forecast = model.forecast_returns(after.queries) if len(after) else None
    if forecast is None:
        return None
    baseline = ReturnBaseline(settings.value.return_days).fit(before)
    return compare(forecast, baseline.within(after), after, samples, settings.seed)



def holdout_visits(settings: Settings, split: Split) -> tuple[Visits, Visits]:
    """(before, after): the visits ending before the split, their returns looked for up to it
    (the baseline's training set), and those ending after it, looked for up to the data's last
    event (the holdout). Item indices are the split's; profiles come from Feast."""
    from longview.features import genre_vocabulary
    from longview.store import load_catalogue, load_events
    from training.sequences import ordered_engagements, user_sequences
    from training.user_profiles import feast_profiles

    if split.split_time is None:
        raise ValueError("the long-term value head is evaluated on a temporal split (it needs real event times)")
    events = load_events(settings)
    eng = ordered_engagements(events, settings)
    users = user_sequences(eng, {item: i + 1 for i, item in enumerate(split.train.item_ids)})
    source = feast_profiles(settings, len(genre_vocabulary(load_catalogue(settings))))
    split_s = split.split_time.value / 1e9
    clock = max(float(u.times[-1]) for u in users)
    return (visit_ends_between(users, -np.inf, split_s, split_s, source),
            visit_ends_between(users, split_s, np.inf, clock, source))


def gate_visits(settings: Settings, split: Split) -> tuple[Visits, Visits] | None:
    """holdout_visits's (before, after) on a temporal split with the value head enabled, else None."""
    if split.split_time is None or not settings.value.enabled:
        return None
    return holdout_visits(settings, split)
