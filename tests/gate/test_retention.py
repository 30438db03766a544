"""The gate's rule simulated_retention_not_worse (gate/retention.py), on a copy of the demo's home.

The frozen ml-100k user model gives lists little hold on returns (the data cannot tell whether a
satisfying visit brings a user back sooner: docs/long-term-value.md), so these tests build a world
where lists matter: users who return often, never churn, and come back much sooner after a
satisfying visit. A policy built to lose users there (the same ten worst-rated items for everyone)
must be refused, by a drop larger than the smallest the rule can detect."""

from __future__ import annotations

import dataclasses
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from gate import audit
from gate.promotion import promote
from gate.retention import check
from longview.settings import REGISTERED_MODEL
from tests.conftest import settings_of
from tests.training.test_simulation import Fixed
from training.models.popularity import Popularity
from training.served_policy import as_served
from training.simulation import build
from training.simulation.policies import PackagedPolicy
from training.tracking import CHALLENGER, CHAMPION, alias_version, load_version, mlflow_client


@pytest.fixture(scope="module")
def home(trained, tmp_path_factory):
    home = tmp_path_factory.mktemp("retention") / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    return home


def lists_matter(home, folder):
    """The demo home's settings with a user model in which the lists decide who comes back."""
    settings = settings_of(home)
    frozen = build.load(build.frozen_path(settings))
    model = dataclasses.replace(frozen.model, satisfaction_effect=2.0,
                                returns=dataclasses.replace(frozen.model.returns, log_rate=-1.0, churn=0.0))
    path = folder / "lists-matter.json"
    build.save(dataclasses.replace(frozen, model=model), path)
    return settings.model_copy(update={"simulation": settings.simulation.model_copy(update={"user_model": path}),
                                       "gate": settings.gate.model_copy(update={"retention_seeds": 3})})


def worst_rated(settings, n: int | None = 10) -> list[str]:
    """The ``n`` (None: all) items rated at least twice, the lowest mean rating first."""
    from longview.store import load_events

    events = load_events(settings)
    ratings = events[events["event_type"] == "rating"]
    stats = pd.to_numeric(ratings["value"]).groupby(ratings["item_id"].astype(str)).agg(["mean", "count"])
    return stats[stats["count"] >= 2].sort_values("mean", kind="stable").index[:n].tolist()


def champion_policy(settings):
    version = str(alias_version(mlflow_client(settings), CHAMPION).version)
    return PackagedPolicy("champion", as_served(settings, load_version(settings, version), {}))


def test_a_tie_passes_and_a_policy_that_loses_users_is_refused_beyond_the_detectable_drop(home, tmp_path):
    settings = lists_matter(home, tmp_path)
    champion = champion_policy(settings)
    tie = check(settings, champion, champion)
    assert tie.passed and tie.difference == 0 and tie.users > 20 and tie.seeds == [2000, 2001, 2002]

    loser = Fixed(worst_rated(settings))  # the same worst-rated slate for everyone, every day
    refused = check(settings, loser, champion)
    assert not refused.passed and refused.difference < -refused.tolerance
    assert -refused.difference > refused.detectable > refused.tolerance > 0, refused
    again = check(settings, loser, champion)
    assert dataclasses.replace(again, seconds=0) == dataclasses.replace(refused, seconds=0), "fixed seeds"


def test_promote_refuses_a_registered_challenger_built_to_lose_users_and_the_audit_says_why(home, tmp_path):
    """A popularity model whose counts rank the worst-rated items first, registered through MLflow as
    any model is; the accuracy rules are told to let it through, so only this rule (and the value
    head's, since popularity has none) stands between it and the users."""
    from training.packaging import log_packaged_model
    from training.sequences import split_from_store

    settings = lists_matter(home, tmp_path)
    settings = settings.model_copy(update={"gate": settings.gate.model_copy(update={
        "accuracy_tolerance": 1.0, "baseline_tolerance": 1.0, "value_auc_tolerance": 1.0})})
    split, _ = split_from_store(settings, "loo", True, profiles=False)
    counts = np.zeros_like(split.known.counts(), dtype=float)
    index = {item: i + 1 for i, item in enumerate(split.train.item_ids)}  # row 0 is the padding
    worst = worst_rated(settings, None)  # all of them, in order: a user who saw the worst gets the next worst
    for rank, item in enumerate(worst):
        counts[index[item]] = len(worst) - rank
    client = mlflow_client(settings)
    with mlflow.start_run(run_name="built to lose users"):
        info = log_packaged_model(Popularity(counts), split.train.item_ids, settings,
                                  registered_model_name=REGISTERED_MODEL)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version)
    before = str(alias_version(client, CHAMPION).version)

    result = promote(settings)
    assert not result.promoted and str(alias_version(client, CHAMPION).version) == before
    verdict = result.rules[-1]
    assert verdict.rule == "simulated_retention_not_worse" and not verdict.passed, result.rules
    # (a popularity model has no value head, which its own rule says too; every other rule let it through)
    assert [v.rule for v in result.rules if not v.passed] == ["value_head_not_worse", "simulated_retention_not_worse"]
    assert "simulated_retention_not_worse: day-14 retention" in result.reason and "detects" in result.reason
    entry = audit.read(settings)[-1]
    assert entry["outcome"] == "refused" and entry["challenger"] == version
    measured = entry["metrics"]["retention"]
    assert measured["difference"] < -measured["detectable"] < 0 and measured["users"] > 20


def test_the_rule_can_be_turned_off_and_a_first_model_needs_no_simulation(home, tmp_path):
    from gate.retention import retention_verdict

    settings = lists_matter(home, tmp_path)
    off = settings.model_copy(update={"gate": settings.gate.model_copy(update={"simulated_retention": False})})
    packaged = load_version(settings, str(alias_version(mlflow_client(settings), CHAMPION).version))
    metrics: dict = {}
    verdict = retention_verdict(off, packaged, {}, packaged, {}, metrics)
    assert verdict.passed and "off" in verdict.detail and metrics == {}
    # a user model that does not load (tampered: its digest no longer matches) fails the rule clearly
    path = settings.simulation.user_model
    path.write_text(path.read_text().replace('"churn": 0.0', '"churn": 0.5'))
    broken = retention_verdict(settings, packaged, {}, packaged, {}, metrics)
    assert not broken.passed and "the simulation failed" in broken.detail and "SIMULATED_RETENTION=false" in broken.detail
