"""Build the user and item feature tables, `feast apply` the repo, materialise incrementally and
repair whatever the online store lost.

Triggered by `longview://events` (new accepted data); emits `longview://features`, which starts
`train_evaluate_register`. Run by hand it works on what the event store holds.
"""

from __future__ import annotations

from airflow.sdk import dag

from control.orchestration import DEFAULT_ARGS, EVENTS, FEATURES, features


@dag(dag_id="build_features", schedule=[EVENTS], catchup=False, max_active_runs=1,
     is_paused_upon_creation=False, default_args=DEFAULT_ARGS, tags=["longview", "features"], doc_md=__doc__)
def build_features() -> None:
    features.override(outlets=[FEATURES])()


build_features()
