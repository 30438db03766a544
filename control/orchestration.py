"""What the DAG files share: the assets that chain them, the tasks (each a thin call of a step
function in control.pipeline), retry and failure conventions.

Light on purpose: only airflow.sdk is imported here, the steps' libraries inside the tasks, so the
DAG processor parses every file in well under a second.

The chain: ``ingest_validate`` -> EVENTS -> ``build_features`` -> FEATURES ->
``train_evaluate_register`` (also weekly, and on DRIFT_ALARM from ``monitor``) -> CHALLENGER ->
``promote_deploy`` -> CHAMPION. ``longview_loop`` runs the same steps in one DAG and emits none of
these, so a one-click run never sets the chain off a second time."""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

EVENTS = Asset("longview://events")  # a batch of interactions was accepted into the event store
FEATURES = Asset("longview://features")  # feature tables written, applied and materialised
CHALLENGER = Asset("longview://models/longview-recommender@challenger")
CHAMPION = Asset("longview://models/longview-recommender@champion")
DRIFT_ALARM = Asset("longview://alarms/drift")  # the monitor saw the data move away from training


def report_failure(context) -> None:
    """One line in the task log saying what failed and where to look (the traceback is above it)."""
    ti = context["task_instance"]
    print(f"longview: task {ti.task_id} of {ti.dag_id} failed on try {ti.try_number}: {context.get('exception')!r}. "
          f"A rejected batch is kept in LONGVIEW_HOME/quarantine with its Data Docs link above; a refused "
          f"promotion's reason is in LONGVIEW_HOME/registry/audit.jsonl.")


# A timetable's first run waits for its next tick. Airflow's default runs the tick just past when
# the stack starts within a tenth of the interval after it: a Monday-morning `up` would retrain
# at once on the weekly schedule.
NO_CATCH_UP = timedelta(0)

# Retries only where a retry is safe: every step is idempotent (train by its run's key).
DEFAULT_ARGS: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True,
                                "on_failure_callback": report_failure}

# The trigger forms' fields: each with a description, each validated before a run is made.
EPOCHS = Param(None, type=["null", "integer"], minimum=0, maximum=1000,
               description="the sequence model's most epochs for this run (empty: the settings')")
PATH = Param(None, type=["null", "string"], maxLength=4096,
             description="one more file to validate and ingest (a .csv or .parquet path on the workers' disk)")
TABLE = Param("events", enum=["events", "items", "users", "tags"], description="the table the path param's file holds")
TO_VERSION = Param(None, type=["null", "string"], pattern=r"^[1-9][0-9]{0,9}$",
                   description="the registered version to restore as @champion (empty: the champion before this one)")


def _settings():
    from longview.settings import get_settings

    return get_settings()


def _stored_events(settings) -> None:
    """Skip the task (not fail it) on a data home with no events yet: a fresh stack's schedules."""
    if not any(settings.events_dir.glob("batch-*.parquet")):
        raise AirflowSkipException(f"no events stored in {settings.events_dir} yet: nothing to work on")


def _print_ingested(summaries: list[dict]) -> None:
    for s in summaries:
        print(f"{s['file']}: {s['accepted']} accepted, {s['quarantined']} quarantined; report {s['report']}; "
              f"Data Docs {s['data_docs']}")


def given_file(path: str | None) -> Path | None:
    """The ``path`` param as a file to ingest (None: none given). Raises ValueError, naming the
    value, for anything but an existing .csv or .parquet file."""
    if path is None or not str(path).strip():
        return None
    problem = f"the path param {str(path)[:200]!r} is not a .csv or .parquet file readable here"
    if "\x00" in path:
        raise ValueError(problem)
    file = Path(path)  # literal: no ~ expansion (the workers may run as another user)
    try:
        readable = file.is_file() and file.suffix in (".csv", ".parquet") and os.access(file, os.R_OK)
    except OSError:  # a name too long, a loop of links
        readable = False
    if not readable:
        raise ValueError(problem)
    return file


