"""dvc.yaml for real: `dvc repro` runs the batch stages, `dvc push`/`dvc pull` round-trip the outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from longview.settings import PROJECT_ROOT, get_settings
from training.tracking import EXPERIMENT, mlflow_client
from tests.conftest import SMALL_WORLD

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def test_repro_push_pull_round_trip(tmp_path):
    # A clone of the project (tracked files only), with the default data home inside it.
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGVIEW_")}
    env.update({**SMALL_WORLD, "LONGVIEW_SYNTHETIC_USERS": "80", "PATH": f"{BIN}:{env.get('PATH', '')}"})
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"], repo, env)

    run([str(BIN / "dvc"), "repro"], repo, env)  # prepare (synthetic, from params.yaml) -> ... -> promote
    home = repo / ".longview"
    assert list((home / "events").glob("batch-*.parquet"))
    assert (home / "features" / "user_profile.parquet").exists()
    assert (home / "train" / "promotion.json").exists()
    again = run([str(BIN / "dvc"), "repro"], repo, env)
    assert "didn't change" in again.stdout or "up to date" in again.stdout

    # The model's data_version tag is the hash dvc.lock records for the train stage's data input.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (locked,) = [d["md5"] for d in lock["stages"]["train"]["deps"] if d["path"] == ".longview/features"]
    client = mlflow_client(get_settings(home=home))
    (run_info,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run_info.data.tags["data_version"] == locked

    run([str(BIN / "dvc"), "push"], repo, env)
    assert any((home / "dvc-remote").rglob("*"))
    versioned = ("events", "catalogue", "features")
    original = {(d, p.name): p.read_bytes() for d in versioned for p in (home / d).glob("*.parquet")}
    for folder in versioned:
        shutil.rmtree(home / folder)
    shutil.rmtree(repo / ".dvc" / "cache")
    run([str(BIN / "dvc"), "pull"], repo, env)
    assert {(d, p.name): p.read_bytes() for d in versioned for p in (home / d).glob("*.parquet")} == original
