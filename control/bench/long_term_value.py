"""`longview bench long-term-value`: the sequence model with its long-term value head trained on a
real dataset's temporal split, its return forecasts for every visit after the split scored against
the logistic-regression baseline (training/long_term_value.py). The last stdout line is one JSON
object: {"dataset", "return_auc": {"model", "baseline"}, "concordance": {"model", "baseline"}, ...}."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from longview.settings import Settings


def off_reason(dataset: str, settings: Settings) -> str | None:
    """Why the value head has nothing to learn on ``dataset`` (None: it has)."""
    from longview import datasets

    if not settings.value.enabled:
        return "the value head is switched off (LONGVIEW_VALUE__ENABLED=false)"
    if datasets.spec(dataset).ordinal_time:
        return f"{dataset} only orders its events (no real time): there is no return to predict"
    return None


def long_term_value(settings: Settings, root: Path | None = None, dataset: str = "ml-100k",
                    source: Path | None = None, progress: bool = True) -> Iterator[str]:
    from control.bench.accuracy import prepare
    from control.bench.helpers import bench_home, peak_rss_mib
    from training.evaluation import fit_on_split
    from training.long_term_value import evaluate_head
    from training.models.sequence import SequenceModel
    from training.sequences import split_from_store

    reason = off_reason(dataset, settings)
    if reason is not None:
        yield f"value head off: {reason}"
        yield json.dumps({"dataset": dataset, "return_auc": {"model": None, "baseline": None},
                          "concordance": {"model": None, "baseline": None}, "value_head": f"off: {reason}"})
        return
    home = bench_home(settings, f"long-term-value-{dataset}", root)
    yield from prepare(home, dataset, source, True, progress)
    start = time.perf_counter()
    split, _ = split_from_store(home, "temporal", True)
    model = SequenceModel()
    fit = fit_on_split(model, split, home, progress)
    yield (f"sequence model with its value head trained in {time.perf_counter() - start:.0f} s "
           f"({fit.epochs} epochs; {'; '.join(fit.notes)})")
    start = time.perf_counter()
    report = evaluate_head(home, split, model, home.value.bootstrap_samples)
    if report is None:
        raise ValueError(f"no visit ends after the split of {dataset}: nothing to evaluate")
    yield f"temporal split at {split.split_time} ({time.perf_counter() - start:.0f} s to score and bootstrap)"
    yield from report.lines()
    yield f"peak memory: {peak_rss_mib():.0f} MiB"
    figures = {"dataset": dataset, **report.figures()}
    yield f"plots and figures logged to MLflow: {log_to_mlflow(home, figures, report)}"
    yield json.dumps(figures)


def log_to_mlflow(home: Settings, figures: dict, report) -> str:
    """One MLflow run: the figures, and the retention curve as a plot. Returns the run id."""
    import tempfile

    import mlflow

    from training.plots import retention_curve
    from training.tracking import mlflow_client

    mlflow_client(home)
    with mlflow.start_run(run_name=f"bench long-term-value {figures['dataset']}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"benchmark": "long-term-value", "dataset": figures["dataset"]})
        mlflow.log_metrics(report.metrics())
        plot = retention_curve(report, f"{figures['dataset']}: visits after the split", Path(tmp) / "retention_curve.png")
        mlflow.log_artifact(str(plot), artifact_path="plots")
        return run.info.run_id
