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
    # The default remote is outside the data home (`make clean` deletes the home, not its copies);
    # this test points it at a folder of its own, as a user points it anywhere (config.local).
    default = yaml_config(repo / ".dvc" / "config")
    assert default.startswith("~/") and ".longview" not in default, default
    remote = tmp_path / "remote"
    run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote)], repo, env)
    # The hyperparameters come from params.yaml, through `longview --params` (the smaller network
    # and the one-network ensemble are this test's, to be quick; the env still wins where it is set).
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sequence"].update({"dim": 16, "ensemble": 1})
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    env.pop("LONGVIEW_SEQUENCE__ENSEMBLE", None)

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
    assert run_info.data.params["sequence.dim"] == "16" and run_info.data.params["sequence.ensemble"] == "1"
    assert run_info.data.params["sequence.epochs"] == SMALL_WORLD["LONGVIEW_SEQUENCE__EPOCHS"], "the env wins"
    # What each stage reads is declared: a changed parameter or catalogue makes train stale.
    locked_train = lock["stages"]["train"]
    assert {".longview/events", ".longview/catalogue", ".longview/features"} <= {d["path"] for d in locked_train["deps"]}
    assert locked_train["params"]["params.yaml"]["sequence"]["dim"] == 16
    params["sequence"]["dropout"] = 0.25
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    stale = run([str(BIN / "dvc"), "status", "train"], repo, env).stdout
    assert "params.yaml" in stale and "modified:" in stale and "sequence" in stale, stale
    assert run([str(BIN / "dvc"), "status", "features"], repo, env).stdout.strip().endswith("up to date."), \
        "the features do not read the model's parameters"
    params["sequence"]["dropout"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    run([str(BIN / "dvc"), "push"], repo, env)
    assert any(remote.rglob("*")) and not (home / "dvc-remote").exists()
    versioned = ("events", "catalogue", "features")
    original = {(d, p.name): p.read_bytes() for d in versioned for p in (home / d).glob("*.parquet")}
    for folder in versioned:
        shutil.rmtree(home / folder)
    shutil.rmtree(repo / ".dvc" / "cache")
    run([str(BIN / "dvc"), "pull"], repo, env)
    assert {(d, p.name): p.read_bytes() for d in versioned for p in (home / d).glob("*.parquet")} == original


def yaml_config(path: Path) -> str:
    """The default remote's url in a .dvc/config."""
    import re

    return re.search(r"^\s*url\s*=\s*(\S+)\s*$", path.read_text(), re.MULTILINE).group(1)
