"""A simulated world from a data home's events and catalogue: the calibrated user model (fitted on
one part of the users, checked on the rest), the catalogue as the users see it, and a population
made of real users' tastes and histories."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.simulation import calibration as cal
from training.simulation.users import ChoiceModel, Population, UserModel
from training.simulation.world import Catalogue

# Shrinks an item's mean rating towards the overall mean, as if it had this many more ratings at it.
PRIOR_RATINGS = 10
FROZEN_DIR = Path(__file__).parent / "calibrated"


@dataclass(frozen=True)
class Calibration:
    model: UserModel
    report: dict  # the targets, the fit and the effects, for the docs and every run's log


def calibrate(events: pd.DataFrame, items: pd.DataFrame, choice: ChoiceModel | None = None,
              seed: int = 0, folds: int = 5) -> Calibration:
    """Fit the return process and visit depths on the users ``calibration.held_out`` leaves in (the
    tuning users), estimate the satisfaction and repetition effects on all visits (with intervals),
    and check the fit on users it never saw: the reported users, and each of ``folds`` folds of all
    users fitted on the others (a single split of a few hundred users can be unlucky: heavy users
    weigh a lot in visit-level distributions, so the split's two real halves are compared too)."""
    choice = choice or ChoiceModel()
    visits = cal.real_visits(events, items)
    keys = cal.fingerprints(events).reindex(visits.user).to_numpy()
    order = np.lexsort((visits.day, keys))  # users in fingerprint order: the same numbers in any data home
    visits, keys = visits.subset(order), keys[order]
    out = cal.held_out(keys)
    model, fit_report = _fit(visits.subset(~out), choice, seed)
    effects = cal.estimate_effects(visits)
    model = replace(model, satisfaction_effect=effects["satisfaction"].coefficient,
                    repetition_effect=effects["repetition"].coefficient)
    bucket = cal.buckets(keys)
    crossed = [_check(*_fit(visits.subset(~part), choice, seed), visits.subset(part), seed)
               for part in (((bucket * folds).astype(int) == k) for k in range(folds))]
    report = {
        "visits": int(len(visits.user)), "users": int(len(set(visits.user))),
        "held_out_users": int(len(set(visits.user[out]))), "horizon_days": cal.HORIZON_DAYS,
        "max_depth": choice.max_depth, **fit_report,
        "held_out": _check(model, {}, visits.subset(out), seed),
        "real_halves": {"gap_ks": round(cal.ks(cal.GapTargets.of(visits.subset(~out)).gaps,
                                               cal.GapTargets.of(visits.subset(out)).gaps), 4),
                        "depth_ks": round(cal.ks(cal.GapTargets.of(visits.subset(~out)).depths,
                                                 cal.GapTargets.of(visits.subset(out)).depths), 4)},
        "cross_validated": {f"{name}_{stat}": round(float(fn([c[name] for c in crossed])), 4)
                            for name in ("gap_ks", "depth_ks") for stat, fn in (("mean", np.mean), ("max", np.max))},
        "effects": {name: {"per_sd": round(e.coefficient, 4), "low": round(e.low, 4), "high": round(e.high, 4),
                           "sd": round(e.sd, 4), "data_tells": e.tells} for name, e in effects.items()},
    }
    return Calibration(model, report)


def _fit(visits: cal.Visits, choice: ChoiceModel, seed: int) -> tuple[UserModel, dict]:
    returns, objective = cal.fit_return_process(visits, seed=seed)
    depth, depth_ks = cal.fit_depth(visits, returns, choice.max_depth, seed=seed)
    repeated = visits.repetition[np.isfinite(visits.repetition)]
    model = UserModel(returns=returns, depth=depth, satisfaction_effect=0.0, repetition_effect=0.0,
                      repetition_mean=float(repeated.mean()), repetition_sd=float(repeated.std()), choice=choice)
    return model, {"fit_objective": round(objective, 4), "fit_depth_ks": round(depth_ks, 4)}


def _check(model: UserModel, _: dict, visits: cal.Visits, seed: int, users: int = 20_000) -> dict:
    """The model's replayed visits (users started on ``visits``' users' first days) against
    ``visits``: KS of the gaps within the horizon and of the depths, and the return rates."""
    real = cal.GapTargets.of(visits)
    starts = np.sort(pd.Series(visits.day).groupby(visits.user).min().to_numpy())  # in any home the same
    rng = np.random.default_rng(seed + 1)
    normal, own = rng.standard_normal(users), rng.standard_normal(users)
    replay = cal.simulate_return_visits(model.returns, normal, rng.choice(starts, users),
                                        int(visits.day.max() + visits.follow_up.min()), rng)
    cap = model.choice.max_depth
    depths = cal.replay_depths(model.depth, replay, normal, own, rng, cap)
    simulated = cal.GapTargets.of(replay)
    return {"gap_ks": round(cal.ks(simulated.gaps, real.gaps), 4),
            "depth_ks": round(cal.ks(depths, np.minimum(real.depths, cap)), 4),
            "return_rate": round(real.return_rate, 4), "simulated_return_rate": round(simulated.return_rate, 4)}


def save(calibration: Calibration, path: Path) -> str:
    """Freeze a calibration (the user model and its report) as JSON; returns the model's digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"digest": calibration.model.digest(), "model": calibration.model.as_dict(),
                                "report": calibration.report}, indent=2) + "\n")
    return calibration.model.digest()


def load(path: Path) -> Calibration:
    """A frozen calibration; refused if its parameters no longer match the digest it was saved with."""
    try:
        values = json.loads(Path(path).read_text())
        model = UserModel.from_dict(values["model"])
    except FileNotFoundError:
        raise FileNotFoundError(f"no frozen user model at {path}: run `longview simulate --calibrate` first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a frozen user model: {exc}") from None
    if model.digest() != values.get("digest"):
        raise ValueError(f"{path}: its parameters were changed after it was frozen (digest {model.digest()}, "
                         f"recorded {values.get('digest')})")
    return Calibration(model, values.get("report", {}))


def users_of(events: pd.DataFrame, part: str, n: int | None = None) -> list[str]:
    """The users of one part: "reported" (held out of the calibration: what reports are about) or
    "tuning" (the users the calibration was fitted on, which tuning may use); the first ``n`` of
    them in the order of their fingerprints' hashes, the same in any data home."""
    if part not in ("reported", "tuning"):
        raise ValueError(f"unknown part {part!r}: expected reported or tuning")
    keys = cal.fingerprints(events)
    out = cal.held_out(keys.to_numpy())
    chosen = keys[out if part == "reported" else ~out]
    ordered = sorted(chosen.index.astype(str), key=lambda u: hashlib.sha256(chosen[u].encode()).hexdigest())
    return ordered[:n] if n else ordered


def catalogue_of(events: pd.DataFrame, items: pd.DataFrame) -> Catalogue:
    """Every catalogue item with its genre shares and its rating, Bayesian-averaged and standardised
    (items without ratings sit at the overall mean)."""
    item_ids = sorted(items["item_id"].astype(str))
    shares, _ = cal.genre_matrix(items, item_ids)
    rating = pd.to_numeric(events["value"], errors="coerce")
    totals = pd.DataFrame({"item": events["item_id"].astype(str), "r": rating}).dropna() \
        .groupby("item")["r"].agg(["sum", "count"]).reindex(item_ids).fillna(0.0)
    overall = float(rating.mean()) if rating.notna().any() else 0.0
    quality = (totals["sum"] + PRIOR_RATINGS * overall) / (totals["count"] + PRIOR_RATINGS)
    spread = float(quality.std()) or 1.0
    return Catalogue(item_ids, shares, ((quality - quality.mean()) / spread).to_numpy())


def population_of(events: pd.DataFrame, catalogue: Catalogue, model: UserModel, users: list[str],
                  seed: int) -> Population:
    """Simulated users made of real ones: each one's taste is the genre mix of their events (with a
    little of everyone's, so no genre is impossible), their history their events in time order."""
    frame = events[events["user_id"].isin(set(users))].sort_values("timestamp", kind="stable")
    index = {item: i for i, item in enumerate(catalogue.item_ids)}
    rows = frame["item_id"].map(index)
    frame = frame[rows.notna()].assign(row=rows[rows.notna()].astype(int))
    everyone = catalogue.shares[frame["row"]].mean(axis=0) if len(frame) else np.zeros(catalogue.shares.shape[1])
    by_user = frame.groupby("user_id")
    histories = by_user["item_id"].apply(list)
    taste = np.stack([catalogue.shares[by_user.get_group(u)["row"]].sum(axis=0) + everyone if u in histories
                      else everyone for u in users])
    last = pd.to_datetime(frame["timestamp"], utc=True).astype("int64") // 10**9
    last_event = last.groupby(frame["user_id"]).max()
    return Population.of(users, taste, [histories.get(u, []) for u in users],
                         np.array([last_event.get(u, np.nan) for u in users], dtype=float), model,
                         np.random.default_rng(seed))


def frozen_path(settings, dataset: str = "ml-100k") -> Path:
    """The frozen user model a data home's simulations read (the ``simulation.user_model`` setting,
    default the committed ml-100k calibration)."""
    return settings.simulation.user_model or FROZEN_DIR / f"{dataset}.json"


@dataclass
class World:
    """What every simulation of a data home starts from: the frozen user model, the catalogue as
    users see it, the chosen users and day 0 (the day after the data's clock)."""

    calibration: Calibration
    events: pd.DataFrame
    items: pd.DataFrame
    catalogue: Catalogue
    users: list[str]
    start: float  # Unix seconds of day 0

    @classmethod
    def of(cls, settings, part: str, users: int | None) -> "World":
        from longview.store import dataset_clock, load_catalogue, load_events

        calibration = load(frozen_path(settings))
        events, items = load_events(settings), load_catalogue(settings)
        if events.empty:
            raise ValueError(f"no events in {settings.home} to simulate users from")
        return cls(calibration, events, items, catalogue_of(events, items), users_of(events, part, users),
                   dataset_clock(events).timestamp() + 86_400)

    def population(self, seed: int) -> Population:
        return population_of(self.events, self.catalogue, self.calibration.model, self.users, seed)
