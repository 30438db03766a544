"""Adding a model is one module in training/models/ and one line in longview/model_registry.py: a
copy of the code with exactly that added trains, registers and serves the new model through the
real `longview train`, and the unchanged code refuses the name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from longview.model_registry import MODELS
from longview.settings import MODEL_NAMES, PROJECT_ROOT
from tests.conftest import SMALL_WORLD, last_json, longview

CODE = ("longview", "training", "serving", "gate", "control", "feature_repo", "expectations", "dags")

THROWAWAY = '''"""A throwaway model for the registry test: log-counts of positive engagements."""

from __future__ import annotations

import numpy as np
import torch

from .base import FitReport, Recommender, no_padding


class Throwaway(Recommender):
    name = "throwaway"

    def __init__(self, weights: np.ndarray | None = None) -> None:
        self.weights = weights

    def fit(self, data, settings, validate=None, progress=True) -> FitReport:
        self.weights = np.log1p(data.counts())
        return FitReport(notes=["a throwaway model"])

    def score(self, queries) -> torch.Tensor:
        return no_padding(torch.as_tensor(self.weights, dtype=torch.float32).repeat(len(queries), 1))

    def config(self) -> dict:
        return {}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": torch.as_tensor(self.weights)}

    @classmethod
    def restore(cls, config, tensors) -> "Throwaway":
        return cls(tensors["weights"].numpy())
'''
LINE = '    "throwaway": "training.models.throwaway:Throwaway",\n'


def test_the_registry_is_the_models_names():
    assert MODEL_NAMES == tuple(MODELS)


def test_a_name_not_in_the_registry_is_refused(tmp_path):
    run = longview("train", env={"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_MODEL": "throwaway"})
    assert run.returncode == 2 and "invalid settings" in run.stderr and "model" in run.stderr


@pytest.mark.slow
def test_one_module_and_one_registry_line_add_a_model(tmp_path):
    import mlflow

    copy = tmp_path / "checkout"
    for folder in CODE:
        shutil.copytree(PROJECT_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "training" / "models" / "throwaway.py").write_text(THROWAWAY)
    registry = copy / "longview" / "model_registry.py"
    text = registry.read_text()
    opening = "MODELS: dict[str, str] = {\n"
    assert text.count(opening) == 1
    registry.write_text(text.replace(opening, opening + LINE))
    changed = {str(p.relative_to(copy)) for p in copy.rglob("*.py")
               if not (PROJECT_ROOT / p.relative_to(copy)).exists()
               or (PROJECT_ROOT / p.relative_to(copy)).read_text() != p.read_text()}
    assert changed == {"training/models/throwaway.py", "longview/model_registry.py"}

    home = tmp_path / "home"
    # The copy's packages come first on the path: the installed checkout is not read.
    env = {**SMALL_WORLD, "LONGVIEW_HOME": str(home), "PYTHONPATH": str(copy), "LONGVIEW_MODEL": "throwaway",
           "LONGVIEW_BASELINES": '["popularity"]'}
    for step in (["data", "prepare", "--dataset", "synthetic"], ["features"], ["train"]):
        run = longview(*step, env=env, cwd=copy)
        assert run.returncode == 0, f"{step}: {run.stderr[-3000:]}"
    result = last_json(run.stdout)
    said = f"stdout: {run.stdout[-2000:]}\nstderr: {run.stderr[-2000:]}"
    assert result["model"] == "throwaway" and result["registered"] is None and result["model_version"], said
    assert set(result["baselines"]) == {"popularity"}

    # The registered model carries the new module and ranks with it, without the copy on the path.
    # This home's registry: other tests of the session may have pointed MLflow's at theirs.
    tracking, registry, ours = mlflow.get_tracking_uri(), mlflow.get_registry_uri(), f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(ours)
    mlflow.set_registry_uri(ours)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/longview-recommender/{result['model_version']}")
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
    packaged = loaded.unwrap_python_model()
    assert packaged.model_name == "throwaway" and type(packaged.model).__name__ == "Throwaway"
    ranked = packaged.rank([[]], None, 5)[0]
    assert len(ranked) == 5
    assert not Path(type(packaged.model).__module__.replace(".", "/")).is_relative_to(copy)
