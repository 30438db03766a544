"""The promotion gate, then deployment: `@champion` moves to `@challenger` only if it passes every
rule on the same holdout, and the running service follows it.

Triggered by a new challenger. On success it emits `longview://models/...@champion` and waits until
the service at LONGVIEW_STACK__SERVICE_PORT answers with the new version. On refusal the `promote`
task is skipped with the reason in its log (and in LONGVIEW_HOME/registry/audit.jsonl).
"""

from __future__ import annotations

from airflow.sdk import dag

from control.orchestration import CHALLENGER, CHAMPION, DEFAULT_ARGS, deployed, promote


@dag(dag_id="promote_deploy", schedule=[CHALLENGER], catchup=False,
     max_active_runs=1, is_paused_upon_creation=False, default_args=DEFAULT_ARGS, tags=["longview", "deployment"],
     doc_md=__doc__)
def promote_deploy() -> None:
    deployed(promote.override(outlets=[CHAMPION])(skip_when_refused=True))


promote_deploy()
