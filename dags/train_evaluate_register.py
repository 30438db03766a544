"""Train the configured model, evaluate it beside every baseline on the same split, and register it
in MLflow as `@challenger`.

Triggered by fresh features (`longview://features`), by the monitor's drift alarm
(`longview://alarms/drift`), and weekly. One registration per run: a retried `train` finds the
version its run registered. Emits the challenger asset, which starts `promote_deploy`.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag

from control.orchestration import CHALLENGER, DEFAULT_ARGS, DRIFT_ALARM, EPOCHS, FEATURES, NO_CATCH_UP, train


@dag(dag_id="train_evaluate_register",
     schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@weekly", timezone="UTC",
                                                                 run_immediately=NO_CATCH_UP),
                                  assets=FEATURES | DRIFT_ALARM),
     catchup=False, max_active_runs=1, is_paused_upon_creation=False,
     default_args=DEFAULT_ARGS, params={"epochs": EPOCHS}, tags=["longview", "training"], doc_md=__doc__)
def train_evaluate_register() -> None:
    train.override(outlets=[CHALLENGER])()


train_evaluate_register()
