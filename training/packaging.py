"""Logging a model to MLflow as models-from-code: the python_model is a file
(training/registered_model.py), the model code travels in code_paths as the package
``longview_recommender`` (a copy of training/models), the learned state as two artifacts (a JSON
config and a tensors file). Nothing is pickled, and the model loads without this checkout."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from longview.settings import Settings
from training.models.base import PROFILE_FIELDS, Recommender
from training.models.packaged import CONFIG, WEIGHTS

PACKAGE = "longview_recommender"
MODELS_DIR = Path(__file__).parent / "models"
ENTRY = Path(__file__).parent / "registered_model.py"


@contextmanager
def staged_code() -> Iterator[Path]:
    """training/models copied as the package PACKAGE into a temporary folder, importable while
    MLflow logs (it runs the entry file once to check it)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / PACKAGE
        shutil.copytree(MODELS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        sys.path.insert(0, tmp)
        try:
            yield target
        finally:
            sys.path.remove(tmp)
            for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
                del sys.modules[name]


def model_config(model: Recommender, item_ids: list[str], settings: Settings) -> dict:
    return {"model": model.name, "model_config": model.config(), "item_ids": list(item_ids),
            "exclude_seen": settings.exclude_seen}


def signature():
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec(DataType.string, "user_id"), ColSpec(Array(DataType.string), "history"),
                     ColSpec(DataType.double, "now", required=False),
                     ColSpec(DataType.double, "last_event", required=False),
                     *(ColSpec(DataType.double, name, required=False) for name in PROFILE_FIELDS),
                     ColSpec(Array(DataType.double), "taste", required=False)])
    outputs = Schema([ColSpec(Array(DataType.string), "items"), ColSpec(Array(DataType.double), "scores"),
                      ColSpec(DataType.string, "fallback", required=False)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("k", "long", 10)]))


def log_packaged_model(model: Recommender, item_ids: list[str], settings: Settings, name: str = "model",
                       registered_model_name: str | None = None, example_history: list[str] | None = None):
    """Log (and optionally register) ``model`` in the active MLflow run; returns MLflow's ModelInfo."""
    import mlflow
    import mlflow.pyfunc

    history = example_history if example_history is not None else list(item_ids[:2])
    taste = max(0, int(getattr(model, "profile_width", 0)) - len(PROFILE_FIELDS))
    example = pd.DataFrame({"user_id": ["example-user"], "history": [history], "now": [86_400.0],
                            "last_event": [0.0], **{name: [1.0] for name in PROFILE_FIELDS},
                            "taste": [[1.0 / max(taste, 1)] * max(taste, 1)]})
    with tempfile.TemporaryDirectory() as tmp, staged_code() as code:
        config_path, weights_path = Path(tmp) / "config.json", Path(tmp) / "weights.pt"
        config_path.write_text(json.dumps(model_config(model, item_ids, settings)))
        torch.save(model.tensors(), weights_path)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(ENTRY), code_paths=[str(code)],
            artifacts={CONFIG: str(config_path), WEIGHTS: str(weights_path)},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                              "numpy", "pandas"],
            signature=signature(), input_example=example, registered_model_name=registered_model_name)
