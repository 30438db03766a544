"""Tiny interaction worlds with a structure every model should find."""

from __future__ import annotations

import numpy as np
import pytest

from longview.settings import Settings, get_settings
from training.models import Interactions


def chain_world(users: int = 60, items: int = 30, length: int = 12, seed: int = 0) -> Interactions:
    """Each user walks the catalogue in steps of one from a random start: the next item after i is
    i + 1 (wrapping), the structure a sequence model must learn and popularity cannot."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(users):
        start = rng.integers(0, items)
        sequences.append((start + np.arange(length)) % items + 1)
    ids = [f"i{n}" for n in range(1, items + 1)]
    positive = [np.ones(len(s), dtype=bool) for s in sequences]
    times = [1_000_000.0 + 3600.0 * np.arange(len(s)) for s in sequences]
    return Interactions(ids, [s.astype(np.int64) for s in sequences], positive, times)


@pytest.fixture
def world() -> Interactions:
    return chain_world()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Settings:
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path / "home"))
    return get_settings(sequence={"dim": 16, "ensemble": 1, "epochs": 30, "eval_every": 5, "patience": 3, "dropout": 0.0,
                                  "max_len": 8, "batch_size": 16, "learning_rate": 0.01})
