"""`longview train`: the model named by the ``model`` setting (training/models), trained on the
data home's events with item content from Feast, evaluated once on the holdout beside every
baseline, logged to MLflow (params, per-epoch curve, plots, lineage tags) and registered as
@challenger of the one registered model, whatever its architecture (models-from-code:
training/packaging.py).

The protocol is temporal (one global split time: how a deployed model meets the future), or
leave-one-out where the data only orders its events (ml-1m-sasrec). Under ``torchrun`` every rank
trains on its own shard of users and only rank 0 evaluates, logs and registers."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from longview.features import FEATURE_SERVICE
from longview.settings import REGISTERED_MODEL, Settings
from longview.versioning import data_version
from training.protocol import protocol_for
from training.tracking import CHALLENGER, code_version, mlflow_client


@dataclass
class TrainResult:
    model: str
    protocol: str
    rank: int  # the torchrun rank that returns this (only rank 0 registers)
    run_id: str | None = None
    model_version: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    baselines: dict[str, dict[str, float | None]] = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    value: dict = field(default_factory=dict)  # the value head's figures ({}: no head)
    registered: str | None = None  # the baseline registered as @challenger instead (None: ``model``)
    registered_because: str = ""
    run_key: str | None = None  # the caller's id for this run (an Airflow DAG run): one registration per key
    reused: bool = False  # True: a version was already registered under run_key; nothing was trained


def _settings_for(settings: Settings, epochs: int | None) -> Settings:
    if epochs is None:
        return settings
    if epochs < 0:
        raise ValueError(f"epochs must be 0 or more, got {epochs}")
    return settings.model_copy(update={"sequence": settings.sequence.model_copy(update={"epochs": epochs})})


def _params(settings: Settings, protocol: str, split, report) -> dict:
    params = {"model": settings.model, "protocol": protocol, "seed": settings.seed, "items": split.train.n_items,
              "holdout_share": settings.holdout_share, "validation_share": settings.validation_share,
              "train_users": len(split.train.sequences), "holdout_users": len(split.test.users),
              "exclude_seen": settings.exclude_seen, "positive_min_rating": settings.positive_min_rating,
              "positive_min_dwell_seconds": settings.positive_min_dwell_seconds, "epochs_run": report.epochs}
    if settings.model in ("sequence", "engagement"):
        params.update({f"sequence.{k}": v for k, v in settings.sequence.model_dump().items()})
    if settings.model == "engagement":
        params.update({f"engagement.{k}": v for k, v in settings.engagement.weights(settings.seed).items()})
    params.update({f"chosen.{k}": v for k, v in report.chosen.items()})
    return params


# Called once the holdout is evaluated, with (settings, protocol, split, each baseline's per-user
# NDCG@10, the holdout's visits after the split or None): the gate keeps what it will judge on.
HoldoutHook = Callable[[Settings, str, object, dict, object], None]


def train(settings: Settings, epochs: int | None = None, progress: bool = True,
          run_key: str | None = None, on_holdout: HoldoutHook | None = None) -> TrainResult:
    """Train, evaluate and register the configured model; ``epochs`` overrides the sequence
    model's (the other models have no epochs). ``run_key``: the caller's id for this run (a retried
    Airflow task passes the same one): when a version is already registered under it, that version
    is @challenger again and nothing is trained or registered twice. ``on_holdout``: see HoldoutHook."""
    from training.evaluation import K, evaluate, evaluate_baselines, fit_on_split
    from training.models.distributed import process_group
    from training.registry import model_class
    from training.sequences import split_from_store

    settings = _settings_for(settings, epochs)
    protocol, real_time = protocol_for(settings)
    if run_key is not None:
        earlier = _registered_under(settings, run_key)
        if earlier is not None:
            return earlier
    with process_group() as (rank, _world):
        split, content = split_from_store(settings, protocol, real_time)
        model = model_class(settings.model)()
        report = fit_on_split(model, split, settings, progress)
    result = TrainResult(settings.model, protocol, rank,
                         fit={k: v for k, v in asdict(report).items() if k != "curve"})  # the curve goes to MLflow
    if rank != 0:
        return result

    from training.long_term_value import gate_visits

    n, popularity = split.train.n_items, split.known.counts()
    ours = evaluate(model, split.test, n, K, settings.exclude_seen, popularity, content.genres)
    metrics = ours.summary()
    measured = evaluate_baselines(settings, split, content.genres, real_time, skip=settings.model)
    baselines = {name: evaluation.summary() for name, (_, evaluation) in measured.items()}
    visits = gate_visits(settings, split)
    if on_holdout is not None:  # the gate reuses the holdout, the baselines' per-user figures on it and its visits
        on_holdout(settings, protocol, split, {n: e.ndcg for n, (_, e) in measured.items()},
                   None if visits is None else visits[1])
    value = _value_report(settings, split, model, visits)  # the long-term value head against its churn baseline
    result.metrics, result.baselines = metrics, baselines
    result.value = {} if value is None else value.figures()
    better = _better_baseline(settings, ours, measured)
    registered = model if better is None else better[0]
    if better is not None:
        result.registered, result.registered_because = registered.name, better[1]
        print(better[1], flush=True)
    result.run_key = run_key
    result.run_id, result.model_version = _log_and_register(settings, protocol, split, model, report, metrics,
                                                            baselines, value, registered, run_key)
    settings.train_dir.mkdir(parents=True, exist_ok=True)
    (settings.train_dir / "metrics.json").write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def _better_baseline(settings: Settings, ours, measured: dict) -> tuple | None:
    """The best baseline, fitted, where the trained model is worse than it on the holdout beyond the
    paired noise and the gate's ``prefer_better_baseline`` is on (users should get the better one):
    (the fitted baseline, why), else None."""
    from training.evaluation import paired_difference

    if not settings.gate.prefer_better_baseline or not measured:
        return None
    best = max(measured, key=lambda name: float(measured[name][1].ndcg.mean()))
    fitted, theirs = measured[best]
    diff, lo, hi = paired_difference(ours.ndcg, theirs.ndcg, settings.gate.bootstrap_samples, settings.seed)
    if hi >= -settings.gate.baseline_tolerance:
        return None
    return fitted, (f"{settings.model} is worse than {best} on the holdout beyond noise (NDCG@10 {diff:+.4f} "
                    f"[{lo:+.4f}, {hi:+.4f}]): {best} is registered as @challenger instead")


def _value_report(settings: Settings, split, model, visits):
    """The value head on the holdout's visits against the churn baseline (no intervals: the
    benchmark has them), or None without a head; a baseline that cannot be fitted (too few
    visits of one outcome) leaves a note, not a failed training run."""
    from training.long_term_value import evaluate_head

    if visits is None:
        return None
    try:
        return evaluate_head(settings, split, model, samples=0, visits=visits)
    except ValueError as exc:
        print(f"long-term value head not evaluated: {exc}")
        return None


def _registered_under(settings: Settings, run_key: str) -> TrainResult | None:
    """The result of the run that registered a version under ``run_key`` (that version made
    @challenger again), or None when none did."""
    from training.tracking import EXPERIMENT, experiment_id

    client = mlflow_client(settings)
    # The MLflow run is tagged at its start, so a task that died between registering and tagging
    # the version is still found by its run. (Searched by the key's hash: any characters are safe.)
    runs = client.search_runs([experiment_id(client, settings, EXPERIMENT)], f"tags.run_key_hash = '{_key_hash(run_key)}'")
    runs = [run for run in runs if run.data.tags.get("run_key") == run_key]
    found = [v for run in runs for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")
             if v.name == REGISTERED_MODEL]
    if not found:
        return None
    version = max(found, key=lambda v: int(v.version))
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version.version)
    path = settings.train_dir / "metrics.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    if recorded.get("model_version") == str(version.version):
        return TrainResult(**{**recorded, "reused": True})
    run = client.get_run(version.run_id).data if version.run_id else None
    return TrainResult(version.tags.get("model", settings.model), version.tags.get("protocol", ""), 0,
                       run_id=version.run_id, model_version=str(version.version),
                       metrics=dict(run.metrics) if run else {}, run_key=run_key, reused=True)


def _key_hash(run_key: str) -> str:
    return hashlib.sha256(run_key.encode()).hexdigest()[:32]


def _log_and_register(settings: Settings, protocol: str, split, model, report, metrics: dict,
                      baselines: dict, value=None, registered=None, run_key: str | None = None) -> tuple[str, str]:
    """Log the run of ``model`` and register ``registered`` (default: ``model``; a better baseline
    otherwise) as @challenger."""
    import mlflow

    from training.evaluation import K
    from training.packaging import log_packaged_model
    from training.plots import bars, learning_curve, retention_curve

    client = mlflow_client(settings)
    ndcg = f"ndcg_at_{K}"
    with mlflow.start_run(run_name=f"train {settings.model}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({
            # DVC's hash of the feature tables: `dvc.lock` records the same one for the train stage.
            "data_version": data_version(settings.features_dir),
            "feature_service": FEATURE_SERVICE,
            "code_version": code_version(settings),
            "validation": "passed: every event in the store passed its Great Expectations suite at ingestion",
            "model": settings.model,
            "protocol": protocol,
            **({"holdout_split": split.split_time.isoformat()} if split.split_time is not None else {}),
            **({"run_key": run_key, "run_key_hash": _key_hash(run_key)} if run_key is not None else {}),
        })
        mlflow.log_params(_params(settings, protocol, split, report))
        for step, row in enumerate(report.curve, start=1):  # per epoch, or per candidate of a grid search
            step = int(row.get("epoch", step))
            mlflow.log_metrics({key: float(v) for key, v in row.items() if key != "epoch"}, step=step)
        mlflow.log_metrics({key: float(v) for key, v in metrics.items() if v is not None})
        for name, figures in baselines.items():
            mlflow.log_metrics({f"{name}.{key}": float(v) for key, v in figures.items() if v is not None})
        if value is not None:
            mlflow.log_metrics({f"value.{k}": v for k, v in value.metrics().items()})
        scores = {settings.model: metrics[ndcg], **{name: b[ndcg] for name, b in baselines.items()}}
        plots = [bars(scores, "NDCG@10", f"holdout ({protocol}): the model against every baseline",
                      Path(tmp) / "model_vs_baselines.png"),
                 learning_curve(report.curve, Path(tmp) / "learning_curve.png"),
                 None if value is None else retention_curve(value, "holdout: visits after the split",
                                                            Path(tmp) / "retention_curve.png")]
        for plot in plots:
            if plot is not None:
                mlflow.log_artifact(str(plot), artifact_path="plots")
        history = [split.train.item_ids[i - 1] for i in split.test.queries.histories[0][-5:]]
        registered = model if registered is None else registered
        info = log_packaged_model(registered, split.train.item_ids, settings, registered_model_name=REGISTERED_MODEL,
                                  example_history=history)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version)
        figure = metrics[ndcg] if registered is model else baselines[registered.name][ndcg]
        tags = {"model": registered.name, ndcg: f"{figure:.4f}", "feature_service": FEATURE_SERVICE, "protocol": protocol}
        if run_key is not None:
            tags["run_key"] = run_key
        if registered is not model:
            tags["chosen_over"] = settings.model
            mlflow.set_tag("registered", registered.name)
        for key, value in tags.items():
            client.set_model_version_tag(REGISTERED_MODEL, version, key, value)
        return run.info.run_id, version
