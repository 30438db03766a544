"""Every DAG, run for real with `airflow dags test` on one tiny data home, in the order the assets
chain them (an asset-scheduled DAG gets no triggering event there: its tasks find their inputs
through the data home). Parsing and attributes: test_dag_integrity.py; the scheduler running the
chain from a REST trigger: tests/longview/test_stack.py."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from longview.settings import get_settings
from tests.conftest import SMALL_WORLD, longview
from training.tracking import CHALLENGER, CHAMPION, alias_version, mlflow_client


def dags_test(dag_id: str, env: dict, conf: dict | None = None) -> tuple[dict[str, str], str]:
    """Run one DAG; returns its tasks' states (read from the home's Airflow database, quicker than
    two more airflow commands) and the command's output."""
    args = ["airflow", "dags", "test", dag_id] + (["-c", json.dumps(conf)] if conf else [])
    run = longview(*args, env=env)
    output = run.stdout + run.stderr
    with sqlite3.connect(Path(env["LONGVIEW_HOME"]) / "airflow" / "airflow.db") as db:
        run_id, state = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                                   (dag_id,)).fetchone()
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                (dag_id, run_id)).fetchall())
    assert (run.returncode == 0) == (state == "success"), (dag_id, run.returncode, state, output[-3000:])
    return tasks, output


@pytest.mark.slow
def test_every_dag_runs_in_chain_order_on_a_tiny_home(tmp_path):
    home, files = tmp_path / "home", tmp_path / "files"
    env = {**SMALL_WORLD, "LONGVIEW_HOME": str(home), "LONGVIEW_SYNTHETIC_USERS": "80",
           "LONGVIEW_SEQUENCE__EPOCHS": "4"}
    assert longview("generate", "--out", str(files), env=env).returncode == 0
    assert longview("airflow", "db", "migrate", env=env).returncode == 0
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    # A batch that breaks the contract: the run fails, saying where the Data Docs are.
    (landing / "events-broken.csv").write_text("event_id,user_id,item_id,event_type,timestamp,value,session_id\n"
                                               + "".join(f"e{i},u1,i1,teleport,not-a-time,,s1\n" for i in range(20)))
    tasks, output = dags_test("ingest_validate", env)
    assert tasks == {"ingest": "failed"}
    assert "the data contract failed" in output and "Data Docs" in output and "quarantine" in output

    # The catalogue and a first batch from the landing folder, a second batch by the path param.
    for name in ("items.csv", "events-001.csv"):
        shutil.copy(files / name, landing / name)
    tasks, output = dags_test("ingest_validate", env, {"path": str(files / "events-002.csv")})
    assert tasks == {"ingest": "success"}, output[-3000:]
    assert "events-002.csv:" in output and not list(landing.glob("*.csv"))
    tasks, _ = dags_test("ingest_validate", env)
    assert tasks == {"ingest": "skipped"}, "nothing new: skipped, so no asset event starts the features"

    assert dags_test("build_features", env)[0] == {"features": "success"}
    assert dags_test("train_evaluate_register", env)[0] == {"train": "success"}
    client = mlflow_client(get_settings(home=home))
    assert str(alias_version(client, CHALLENGER).version) == "1"

    tasks, output = dags_test("promote_deploy", env)
    assert tasks == {"promote": "success", "deployed": "success"}, output[-3000:]
    assert "no service answers" in output, "no service runs here: said, not waited for"
    assert str(alias_version(client, CHAMPION).version) == "1"

    # The one-click loop with nothing new still retrains on what is stored.
    tasks, output = dags_test("longview_loop", env)
    assert tasks == {"ingest": "success", "features": "success", "train": "success", "promote": "success"}, \
        output[-3000:]
    assert str(alias_version(client, CHALLENGER).version) == "2"

    champion = str(alias_version(client, CHAMPION).version)
    target = "1" if champion == "2" else "2"
    tasks, output = dags_test("rollback", env, None if champion == "2" else {"to_version": "2"})
    assert tasks == {"rollback": "success", "deployed": "success"}, output[-3000:]
    assert str(alias_version(client, CHAMPION).version) == target
    tasks, output = dags_test("rollback", env, {"to_version": target})
    assert tasks["rollback"] == "failed" and "already is the champion" in output

    tasks, output = dags_test("monitor", env)
    assert tasks["monitor"] == "success" and tasks["drift_alarm"] in ("success", "skipped"), output[-3000:]
    print(f"every DAG ran in {time.monotonic() - started:.0f} s")
