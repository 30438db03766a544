"""Ranking evaluation over the whole catalogue, with the exclusion rule and stable top-k that
serving shares (training/models/ranking.py): accuracy per user (NDCG@k, HR@k, MRR),
beyond-accuracy measures and bootstrap intervals. Per-user values are kept so that two models can
be compared user by user."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from scipy import sparse

from training.models.base import FitReport, Interactions, Queries, Recommender
from training.models.ranking import exclude_seen, rank_of, top_k
from training.sequences import Holdout, Split

if TYPE_CHECKING:
    from longview.settings import Settings

K = 10
BATCH = 512


class NaNScores(ValueError):
    """A model scored some item NaN: its ranking is undefined."""


@dataclass
class Evaluation:
    users: list[str]
    ndcg: np.ndarray
    hr: np.ndarray
    mrr: np.ndarray
    top: np.ndarray  # users x k item indices
    k: int = K
    beyond: dict[str, float | None] = field(default_factory=dict)

    def summary(self) -> dict[str, float | None]:
        return {f"ndcg_at_{self.k}": float(self.ndcg.mean()), f"hr_at_{self.k}": float(self.hr.mean()),
                "mrr": float(self.mrr.mean()), **self.beyond, "users": float(len(self.users))}


class Scorer(Protocol):
    """What evaluation needs of a model: its name and whole-catalogue scores."""

    name: str

    def score(self, queries: Queries) -> torch.Tensor: ...


class Reindexed:
    """A registered model (training/models/packaged.py) scored in another catalogue index, the
    holdout's. Items it was not trained on (the catalogue grew) are scored by their content where
    the model can (``content``: the holdout index's rows, padding first; the packaged model takes
    them in); otherwise they are left out of its input and score -inf, since it cannot rank what it
    does not know."""

    def __init__(self, packaged, item_ids: Sequence[str], content: np.ndarray | None = None) -> None:
        self.packaged, self.name = packaged, str(packaged.model_name)
        self.added = packaged.add_items(list(item_ids), None if content is None else content[1:])
        self.theirs = torch.tensor([0, *(packaged.index.get(i, 0) for i in item_ids)], dtype=torch.long)

    def _theirs(self, queries: Queries) -> Queries:
        histories = [h[h > 0] for h in (self.theirs[torch.as_tensor(h, dtype=torch.long)].numpy()
                                        for h in queries.histories)]
        return Queries(histories, queries.now, queries.last, queries.profiles)

    def forecast_returns(self, queries: Queries):
        """The packaged model's long-term value forecast (None: it has no head)."""
        return self.packaged.model.forecast_returns(self._theirs(queries))

    def score(self, queries: Queries) -> torch.Tensor:
        theirs = self.packaged.model.score(self._theirs(queries)).float()
        scores = theirs[:, self.theirs]
        scores[:, self.theirs == 0] = float("-inf")
        return scores


def dcg_weights(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def evaluate(model: Scorer, holdout: Holdout, n_items: int, k: int = K, exclude: bool = True,
             popularity: np.ndarray | None = None, genres: np.ndarray | None = None,
             cooccurrence: sparse.csr_matrix | None = None) -> Evaluation:
    """Score every holdout user once, against the whole catalogue (``cooccurrence``: see
    beyond_accuracy)."""
    users = len(holdout.users)
    ndcg, hr, mrr = np.zeros(users), np.zeros(users), np.zeros(users)
    top = np.zeros((users, k), dtype=np.int64)
    weights = dcg_weights(k)
    for start in range(0, users, BATCH):
        part = holdout.queries.slice(start, start + BATCH)
        scores = exclude_seen(model.score(part).float(), part.histories, exclude)
        if torch.isnan(scores).any():
            raise NaNScores(f"{model.name} produced NaN scores")
        best = top_k(scores, k)
        top[start:start + len(part)] = best.numpy()
        for row in range(len(part)):
            truth = holdout.truth[start + row]
            hits = np.isin(best[row].numpy(), truth)
            ideal = weights[:min(len(truth), k)].sum()
            ndcg[start + row] = (weights * hits).sum() / ideal
            hr[start + row] = float(hits.any())
            mrr[start + row] = 1.0 / (1 + min(rank_of(scores, row, int(t)) for t in truth))
    result = Evaluation(holdout.users, ndcg, hr, mrr, top, k)
    result.beyond = beyond_accuracy(top, n_items, popularity, genres, holdout, cooccurrence)
    return result


def validator(holdout: Holdout, n_items: int, exclude: bool, k: int = K) -> Callable[[Scorer], float]:
    """The validation callback models fit with: mean NDCG@k on ``holdout``."""
    return lambda model: float(evaluate(model, holdout, n_items, k, exclude).ndcg.mean())


def fit_on_split(model: Recommender, split: Split, settings: Settings, progress: bool = True) -> FitReport:
    """Fit on the split's training interactions, choosing on its validation users; then, on a
    temporal split, bring the model up to the split time (refit) before anyone is tested."""
    report = model.fit(split.train, settings, validate=validator(split.validation, split.train.n_items,
                                                                 settings.exclude_seen), progress=progress)
    if split.refit is not None:
        model.refit(split.refit, settings)
    return report


def item_cooccurrence(data: Interactions) -> sparse.csr_matrix:
    """users x (n_items + 1) binary matrix of who engaged with what (positives only): the items'
    columns, compared by cosine, are a distance between items that needs no content."""
    rows = [np.full(int(p.sum()), u) for u, p in enumerate(data.positive)]
    cols = [s[p] for s, p in zip(data.sequences, data.positive, strict=True)]
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    matrix = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(data.sequences), data.n_items + 1))
    matrix.data[:] = 1.0  # repeated engagements count once
    return matrix


