"""`airflow scheduler`, with the libraries the loop's tasks use imported once, before it starts.

The LocalExecutor forks its workers from the scheduler, and each worker forks a process per task;
a task whose libraries are already in memory skips their import (torch, pandas, pyarrow, MLflow,
Feast, Great Expectations: seconds per task on two cores, see `longview bench pipeline`). Only
imports happen here: no threads, connections or torch operations, which would not survive a fork.
Used by `longview up` when ``stack.preload`` is on; otherwise the plain scheduler runs."""

from __future__ import annotations

import importlib
import sys
import time

# What the tasks' step functions import (control/orchestration.py), heaviest first.
PRELOAD = ("feast", "great_expectations", "torch", "mlflow", "pyarrow.parquet", "pandas", "control.pipeline",
           "longview.feature_store", "longview.ingestion", "training.train", "gate.promotion",
           "control.monitoring")


def preload() -> float:
    started = time.monotonic()
    for module in PRELOAD:
        importlib.import_module(module)
    return time.monotonic() - started


def main() -> None:
    seconds = preload()
    print(f"longview: preloaded {len(PRELOAD)} modules for the tasks in {seconds:.1f} s", flush=True)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "scheduler", *sys.argv[1:]]
    airflow_main()


if __name__ == "__main__":
    main()
