"""Ranking metrics over the whole catalogue, checked by hand and against torchmetrics."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.retrieval import retrieval_normalized_dcg

from training.evaluation import bootstrap_interval, evaluate, paired_difference
from training.models import Queries, Recommender, ranking
from training.models.ranking import exclude_seen, rank_of, top_k
from training.sequences import Holdout


class Fixed(Recommender):
    """Scores given up front, one row per user (to test the evaluation, not a model)."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float32)
        self.at = 0

    def fit(self, data, settings, validate=None, progress=True):
        raise NotImplementedError

    def score(self, queries):
        out = self.scores[self.at:self.at + len(queries)].clone()
        self.at += len(queries)
        out[:, 0] = float("-inf")
        return out

    def config(self):
        return {}

    def tensors(self):
        return {}

    @classmethod
    def restore(cls, config, tensors):
        raise NotImplementedError


def holdout(histories, truth):
    return Holdout([f"u{n}" for n in range(len(truth))], Queries([np.array(h, dtype=np.int64) for h in histories]),
                   [np.array(t, dtype=np.int64) for t in truth])


def test_metrics_match_hand_computed_values():
    # Items 1..5; user 0 has seen item 1 (excluded), its test item 3 ranks second among the rest.
    scores = [[0, 9, 8, 7, 1, 0], [0, 1, 2, 3, 4, 5]]
    result = evaluate(Fixed(scores), holdout([[1], []], [[3], [1, 2]]), n_items=5, k=3)
    assert result.top.tolist() == [[2, 3, 4], [5, 4, 3]]
    assert result.ndcg[0] == pytest.approx(1 / math.log2(3))
    assert result.hr.tolist() == [1.0, 0.0]
    assert result.mrr.tolist() == pytest.approx([1 / 2, 1 / 4])  # user 1's best truth item (2) is 4th
    assert result.ndcg[1] == 0.0
    assert result.beyond["coverage_at_3"] == pytest.approx(4 / 5)


def test_set_truth_ndcg_agrees_with_torchmetrics():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(20, 31)).tolist()
    truth = [sorted(rng.choice(np.arange(1, 31), size=rng.integers(1, 5), replace=False).tolist()) for _ in range(20)]
    result = evaluate(Fixed(scores), holdout([[]] * 20, truth), n_items=30, k=10)
    reference = []
    for top, relevant in zip(result.top.tolist(), truth, strict=True):
        # Relevant items outside the top 10 go below it, so torchmetrics' ideal DCG counts them.
        candidates = top + sorted(set(relevant) - set(top))
        preds = torch.arange(len(candidates), 0, -1, dtype=torch.float32)
        target = torch.tensor([c in relevant for c in candidates])
        reference.append(float(retrieval_normalized_dcg(preds, target, top_k=10)))
    assert result.ndcg == pytest.approx(reference, abs=1e-6)


def test_seen_items_are_excluded_unless_consumption_repeats():
    scores = torch.tensor([[float("-inf"), 5.0, 4.0, 3.0]])
    assert top_k(exclude_seen(scores.clone(), [np.array([1])]), 2).tolist() == [[2, 3]]
    assert top_k(exclude_seen(scores.clone(), [np.array([1])], exclude=False), 2).tolist() == [[1, 2]]


@given(st.lists(st.integers(0, 3), min_size=6, max_size=6), st.integers(1, 5))
@settings(max_examples=50, deadline=None)
def test_ties_break_by_index_in_lists_and_ranks_alike(values, item):
    """rank_of and top_k agree on every item's place, whatever the ties."""
    scores = torch.tensor([[float("-inf"), *map(float, values[:5])]])
    order = top_k(scores, 6)[0].tolist()
    assert order.index(item) == rank_of(scores, 0, item)


@given(st.lists(st.lists(st.sampled_from([float("-inf"), 0.0, 0.5, 1.0, 2.0, 3.5]), min_size=120, max_size=120),
                min_size=1, max_size=4), st.integers(1, 20))