def intra_list_diversity(top: np.ndarray, similarity: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean over users of the mean pairwise distance (1 - similarity) between their list's items;
    ``similarity`` gives the similarity matrix of a set of items."""
    k = top.shape[1]
    listed, local = np.unique(top, return_inverse=True)
    sim = similarity(listed)
    index = local.reshape(top.shape)
    pair = sim[index[:, :, None], index[:, None, :]]  # users x k x k
    return float((1.0 - (pair.sum(axis=(1, 2)) - np.einsum("ukk->u", pair)) / (k * (k - 1))).mean())


def cosine(matrix: np.ndarray | sparse.csr_matrix) -> np.ndarray:
    """Cosine similarities between the columns of ``matrix``."""
    gram = matrix.T @ matrix
    gram = (gram.toarray() if sparse.issparse(gram) else np.asarray(gram)).astype(np.float64)
    norms = np.sqrt(np.maximum(np.diag(gram), 1e-12))
    return gram / norms[:, None] / norms[None, :]


def evaluate_baselines(settings: Settings, split: Split, genres: np.ndarray | None, real_time: bool,
                       skip: str | None = None) -> dict[str, tuple[Recommender, Evaluation]]:
    """Every baseline of the ``baselines`` setting (but ``skip``, and those needing real time where
    there is none) fitted on ``split`` and evaluated on its test users: name -> (model, evaluation)."""
    from training.registry import model_class

    n, popularity = split.train.n_items, split.known.counts()
    out = {}
    for name in dict.fromkeys(settings.baselines):
        if name == skip or (model_class(name).needs_time and not real_time):
            continue
        baseline = model_class(name)()
        fit_on_split(baseline, split, settings, progress=False)
        out[name] = (baseline, evaluate(baseline, split.test, n, K, settings.exclude_seen, popularity, genres))
    return out


def beyond_accuracy(top: np.ndarray, n_items: int, popularity: np.ndarray | None, genres: np.ndarray | None,
                    holdout: Holdout, cooccurrence: sparse.csr_matrix | None = None) -> dict[str, float | None]:
    """Catalogue coverage, novelty (mean self-information of recommended items), intra-list
    diversity and calibration (KL between each user's genre mix and their list's). Diversity is the
    mean pairwise genre distance; where the data has no genres, the mean pairwise distance between
    the items' columns of ``cooccurrence`` (item_cooccurrence: who engaged with them); None without
    either, as is calibration without genres."""
    k = top.shape[1]
    out: dict[str, float | None] = {f"coverage_at_{k}": len(np.unique(top)) / max(n_items, 1),
                                    "diversity": None, "calibration_kl": None}
    if popularity is not None:
        share = (popularity[1:] + 1.0) / (popularity[1:].sum() + n_items)
        out["novelty"] = float(-np.log2(share[top - 1]).mean())
    if k < 2 or not len(top):
        return out
    if genres is None or genres.shape[1] == 0 or not genres.any():
        if cooccurrence is not None:
            out["diversity"] = intra_list_diversity(top, lambda items: cosine(cooccurrence[:, items]))
        return out
    out["diversity"] = intra_list_diversity(top, lambda items: cosine(genres[items].T))
    vec = genres[top]  # users x k x genres
    eps = 1e-3
    kls = []
    for row, history in enumerate(holdout.queries.histories):
        if not len(history):
            continue
        p = genres[history].sum(0) + eps
        q = vec[row].sum(0) + eps
        p, q = p / p.sum(), q / q.sum()
        kls.append(float((p * np.log(p / q)).sum()))
    out["calibration_kl"] = float(np.mean(kls)) if kls else None
    return out


def bootstrap_interval(values: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling users."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (samples, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_difference(a: np.ndarray, b: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same users and its 95% paired-bootstrap interval: a difference whose
    interval holds 0 is noise, not a win."""
    if a.shape != b.shape:
        raise ValueError("a paired comparison needs the same users in the same order")
    lo, hi = bootstrap_interval(a - b, samples, seed)
    return float((a - b).mean()), lo, hi
