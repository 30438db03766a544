"""The simulated users: who they are (tastes and histories of real users), how they choose from a
slate, tire of what they have seen and come back (or do not).

Choice (per slate, one item at a time, a cascade): the user scans the slots not yet taken from the
top, looks at slot p with probability ``position_decay**p`` and takes its item with chance
sigmoid(utility - ``outside_utility``); reaching the end with nothing taken ends this slate (the
user then asks for the next one, and leaves after ``patience`` slates in a row with nothing taken), where

    utility(u, i) = taste_weight x cos(taste_u, genres_i) + quality_weight x quality_i
                    - boredom_weight x exposure_u . genres_i / (1 + sum(exposure_u))

``quality`` is the item's Bayesian-averaged rating in the data (standardised); ``exposure`` the
genres of what the user took, fading by ``exposure_decay`` a day (boredom: the same genres again are
worth less). After taking an item the user goes on with their own chance ``go_on`` (from the
fitted depth process: Beta, tied to the user's return rate), else the visit ends.

Returning: at the end of a visit a user churns with probability ``returns.churn``; otherwise the
days to the next visit follow the fitted discrete-Weibull return process with the user's own rate,
multiplied by exp(satisfaction_effect x S + repetition_effect x R): S, the visit's satisfaction
(the mean over its items of the item's utility standardised over the catalogue for this user); R,
the visit's genre repetition (Herfindahl index of its items' genre shares, standardised as in the
data). The two effects are the data's Cox estimates (training/simulation/calibration.py), per
standard deviation, so a visit that is one SD more satisfying changes the return hazard as the data
says one SD of rating above the user's own mean does."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from training.simulation.calibration import DepthProcess, ReturnProcess


@dataclass(frozen=True)
class ChoiceModel:
    taste_weight: float = 3.0  # utility per unit of cosine between the user's taste and the item's genres
    quality_weight: float = 0.5  # utility per SD of the item's (Bayesian-averaged) rating
    position_decay: float = 0.85  # the chance of looking at slot p is position_decay ** p
    outside_utility: float = 1.5  # the utility of taking nothing more from this slate
    patience: int = 2  # slates in a row the user takes nothing from before leaving
    boredom_weight: float = 2.0  # utility lost when all recent exposure is in the item's genres
    exposure_decay: float = 0.8  # per day, exposure to each genre keeps this share
    max_depth: int = 200  # items in one visit at most (a guard, far above the data's 99th percentile)


@dataclass(frozen=True)
class UserModel:
    """Every parameter of the simulated users; ``digest`` names this exact set in every report."""

    returns: ReturnProcess
    depth: DepthProcess
    satisfaction_effect: float  # log hazard ratio of returning per SD of visit satisfaction
    repetition_effect: float  # log hazard ratio of returning per SD of visit genre repetition
    repetition_mean: float  # the data's mean and SD of visit genre repetition (R's standardisation)
    repetition_sd: float
    choice: ChoiceModel = field(default_factory=ChoiceModel)
    page_size: int = 10  # items per slate requested

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "UserModel":
        values = dict(values)
        return cls(returns=ReturnProcess(**values.pop("returns")), depth=DepthProcess(**values.pop("depth")),
                   choice=ChoiceModel(**values.pop("choice")), **values)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def scaled(self, name: str, factor: float) -> "UserModel":
        """This model with one parameter (``returns.shape``, ``choice.taste_weight``, or a top-level
        one) multiplied by ``factor``: for sensitivity runs."""
        group, _, leaf = name.rpartition(".")
        if not group:
            return replace(self, **{leaf: getattr(self, leaf) * factor})
        inner = getattr(self, group)
        return replace(self, **{group: replace(inner, **{leaf: getattr(inner, leaf) * factor})})


@dataclass
class Population:
    """Simulated users: the tastes and histories of real users, their own return rates and chances
    of going on, and their state (exposure, last visit, churned)."""

    user_ids: list[str]
    taste: np.ndarray  # users x genres, unit rows
    histories: list[list[str]]  # item ids, oldest first: what the policy reads
    rate: np.ndarray  # each user's return rate (the Weibull scale)
    go_on: np.ndarray  # each user's chance of going on after an item
    exposure: np.ndarray  # users x genres
    last_event: np.ndarray  # Unix seconds of each user's last event (nan: none)

    @classmethod
    def of(cls, user_ids: list[str], taste: np.ndarray, histories: list[list[str]], last_event: np.ndarray,
           model: UserModel, rng: np.random.Generator) -> "Population":
        n = len(user_ids)
        norms = np.linalg.norm(taste, axis=1, keepdims=True)
        rate_normal, own_normal = rng.standard_normal(n), rng.standard_normal(n)
        rate = np.exp(model.returns.log_rate + model.returns.rate_spread * rate_normal)
        return cls(list(user_ids), taste / np.where(norms > 0, norms, 1.0), [list(h) for h in histories], rate,
                   model.depth.go_on(rate_normal, own_normal), np.zeros_like(taste, dtype=float),
                   np.asarray(last_event, dtype=float))


def utilities(model: ChoiceModel, taste: np.ndarray, genres: np.ndarray, quality: np.ndarray,
              exposure: np.ndarray) -> np.ndarray:
    """Each item's utility for one user (``genres``: items x genres, unit rows or zeros)."""
    bored = genres @ exposure / (1.0 + exposure.sum())
    return model.taste_weight * (genres @ taste) + model.quality_weight * quality - model.boredom_weight * bored


def choose(model: ChoiceModel, utility: np.ndarray, taken: np.ndarray, rng: np.random.Generator) -> int | None:
    """One pick from a slate, as a cascade (Craswell et al., 2008): the user scans the slots not yet
    taken from the top, looks at slot p with chance ``position_decay**p`` and takes its item with
    chance sigmoid(utility - outside_utility); the first item taken is the pick (None: nothing).
    Whether slot p is taken depends on the items at and above p only, which is what a slate's
    cascade propensities can correct for."""
    for slot in np.flatnonzero(~taken):
        if rng.random() < model.position_decay ** slot and rng.random() < take_chance(model, float(utility[slot])):
            return int(slot)
    return None


def take_chance(model: ChoiceModel, utility: float) -> float:
    """The chance a looked-at item is taken: sigmoid(utility - outside_utility)."""
    return 1.0 / (1.0 + np.exp(model.outside_utility - utility))


def repetition(genres_taken: np.ndarray) -> float:
    """The Herfindahl index of the genre shares of a visit's items (0 with no genres)."""
    shares = genres_taken.sum(axis=0)
    total = shares.sum()
    return float(((shares / total) ** 2).sum()) if total > 0 else 0.0
