"""The whole Longview loop in one click: ingest -> features -> train -> promote.

Runs the same steps as the asset-chained DAGs (`ingest_validate`, `build_features`,
`train_evaluate_register`, `promote_deploy`), in one run and without emitting their assets, so it
never sets the chain off a second time. With no new files in the landing folder or the feedback
outbox it still succeeds: it retrains on what is stored. A refused promotion is a successful run
whose `promote` log (and LONGVIEW_HOME/registry/audit.jsonl) says why.
"""

from __future__ import annotations

from airflow.sdk import dag

from control.orchestration import DEFAULT_ARGS, EPOCHS, PATH, TABLE, features, ingest, promote, train


@dag(dag_id="longview_loop", schedule=None, catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, params={"epochs": EPOCHS, "path": PATH, "table": TABLE}, tags=["longview", "loop"],
     doc_md=__doc__)
def longview_loop() -> None:
    ingest() >> features() >> train() >> promote()


longview_loop()
