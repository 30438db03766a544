"""The engagement-aware ranking policy: the sequence model's next-item relevance, plus the long-term
value of each candidate, re-ranked for diversity and novelty, with a small logged exploration share.

For each user, over the ``candidates`` most relevant items (seen items excluded by the same rule as
everywhere else, training/models/ranking.py):

    objective(c) = relevance(c) + value_weight x P(return within H | history + c)
                   + novelty_weight x self-information(c)

where relevance is the sequence model's log-probability of c being next, the value is the long-term
value head's forecast if the user consumed c now and the visit ended there (off where the data has
no real time or the model no head), and self-information is -log2 of c's share of training
engagements (a popularity penalty: the same quantity the novelty metric averages). The list is then
built slot by slot with maximal marginal relevance (Carbonell and Goldstein, 1998):

    pick argmax objective(c) - diversity_weight x max(0, max over picked s of cos(c, s))

over item content (genres, text embedding) where the model fused content, else over its learned item
embeddings. With probability ``exploration`` a slot instead shows an item drawn uniformly from the
remaining candidates (epsilon-greedy per slot); every slot's propensity (the chance it showed that
item given the slots above) is returned, for off-policy evaluation of the logs. The random draws are
seeded (the policy's ``seed``), so an evaluation is reproducible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .base import FitReport, Interactions, Queries, Recommender, Validate
from .ranking import exclude_seen
from .sequence import SequenceModel


@dataclass
class PolicyLists:
    """Per user, the policy's list (catalogue indices, 0 past the end of a short list), each slot's
    objective (its marginal value when picked), its propensity and whether it was explored."""

    items: np.ndarray  # users x k, int64
    scores: np.ndarray  # users x k, float64 (-inf past the end)
    propensities: np.ndarray  # users x k, float64 (0 past the end)
    explored: np.ndarray  # users x k, bool


class EngagementPolicy(Recommender):
    name = "engagement"

    def __init__(self, base: SequenceModel | None = None, weights: dict | None = None, exclude: bool = True) -> None:
        self.base = base
        # value_weight, diversity_weight, novelty_weight, exploration, candidates, seed: the engagement
        # settings (longview/settings.py EngagementSettings), set by fit() or around().
        self.weights = dict(weights or {})
        self.exclude = exclude  # the exclude_seen setting it was trained under: candidates are unseen items
        self.rng = np.random.default_rng(int(self.weights.get("seed", 0)))
        self._unit: torch.Tensor | None = None  # unit item vectors for MMR, once per loaded model
        self._information: np.ndarray | None = None  # self-information (bits) per item

    @classmethod
    def around(cls, base: SequenceModel, settings) -> "EngagementPolicy":
        """The policy over an already fitted sequence model, with the settings' weights."""
        return cls(base, settings.engagement.weights(settings.seed), settings.exclude_seen)

    # -- what the policy says about itself --------------------------------------------------------
    @property
    def similarity(self) -> str:
        """What MMR compares items by: "content" (genres, text) or "learned" (item embeddings)."""
        assert self.base is not None and self.base.net is not None, "fit the policy first"
        return "content" if self.base.net.content is not None else "learned"

    def uses_value(self, queries: Queries | None = None) -> bool:
        """Whether the long-term value term is on: the model has a head, the weight is non-zero and
        (for ``queries``) the request time is known."""
        assert self.base is not None
        return bool(self.base.value) and self.weights["value_weight"] != 0 and (queries is None or queries.now is not None)

    def describe(self) -> str:
        w = self.weights
        value = (f"+ {w['value_weight']:g} x P(return within {self.base.value['return_days']:g} d)"
                 if self.uses_value() else "(no long-term value term: the model has no value head)")
        return (f"sequence log-probabilities {value}, MMR over {self.similarity} item vectors "
                f"(weight {w['diversity_weight']:g}), novelty {w['novelty_weight']:g} per bit, exploration "
                f"{w['exploration']:.0%} of slots among the top {w['candidates']}")

    # -- the Recommender interface ----------------------------------------------------------------
    def fit(self, data: Interactions, settings, validate: Validate | None = None, progress: bool = True) -> FitReport:
        """Fit the sequence model it ranks with (validation chooses on the sequence model's own
        relevance); the weights are settings, not learned."""
        base = SequenceModel()
        report = base.fit(data, settings, validate, progress)
        fitted = self.around(base, settings)
        self.__dict__.update(fitted.__dict__)
        report.notes.append(f"policy: {self.describe()}")
        return report

    def refit(self, data: Interactions, settings) -> None:
        assert self.base is not None
        self.base.refit(data, settings)
        self._information = None

    @property
    def profile_width(self) -> int:
        """The base model's: the policy's queries carry the profile the base model reads."""
        return 0 if self.base is None else int(self.base.profile_width)

    def forecast_returns(self, queries: Queries):
        assert self.base is not None
        return self.base.forecast_returns(queries)

    def item_similarity(self, item: int):
        assert self.base is not None
        return self.base.item_similarity(item)

    def add_items(self, content: np.ndarray | None) -> bool:
        assert self.base is not None
        added = self.base.add_items(content)
        if added:
            self._unit, self._information = None, None
        return added

    def score(self, queries: Queries) -> torch.Tensor:
        """Scores whose order is the policy's: its ``candidates`` in list order above every other
        item, which keeps the sequence model's relevance order below them."""
        raw = self._relevance(queries, exclude=False)  # seen items keep a score: the caller excludes them
        if torch.isnan(raw).any():  # the gate's scores_finite rule must see it
            return raw
        lists = self._rank(queries, exclude_seen(raw.clone(), queries.histories, self.exclude),
                           int(self.weights["candidates"]))
        out = raw.clone()
        top = out.max(dim=1).values.clamp(min=0) + 1.0
        n = lists.items.shape[1]
        for row in range(len(out)):
            picked = lists.items[row] > 0
            slots = torch.from_numpy(lists.items[row][picked])
            out[row, slots] = top[row] + torch.arange(n, 0, -1, dtype=out.dtype)[torch.from_numpy(picked)]
        return out

    def lists(self, queries: Queries, k: int, exclude: bool = True, seeds: Sequence[int] | None = None) -> PolicyLists:
        """The first ``k`` (at least 1) slots of each user's list; the policy re-ranks the top
        max(``candidates``, k) items (seen items left out by the policy's rule, unless ``exclude``
        is False). ``seeds``: one per user, the exploration's draws for that user alone (a user's
        list then does not depend on who else is in the batch); None: one stream for the batch."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if seeds is not None and len(seeds) != len(queries.histories):
            raise ValueError(f"{len(queries.histories)} users but {len(seeds)} seeds")
        relevance = self._relevance(queries, exclude)
        if torch.isnan(relevance).any():  # NaN would only drop out of the candidates: say so instead
            raise ValueError("the sequence model under the policy produced NaN scores")
        # Only the first k slots are filled: the greedy choice of a slot depends on the slots
        # before it alone, and the seeded draws are made for all slots up front, so they are the
        # first k slots of the whole list.
        full = self._rank(queries, relevance, max(int(self.weights["candidates"]), k), seeds, slots=k)
        short = max(k - full.items.shape[1], 0)  # a catalogue smaller than k

        def cut(values: np.ndarray, fill) -> np.ndarray:
            values = values[:, :k]
            return np.pad(values, ((0, 0), (0, short)), constant_values=fill) if short else values
        return PolicyLists(cut(full.items, 0), cut(full.scores, -np.inf), cut(full.propensities, 0.0),
                           cut(full.explored, False))

    # -- the policy -------------------------------------------------------------------------------
    def _relevance(self, queries: Queries, exclude: bool = True) -> torch.Tensor:
        """The sequence model's log-probabilities, seen items excluded (by the policy's rule, with
        ``exclude``); users with no history get the log of popularity's shares (cold_start gives
        shares, not log-probabilities)."""
        assert self.base is not None
        scores = self.base.score(queries).float()
        empty = torch.tensor([len(h) == 0 for h in queries.histories], dtype=torch.bool)
        if empty.any():
            scores[empty] = torch.log(scores[empty].clamp(min=1e-12))
        scores[:, 0] = float("-inf")
        return exclude_seen(scores, queries.histories, self.exclude and exclude)

    def _unit_vectors(self) -> torch.Tensor:
        if self._unit is None:
            net = self.base.net
            with torch.inference_mode():
                vectors = net.content if net.content is not None else net.item_embedding.weight
                self._unit = torch.nn.functional.normalize(vectors.detach().float(), dim=1)
        return self._unit

    def _self_information(self) -> np.ndarray:
        if self._information is None:
            counts = np.asarray(self.base.popularity, dtype=np.float64)
            share = (counts + 1.0) / (counts[1:].sum() + len(counts) - 1)
            self._information = -np.log2(share)
        return self._information

    def _values(self, queries: Queries, candidates: np.ndarray) -> np.ndarray:
        """users x candidates: P(return within H) had the user consumed the candidate now and left."""
        out = np.empty(candidates.shape, dtype=np.float64)
        for user, history in enumerate(queries.histories):
            profile = None if queries.profiles is None else queries.profiles[user]
            forecast = self.base.forecast_appended(history, candidates[user], float(queries.now[user]), profile)
            out[user] = forecast.within
        return out

    def _rank(self, queries: Queries, relevance: torch.Tensor, n: int, seeds: Sequence[int] | None = None,
              slots: int | None = None, one_by_one: bool = True) -> PolicyLists:
        """Each user's list of the top ``n`` candidates, its first ``slots`` (default: all) filled.
        ``one_by_one``: a single seeded user (a served request) takes _greedy_one, the same
        arithmetic in plain floats (numpy's per-call overhead on 30-element arrays was most of the
        policy's time)."""
        w = self.weights
        users = len(relevance)
        n = min(n, relevance.shape[1] - 1)
        top = torch.topk(relevance, n, dim=1)  # not a full sort of the catalogue
        candidates, rel = top.indices.numpy(), top.values.double().numpy()
        valid = np.isfinite(rel)
        objective = rel + w["novelty_weight"] * self._self_information()[candidates]
        if self.uses_value(queries) and valid.any():
            objective = objective + w["value_weight"] * self._values(queries, candidates)
        objective = np.where(valid, objective, -np.inf)
        unit = self._unit_vectors()[torch.from_numpy(candidates)]
        similarity = torch.bmm(unit, unit.transpose(1, 2)).double().numpy()  # users x n x n

        items = np.zeros((users, n), dtype=np.int64)
        scores = np.full((users, n), -np.inf)
        propensities = np.zeros((users, n))
        explored = np.zeros((users, n), dtype=bool)
        penalty = np.zeros((users, n))  # max similarity to what is already in the list (at least 0)
        remaining = valid.copy()
        rows = np.arange(users)
        epsilon = float(w["exploration"])
        if seeds is not None:  # each user's draws from their own stream, all slots at once
            streams = [np.random.default_rng(int(seed)) for seed in seeds]
            own_keys = np.stack([g.random((n, n)) for g in streams]) if users else np.zeros((0, n, n))
            own_coins = np.stack([g.random(n) for g in streams]) if users else np.zeros((0, n))
        filled = n if slots is None else min(n, slots)
        if (one_by_one and users == 1 and seeds is not None and np.isfinite(objective[valid]).all()
                and np.isfinite(similarity).all()):
            return _greedy_one(candidates[0], objective[0], similarity[0], valid[0], own_keys[0], own_coins[0],
                               filled, float(w["diversity_weight"]), epsilon)
        for slot in range(filled):
            left = remaining.sum(1)
            active = left > 0
            if not active.any():
                break
            marginal = np.where(remaining, objective - w["diversity_weight"] * penalty, -np.inf)
            greedy = marginal.argmax(1)
            draws = self.rng.random((users, n)) if seeds is None else own_keys[:, slot]
            keys = np.where(remaining, draws, -1.0)  # uniform among the remaining
            uniform = keys.argmax(1)
            coins = self.rng.random(users) if seeds is None else own_coins[:, slot]
            explore = (coins < epsilon) & active
            pick = np.where(explore, uniform, greedy)
            share = epsilon / np.maximum(left, 1)
            items[active, slot] = candidates[rows, pick][active]
            scores[active, slot] = marginal[rows, pick][active]
            propensities[active, slot] = (share + np.where(pick == greedy, 1.0 - epsilon, 0.0))[active]
            explored[active, slot] = explore[active] & (pick != greedy)[active]
            remaining[rows[active], pick[active]] = False
            penalty = np.maximum(penalty, similarity[rows, pick])
        return PolicyLists(items, scores, propensities, explored)

    # -- saving -----------------------------------------------------------------------------------
    def config(self) -> dict:
        assert self.base is not None
        return {"base": self.base.config(), "weights": self.weights, "exclude_seen": self.exclude}

    def tensors(self) -> dict[str, torch.Tensor]:
        assert self.base is not None
        return self.base.tensors()

    @classmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "EngagementPolicy":
        return cls(SequenceModel.restore(config["base"], tensors), config.get("weights"),
                   bool(config.get("exclude_seen", True)))


def _greedy_one(candidates: np.ndarray, objective: np.ndarray, similarity: np.ndarray, valid: np.ndarray,
                keys: np.ndarray, coins: np.ndarray, filled: int, diversity: float, epsilon: float) -> PolicyLists:
    """_rank's loop for one user in Python floats: the same operations in the same order (IEEE
    doubles, first index on ties, as argmax), so the same list, scores and propensities, bit for
    bit (tested); only for finite objectives and similarities, where argmax and max agree."""
    n = len(candidates)
    cand, obj, sim = candidates.tolist(), objective.tolist(), similarity.tolist()
    draws, flips = keys.tolist(), coins.tolist()
    remaining, penalty = valid.tolist(), [0.0] * n
    items = np.zeros((1, n), dtype=np.int64)
    scores = np.full((1, n), -np.inf)
    propensities = np.zeros((1, n))
    explored = np.zeros((1, n), dtype=bool)
    for slot in range(filled):
        left = sum(remaining)
        if not left:
            break
        greedy = uniform = -1
        best = top = 0.0
        for j in range(n):
            if remaining[j]:
                marginal = obj[j] - diversity * penalty[j]
                if greedy < 0 or marginal > best:
                    greedy, best = j, marginal
                if uniform < 0 or draws[slot][j] > top:
                    uniform, top = j, draws[slot][j]
        explore = flips[slot] < epsilon
        pick = uniform if explore else greedy
        items[0, slot] = cand[pick]
        scores[0, slot] = obj[pick] - diversity * penalty[pick]
        propensities[0, slot] = epsilon / max(left, 1) + ((1.0 - epsilon) if pick == greedy else 0.0)
        explored[0, slot] = explore and pick != greedy
        remaining[pick] = False
        penalty = [p if p >= s else s for p, s in zip(penalty, sim[pick])]
    return PolicyLists(items, scores, propensities, explored)
