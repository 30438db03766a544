"""Run for real with `airflow dags test`, every task of the loop succeeds (its parsing and its
attributes: test_dag_integrity.py)."""

from __future__ import annotations

import json
import time

from longview.settings import get_settings
from tests.conftest import SMALL_WORLD, longview
from training.tracking import CHAMPION, alias_version, mlflow_client


def test_dag_run_succeeds_and_registers_a_model(tmp_path):
    home = tmp_path / "home"
    env = {**SMALL_WORLD, "LONGVIEW_HOME": str(home), "LONGVIEW_SYNTHETIC_USERS": "80", "LONGVIEW_SEQUENCE__EPOCHS": "4"}
    assert longview("generate", env=env).returncode == 0
    migrate = longview("airflow", "db", "migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    started = time.monotonic()
    run = longview("airflow", "dags", "test", "longview_loop", env=env)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    runs = json.loads(longview("airflow", "dags", "list-runs", "longview_loop", "-o", "json", env=env).stdout
                      .strip().splitlines()[-1])
    assert [r["state"] for r in runs] == ["success"]
    states = longview("airflow", "tasks", "states-for-dag-run", "longview_loop", runs[0]["run_id"], "-o", "json", env=env)
    tasks = {t["task_id"]: t["state"] for t in json.loads(states.stdout.strip().splitlines()[-1])}
    assert tasks == {"ingest": "success", "features": "success", "train": "success", "promote": "success"}
    champion = alias_version(mlflow_client(get_settings(home=home)), CHAMPION)
    assert champion is not None and str(champion.version) == "1"
    assert not list((home / "landing").glob("*.csv")), "ingested files move to landing/processed"
    print(f"airflow dags test took {time.monotonic() - started:.0f} s")
