"""The audit log's own rules (its use by the gate is tested in test_training_and_promotion.py)."""

from __future__ import annotations

import json

from gate import audit
from longview.settings import get_settings


def test_an_empty_log_reads_as_no_entries(tmp_path):
    assert audit.read(get_settings(home=tmp_path)) == []


def test_a_long_entry_fits_a_version_tag_and_keeps_its_outcome():
    entry = {"at": "2026-01-01T00:00:00+00:00", "action": "promote", "outcome": "refused",
             "rules": [{"rule": "artifact_loads", "passed": False, "detail": "x" * 20_000}],
             "metrics": {"challenger": {"ndcg_at_10": 0.1}}, "reason": "y" * 200}
    value = audit._tag_value(entry)
    assert len(value) <= audit.MAX_TAG_CHARS
    short = json.loads(value)
    assert short["outcome"] == "refused" and short["rules"][0]["rule"] == "artifact_loads"
    assert len(short["rules"][0]["detail"]) == 200
    small = {"action": "rollback", "outcome": "rolled back"}
    assert json.loads(audit._tag_value(small)) == small
