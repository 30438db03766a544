"""Daily health of the loop: feature drift between the training window and recent data
(population stability per feature), the running service's fallback rate and latency from its
metrics, and online engagement from `/feedback` events (return rate, session depth).

The report goes to LONGVIEW_HOME/reports and to MLflow (experiment `longview-monitor`). When drift
passes the alarm threshold the `drift_alarm` task emits `longview://alarms/drift`, which retrains.
"""

from __future__ import annotations

from airflow.sdk import CronTriggerTimetable, dag

from control.orchestration import DEFAULT_ARGS, DRIFT_ALARM, NO_CATCH_UP, drift_alarm
from control.orchestration import monitor as check


@dag(dag_id="monitor", schedule=CronTriggerTimetable("@daily", timezone="UTC", run_immediately=NO_CATCH_UP),
     catchup=False, max_active_runs=1, is_paused_upon_creation=False, default_args=DEFAULT_ARGS,
     tags=["longview", "monitoring"], doc_md=__doc__)
def monitor() -> None:
    drift_alarm.override(outlets=[DRIFT_ALARM])(check())


monitor()
