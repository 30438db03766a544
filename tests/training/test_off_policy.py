"""Off-policy estimates: exact where the answer is known, and the report on the real logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longview.datasets import open_bandit
from tests.conftest import last_json, longview, real_data
from training import off_policy


@pytest.fixture(scope="module")
def random_log():
    return open_bandit.load("random", real_data("open-bandit-sample"))


def test_evaluating_the_logging_policy_itself_gives_its_logged_rate(random_log):
    """Uniform over 80 items, as logged: every importance weight is 1, so IPS is the mean click."""
    log = random_log
    uniform = np.full((log.rounds, log.n_actions, log.len_list), 1 / log.n_actions)
    found = off_policy.estimate(log, uniform, bootstrap=200)
    assert found["ips"].value == pytest.approx(log.reward.mean(), rel=1e-9)
    assert found["snips"].value == pytest.approx(log.reward.mean(), rel=1e-9)
    assert all(f.low <= f.value <= f.high for f in found.values())
    assert found["ips"].contains(off_policy.logged_rate(log, 200).value)


def test_a_policy_showing_only_never_clicked_items_is_estimated_at_zero(random_log):
    log = random_log
    never = np.setdiff1d(np.arange(log.n_actions), log.action[log.reward == 1])[0]
    dist = np.zeros((log.rounds, log.n_actions, log.len_list))
    dist[:, never, :] = 1.0
    found = off_policy.estimate(log, dist, bootstrap=200)
    assert found["ips"].value == 0.0 and found["ips"].high == 0.0


@pytest.mark.parametrize("bad", ["shape", "not a distribution"])
def test_a_malformed_action_distribution_is_refused(random_log, bad):
    log = random_log
    dist = np.full((log.rounds, log.n_actions, log.len_list), 1 / log.n_actions)
    dist = dist[:10] if bad == "shape" else dist * 2
    with pytest.raises(ValueError, match="action_dist"):
        off_policy.estimate(log, dist)


@pytest.mark.slow
def test_bench_off_policy_reports_each_estimator_beside_the_logged_rate(tmp_path):
    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(real_data("open-bandit-sample").parent)}
    result = longview("bench", "off-policy", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = last_json(result.stdout)
    assert set(figures["obd_estimate"]) == {"ips", "snips", "dr"}
    for found in [*figures["obd_estimate"].values(), figures["obd_logged"], figures["obd_random"]]:
        assert 0 <= found["low"] <= found["value"] <= found["high"] <= 1
    assert "SNIPS from the random logs" in result.stdout
    assert json.dumps(figures)  # one JSON line, last
