"""The registered model as MLflow loads it (models-from-code): any model of this package, restored
from a JSON config and a tensors file (torch.load with weights_only=True: nothing is unpickled),
answering rows of (user_id, history, now) with ranked item ids.

This package travels inside the model as ``longview_recommender`` (MLflow ``code_paths``), so a
registered model loads and ranks without this checkout, and never clashes with its ``training``."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import pkgutil
from typing import NamedTuple

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from .base import PROFILE_FIELDS, Queries, Recommender, profile_vectors
from .ranking import exclude_seen, top_k

CONFIG, WEIGHTS = "config", "weights"


@functools.cache
def _classes() -> dict[str, type[Recommender]]:
    """Every model class of this package by its ``name`` (found in the package itself, whatever name
    it travels under: a model added as one module is found with no list to update)."""
    found: dict[str, type[Recommender]] = {}
    for info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
        for value in vars(importlib.import_module(f"{__package__}.{info.name}")).values():
            if isinstance(value, type) and issubclass(value, Recommender) and isinstance(getattr(value, "name", None), str):
                found.setdefault(value.name, value)
    return found


def model_class(config: dict) -> type[Recommender]:
    """The class of the config's ``model``; a name no class of this package has is refused."""
    name = config["model"]
    if name not in _classes():
        raise ValueError(f"no model named {name!r} in {__package__}: expected one of {', '.join(sorted(_classes()))}")
    return _classes()[name]


class Slot(NamedTuple):
    item: str
    score: float
    explored: bool  # shown by the policy's exploration, not its ranking
    propensity: float  # the chance this slot showed this item (1 where the ranking is deterministic)


