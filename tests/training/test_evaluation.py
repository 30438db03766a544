import math

import pytest

from training.evaluation import ranking_metrics


def test_metrics_match_hand_computed_values():
    ranked = {"a": ["x", "y", "z"], "b": ["p", "q", "r"]}
    truth = {"a": {"y"}, "b": {"r", "s"}}
    m = ranking_metrics(ranked, truth, n_items=10, k=3)
    ndcg_a = (1 / math.log2(3)) / 1.0
    ndcg_b = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg_at_3"] == pytest.approx((ndcg_a + ndcg_b) / 2, abs=1e-6)
    assert m["recall_at_3"] == pytest.approx((1 + 0.5) / 2)
    assert m["coverage_at_3"] == pytest.approx(6 / 10)


def test_perfect_and_useless_rankings():
    truth = {"a": {"x"}}
    assert ranking_metrics({"a": ["x"]}, truth, 5, k=1)["ndcg_at_1"] == pytest.approx(1.0)
    assert ranking_metrics({"a": ["y"]}, truth, 5, k=1)["ndcg_at_1"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        ranking_metrics({}, {}, 5)
