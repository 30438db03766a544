"""Every DAG file imports cleanly and quickly, without the heavy libraries at parse time, and every
DAG and task carries what operators rely on: tags, docs, described params, retries with a delay,
time limits, and a failure callback that says what failed; the assets chain the DAGs in order."""

from __future__ import annotations

import subprocess
import sys

import pytest

from longview.settings import get_settings

HEAVY = ("torch", "feast", "mlflow", "great_expectations", "bentoml")


def dag_files() -> list:
    return sorted(p for p in get_settings().dags_dir.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def bag():
    import os

    from airflow.models.dagbag import DagBag

    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return DagBag(dag_folder=str(get_settings().dags_dir))


def test_every_dag_file_imports_without_errors(bag):
    assert dag_files(), "no DAG files"
    assert bag.import_errors == {}, bag.import_errors
    assert {dag.fileloc for dag in bag.dags.values()} == {str(p) for p in dag_files()}


@pytest.mark.slow
@pytest.mark.parametrize("path", dag_files(), ids=lambda p: p.name)
def test_a_dag_file_parses_fast_without_heavy_imports(path):
    code = (f"import sys, time, runpy; t = time.monotonic(); runpy.run_path({str(path)!r}); "
            f"print(time.monotonic() - t); print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import airflow.sdk; " + code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert float(out[-2]) < 1.0, f"{path.name} took {out[-2]} s to parse"
    assert out[-1] == "[]", f"{path.name} imports {out[-1]} at parse time"


def test_every_dag_and_task_is_documented_bounded_and_retried_sensibly(bag):
    for dag_id, dag in bag.dags.items():
        assert dag.tags and "longview" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 40, dag_id
        assert dag.catchup is False and dag.max_active_runs == 1, dag_id
        for name in dag.params:  # the trigger form shows each param's description beside its field
            assert dag.params.get_param(name).description, f"{dag_id}'s param {name} has no description"
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.execution_timeout is not None, f"{where} has no time limit"
            assert task.on_failure_callback, f"{where} has no failure callback"
            if task.retries:
                assert task.retry_delay.total_seconds() >= 10 and task.retry_exponential_backoff, where


def test_the_assets_chain_the_dags_in_the_loops_order(bag):
    """Each DAG's schedule consumes what the step before it emits, and the one-click loop emits none
    of them (it would set the chain off a second time)."""
    def emitted(dag_id: str) -> set[str]:
        return {outlet.uri for task in bag.dags[dag_id].tasks for outlet in task.outlets}

    def consumed(dag_id: str) -> set[str]:
        def uris(condition) -> set[str]:  # an asset, or an all/any of them
            return {condition.uri} if hasattr(condition, "uri") else set().union(*map(uris, condition.objects))

        condition = getattr(bag.dags[dag_id].timetable, "asset_condition", None)
        return uris(condition) if condition is not None else set()

    chain = ["ingest_validate", "build_features", "train_evaluate_register", "promote_deploy"]
    for before, after in zip(chain, chain[1:]):
        assert emitted(before) and emitted(before) <= consumed(after), (before, after)
    assert emitted("monitor") <= consumed("train_evaluate_register"), "the drift alarm retrains"
    assert emitted("rollback") == emitted("promote_deploy"), "a rollback moves the same champion"
    assert emitted("longview_loop") == set()
    assert consumed("ingest_validate") == consumed("monitor") == consumed("longview_loop") == set()


def test_a_fresh_stack_waits_for_each_schedules_next_tick(bag, monkeypatch):
    """Started a minute after a tick, no scheduled DAG runs the tick it missed: Airflow's default
    would (within a tenth of the interval), so a Sunday `longview up` would retrain at once."""
    import pendulum
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables import trigger

    just_after = pendulum.datetime(2026, 11, 29, 0, 1, tz="UTC")  # a Sunday: hourly, daily and weekly ticks at 00:00
    monkeypatch.setattr(trigger, "utcnow", lambda: just_after)
    for dag_id in ("ingest_validate", "monitor", "train_evaluate_register"):
        timetable = decode_timetable(encode_timetable(bag.dags[dag_id].timetable))
        clock = getattr(timetable, "timetable", timetable)  # an asset-or-time schedule's clock
        assert clock._calc_first_run() > just_after, dag_id
