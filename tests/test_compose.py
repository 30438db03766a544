"""docker-compose.yaml (the production profile scaled out) checked without Docker: valid under the
compose specification (check-jsonschema's vendored copy), and what it promises: every port on
127.0.0.1, Airflow on Celery with Redis and PostgreSQL, an S3-compatible store for MLflow's
artifacts and the DVC remote, and the files it builds from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longview.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
CHECK = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]


def test_the_compose_file_is_valid_under_the_compose_specification():
    result = subprocess.run([*CHECK, str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_validation_catches_what_docker_compose_would_refuse(tmp_path):
    spec = yaml.safe_load(COMPOSE.read_text())
    for broken in ({**spec, "servcies": {}}, {**spec, "services": {"x": {"image": "a", "ports": 5}}},
                   {**spec, "services": {"x": {"image": "a", "depends_on": {"y": {"condition": "sometime"}}}}}):
        path = tmp_path / "compose.yaml"
        path.write_text(yaml.safe_dump(broken))
        assert subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=120).returncode == 1


def test_what_the_compose_file_runs():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    published = {name: port for name, service in services.items() for port in service.get("ports", [])}
    assert published and all(port.startswith("127.0.0.1:") for port in published.values()), published
    assert {published["service"], published["mlflow"], published["airflow-apiserver"], published["feast-ui"]} == {
        "127.0.0.1:3000:3000", "127.0.0.1:5000:5000", "127.0.0.1:8080:8080", "127.0.0.1:8888:8888"}
    airflow = services["airflow-scheduler"]["environment"]
    assert airflow["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert airflow["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "postgres:5432/airflow" in airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for component in ("scheduler", "dag-processor", "triggerer", "worker", "apiserver"):
        assert f"airflow-{component}" in services
    assert "--artifacts-destination=s3://mlflow" in services["mlflow"]["command"]
    assert services["service"]["environment"]["LONGVIEW_PROFILE"] == "production"
    assert services["service"]["environment"]["LONGVIEW_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "longview-dvc" in services["buckets"]["command"][0], "a bucket for the DVC remote"
    for service in services.values():
        if "build" in service:
            assert (PROJECT_ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).is_file(), source
