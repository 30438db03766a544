"""Training, the registry and the promotion gate, on the home built by the demo run."""

from __future__ import annotations

import json

import mlflow

from longview.settings import REGISTERED_MODEL
from training.promotion import promote
from training.tracking import CHALLENGER, CHAMPION, alias_version, mlflow_client
from training.train import train


def test_model_beats_the_popularity_baseline(trained):
    client = mlflow_client(trained)
    metrics = client.get_run(alias_version(client, CHAMPION).run_id).data.metrics
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"]
    assert metrics["recall_at_10"] > metrics["popularity_recall_at_10"]


def test_run_records_metrics_plots_and_lineage(trained):
    client = mlflow_client(trained)
    version = alias_version(client, CHAMPION)
    run = client.get_run(version.run_id)
    assert {"ndcg_at_10", "recall_at_10", "popularity_ndcg_at_10", "train_loss"} <= set(run.data.metrics)
    for tag in ("data_version", "dataset_clock", "feature_service", "code_version"):
        assert run.data.tags.get(tag), tag
    plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert plots == {"plots/training_curve.png", "plots/model_vs_popularity.png"}


def test_registered_model_loads_and_ranks(trained):
    mlflow_client(trained)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{CHAMPION}")
    import pandas as pd

    out = model.predict(pd.DataFrame([{"recent_items": ["i0001", "i0002"], "events_7d": 3}]), params={"k": 5})
    assert len(out["items"].iloc[0]) == 5
    assert "i0001" not in out["items"].iloc[0], "items the user just saw are not recommended again"


def test_worse_challenger_does_not_move_the_champion(trained):
    client = mlflow_client(trained)
    before = alias_version(client, CHAMPION).version
    worse = train(trained, epochs=0)  # an untrained model: deliberately worse
    assert str(alias_version(client, CHALLENGER).version) == worse.model_version
    gate = promote(trained)
    assert not gate.promoted
    assert gate.challenger_score < gate.champion_score
    assert alias_version(client, CHAMPION).version == before
    tag = json.loads(client.get_model_version(REGISTERED_MODEL, worse.model_version).tags["gate"])
    assert tag["promoted"] is False
