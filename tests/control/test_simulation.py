"""`longview simulate` on the demo's data home: every policy through the registered model, a table
with intervals, the user model's digest, the retention plot in MLflow; bad requests refused clearly."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import SMALL_WORLD, last_json, longview
from training.simulation.build import FROZEN_DIR


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    home = tmp_path_factory.mktemp("simulate") / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    return home


def env(home, **extra) -> dict[str, str]:
    return {**SMALL_WORLD, "LONGVIEW_HOME": str(home), **extra}


def test_simulate_serves_every_policy_and_logs_the_retention_plot(home):
    result = longview("simulate", "--users", "12", "--seeds", "2", "--days", "6", env=env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    frozen = json.loads((FROZEN_DIR / "ml-100k.json").read_text())["digest"]
    assert f"user model {frozen}" in result.stdout
    summary = last_json(result.stdout)
    assert summary["user_model"] == frozen and summary["seeds"] == [1000, 1001] and summary["users"] == 12
    assert set(summary["policies"]) == {"random", "popularity", "recent_popularity", "sequence", "engagement"}
    for measures in summary["policies"].values():
        assert 0 <= measures["retention_6"] <= 1 and measures["active_days"] >= 1 and 0 < measures["coverage"] <= 1
    assert "engagement - sequence, retention_6" in result.stdout

    run_id = next(line.split(": ")[1] for line in result.stdout.splitlines() if line.startswith("mlflow run: "))
    from mlflow import MlflowClient

    from tests.conftest import settings_of

    client = MlflowClient(tracking_uri=settings_of(home).tracking_uri)
    run = client.get_run(run_id)
    assert run.data.params["user_model"] == frozen and "engagement.retention_6" in run.data.metrics
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/retention.png"]


def test_sensitivity_reruns_every_variant_of_the_user_model_and_says_whether_the_verdicts_hold(home):
    from control.simulation import SCALED, variants
    from training.simulation import build

    result = longview("simulate", "--policies", "random,sequence", "--sensitivity", "--users", "6", "--seeds", "2",
                      "--days", "3", env=env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = last_json(result.stdout)
    frozen = build.load(FROZEN_DIR / "ml-100k.json")
    labels = [label for label, _ in variants(frozen)]
    assert summary["variants"] == len(labels) == 2 * len(SCALED) + 4
    assert [row["variant"] for row in summary["rows"]] == ["frozen", *labels]
    assert all(set(row["verdicts"]) == {"random"} for row in summary["rows"])
    assert 0 <= summary["verdicts_hold"] <= summary["variants"]
    assert "satisfaction effect at its 95% high end" in result.stdout and "hold in" in result.stdout
    # every variant is a different user model, each within its parameter's meaning
    digests = {model.digest() for _, model in variants(frozen)}
    assert len(digests) == len(labels) and frozen.model.digest() not in digests
    assert all(0 < m.choice.position_decay < 1 and m.returns.churn >= 0 for _, m in variants(frozen))


def test_tuning_users_and_seeds_are_not_the_reported_ones(home):
    from control.simulation import policies, simulate
    from tests.conftest import settings_of

    settings = settings_of(home)
    served = policies(settings, ["random"])
    reported = simulate(settings, served, days=2, seeds=1, users=8, progress=False)
    tuning = simulate(settings, served, days=2, seeds=1, users=8, part="tuning", progress=False)
    assert reported.seeds == [1000] and tuning.seeds == [0]
    from longview.store import load_events
    from training.simulation.build import users_of

    events = load_events(settings)
    assert not set(users_of(events, "reported")) & set(users_of(events, "tuning"))


@pytest.mark.parametrize("args, message", [
    (["--policies", "oracle"], "unknown policies oracle"),
    (["--days", "0"], "Invalid value"),
])
def test_bad_requests_are_refused_with_one_clear_line(home, args, message):
    result = longview("simulate", "--users", "4", "--seeds", "1", "--days", "2", *args, env=env(home))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_version_or_user_model_is_refused_clearly(home, tmp_path):
    from control.simulation import policies, simulate
    from tests.conftest import settings_of

    settings = settings_of(home)
    with pytest.raises(ValueError, match="no registered version 999"):
        policies(settings, ["sequence"], version="999")
    with pytest.raises(ValueError, match="no registered version 998"):
        policies(settings, ["v998"])
    missing = settings.model_copy(update={"simulation": settings.simulation.model_copy(
        update={"user_model": tmp_path / "absent.json"})})
    with pytest.raises(FileNotFoundError, match="--calibrate"):
        simulate(missing, policies(settings, ["random"]), days=1, seeds=1, users=2, progress=False)
    values = json.loads((FROZEN_DIR / "ml-100k.json").read_text())
    values["model"]["satisfaction_effect"] = 9.0  # someone "tuned" the frozen model by hand
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(values))
    tampered = settings.model_copy(update={"simulation": settings.simulation.model_copy(update={"user_model": path})})
    with pytest.raises(ValueError, match="changed after it was frozen"):
        simulate(tampered, policies(settings, ["random"]), days=1, seeds=1, users=2, progress=False)


def test_the_summary_is_strict_json_when_nobody_comes_back():
    from control.simulation import SimulationResult, summary_json

    result = SimulationResult("digest", 2, 1, "reported", [1000], measures={
        "random": [{"retention_2": 0.0, "return_days": float("nan")}]})
    assert json.loads(summary_json(result))["policies"]["random"] == {"retention_2": 0.0, "return_days": None}


def test_calibrating_on_an_empty_home_is_refused_clearly(tmp_path):
    from control.simulation import calibrate
    from longview.settings import get_settings

    with pytest.raises(ValueError, match="no events"):
        calibrate(get_settings(home=tmp_path / "empty"), tmp_path / "model.json")
    assert not (tmp_path / "model.json").exists()
