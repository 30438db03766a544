"""Manual rollback: point `@champion` back at the version before it, or at the version named by the
`to_version` param. The target must exist and load; the decision is audited like a promotion, and
the running service follows the alias.
"""

from __future__ import annotations

from airflow.sdk import dag

from control.orchestration import CHAMPION, DEFAULT_ARGS, TO_VERSION, deployed
from control.orchestration import rollback as restore


@dag(dag_id="rollback", schedule=None, catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, params={"to_version": TO_VERSION}, tags=["longview", "deployment"], doc_md=__doc__)
def rollback() -> None:
    deployed(restore.override(outlets=[CHAMPION])())


rollback()
