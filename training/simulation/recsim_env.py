"""A second opinion from an existing simulator: RecSim's interest-evolution environment (Ie et al.,
2019; ``recsim-no-tf`` 0.2.3, pinned). Each episode is one user with a time budget: every step the
environment offers ``candidates`` videos (a one-hot topic of 20 each; 70% of topics are clickbait of
negative quality, 30% nourishing), the policy shows ``slate`` of them, the user may click one (chosen
by interest in its topic) and watches it, which spends budget; a video of good quality gives some
back, and the user's interests drift towards what they watched. The episode ends when the budget
is spent, so the environment's own long-term measure is the **total watch time per episode**.

The adapter is the policy interface any simulator needs: (the user's history, the candidates as
topic ids and item vectors) -> a slate. Learned policies are trained on logs the environment itself
produced (a uniform-random logging policy, other seeds): the sequence model learns the next clicked
topic, as on real data, and is asked for its scores through ``PackagedModel.user_scores``. The
engagement policy re-ranks with the served policy's own slot-by-slot code (``_greedy_one``:
novelty bonus, maximal marginal relevance over the item vectors, epsilon-greedy exploration). RecSim
has no clock and no returns, so its value term is off here: what is tested is diversity and novelty."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

TOPICS = 20
CANDIDATES, SLATE = 10, 3


def topic_id(topic: int) -> str:
    return f"t{topic:02d}"


def make_env(seed: int, candidates: int = CANDIDATES, slate: int = SLATE):
    """The interest-evolution environment (documents resampled every step), quietly: gym 0.26
    prints a deprecation notice on import."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from recsim.environments import interest_evolution

        return interest_evolution.create_environment({"num_candidates": candidates, "slate_size": slate,
                                                      "resample_documents": True, "seed": seed})


class CandidatePolicy(Protocol):
    name: str

    def slate(self, history: list[str], candidates: list[str], vectors: np.ndarray, k: int,
              rng: np.random.Generator) -> list[int]:
        """Indices into ``candidates`` (item ids; ``vectors``: one row each), best first."""


@dataclass(frozen=True)
class Episode:
    watch_time: float  # the environment's long-term measure
    clicks: int
    steps: int
    topics: tuple[int, ...]  # every topic shown (for coverage)


def run_episode(env, policy: CandidatePolicy, rng: np.random.Generator, slate: int = SLATE) -> tuple[Episode, list[str]]:
    """One user, from reset until their budget is spent; returns the episode and the clicked topics."""
    observation = env.reset()
    history: list[str] = []
    watched, clicks, steps, shown = 0.0, 0, 0, set()
    done = False
    while not done:
        vectors = np.stack(list(observation["doc"].values()))
        topics = vectors.argmax(axis=1)
        chosen = policy.slate(list(history), [topic_id(t) for t in topics], vectors, slate, rng)
        if len(set(chosen)) != slate or not all(0 <= c < len(topics) for c in chosen):
            raise ValueError(f"the {policy.name} policy returned {chosen} for {len(topics)} candidates")
        observation, reward, done, _ = env.step(list(chosen))
        watched += float(reward)
        steps += 1
        shown.update(int(topics[c]) for c in chosen)
        for index, response in zip(chosen, observation["response"], strict=True):
            if response["click"]:
                clicks += 1
                history.append(topic_id(int(topics[index])))
    return Episode(watched, clicks, steps, tuple(sorted(shown))), history


class RandomCandidates:
    name = "random"

    def slate(self, history, candidates, vectors, k, rng):
        return rng.permutation(len(candidates))[:k].tolist()


class ScoredCandidates:
    """The top ``k`` candidates by a per-item score (popularity's counts, a model's relevance)."""

    def __init__(self, name: str, scores) -> None:
        self.name, self.scores = name, scores  # scores(history) -> {item id: score}

    def slate(self, history, candidates, vectors, k, rng):
        score = self.scores(history)
        values = np.array([score.get(c, -np.inf) for c in candidates]) + rng.random(len(candidates)) * 1e-9
        return np.argsort(-values, kind="stable")[:k].tolist()


class EngagementCandidates:
    """The engagement policy's re-ranking (training/models/engagement.py, the code that ranks a
    served user's slots) over the candidates: relevance + novelty_weight x self-information, then
    MMR over the item vectors with exploration; no value term (no clock here)."""

    def __init__(self, relevance: ScoredCandidates, information: dict[str, float], weights: dict) -> None:
        self.name, self.relevance, self.information, self.weights = "engagement", relevance, information, weights

    def slate(self, history, candidates, vectors, k, rng):
        from training.models.engagement import _greedy_one

        score = self.relevance.scores(history)
        objective = np.array([score[c] + self.weights["novelty_weight"] * self.information[c] for c in candidates])
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        n = len(candidates)
        lists = _greedy_one(np.arange(n), objective, unit @ unit.T, np.ones(n, dtype=bool), rng.random((n, n)),
                            rng.random(n), k, float(self.weights["diversity_weight"]), float(self.weights["exploration"]))
        return lists.items[0, :k].tolist()


def logged_histories(episodes: int, seed: int) -> list[list[str]]:
    """Click sequences (one per user) under the uniform-random logging policy: training data."""
    env, rng = make_env(seed), np.random.default_rng(seed)
    return [history for _, history in (run_episode(env, RandomCandidates(), rng) for _ in range(episodes))]


def sequence_scores(histories: list[list[str]], settings):
    """The sequence model trained on the logged click sequences, as scores(history) -> {topic:
    log-probability}, through the packaged model's user_scores."""
    import torch

    from training.models.base import Interactions
    from training.models.packaged import PackagedModel
    from training.models.sequence import SequenceModel
    from training.packaging import model_config

    items = [topic_id(t) for t in range(TOPICS)]
    index = {item: i + 1 for i, item in enumerate(items)}
    sequences = [np.array([index[i] for i in h], dtype=np.int64) for h in histories if len(h) >= 2]
    data = Interactions(item_ids=items, sequences=sequences, positive=[np.ones(len(s), bool) for s in sequences])
    model = SequenceModel()
    model.fit(data, settings, progress=False)
    packaged = PackagedModel().load(model_config(model, items, settings), model.tensors())

    def scores(history: list[str]) -> dict[str, float]:
        values = torch.log_softmax(torch.from_numpy(packaged.user_scores(history)).double(), dim=0).numpy() \
            if history else np.log(np.full(len(items), 1 / len(items)))
        return dict(zip(items, values.tolist(), strict=True))
    return scores


def popularity_scores(histories: list[list[str]]):
    counts = {topic_id(t): 0.0 for t in range(TOPICS)}
    for history in histories:
        for item in history:
            counts[item] += 1
    return lambda history: counts


def self_information(histories: list[list[str]]) -> dict[str, float]:
    """-log2 of each topic's share of logged clicks (add-one), as the served policy's novelty term."""
    counts = popularity_scores(histories)([])
    total = sum(counts.values()) + len(counts)
    return {item: -float(np.log2((c + 1) / total)) for item, c in counts.items()}
