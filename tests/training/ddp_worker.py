"""Run by torchrun from test_distributed.py: each rank fits the sequence model on a tiny world and
writes what it saw and decided."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from longview.settings import get_settings
from tests.training.conftest import chain_world
from training.models.distributed import process_group
from training.models.sequence import SequenceModel

PASSES = [0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2]  # the second pass is best; patience 3 stops at the fifth

if __name__ == "__main__":
    out = Path(sys.argv[1])
    with process_group() as (rank, world):
        settings = get_settings(sequence={"dim": 16, "ensemble": 1, "epochs": 40, "eval_every": 2, "patience": 3, "dropout": 0.0,
                                          "max_len": 8, "batch_size": 8, "learning_rate": 0.01,
                                          "time_signals": False})  # only the epochs' validation passes
        calls: list[int] = []

        def validate(model) -> float:
            calls.append(1)
            return PASSES[len(calls) - 1]

        model = SequenceModel()
        report = model.fit(chain_world(users=50), settings, validate=validate, progress=False)
        weights = float(sum(p.double().sum() for p in model.net.parameters()))
        (out / f"rank{rank}.json").write_text(json.dumps({
            "rank": rank, "world": world, "shard": model.shard, "epochs": report.epochs, "chosen": report.chosen,
            "validated": len(calls), "weights": weights, "threads": torch.get_num_threads()}))
