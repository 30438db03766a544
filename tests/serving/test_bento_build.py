"""`bentoml build -f serving/bentofile.yaml .` packs the code, not the model, offline; the built
Bento serves the data home's @champion like the dev server (it follows the registry, nothing is
baked in)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from control.service_process import running_service, service_env
from longview.settings import PROJECT_ROOT
from training.tracking import CHAMPION, alias_version, mlflow_client

CODE = ("longview", "training", "serving", "feature_repo")
MODEL_FILES = {".pt", ".pth", ".pkl", ".pickle", ".safetensors", ".onnx", ".ckpt", ".joblib"}


@pytest.fixture(scope="module")
def bento(trained) -> tuple[str, Path]:
    """One build into the data home's BENTOML_HOME (where `bentoml serve <tag>` will look for it)."""
    # PIP_NO_INDEX: nothing may be downloaded (bentoml pip-installs uv when it is missing; it is locked)
    env = {**service_env(trained), "PIP_NO_INDEX": "1"}
    result = subprocess.run([str(Path(sys.executable).with_name("bentoml")), "build", "-f", "serving/bentofile.yaml",
                             ".", "--output", "tag"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"bentoml build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    found = re.search(r"__tag__:(\S+)", result.stdout)
    assert found, result.stdout
    tag = found.group(1)
    name, version = tag.split(":")
    return tag, Path(env["BENTOML_HOME"]) / "bentos" / name / version


def code_files(root: Path) -> set[str]:
    """Every file of the code folders (the build file itself aside)."""
    return {str(p.relative_to(root)) for top in CODE for p in (root / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name != "bentofile.yaml"}


def test_the_bento_packs_the_code_and_no_model(bento):
    tag, path = bento
    manifest = yaml.safe_load((path / "bento.yaml").read_text())
    assert manifest["service"] == "serving.service:Recommender" and manifest["labels"] == {"project": "longview"}
    assert manifest["models"] == [] and all(s["models"] == [] for s in manifest["services"])
    packed = code_files(path / "src")
    missing = code_files(PROJECT_ROOT) - packed
    assert not missing, f"the checkout's code is not all in the Bento: {sorted(missing)}"
    for needed in ("longview/settings.py", "longview/profiles/embedded.yaml", "training/tracking.py",
                   "serving/service.py", "feature_repo/feature_store.yaml", "feature_repo/feature_services.py"):
        assert needed in packed, needed
    assert not (path / "models").exists()
    weights = [p for p in path.rglob("*") if p.suffix in MODEL_FILES or p.name == "MLmodel"]
    assert not weights, f"the Bento packs no model (the service loads @champion): {weights}"
    routes = {r["route"] for r in manifest["schema"]["routes"]}
    assert {"/recommend", "/recommend_batch", "/similar_items"} <= routes


def test_the_built_bento_serves_the_champion(bento, trained, tmp_path):
    tag, path = bento
    log = tmp_path / "bento-service.log"
    try:
        # from a folder outside the checkout: the server runs the Bento's copy of the code
        with running_service(trained, log_path=log, target=tag, cwd=tmp_path) as url:
            workers = [p for p in psutil.process_iter(["cmdline", "cwd"])
                       if "_bentoml_impl.worker.service" in (p.info["cmdline"] or []) and tag in p.info["cmdline"]]
            assert workers and all(Path(p.info["cwd"]) == path / "src" for p in workers), \
                [(p.info["cmdline"], p.info["cwd"]) for p in workers]
            response = httpx.post(f"{url}/recommend", json={"user_id": "u0003", "k": 5}, timeout=30)
    except (RuntimeError, TimeoutError):
        print(log.read_text()[-5000:])
        raise
    assert response.status_code == 200, response.text
    body = response.json()
    champion = alias_version(mlflow_client(trained), CHAMPION)
    assert len(body["items"]) == 5 and body["fallback"] is None and body["degraded"] is False
    assert body["model_version"] == str(champion.version) and body["model_name"] == champion.tags["model"]
