"""The sequence model under torchrun with two processes (gloo on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longview.settings import PROJECT_ROOT


@pytest.mark.slow
def test_two_ranks_train_disjoint_shards_and_stop_together(tmp_path):
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1",
                              "LONGVIEW_HOME": str(tmp_path / "home")})
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{n}.json").read_text()) for n in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    shards = [set(r["shard"]) for r in ranks]
    assert not shards[0] & shards[1], "each rank reads its own users"
    assert shards[0] | shards[1] == set(range(50)), "together they read every user"
    assert ranks[0]["validated"] == 5 and ranks[1]["validated"] == 0, "rank 0 validates, the others follow it"
    assert ranks[0]["epochs"] == ranks[1]["epochs"] == 10, "both stopped at the same epoch: none left waiting"
    assert ranks[0]["chosen"] == ranks[1]["chosen"] == {"epoch": 4.0}
    assert ranks[0]["weights"] == pytest.approx(ranks[1]["weights"], rel=1e-6), "gradients were averaged"