class PackagedModel(mlflow.pyfunc.PythonModel):
    """Inputs: ``user_id``, ``history`` (item ids engaged with, oldest first: what the model reads
    and, by the model's exclude_seen setting, what it will not recommend again), ``now`` (the
    request's Unix seconds, optional) and ``last_event`` (Unix seconds of the history's last event,
    optional: with ``now``, the gap since the last visit), and the user's profile as Feast serves it
    (optional columns PROFILE_FIELDS and ``taste``; missing: read as zeros). Items the model was
    not trained on are left out of the history. Params: ``k`` (default 10). Output per row: ``items``, ``scores``,
    ``fallback`` (null, or why the ranking is popularity's)."""

    def load_context(self, context) -> None:
        try:
            with open(context.artifacts[CONFIG]) as f:
                config = json.load(f)
            tensors = torch.load(context.artifacts[WEIGHTS], weights_only=True)
            self.load(config, tensors)
        except Exception as exc:  # a clear refusal, whatever broke (truncated file, wrong shapes, bad JSON)
            raise ValueError(f"the model artifact is unreadable or corrupted: {type(exc).__name__}: {exc}") from exc

    def load(self, config: dict, tensors: dict[str, torch.Tensor]) -> "PackagedModel":
        self.config = config
        self.model_name = config["model"]
        self.model = model_class(config).restore(config["model_config"], tensors)
        self.item_ids: list[str] = list(config["item_ids"])
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        self.exclude = bool(config.get("exclude_seen", True))
        return self

    def add_items(self, item_ids: list[str], content: np.ndarray | None) -> list[str]:
        """Items new to the model (``content``: one row each, in the training layout) made rankable
        where the model scores by content; returns the ids it took in (none for id-only models)."""
        if content is not None and len(content) != len(item_ids):
            raise ValueError(f"{len(item_ids)} items but {len(content)} rows of content")
        new = [i for i, item in enumerate(item_ids) if item not in self.index]
        rows = None if content is None else np.asarray(content)[new]
        if not new or not self.model.add_items(rows):
            return []
        for i in new:
            self.item_ids.append(item_ids[i])
            self.index[item_ids[i]] = len(self.item_ids)
        return [item_ids[i] for i in new]

    def encode(self, history) -> np.ndarray:
        """Catalogue indices of a history; unknown items are left out."""
        if history is None or (isinstance(history, float) and np.isnan(history)):
            return np.zeros(0, dtype=np.int64)
        return np.array([self.index[i] for i in history if i in self.index], dtype=np.int64)

    def warm(self, histories: list, stop=lambda: False) -> int:
        """Encode these users' histories (item ids, the most recently active user last) into the
        model's per-user state cache ahead of their requests, where the model keeps one (the
        sequence model, under a policy or not); ``stop``: asked before each user. Returns how many."""
        base = getattr(self.model, "base", None) or self.model
        if not hasattr(base, "warm_states"):
            return 0
        return base.warm_states([self.encode(h) for h in histories], stop)

    @property
    def profile_width(self) -> int:
        """Profile columns the model reads (0: it reads no profile)."""
        return int(getattr(self.model, "profile_width", 0))

    def rank(self, histories: list, now: list | None = None, k: int = 10, last: list | None = None,
             profiles: list | None = None, exclude: bool | None = None) -> list[list[tuple[str, float]]]:
        """Each user's top ``k`` by the model's scores (a policy's scores keep its list order).
        ``profiles``: per user, the profile's fields (a mapping, as Feast serves them) or None.
        ``exclude``: overrides the model's exclude_seen rule for these requests (None: the model's)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not len(histories):
            return []
        scores = None
        for rows, queries in self._groups(histories, now, last, profiles):
            part = self.model.score(queries)
            if scores is None:
                scores = torch.empty((len(histories), part.shape[1]), dtype=part.dtype)
            scores[torch.from_numpy(rows)] = part
        scores = exclude_seen(scores, [self.encode(h) for h in histories], self._exclude(exclude))
        if torch.isnan(scores).any():
            raise ValueError(f"the {self.model_name} model produced NaN scores")
        best = top_k(scores, min(k, len(self.item_ids)))
        out = []
        for row, indices in enumerate(best.tolist()):
            out.append([(self.item_ids[i - 1], float(scores[row, i])) for i in indices
                        if np.isfinite(float(scores[row, i]))])
        return out

    def slots(self, histories: list, now: list | None = None, k: int = 10, last: list | None = None,
              profiles: list | None = None, exclude: bool | None = None,
              seeds: list[int] | None = None) -> list[list[Slot]]:
        """As ``rank``, with, per slot, whether a policy explored it and the propensity it was shown
        with (1 where the ranking is deterministic). A policy's score is the slot's marginal
        objective: it never rises from one ranked slot to the next, and an explored slot's is lower.
        ``seeds``: one per user for a policy's exploration (the same seed, the same list, alone or
        in a batch)."""
        if not hasattr(self.model, "lists"):  # deterministic: no draws to seed
            return [[Slot(item, score, False, 1.0) for item, score in row]
                    for row in self.rank(histories, now, k, last, profiles, exclude)]
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if seeds is not None and len(seeds) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(seeds)} seeds")
        out: list[list[Slot]] = [[] for _ in histories]
        for rows, queries in self._groups(histories, now, last, profiles):
            lists = self.model.lists(queries, min(k, len(self.item_ids)), exclude=self._exclude(exclude),
                                     seeds=None if seeds is None else [seeds[r] for r in rows])
            if np.isnan(lists.scores).any():
                raise ValueError(f"the {self.model_name} policy produced NaN scores")
            for row, items, scores, explored, propensities in zip(
                    rows, lists.items, lists.scores, lists.explored, lists.propensities, strict=True):
                out[row] = [Slot(self.item_ids[i - 1], float(s), bool(e), float(p))
                            for i, s, e, p in zip(items, scores, explored, propensities, strict=True) if i > 0]
        return out

    def _exclude(self, override: bool | None) -> bool:
        return self.exclude if override is None else bool(override)

    def similar(self, item_id: str, k: int = 10) -> tuple[list[tuple[str, float]], str]:
        """The ``k`` items most like ``item_id`` by the model's item representations, most alike
        first, and what the likeness is of. KeyError: an item the model does not know; ValueError:
        a model without item representations (popularity)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        item = self.index[item_id]
        found = self.model.item_similarity(item)
        if found is None:
            raise ValueError(f"the {self.model_name} model has no item representations to compare items by")
        likeness, basis = found
        likeness = likeness.clone()
        likeness[item] = float("-inf")
        best = torch.topk(likeness, min(k, len(self.item_ids) - 1))
        return [(self.item_ids[i - 1], float(v)) for i, v in zip(best.indices.tolist(), best.values.tolist(), strict=True)
                if np.isfinite(v)], basis

    def under_policy(self, weights: dict) -> "PackagedModel":
        """This sequence model ranked by the engagement-aware policy with these weights (a copy;
        any other model is returned as it is)."""
        if self.model_name != "sequence":
            return self
        from .engagement import EngagementPolicy

        policy = EngagementPolicy(self.model, weights, self.exclude)
        wrapped = copy.copy(self)
        wrapped.model, wrapped.model_name = policy, "engagement"
        return wrapped

    def _groups(self, histories: list, now: list | None, last: list | None,
                profiles: list | None) -> list[tuple[np.ndarray, Queries]]:
        """The users as queries, grouped by which times they come with, so that each is scored as
        it would be alone: with the request context where its request time and last event are both
        known, with the request time only (time signals, value) where only that is, without either
        where neither is."""
        n = len(histories)
        if profiles is not None and len(profiles) != n:
            raise ValueError(f"{n} histories but {len(profiles)} profiles")
        when, previous = _times(now, n), _times(last, n)
        vectors = None
        if profiles is not None and self.profile_width:
            vectors = profile_vectors([p if isinstance(p, dict) else None for p in profiles],
                                      self.profile_width - len(PROFILE_FIELDS))
        timed, both = np.isfinite(when), np.isfinite(when) & np.isfinite(previous)
        groups = []
        for rows, with_now, with_last in ((np.flatnonzero(both), True, True),
                                          (np.flatnonzero(timed & ~both), True, False),
                                          (np.flatnonzero(~timed), False, False)):
            if len(rows):
                groups.append((rows, Queries([self.encode(histories[r]) for r in rows],
                                             when[rows] if with_now else None, previous[rows] if with_last else None,
                                             None if vectors is None else vectors[rows])))
        return groups

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        if "history" not in model_input:
            raise ValueError("the input needs a 'history' column: each user's item ids, oldest first")
        now = model_input["now"].tolist() if "now" in model_input else None
        last = model_input["last_event"].tolist() if "last_event" in model_input else None
        fields = [c for c in (*PROFILE_FIELDS, "taste") if c in model_input]
        profiles = model_input[fields].to_dict("records") if fields else None
        ranked = self.rank(model_input["history"].tolist(), now, k, last, profiles)
        fallback = [None if len(self.encode(h)) else "popularity: no known history" for h in model_input["history"]]
        return pd.DataFrame({"items": [[i for i, _ in r] for r in ranked],
                             "scores": [[s for _, s in r] for r in ranked], "fallback": fallback})

    def user_scores(self, history, now: float | None = None, last: float | None = None,
                    profile: dict | None = None) -> np.ndarray:
        """One user's score for every item the model knows (float32, aligned with ``item_ids``;
        higher: more likely to engage), their own items included: for weighing the model's view
        against something else (/search), in one pass over the catalogue with no sort. A policy's
        scores carry only its list order, so under one its base model's relevance is returned."""
        ((_, queries),) = self._groups([history], [now], [last], [profile])
        scorer = getattr(self.model, "base", None) or self.model  # EngagementPolicy.base: the sequence model
        scores = scorer.score(queries)
        if scores.shape != (1, len(self.item_ids) + 1):
            raise ValueError(f"the {self.model_name} model scored {tuple(scores.shape)} for one user and "
                             f"{len(self.item_ids)} items")
        return np.array(scores[0, 1:].float().numpy(), dtype=np.float32)


def _times(values: list | None, n: int) -> np.ndarray:
    """Unix seconds per row, NaN where unknown (None, NaN or infinite)."""
    if values is None:
        return np.full(n, np.nan)
    if len(values) != n:
        raise ValueError(f"{n} histories but {len(values)} times")
    try:
        times = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64).reshape(n)
    except (TypeError, ValueError):
        raise ValueError("times must be Unix seconds (numbers)") from None
    return np.where(np.isfinite(times), times, np.nan)
