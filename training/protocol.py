"""Which evaluation protocol a data home's events call for: training and the gate both ask."""

from __future__ import annotations

import json

from longview.settings import Settings


def dataset_marker(settings: Settings) -> dict:
    """What `longview data prepare` recorded about the data home's dataset ({} when the events came
    another way, e.g. ingested batches: their times are real)."""
    path = settings.home / "dataset.json"
    return json.loads(path.read_text()) if path.exists() else {}


def protocol_for(settings: Settings) -> tuple[str, bool]:
    """(protocol, real_time): temporal on real event times, leave-one-out on ordinal ones."""
    real_time = not dataset_marker(settings).get("ordinal_time", False)
    return ("temporal" if real_time else "loo"), real_time
