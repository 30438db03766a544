"""Training, the registry and the promotion gate, on the home built by the demo run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from control.pipeline import train
from gate import audit
from gate.promotion import promote, rollback
from longview.settings import PROJECT_ROOT, REGISTERED_MODEL
from tests.conftest import SMALL_WORLD, longview
from training.tracking import CHALLENGER, CHAMPION, alias_version, load_version, mlflow_client


def champion_run(settings):
    client = mlflow_client(settings)
    return client, alias_version(client, CHAMPION), client.get_run(alias_version(client, CHAMPION).run_id)


def test_the_model_and_every_baseline_meet_the_same_holdout(trained):
    # Quality is judged on real data (tests/training/test_benchmark.py, `longview bench accuracy`):
    # the synthetic world is built with a genre-taste structure, not a benchmark.
    _, _, run = champion_run(trained)
    metrics = run.data.metrics
    users = metrics["users"]
    assert users > 20
    for baseline in ("popularity", "recent_popularity", "ease", "item_knn"):
        assert metrics[f"{baseline}.users"] == users
        assert 0.0 <= metrics[f"{baseline}.ndcg_at_10"] <= 1.0


def test_run_records_params_curves_plots_and_lineage(trained):
    client, version, run = champion_run(trained)
    assert {"ndcg_at_10", "hr_at_10", "mrr", "coverage_at_10", "loss", "validation"} <= set(run.data.metrics)
    assert {f"{b}.ndcg_at_10" for b in ("popularity", "recent_popularity", "ease", "item_knn")} <= set(run.data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "loss")) == int(run.data.params["epochs_run"]) > 1
    assert run.data.params["model"] == "sequence" and run.data.params["protocol"] == "temporal"
    assert run.data.params["sequence.epochs"] == "12"
    for tag in ("data_version", "feature_service", "code_version", "validation", "holdout_split"):
        assert run.data.tags.get(tag), tag
    plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert plots == {"plots/model_vs_baselines.png", "plots/learning_curve.png", "plots/retention_curve.png"}
    # the long-term value head and its churn baseline on the same visits after the split
    for who in ("model", "baseline"):
        assert 0.0 <= run.data.metrics[f"value.{who}.return_auc"] <= 1.0
        assert 0.0 <= run.data.metrics[f"value.{who}.concordance"] <= 1.0
    assert version.tags["model"] == "sequence"


def test_registered_model_loads_with_its_signature_and_ranks(trained):
    mlflow_client(trained)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{CHAMPION}")
    from training.models.base import PROFILE_FIELDS

    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["user_id", "history", "now", "last_event",
                                                                          *PROFILE_FIELDS, "taste"]
    out = model.predict(pd.DataFrame({"user_id": ["x"], "history": [["i0001", "i0002"]], "now": [0.0]}),
                        params={"k": 5})
    assert len(out["items"].iloc[0]) == 5
    packaged = model.unwrap_python_model()
    assert packaged.profile_width > len(PROFILE_FIELDS), "the synthetic world has genres: the profile has a taste"
    taste = [1.0] + [0.0] * (packaged.profile_width - len(PROFILE_FIELDS) - 1)
    with_profile = model.predict(pd.DataFrame({"user_id": ["x"], "history": [["i0001", "i0002"]], "now": [1e9],
                                               "last_event": [1e9 - 3600], "events_7d": [4.0], "taste": [taste]}),
                                 params={"k": 5})
    assert len(with_profile["items"].iloc[0]) == 5 and all(np.isfinite(with_profile["scores"].iloc[0]))
    assert not {"i0001", "i0002"} & set(out["items"].iloc[0]), "items the user engaged with are not recommended"


def test_worse_challenger_does_not_move_the_champion(trained):
    client = mlflow_client(trained)
    before = alias_version(client, CHAMPION).version
    # An untrained, time-blind model: deliberately worse (with the time signals, validation would
    # make it a popularity blend); beside the one baseline asked for.
    blind = trained.sequence.model_copy(update={"time_signals": False})
    # the rules at their defaults; register the worse model itself for the gate to judge
    strict = trained.model_copy(update={"gate": trained.gate.model_copy(update={"baseline_tolerance": 0.0})})
    keep = strict.gate.model_copy(update={"prefer_better_baseline": False})
    worse = train(strict.model_copy(update={"baselines": ["popularity"], "sequence": blind, "gate": keep}),
                  epochs=0, progress=False)
    assert set(worse.baselines) == {"popularity"} and worse.registered is None
    assert str(alias_version(client, CHALLENGER).version) == worse.model_version
    gate = promote(strict)
    assert not gate.promoted
    assert gate.challenger_score < gate.champion_score
    assert alias_version(client, CHAMPION).version == before
    tag = json.loads(client.get_model_version(REGISTERED_MODEL, worse.model_version).tags["gate"])
    assert tag["promoted"] is False
    # each rule's verdict, by name, in the result and in the audit log (file and version tags)
    assert [(v.rule, v.passed) for v in gate.rules][:6] == [
        ("artifact_loads", True), ("scores_finite", True), ("behavioural_tests", True), ("scoring_latency", True),
        ("not_worse_than_best_baseline", False), ("not_worse_than_champion", False)]
    assert [v.rule for v in gate.rules[6:]] == ["value_head_not_worse", "simulated_retention_not_worse"]
    assert "vs popularity" in gate.rules[4].detail and "worse beyond noise" in gate.rules[4].detail
    assert "measured: half-width of the 95% paired bootstrap interval" in gate.rules[5].detail
    entry = audit.read(trained)[-1]
    assert entry["action"] == "promote" and entry["outcome"] == "refused" and entry["trigger"] == "cli"
    assert entry["challenger"] == worse.model_version and entry["champion_after"] == str(before)
    assert entry["metrics"]["challenger"]["ndcg_at_10"] == gate.challenger_score
    assert entry["metrics"]["holdout"]["reused"] is True, "train saved the holdout of this data version"
    tags = client.get_model_version(REGISTERED_MODEL, worse.model_version).tags
    assert json.loads(tags["audit.0001"])["outcome"] == "refused"
    assert entry["metrics"]["champion"]["tolerance"] == entry["metrics"]["champion"]["measured_noise"] > 0


def test_a_baseline_better_than_the_model_is_registered_in_its_place(trained):
    """Users get whichever is best: the untrained model loses to popularity beyond noise, so train
    registers popularity, packaged like any model, as @challenger."""
    client = mlflow_client(trained)
    blind = trained.sequence.model_copy(update={"time_signals": False})
    strict = trained.gate.model_copy(update={"baseline_tolerance": 0.0})  # the default
    result = train(trained.model_copy(update={"baselines": ["popularity"], "sequence": blind, "gate": strict}),
                   epochs=0, progress=False)
    assert result.registered == "popularity" and "registered as @challenger instead" in result.registered_because
    version = client.get_model_version(REGISTERED_MODEL, result.model_version)
    assert version.tags["model"] == "popularity" and version.tags["chosen_over"] == "sequence"
    packaged = load_version(trained, result.model_version)
    assert packaged.model_name == "popularity" and len(packaged.rank([[]], None, 5)[0]) == 5
    # It has no long-term value head, and the champion has one: the gate keeps the champion.
    before = alias_version(client, CHAMPION).version
    gate = promote(trained)
    value = next(v for v in gate.rules if v.rule == "value_head_not_worse")
    assert not value.passed and "has no value head and the champion has one" in value.detail
    assert not gate.promoted and alias_version(client, CHAMPION).version == before


def test_train_under_torchrun_registers_once_from_rank_zero(trained):
    client = mlflow_client(trained)
    before = {str(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LONGVIEW_")},
           "LONGVIEW_HOME": str(trained.home), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "longview", "train", "--epochs", "2"],
                         capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = sorted((json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["model_version"] and results[1]["model_version"] is None, "only rank 0 registers"
    after = {str(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")}
    assert after - before == {results[0]["model_version"]}
    assert str(alias_version(client, CHALLENGER).version) == results[0]["model_version"]


@pytest.mark.slow
def test_train_says_what_is_missing(tmp_path):
    env = {**SMALL_WORLD, "LONGVIEW_SYNTHETIC_USERS": "30", "LONGVIEW_HOME": str(tmp_path / "home")}
    empty = longview("train", env=env)
    assert empty.returncode == 1 and "the event store is empty" in empty.stderr and "Traceback" not in empty.stderr
    assert longview("data", "prepare", "--dataset", "synthetic", env=env).returncode == 0
    no_features = longview("train", env=env)  # events, but `longview features` never ran
    assert no_features.returncode == 1 and "run `longview features`" in no_features.stderr
    assert "Traceback" not in no_features.stderr
    unknown = longview("train", env={**env, "LONGVIEW_MODEL": "gru"})
    assert unknown.returncode != 0 and "gru" in unknown.stderr and "Traceback" not in unknown.stderr


def test_profiles_from_feast_know_only_what_came_before_each_request(trained):
    """Every training position's profile (Feast's point-in-time join) counts only events before
    that position's time: a label never leaks into its own input. The holdout's requests carry
    profiles too, and a model trained with them registers their width."""
    import numpy as np

    from training.models.base import PROFILE_FIELDS
    from training.sequences import split_from_store

    split, _ = split_from_store(trained, "temporal", True)
    assert split.train.profiles is not None and split.test.queries.profiles is not None
    assert split.test.queries.profiles.shape == (len(split.test.users), split.train.profile_width)
    active = PROFILE_FIELDS.index("active_days")
    events = PROFILE_FIELDS.index("events_30d")
    checked = 0
    for times, profiles in zip(split.train.times, split.train.profiles, strict=True):
        assert not profiles[0].any(), "nothing is known before a user's first event"
        for j in range(1, len(times)):
            earlier = int((times < times[j]).sum())
            assert round(float(np.expm1(profiles[j, events]))) <= earlier
            assert round(float(np.expm1(profiles[j, active]))) <= earlier
            checked += 1
    assert checked > 100
    assert any(p[1:, events].any() for p in split.train.profiles), "profiles are read, not all zeros"
    assert split_from_store(trained, "temporal", True, profiles=False)[0].train.profiles is None


def test_the_profile_join_answers_as_feasts_own(trained):
    """training/user_profiles.py joins the profile rows it pulls through Feast's offline store
    itself (Feast's file-store join is too slow for a row per event); on requests at, between,
    before and long after events (past the view's TTL) it picks what get_historical_features picks."""
    import numpy as np

    from longview.feature_store import feature_store, historical_user_features
    from longview.store import load_events
    from training.user_profiles import point_in_time, pull_profile_rows

    store = feature_store(trained)
    rows, ttl = pull_profile_rows(store)
    events = load_events(trained, columns=["user_id", "timestamp"]).sample(120, random_state=0)
    shifts = np.random.default_rng(0).choice([-400 * 86_400, -1, 0, 1, 3_600, 400 * 86_400], len(events))
    asks = pd.DataFrame({"user_id": events["user_id"].astype(str).to_numpy(),
                         "event_timestamp": events["timestamp"].to_numpy() + pd.to_timedelta(shifts, unit="s")})
    asks = asks.drop_duplicates().reset_index(drop=True).assign(ask=lambda f: np.arange(len(f)))
    feast = historical_user_features(store, asks).sort_values("ask").reset_index(drop=True)
    mine = point_in_time(rows, ttl, asks["user_id"].tolist(),
                         pd.to_datetime(asks["event_timestamp"], utc=True).astype("int64").to_numpy())
    answered = {row["ask"]: row for row in feast.to_dict("records") if not pd.isna(row["events_30d"])}
    for ask, ours in enumerate(mine):
        theirs = answered.get(ask)  # the file offline store leaves out requests it has no row for
        if theirs is None:
            assert ours is None, (asks.iloc[ask], ours)
        else:
            assert ours is not None and ours["events_30d"] == theirs["events_30d"], (theirs, ours)
            assert ours["active_days"] == theirs["active_days"]
            assert np.allclose(list(ours["taste"]), list(theirs["taste"]))
    assert 0 < len(answered) < len(asks), "requests with and without a profile were both asked"


def weights_file(client, version: str):
    """The registered version's tensors file on disk (the embedded profile keeps artifacts locally)."""
    from pathlib import Path
    from urllib.parse import urlparse

    location = Path(urlparse(client.get_model_version_download_uri(REGISTERED_MODEL, version)).path)
    (weights,) = location.rglob("weights.pt")
    return weights


def test_a_broken_challenger_artifact_is_refused_and_the_champion_untouched(trained):
    client = mlflow_client(trained)
    before = alias_version(client, CHAMPION).version
    blind = trained.sequence.model_copy(update={"time_signals": False})
    broken = train(trained.model_copy(update={"baselines": [], "sequence": blind}), epochs=0, progress=False)
    path = weights_file(client, broken.model_version)
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    gate = promote(trained)
    assert not gate.promoted and alias_version(client, CHAMPION).version == before
    assert [(v.rule, v.passed) for v in gate.rules] == [("artifact_loads", False)]
    assert "unreadable or corrupted" in gate.reason and f"version {broken.model_version}" in gate.reason
    assert audit.read(trained)[-1]["outcome"] == "refused"
    path.unlink()  # missing altogether: refused the same way
    missing = promote(trained)
    assert not missing.promoted and missing.rules[0].rule == "artifact_loads"
    assert alias_version(client, CHAMPION).version == before


def test_a_better_challenger_replaces_a_worse_champion_a_tie_goes_by_the_rule_and_rollback_is_audited(trained):
    client = mlflow_client(trained)
    # A weak model in charge: untrained and time-blind, put there by a person's rollback to it.
    blind = trained.sequence.model_copy(update={"time_signals": False})
    untrained = trained.model_copy(update={"baselines": [], "sequence": blind})
    weak = train(untrained, epochs=0, progress=False)
    assert rollback(trained, to_version=weak.model_version, trigger="test").champion == weak.model_version
    # The same weak model again: an exact tie, decided by the rule (>= minus the measured tolerance).
    twin = train(untrained, epochs=0, progress=False)
    tie = promote(trained)
    assert tie.promoted and tie.champion == twin.model_version, tie.reason
    tied = next(v for v in tie.rules if v.rule == "not_worse_than_champion")
    assert tied.passed and "difference +0.0000" in tied.detail and "-tolerance" in tied.detail
    # A genuinely better challenger: the trained model, better than the weak champion beyond noise.
    better = train(trained, progress=False)
    gate = promote(trained)
    assert gate.promoted and gate.champion == better.model_version, gate.reason
    assert all(v.passed for v in gate.rules) and gate.challenger_score > gate.champion_score
    _, low, _ = audit.read(trained)[-1]["metrics"]["champion"]["difference"]
    assert low > 0, "better than the champion beyond the paired noise, not only by >="
    assert str(alias_version(client, CHAMPION).version) == better.model_version
    # A rollback restores the previous champion and is audited in the file and the version's tags.
    restored = rollback(trained, trigger="test")
    assert restored.promoted and restored.action == "rollback" and restored.champion == twin.model_version
    assert str(alias_version(client, CHAMPION).version) == twin.model_version
    entry = audit.read(trained)[-1]
    assert (entry["action"], entry["outcome"], entry["trigger"]) == ("rollback", "rolled back", "test")
    assert (entry["champion_before"], entry["champion_after"]) == (better.model_version, twin.model_version)
    audited = [json.loads(v) for k, v in client.get_model_version(REGISTERED_MODEL, twin.model_version).tags.items()
               if k.startswith("audit.")]
    assert any(e["action"] == "rollback" for e in audited)
    # to a named version; nonsense is refused with a reason and nothing moves
    assert rollback(trained, to_version=better.model_version).champion == better.model_version
    for bad, message in (("999", "has no version '999'"), (better.model_version, "already is the champion")):
        try:
            rollback(trained, to_version=bad)
        except ValueError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"rollback to {bad} was not refused")
    assert str(alias_version(client, CHAMPION).version) == better.model_version


def test_promote_options_are_checked(trained):
    env = {"LONGVIEW_HOME": str(trained.home)}
    alone = longview("promote", "--to-version", "1", env=env)
    assert alone.returncode == 2 and "--to-version goes with --rollback" in alone.stderr
    for bad in ("abc", "-1", "1; rm -rf /", "0"):
        wrong = longview("promote", "--rollback", "--to-version", bad, env=env)
        assert wrong.returncode == 2 and "must be a version number" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_retried_run_registers_one_version(trained):
    """A retried Airflow `train` passes its run's key again: the version registered under it is
    @challenger again and nothing is trained or registered twice; another key registers anew."""
    client = mlflow_client(trained)
    quick = trained.model_copy(update={"baselines": ["popularity"]})
    before = {str(v.version) for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")}
    first = train(quick, epochs=0, progress=False, run_key="airflow:longview_loop:manual__it's-1")
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, sorted(before, key=int)[0])  # moved since
    again = train(quick, epochs=0, progress=False, run_key="airflow:longview_loop:manual__it's-1")
    assert again.reused and not first.reused and again.model_version == first.model_version
    assert again.metrics == first.metrics
    assert str(alias_version(client, CHALLENGER).version) == first.model_version
    after = {str(v.version) for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")}
    assert after - before == {first.model_version}
    other = train(quick, epochs=0, progress=False, run_key="airflow:longview_loop:manual__2")
    assert not other.reused and other.model_version != first.model_version
