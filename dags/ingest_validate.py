"""Validate new interaction data with Great Expectations and route it: accepted rows to the event
store, the rest to quarantine.

Picks up every file in the landing folder (LONGVIEW_HOME/landing), the feedback the service
acknowledged since the last run (its outbox), and the file named by the `path` param. When the
contract fails the run fails, with the Data Docs link in the task's error. A run that accepted rows
emits `longview://events`, which starts `build_features`; one that found nothing new is skipped.
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag

from control.orchestration import DEFAULT_ARGS, EVENTS, NO_CATCH_UP, PATH, TABLE, ingest


@dag(dag_id="ingest_validate",
     schedule=CronTriggerTimetable("@hourly", timezone="UTC", run_immediately=NO_CATCH_UP),
     catchup=False, max_active_runs=1, is_paused_upon_creation=False,
     default_args=DEFAULT_ARGS, params={"path": PATH, "table": TABLE}, tags=["longview", "data"], doc_md=__doc__)
def ingest_validate() -> None:
    ingest.override(outlets=[EVENTS])(skip_when_empty=True)


ingest_validate()
