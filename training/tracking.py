"""MLflow wiring: one experiment per data home, the registered model and its aliases."""

from __future__ import annotations

import subprocess

from longview.settings import REGISTERED_MODEL, Settings

EXPERIMENT = "longview"
CHAMPION, CHALLENGER = "champion", "challenger"


def mlflow_client(settings: Settings):
    import mlflow
    from mlflow import MlflowClient

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    experiment_id(client, settings, EXPERIMENT)
    mlflow.set_experiment(EXPERIMENT)
    return client


def experiment_id(client, settings: Settings, name: str) -> str:
    """The experiment ``name``, made on first use with its artifacts in the data home."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=settings.artifacts_dir.as_uri())


def alias_version(client, alias: str):
    """The model version behind an alias, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException:
        return None


def load_version(settings: Settings, version: str):
    """The registered version as its PackagedModel (training/models/packaged.py, loaded from the
    registry's copy of the code); a corrupted artifact raises ValueError."""
    import mlflow.pyfunc

    mlflow_client(settings)
    return mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}/{version}").unwrap_python_model()


def code_version(settings: Settings) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.project_root, capture_output=True,
                             text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "uncommitted"
