"""`longview demo` (what `make demo` runs) ends in real HTTP responses from the champion."""

from __future__ import annotations

import json


def test_demo_prints_real_recommendations_from_the_champion(demo_run):
    _, result = demo_run
    lines = result.stdout.splitlines()
    statuses = [line for line in lines if line.startswith("POST /recommend")]
    assert len(statuses) >= 3
    bodies = [json.loads(lines[i + 1]) for i, line in enumerate(lines) if line.startswith("POST /recommend") and line.endswith("200")]
    assert bodies and all(b["items"] for b in bodies)
    # The champion the demo's gate promoted (its step 5 prints the decision): other tests share this
    # data home and may have moved @champion since.
    step = next(i for i, line in enumerate(lines) if line.startswith("== 5/6 promote"))
    decision = next(json.loads(line) for line in lines[step:] if line.startswith("{") and '"champion"' in line)
    assert decision["promoted"] and {b["model_version"] for b in bodies} == {str(decision["champion"])}
    assert any(line.endswith("-> 400") for line in statuses), "the demo shows a rejected request too"
    assert "ui mlflow" in result.stdout and "ui airflow" in result.stdout
