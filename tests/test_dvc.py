"""dvc.yaml for real: `dvc repro` runs the batch stages, `dvc push`/`dvc pull` round-trip the outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from longview.settings import PROJECT_ROOT, get_settings
from tests.conftest import SMALL_WORLD
from training.tracking import EXPERIMENT, mlflow_client

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
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
    restore_on_a_fresh_clone(repo, remote, tmp_path / "clone", env)


def restore_on_a_fresh_clone(repo: Path, remote: Path, clone: Path, env: dict) -> None:
    """`git clone`, `dvc pull` and `longview restore` bring back a serving-ready state: the pushed
    champion registered behind @champion (the same model: the same lists), every user's row online,
    and the service answering with that version, no fallback."""
    import httpx

    from control.service_process import running_service
    from longview.feature_store import feature_store
    from longview.features import HISTORY_VIEW
    from longview.online_features import OnlineFeatureReader
    from longview.privacy import KEY_FILE, pseudonym, pseudonym_key
    from training.tracking import CHAMPION, alias_version, load_version

    original = get_settings(home=repo / ".longview")
    pushed = load_version(original, str(alias_version(mlflow_client(original), CHAMPION).version))
    # What a user commits after a run: dvc.lock (and params.yaml) name the data the remote holds.
    run(["git", "add", "-A"], repo, env)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "a pushed run"], repo, env)
    run(["git", "clone", "-q", str(repo), str(clone)], repo, env)
    run([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote)], clone, env)
    run([str(BIN / "dvc"), "pull"], clone, env)
    assert not (clone / ".longview" / "mlartifacts").exists(), "a fresh clone: no registry yet"
    # The user ids are pseudonyms made with the pushing home's key, a secret DVC does not carry.
    refused = subprocess.run([str(BIN / "longview"), "restore"], cwd=clone, env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "LONGVIEW_PSEUDONYM_KEY_FILE" in refused.stderr, refused.stderr
    assert not (clone / ".longview" / "mlartifacts").exists(), "refused before writing anything"
    env = {**env, "LONGVIEW_PSEUDONYM_KEY_FILE": str(original.home / KEY_FILE)}
    settings = get_settings(home=clone / ".longview", pseudonym_key_file=original.home / KEY_FILE)
    summary = json.loads(run([str(BIN / "longview"), "restore"], clone, env).stdout.strip().splitlines()[-1])
    users = pd.read_parquet(settings.features_dir / f"{HISTORY_VIEW}.parquet")["user_id"].tolist()
    assert summary["registered"] and summary["online_users"] == len(users) and summary["champion"] == "1"
    assert summary["key_kept_in_home"] and (settings.home / KEY_FILE).read_bytes() == (original.home / KEY_FILE).read_bytes()
    assert (settings.home / KEY_FILE).stat().st_mode & 0o777 == 0o600
    env.pop("LONGVIEW_PSEUDONYM_KEY_FILE")  # from now on the home's own copy serves
    settings = get_settings(home=clone / ".longview")
    again = json.loads(run([str(BIN / "longview"), "restore"], clone, env).stdout.strip().splitlines()[-1])
    assert not again["registered"] and again["champion"] == "1", "a second restore changes nothing"

    restored = load_version(settings, summary["champion"])
    histories = [[f"i{n:04d}" for n in (3, 5, 8)], []]
    assert restored.rank(histories, None, 5) == pushed.rank(histories, None, 5)
    rows = OnlineFeatureReader(feature_store(settings)).read(users)
    assert all(history is not None for history in rows["history"]), "every user's row is online"
    key = pseudonym_key(settings)
    raw = next(f"u{n:04d}" for n in range(1, 1000) if pseudonym(key, f"u{n:04d}") in set(users))
    with running_service(settings, log_path=clone / "service.log") as url:
        answer = httpx.post(f"{url}/recommend", json={"user_id": raw, "k": 3}, timeout=30).json()
    assert answer["model_version"] == "1" and answer["fallback"] is None and len(answer["items"]) == 3


def yaml_config(path: Path) -> str:
    """The default remote's url in a .dvc/config."""
    import re

    return re.search(r"^\s*url\s*=\s*(\S+)\s*$", path.read_text(), re.MULTILINE).group(1)


STEPS = {"features": ["longview.feature_store"], "train": ["training.train", "gate.holdout"],
         "promote": ["gate.promotion"]}


@pytest.mark.parametrize("stage", sorted(STEPS))
def test_a_stage_depends_on_the_code_its_step_runs(stage):
    """Every project module a stage's step imports (transitively) is among the stage's deps (the
    file, or a folder above it): a change to that code makes `dvc repro` run the stage again."""
    import grimp

    from longview.settings import PROJECT_ROOT

    deps = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    covered = [PROJECT_ROOT / d for d in deps]
    graph = grimp.build_graph("longview", "training", "serving", "gate", "control", exclude_type_checking_imports=True)
    modules = {m for entry in STEPS[stage] for m in graph.find_upstream_modules(entry) | {entry}}
    files = {m: PROJECT_ROOT / (m.replace(".", "/") + ".py") for m in modules}
    files = {m: f if f.exists() else f.with_suffix("") / "__init__.py" for m, f in files.items()}
    missing = sorted(m for m, f in files.items() if not any(f == c or c in f.parents for c in covered))
    assert missing == [], f"dvc.yaml's {stage} stage lacks these deps"
    assert all(c.exists() for c in covered if not str(c.relative_to(PROJECT_ROOT)).startswith(".longview")), deps
