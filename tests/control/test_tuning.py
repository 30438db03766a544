"""`longview tune engagement` on a copy of the demo's home: weights chosen by validation NDCG and
simulated retention of the tuning users only, recorded on the version (tag, run) and then served by
everything that serves the version; bad requests refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_WORLD, last_json, longview, settings_of


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    home = tmp_path_factory.mktemp("tune") / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    return home


def env(home) -> dict[str, str]:
    return {**SMALL_WORLD, "LONGVIEW_HOME": str(home)}


def test_tuning_chooses_on_validation_and_tuning_users_and_the_version_serves_the_choice(home):
    from control.pipeline import train
    from control.simulation import policies
    from control.tuning import GRID, grid_weights
    from longview.settings import REGISTERED_MODEL
    from training.served_policy import TUNED, WEIGHTS_TAG
    from training.tracking import mlflow_client

    settings = settings_of(home)
    client = mlflow_client(settings)
    # a version of its own: the copied home's runs keep their artifacts in the original home's folder
    champion = train(settings, progress=False).model_version
    result = longview("tune", "engagement", "--days", "3", "--seeds", "2", "--users", "10", env=env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = last_json(result.stdout)
    assert summary["version"] == champion and summary["seeds"] == [0, 1], "tuning seeds, never the reported 1000.."
    assert summary["trials"] == len(grid_weights(GRID)) and summary["chosen"] in grid_weights(GRID)
    assert summary["ndcg_at_10"] >= summary["model_ndcg_at_10"] * (1 - 0.03) - 1e-9
    version = client.get_model_version(REGISTERED_MODEL, champion)
    assert json.loads(version.tags[WEIGHTS_TAG]) == summary["chosen"]
    artifacts = {a.path for folder in ("plots", "tuning") for a in client.list_artifacts(version.run_id, folder)}
    assert {"plots/engagement_tuning.png", "tuning/engagement_tuning.json"} <= artifacts
    evidence = json.loads(Path(client.download_artifacts(version.run_id, "tuning/engagement_tuning.json")).read_text())
    simulated = [t for t in evidence["trials"] if t["retention"]]
    best = max(sum(t["retention"]) / len(t["retention"]) for t in simulated)
    assert summary["retention_3"] == pytest.approx(best, abs=1e-6), "the best simulated retention wins"
    assert all(t["ndcg_change"] >= -0.03 for t in simulated)
    # what the simulator (and so the service and the gate) serve the version with: the chosen weights
    engagement = policies(settings, ["engagement"], champion)[0]
    assert {k: engagement.model.model.weights[k] for k in TUNED} == summary["chosen"]


def test_with_no_room_for_loss_only_trials_that_lose_nothing_are_simulated(home):
    from control.tuning import tune_engagement

    settings = settings_of(home)
    tuning = tune_engagement(settings, days=2, seeds=1, users=6, max_ndcg_loss=0.0, progress=False,
                             grid={"value_weight": (0.0,), "diversity_weight": (0.0, 5.0), "novelty_weight": (0.0, 5.0)})
    for trial in tuning.trials:
        assert trial.feasible == (trial.ndcg_change >= 0), trial
    assert tuning.chosen is None or tuning.chosen.ndcg_change >= 0


@pytest.mark.parametrize("args, message", [
    (["--version", "999"], "999"),
    (["--max-ndcg-loss", "2"], "Invalid value"),
    (["--days", "0"], "Invalid value"),
])
def test_bad_requests_are_refused_with_one_clear_line(home, args, message):
    result = longview("tune", "engagement", "--users", "4", "--seeds", "1", "--days", "2", *args, env=env(home))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