@task(execution_timeout=timedelta(minutes=30), retries=0)
def ingest(skip_when_empty: bool = False) -> list[dict]:
    """Validate the landing folder, the service's feedback outbox and the ``path`` param's file. A
    contract failure fails the task with the Data Docs link in its message (rows kept in
    quarantine). With ``skip_when_empty``, a run that accepted nothing is skipped: no asset event."""
    from control.pipeline import ingest_file, ingest_landing
    from longview.ingestion import BatchRejected

    settings = _settings()
    params = get_current_context()["params"]
    path, table = params.get("path"), params.get("table", "events")
    summaries: list[dict] = []
    try:
        file = given_file(path)
        summaries += ingest_landing(settings)  # first: a catalogue file there may bring the items `path` names
        if file is not None:
            summaries.append({"file": file.name, **ingest_file(settings, file, table).summary()})
    except BatchRejected as exc:
        _print_ingested(summaries)
        docs = exc.result.data_docs or exc.result.report
        raise RuntimeError(f"the data contract failed: {exc}. Data Docs: {docs}. "
                           f"The rows are kept in {settings.quarantine_dir}") from None
    _print_ingested(summaries)
    if skip_when_empty and not any(s["accepted"] for s in summaries):
        raise AirflowSkipException("no new data accepted: nothing in the landing folder, the outbox or the path param")
    return summaries


@task(execution_timeout=timedelta(minutes=30))
def features() -> dict:
    """Feature tables, `feast apply`, incremental materialisation (and the online store's check)."""
    from control.pipeline import build_features

    settings = _settings()
    _stored_events(settings)
    return asdict(build_features(settings, progress=False))


@task(execution_timeout=timedelta(hours=2))
def train() -> dict:
    """Train, evaluate beside the baselines, register @challenger; once per DAG run: a retry finds
    the version its run registered (tagged with the run's key) instead of registering a second."""
    from control import pipeline

    settings = _settings()
    _stored_events(settings)
    context = get_current_context()
    return asdict(pipeline.train(settings, context["params"].get("epochs"),
                             run_key=f"airflow:{context['dag'].dag_id}:{context['run_id']}"))


@task(execution_timeout=timedelta(minutes=30))
def promote(skip_when_refused: bool = False) -> dict:
    """The gate. A refusal's reason goes to the log (and the audit log); with ``skip_when_refused``
    the task is skipped so that no CHAMPION event is emitted."""
    from control import pipeline

    result = pipeline.promote(_settings(), trigger="airflow")
    print(f"gate: {'promoted' if result.promoted else 'refused'} version {result.challenger}: {result.reason}")
    if skip_when_refused and not result.promoted:
        raise AirflowSkipException(f"the gate refused version {result.challenger}: {result.reason}")
    return asdict(result)


@task(execution_timeout=timedelta(minutes=10), retries=0)
def deployed(decision: dict) -> dict:
    """The running service follows @champion by itself; this waits until it answers with it (or says
    that no service is running here, which then loads the champion when it starts)."""
    from control.service_process import wait_serving

    settings = _settings()
    version = decision["champion"]
    return wait_serving(settings, version, timeout=max(60.0, 20 * settings.serving.poll_seconds))


@task(execution_timeout=timedelta(minutes=30), retries=0)
def rollback() -> dict:
    """Point @champion back at the version named by the ``to_version`` param, or the one before."""
    from control import pipeline

    result = pipeline.rollback(_settings(), get_current_context()["params"].get("to_version"), trigger="airflow")
    print(f"rollback: {result.reason}; @champion is version {result.champion}")
    if not result.promoted:
        raise RuntimeError(f"version {result.challenger} was not restored: {result.reason}")
    return asdict(result)


@task(execution_timeout=timedelta(minutes=30))
def monitor() -> dict:
    """Feature drift, the service's fallback rate and latency, online engagement: one report."""
    from control import monitoring

    settings = _settings()
    _stored_events(settings)
    report = asdict(monitoring.monitor(settings))
    print(f"monitor: {'ALARM: ' + '; '.join(report['reasons']) if report['alarm'] else 'no alarm'}")
    return report


@task(execution_timeout=timedelta(minutes=5), retries=0)
def drift_alarm(report: dict) -> list[str]:
    """Succeeds (and so emits the drift-alarm asset, which retrains) only when the monitor alarmed."""
    if not report["alarm"]:
        raise AirflowSkipException("no alarm: nothing to retrain for")
    return report["reasons"]
