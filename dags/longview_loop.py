"""The Longview loop as one Airflow DAG: ingest -> features -> train -> promote.

Thin on purpose: each task calls the same step function as the CLI and dvc.yaml, and imports it
inside the task so parsing this file stays fast. Paths and URIs come from the settings
(LONGVIEW_HOME and friends in the environment of the Airflow components).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

EVENTS = Asset("longview://events")
FEATURES = Asset("longview://features")
CHALLENGER = Asset("longview://models/longview-recommender@challenger")
CHAMPION = Asset("longview://models/longview-recommender@champion")


def report_failure(context) -> None:
    """One line in the task log saying what failed and where to look (the traceback is above it)."""
    ti = context["task_instance"]
    print(f"longview: task {ti.task_id} of {ti.dag_id} failed on try {ti.try_number}: {context.get('exception')!r}. "
          f"A rejected batch is kept in LONGVIEW_HOME/quarantine with its Data Docs link above; a refused "
          f"promotion's reason is in LONGVIEW_HOME/registry/audit.jsonl.")


@dag(
    dag_id="longview_loop",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    # Retries only where a retry is safe: every step is idempotent (train by its run's key).
    default_args={"retries": 1, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True,
                  "on_failure_callback": report_failure},
    params={"epochs": Param(None, type=["null", "integer"], minimum=0, maximum=1000,
                            description="the sequence model's most epochs for this run (empty: the settings')")},
    tags=["longview"],
    doc_md=__doc__,
)
def longview_loop() -> None:
    @task(outlets=[EVENTS], execution_timeout=timedelta(minutes=30), retries=0)
    def ingest() -> list[dict]:
        """Validate every file in the landing folder; a rejected batch fails the task (rows kept in quarantine)."""
        from longview.pipeline import ingest_landing
        from longview.settings import get_settings

        summaries = ingest_landing(get_settings())
        for summary in summaries:
            print(f"{summary['file']}: {summary['accepted']} accepted, {summary['quarantined']} quarantined; "
                  f"report {summary['report']}; Data Docs {summary['data_docs']}")
        return summaries

    @task(outlets=[FEATURES], execution_timeout=timedelta(minutes=30))
    def features() -> dict:
        from longview.pipeline import build_features
        from longview.settings import get_settings

        return asdict(build_features(get_settings()))

    @task(outlets=[CHALLENGER], execution_timeout=timedelta(hours=2))
    def train() -> dict:
        """Train and register @challenger, once per DAG run: a retry finds the version its run
        registered (tagged with the run's key) instead of registering a second."""
        from airflow.sdk import get_current_context

        from longview.pipeline import train as train_step
        from longview.settings import get_settings

        context = get_current_context()
        return asdict(train_step(get_settings(), context["params"].get("epochs"),
                                 run_key=f"airflow:{context['dag'].dag_id}:{context['run_id']}"))

    @task(outlets=[CHAMPION], execution_timeout=timedelta(minutes=30))
    def promote() -> dict:
        from longview.pipeline import promote as promote_step
        from longview.settings import get_settings

        return asdict(promote_step(get_settings(), trigger="airflow"))

    ingest() >> features() >> train() >> promote()


longview_loop()
