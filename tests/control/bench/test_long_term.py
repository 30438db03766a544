"""`longview bench long-term` end to end at a tiny size: every part reports, the last line is the
JSON the issue names."""

from __future__ import annotations

import pytest

from tests.conftest import last_json, longview, real_data


@pytest.mark.slow
def test_bench_long_term_reports_ours_external_and_off_policy(tmp_path):
    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(real_data("ml-100k").parent),
           "LONGVIEW_SEQUENCE__EPOCHS": "1", "LONGVIEW_SEQUENCE__ENSEMBLE": "1"}
    # (the weights' tuning, the bench's first step, is tested with `longview tune engagement`)
    result = longview("bench", "long-term", "--users", "10", "--seeds", "2", "--days", "4", "--episodes", "3",
                      "--no-tune", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = last_json(result.stdout)
    policies = {"random", "popularity", "recent_popularity", "sequence", "engagement"}
    assert set(figures["ours"]) == policies and set(figures["external"]) == policies - {"recent_popularity"}
    for name in ("sequence", "engagement"):
        assert 0 <= figures["ours"][name]["retention_4"] <= 1 and 0 < figures["ours"][name]["ndcg_at_10"] < 1
        assert figures["external"][name]["long_term"] > 0
    assert set(figures["ope"]["obd_estimate"]) == {"ips", "snips", "dr"}
    assert "engagement vs sequence" in result.stdout and "RecSim interest evolution" in result.stdout
    assert 0 <= figures["ope"]["sim_coverage"] <= 1 and figures["ope"]["sim_half_width"] > 0
    assert "off-policy check in our simulator" in result.stdout
    from longview.settings import get_settings

    defaults = get_settings().engagement
    assert figures["engagement_weights"] == {"value_weight": defaults.value_weight, "novelty_weight":
                                             defaults.novelty_weight, "diversity_weight": defaults.diversity_weight}
