"""The production profile's PostgreSQL databases (longview/databases.py): made when missing, left
alone when present, and a clear one-line stop where the user may not create them or the server is
down. Each test uses databases and a role of its own, removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from longview.databases import Database, DatabaseUnavailable, ensure_databases, required_databases
from longview.settings import get_settings
from tests.conftest import require_servers

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def names():
    require_servers()
    run = uuid.uuid4().hex[:10]
    made = [f"lvtest_{run}_feast", f"lvtest_{run}_mlflow", f"lvtest_{run}_airflow"]
    yield made
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _exists(name: str) -> bool:
    with psycopg.connect(ADMIN) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_missing_databases_are_made_once(names):
    wanted = [Database("test", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}") for name in names]
    assert ensure_databases(wanted) == names and all(_exists(n) for n in names)
    assert ensure_databases(wanted) == [], "present: left alone"


def test_a_user_without_createdb_gets_one_line_naming_what_to_create(names):
    role = f"lvtest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            ensure_databases([Database("MLflow backend", f"postgresql+psycopg://{role}@127.0.0.1:5432/{names[1]}")])
        message = str(caught.value)
        assert "\n" not in message and names[1] in message and f"createdb -h 127.0.0.1 -p 5432 {names[1]}" in message
        assert not _exists(names[1])
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_an_unreachable_server_is_named():
    with pytest.raises(DatabaseUnavailable, match="PostgreSQL at 127.0.0.1:1 does not answer"):
        ensure_databases([Database("Feast registry", "postgresql+psycopg://postgres@127.0.0.1:1/feast")])
    with pytest.raises(DatabaseUnavailable, match="names no database"):
        ensure_databases([Database("Feast registry", "postgresql+psycopg://postgres@127.0.0.1:5432")])


@pytest.mark.slow
def test_the_production_profile_needs_three_and_the_embedded_none(tmp_path, monkeypatch, names):
    assert required_databases(get_settings(home=tmp_path)) == []
    monkeypatch.setenv("LONGVIEW_PROFILE", "production")
    monkeypatch.setenv("LONGVIEW_FEAST_REGISTRY_POSTGRES_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{names[0]}")
    monkeypatch.setenv("LONGVIEW_MLFLOW_TRACKING_URI", f"postgresql+psycopg://postgres@127.0.0.1:5432/{names[1]}")
    wanted = required_databases(get_settings(home=tmp_path))
    assert [d.url.rsplit("/", 1)[-1] for d in wanted][:2] == names[:2] and wanted[2].purpose == "Airflow metadata"
    # `longview init` (any command, first) makes them; the Airflow one is the server's shared `airflow`
    # database, made only if missing, so this test only reports on its own two.
    env = {"PATH": str(Path(sys.executable).parent), "LONGVIEW_HOME": str(tmp_path / "home"),
           "LONGVIEW_PROFILE": "production", "LONGVIEW_FEAST_REGISTRY_POSTGRES_URL": wanted[0].url,
           "LONGVIEW_MLFLOW_TRACKING_URI": wanted[1].url,
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    airflow = wanted[2].url.rsplit("/", 1)[-1]
    had_airflow = _exists(airflow)
    try:
        result = subprocess.run([str(Path(sys.executable).parent / "longview"), "init"], env=env, capture_output=True,
                                text=True, timeout=300)
    finally:
        if not had_airflow:  # this test made the server's airflow database: remove it again
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{airflow}" WITH (FORCE)')
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(names[:2]) <= set(summary["created"]) and summary["profile"] == "production"
    assert all(_exists(n) for n in names[:2])