@pytest.mark.slow
@settings(max_examples=100, deadline=None)
def test_top_k_without_a_full_sort_is_the_stable_order(rows, k):
    """The partial selection returns exactly the first k of a stable descending sort, ties (heavy
    here: few distinct scores, many -inf) broken by lower index."""
    scores = torch.tensor(rows)
    stable = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    assert torch.equal(top_k(scores, k), stable)
    spread = scores + torch.arange(120) * 1e-3  # few ties: the partial path proper
    assert torch.equal(top_k(spread, k), torch.sort(spread, dim=1, descending=True, stable=True).indices[:, :k])


@given(st.lists(st.lists(st.sampled_from([float("-inf"), 0.0, 0.5, 1.0, 2.0, 3.5]), min_size=300, max_size=300),
                min_size=1, max_size=3), st.integers(1, 5), st.booleans())
@pytest.mark.slow
@settings(max_examples=100, deadline=None)
def test_top_k_through_block_maxima_is_the_stable_order(rows, k, spread):
    """The large-catalogue path (blocks of 8 here, not 1,024, so that small rows reach it) returns
    exactly the stable order's first k, with heavy ties across blocks and a ragged last block."""
    scores = torch.tensor(rows) + (torch.arange(300) * 1e-3 if spread else 0.0)
    with mock.patch.object(ranking, "BLOCK", 8), mock.patch.object(ranking, "BLOCKED_FROM", 64):
        found = top_k(scores, k)
    assert torch.equal(found, torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k])


def test_top_k_over_a_million_items_is_exact():
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 1_000_003, generator=generator)
    scores[0, [5, 600_000, 999_999]] = 9.0  # a tie at the top, across blocks
    scores[1, 1_000_001] = 9.0  # the winner in the ragged tail
    expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :10]
    assert torch.equal(top_k(scores, 10), expected)
    assert top_k(scores, 10)[0, :3].tolist() == [5, 600_000, 999_999]


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        evaluate(Fixed([[0, float("nan"), 1.0]]), holdout([[]], [[1]]), n_items=2, k=1)


def test_genre_measures_need_genres():
    scores = [[0, 3, 2, 1]]
    genres = np.array([[0, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    with_genres = evaluate(Fixed(scores), holdout([[1]], [[2]]), 3, k=2, genres=genres).beyond
    # The list [2, 3]: genres (0,1) and (1,0) are orthogonal, so the pair's distance is 1.
    assert with_genres["diversity"] == pytest.approx(1.0)
    assert with_genres["calibration_kl"] > 0
    assert evaluate(Fixed(scores), holdout([[1]], [[2]]), 3, k=2).beyond["diversity"] is None


def test_paired_difference_calls_noise_noise():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    diff, lo, hi = paired_difference(a + 0.1, a)
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    noisy = a + rng.normal(0, 0.3, 300)
    _, lo, hi = paired_difference(noisy, a + 0.005)
    assert lo < 0 < hi
    lo, hi = bootstrap_interval(a)
    assert lo < a.mean() < hi
    with pytest.raises(ValueError, match="same users"):
        paired_difference(a, a[:-1])


def test_a_registered_model_is_scored_in_the_holdouts_index():
    """The gate scores registered models on today's holdout, whose catalogue may have grown and be
    ordered differently: scores follow the item ids, unknown items score -inf and are left out of
    the model's input."""
    from training.evaluation import Reindexed
    from training.models.item_matrix import EASE
    from training.models.packaged import PackagedModel

    # Trained on items a, b, c: a and b always together.
    weights = torch.tensor([[0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0]])
    model = EASE(weights, 1.0, np.array([0.0, 5.0, 5.0, 1.0]))
    packaged = PackagedModel().load({"model": "ease", "model_config": model.config(), "item_ids": ["a", "b", "c"]},
                                    model.tensors())
    scorer = Reindexed(packaged, ["new", "b", "a", "c"])  # today's index: a new item first, a and b swapped
    scores = scorer.score(Queries([np.array([3, 1])]))  # history: a (index 3 today) and the new item
    assert scores[0, 2] == 1.0, "b co-occurs with a, whatever its index today"
    assert torch.isneginf(scores[0, [0, 1]]).all(), "padding and the item the model never saw"
    assert scores[0, 4] == 0.0
