"""`longview bench accuracy` end to end on real data (ml-100k), briefly trained: the models through
one interface, the last line's JSON, the top-10 dump anyone can recompute the metric from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import last_json, longview, real_data


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory):
    data = real_data("ml-100k").parent
    folder = tmp_path_factory.mktemp("accuracy")
    env = {"LONGVIEW_HOME": str(folder / "home"), "LONGVIEW_DATA_DIR": str(data),
           # Brief: a few epochs of a small model are enough to beat all-time popularity.
           "LONGVIEW_SEQUENCE__EPOCHS": "15", "LONGVIEW_SEQUENCE__EVAL_EVERY": "5", "LONGVIEW_SEQUENCE__DIM": "32",
           "LONGVIEW_SEQUENCE__MAX_LEN": "50", "LONGVIEW_SEQUENCE__ENSEMBLE": "1", "LONGVIEW_SEQUENCE__LEARNING_RATE": "0.005"}
    dump = folder / "top10.jsonl"
    result = longview("bench", "accuracy", "--dataset", "ml-100k", "--protocol", "loo",
                      "--models", "popularity,recent_popularity,sequence,engagement", "--dump-topk", str(dump), env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, dump


def test_sequence_model_beats_popularity_on_real_data(ml100k_run):
    result, _ = ml100k_run
    report = last_json(result.stdout)
    assert report["dataset"] == "ml-100k" and report["protocol"] == "loo"
    models = report["models"]
    assert set(models) == {"popularity", "recent_popularity", "sequence", "engagement"}
    for figures in models.values():
        assert {"ndcg_at_10", "hr_at_10", "coverage_at_10", "train_seconds", "peak_memory_mb"} <= set(figures)
        assert figures["peak_memory_mb"] > 0
    assert models["sequence"]["ndcg_at_10"] > models["popularity"]["ndcg_at_10"]
    assert "vs recent_popularity" in result.stdout and "95% interval" in result.stdout
    assert "plots and figures logged to MLflow" in result.stdout


def test_the_engagement_policy_is_scored_on_the_same_fitted_sequence_model(ml100k_run):
    result, dump = ml100k_run
    models = last_json(result.stdout)["models"]
    policy, sequence = models["engagement"], models["sequence"]
    assert policy["train_seconds"] == sequence["train_seconds"], "one training serves both"
    assert {"diversity", "novelty"} <= set(policy) and policy["ndcg_at_10"] > models["popularity"]["ndcg_at_10"]
    assert "engagement vs sequence: NDCG@10" in result.stdout and "coverage" in result.stdout
    assert "P(return within 7 d), MMR over content item vectors" in result.stdout, "ml-100k has times and content"
    rows = [json.loads(line) for line in dump.read_text().splitlines() if '"engagement"' in line]
    ndcg = [sum(1 / np.log2(n + 2) for n, item in enumerate(r["top"][:10]) if item in r["held_out"]) for r in rows]
    assert np.mean(ndcg) == pytest.approx(policy["ndcg_at_10"], abs=1e-4)
    assert all(len(set(r["top"])) == 10 for r in rows)


def test_dumped_lists_recompute_the_reported_metric(ml100k_run):
    result, dump = ml100k_run
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    sequence = [r for r in rows if r["model"] == "sequence"]
    assert len({r["user_id"] for r in sequence}) == len(sequence) > 900
    ndcg = [sum(1 / np.log2(n + 2) for n, item in enumerate(r["top"][:10]) if item in r["held_out"])
            for r in sequence]  # one held-out item per user: the ideal DCG is 1
    assert np.mean(ndcg) == pytest.approx(last_json(result.stdout)["models"]["sequence"]["ndcg_at_10"], abs=1e-4)
    assert all(len(r["top"]) == 10 and len(set(r["top"])) == 10 for r in sequence)


@pytest.mark.slow
def test_bad_benchmark_arguments_are_clear_errors(tmp_path):
    env = {"LONGVIEW_HOME": str(tmp_path / "home")}
    wrong = longview("bench", "accuracy", "--protocol", "random", env=env)
    assert wrong.returncode == 2 and "unknown protocol 'random': expected loo or temporal" in wrong.stderr
    unknown = longview("bench", "accuracy", "--models", "popularity,gru", env=env)
    assert unknown.returncode == 2 and "unknown model(s) gru" in unknown.stderr
    no_time = longview("bench", "accuracy", "--dataset", "ml-1m-sasrec", "--protocol", "temporal", env=env)
    assert no_time.returncode == 2 and "temporal protocol needs real event times; ml-1m-sasrec only" in no_time.stderr
    missing = longview("bench", "accuracy", "--dataset", "ml-100k", "--source", str(tmp_path / "nowhere"), env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_long_term_value_benchmark_beats_chance_on_real_returns(tmp_path):
    """ml-100k, briefly trained: the head's forecasts of a return within 7 days rank the visits
    after the split better than chance, and the last line carries both models' figures."""
    data = real_data("ml-100k").parent
    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(data),
           "LONGVIEW_SEQUENCE__EPOCHS": "6", "LONGVIEW_SEQUENCE__EVAL_EVERY": "3", "LONGVIEW_SEQUENCE__DIM": "32",
           "LONGVIEW_SEQUENCE__MAX_LEN": "50", "LONGVIEW_SEQUENCE__ENSEMBLE": "1",
           "LONGVIEW_VALUE__BOOTSTRAP_SAMPLES": "100"}
    result = longview("bench", "long-term-value", "--dataset", "ml-100k", env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = last_json(result.stdout)
    assert report["dataset"] == "ml-100k" and report["return_days"] == 7.0
    for metric in ("return_auc", "concordance"):
        assert set(report[metric]) == {"model", "baseline"}
        assert 0.5 < report[metric]["baseline"] < 1.0
        lo, hi = report["intervals"][metric.removeprefix("return_")]["model"]
        assert lo <= report[metric]["model"] <= hi
    assert report["return_auc"]["model"] > 0.6
    assert "return within 7 days, AUC: model" in result.stdout and "plots and figures logged to MLflow" in result.stdout


@pytest.mark.slow
def test_long_term_value_benchmark_says_the_head_is_off_without_real_time(tmp_path):
    result = longview("bench", "long-term-value", "--dataset", "ml-1m-sasrec",
                      env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "value head off: ml-1m-sasrec only orders its events" in result.stdout
    report = last_json(result.stdout)
    assert report["return_auc"] == {"model": None, "baseline": None} and report["value_head"].startswith("off:")
    unknown = longview("bench", "long-term-value", "--dataset", "ml-0k", env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
