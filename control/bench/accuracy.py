"""`longview bench accuracy`: every model trained and evaluated on the same split of a real
dataset, each in a process of its own (so its peak memory is its own), then compared user by user.
The last stdout line is one JSON object."""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longview.settings import Settings

LAST_ITEMS_CUT = {"ml-1m-sasrec": "its last two items per user are already cut, so the targets sit earlier than "
                                  "the papers' and the comparison with published figures is approximate"}
PUBLISHED = ("published full-ranking NDCG@10 on MovieLens-1M (leave-one-out): SASRec full cross-entropy 0.182, "
             "3,000 negatives 0.186 (Klenitskiy and Vasilev, 2023); gSASRec 0.173, HSTU 0.172, HSTU-large 0.189 "
             "(Zhai et al., 2024); RecBole SASRec 0.129, GRU4Rec 0.155")


@dataclass
class ModelRun:
    name: str
    summary: dict
    ndcg: np.ndarray
    hr: np.ndarray
    top: np.ndarray
    users: list[str]
    truth: list[np.ndarray]
    train_seconds: float
    peak_memory_mb: float
    fit: dict
    error: str | None = None


def train_and_evaluate(settings: Settings, protocol: str, real_time: bool, name: str, progress: bool,
                       policy: bool = False) -> list[ModelRun]:
    """One model on one split: fit (validation picks epochs or the hyper-parameter), then score the
    test users once. With ``policy``, the engagement policy over the same fitted sequence model is
    scored too (the policy trains nothing of its own; ``name`` "engagement" alone scores only it)."""
    from training.evaluation import K, evaluate, fit_on_split, item_cooccurrence
    from training.models.engagement import EngagementPolicy
    from training.registry import model_class
    from training.sequences import split_from_store

    fitted = "sequence" if name == "engagement" else name
    split, content = split_from_store(settings, protocol, real_time, profiles=fitted == "sequence")  # only it reads them
    n = split.train.n_items
    popularity = split.known.counts()
    cooccurrence = item_cooccurrence(split.known)
    model = model_class(fitted)()
    start = time.perf_counter()
    report = fit_on_split(model, split, settings, progress)
    seconds = time.perf_counter() - start
    fit = {"epochs": report.epochs, "chosen": report.chosen, "notes": report.notes, "curve": report.curve}
    scorers = [] if name == "engagement" else [model]
    if name == "engagement" or policy:
        scorers.append(EngagementPolicy.around(model, settings))
    runs = []
    for scorer in scorers:
        start = time.perf_counter()
        result = evaluate(scorer, split.test, n, K, settings.exclude_seen, popularity, content.genres, cooccurrence)
        notes = [f"policy: {scorer.describe()}"] if scorer.name == "engagement" else fit["notes"]
        runs.append(ModelRun(scorer.name, result.summary(), result.ndcg, result.hr, result.top, result.users,
                             split.test.truth, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                             {**fit, "notes": notes, "score_seconds": time.perf_counter() - start}))
    return runs


def _child(queue, settings_json: str, protocol: str, real_time: bool, name: str, progress: bool, policy: bool) -> None:
    from longview.settings import Settings

    try:
        queue.put(train_and_evaluate(Settings.model_validate_json(settings_json), protocol, real_time, name, progress, policy))
    except Exception as exc:  # reported in the table; the other models still run
        queue.put([ModelRun(name, {}, np.zeros(0), np.zeros(0), np.zeros((0, 0)), [], [], 0.0,
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, {}, f"{type(exc).__name__}: {exc}")])


def run_isolated(settings: Settings, protocol: str, real_time: bool, name: str, progress: bool,
                 policy: bool = False) -> list[ModelRun]:
    """train_and_evaluate in a fresh process: its peak RSS is the model's own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue, settings.model_dump_json(exclude={"pseudonym_key"}), protocol,
                                                 real_time, name, progress, policy))
    child.start()
    try:
        runs = queue.get()
    finally:
        child.join()
    return runs


def _model_lines(run: ModelRun) -> Iterator[str]:
    s = run.summary
    yield (f"{run.name:<18} NDCG@10 {s['ndcg_at_10']:.4f}  HR@10 {s['hr_at_10']:.4f}  MRR {s['mrr']:.4f}  "
           f"coverage {s['coverage_at_10']:.3f}  novelty {_fmt(s.get('novelty'), 2)}  "
           f"diversity {_fmt(s.get('diversity'), 3)}  calibration KL {_fmt(s.get('calibration_kl'), 3)}  "
           f"train {run.train_seconds:.0f} s  peak {run.peak_memory_mb:.0f} MB  {json.dumps(run.fit['chosen'])}")
    throughput = [row["sequences_per_second"] for row in run.fit["curve"] if "sequences_per_second" in row]
    if run.name == "engagement":
        yield f"{'':<18} scored in {run.fit['score_seconds']:.0f} s; " + "; ".join(run.fit["notes"])
    elif throughput:
        yield (f"{'':<18} {run.fit['epochs']} epochs, {throughput[-1]:.0f} training sequences/s; "
               + "; ".join(run.fit["notes"]))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def prepare(home: Settings, dataset: str, source: Path | None, real_time: bool, progress: bool) -> Iterator[str]:
    """The dataset ingested into the benchmark's data home, its features written and applied to
    Feast; a line per step."""
    from control.pipeline import prepare_dataset
    from longview.feature_store import apply
    from longview.features import write_feature_tables

    start = time.perf_counter()
    summary = prepare_dataset(home, dataset, source)
    yield (f"{dataset}: {summary['accepted']:,} events accepted, {summary['quarantined']:,} quarantined "
           f"({time.perf_counter() - start:.0f} s); {'real' if real_time else 'ordinal (order only)'} event times")
    start = time.perf_counter()
    write_feature_tables(home, progress=progress)
    apply(home)
    yield f"features written and applied to Feast ({time.perf_counter() - start:.0f} s)"


def accuracy(settings: Settings, root: Path | None = None, dataset: str = "ml-1m-sasrec", source: Path | None = None,
             protocol: str = "loo", dump_topk: Path | None = None, models: list[str] | None = None,
             progress: bool = True) -> Iterator[str]:
    """Prepare ``dataset`` and its features in a data home of its own, train and evaluate every
    model under ``protocol`` and compare them user by user (paired bootstrap)."""
    from control.bench.helpers import bench_home
    from longview import datasets
    from training.evaluation import bootstrap_interval, paired_difference
    from training.registry import BASELINES, MODELS

    names = models or [*BASELINES, "sequence", "engagement"]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}: expected {', '.join(MODELS)}")
    if protocol not in ("loo", "temporal"):
        raise ValueError(f"unknown protocol {protocol!r}: expected loo or temporal")
    real_time = not datasets.spec(dataset).ordinal_time
    if protocol == "temporal" and not real_time:
        raise ValueError(f"the temporal protocol needs real event times; {dataset} only orders its events")
    home = bench_home(settings, f"accuracy-{dataset}-{protocol}", root)
    yield from prepare(home, dataset, source, real_time, progress)

    runs: dict[str, ModelRun] = {}
    # The policy ranks with the sequence model: where both are asked for, one training serves both.
    tasks = [n for n in names if not (n == "engagement" and "sequence" in names)]
    for name in tasks:
        if MODELS[name].needs_time and not real_time:
            yield f"{name}: skipped: it needs real event times and {dataset} only orders its events"
            continue
        for run in run_isolated(home, protocol, real_time, name, progress, name == "sequence" and "engagement" in names):
            if run.error:
                yield f"{run.name}: failed: {run.error}"
                continue
            runs[run.name] = run
            yield from _model_lines(run)
    if not runs:
        raise RuntimeError("no model trained")
    users = len(next(iter(runs.values())).users)
    yield f"{protocol} protocol, whole catalogue, seen items excluded: {users:,} test users"
    baselines = [n for n in runs if n not in ("sequence", "engagement")]
    best = max(baselines, key=lambda n: runs[n].summary["ndcg_at_10"]) if baselines else None
    for name, run in runs.items():
        lo, hi = bootstrap_interval(run.ndcg, seed=settings.seed)
        line = f"{name:<18} NDCG@10 95% interval [{lo:.4f}, {hi:.4f}]"
        if best is not None and name != best:
            diff, dlo, dhi = paired_difference(run.ndcg, runs[best].ndcg, seed=settings.seed)
            verdict = "better" if dlo > 0 else "worse" if dhi < 0 else "within noise"
            line += f"; vs {best} {diff:+.4f} [{dlo:+.4f}, {dhi:+.4f}]: {verdict}"
            if name in ("sequence", "engagement"):
                shared = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(run.top, runs[best].top)])
                line += f"; shares {shared:.0%} of its top-10 items with {best}"
        yield line
    if "sequence" in runs and "engagement" in runs:
        yield from _policy_lines(runs["sequence"], runs["engagement"], settings.seed)
    if dataset in LAST_ITEMS_CUT:
        yield f"note: {dataset}: {LAST_ITEMS_CUT[dataset]}; {PUBLISHED}"
    if dump_topk is not None:
        write_topk(dump_topk, runs, home)
        yield f"top-10 lists written to {dump_topk}"
    report = {"dataset": dataset, "protocol": protocol, "models": {name: _figures(run) for name, run in runs.items()}}
    yield f"plots and figures logged to MLflow: {log_to_mlflow(home, report, runs)}"
    yield json.dumps(report)


def _policy_lines(sequence: ModelRun, policy: ModelRun, seed: int) -> Iterator[str]:
    """The policy against the sequence model it re-ranks: what it costs in accuracy, what it buys."""
    from training.evaluation import paired_difference

    diff, lo, hi = paired_difference(policy.ndcg, sequence.ndcg, seed=seed)
    base = sequence.summary["ndcg_at_10"]
    relative = diff / base if base else 0.0
    yield (f"engagement vs sequence: NDCG@10 {relative:+.1%} relative ({diff:+.4f} [{lo:+.4f}, {hi:+.4f}]; "
           f"goal: no lower than -3.0%): {'met' if relative >= -0.03 else 'missed'}")
    changes = []
    for key, label in (("coverage_at_10", "coverage"), ("diversity", "diversity"), ("novelty", "novelty")):
        a, b = sequence.summary.get(key), policy.summary.get(key)
        if a is not None and b is not None:
            changes.append(f"{label} {a:.3f} -> {b:.3f} ({'raised' if b > a else 'not raised'})")
    yield "engagement vs sequence: " + ", ".join(changes)


def _figures(run: ModelRun) -> dict[str, float]:
    s = run.summary
    out = {"ndcg_at_10": round(s["ndcg_at_10"], 4), "hr_at_10": round(s["hr_at_10"], 4),
           "coverage_at_10": round(s["coverage_at_10"], 4), "mrr": round(s["mrr"], 4),
           **{key: round(s[key], 4) for key in ("diversity", "novelty") if s.get(key) is not None},
           "train_seconds": round(run.train_seconds, 1), "peak_memory_mb": round(run.peak_memory_mb, 1)}
    speed = [row["sequences_per_second"] for row in run.fit["curve"] if "sequences_per_second" in row]
    if speed:
        out.update(epochs=run.fit["epochs"], sequences_per_second=round(speed[-1], 1))
    return out


def log_to_mlflow(home: Settings, report: dict, runs: dict[str, ModelRun]) -> str:
    """One MLflow run in the benchmark's home: every model's figures, the comparison and the
    sequence model's learning curve as plots. Returns the run id."""
    import tempfile

    import mlflow

    from training.plots import bars, learning_curve
    from training.tracking import mlflow_client

    mlflow_client(home)
    with mlflow.start_run(run_name=f"bench accuracy {report['dataset']} {report['protocol']}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"benchmark": "accuracy", "dataset": report["dataset"], "protocol": report["protocol"]})
        for name, figures in report["models"].items():
            mlflow.log_metrics({f"{name}.{key}": float(value) for key, value in figures.items()})
        ndcg = {name: figures["ndcg_at_10"] for name, figures in report["models"].items()}
        title = f"{report['dataset']}, {report['protocol']}: whole catalogue"
        mlflow.log_artifact(str(bars(ndcg, "NDCG@10", title, Path(tmp) / "ndcg_by_model.png")), artifact_path="plots")
        curve = learning_curve(runs["sequence"].fit["curve"] if "sequence" in runs else [],
                               Path(tmp) / "sequence_learning_curve.png")
        if curve is not None:
            mlflow.log_artifact(str(curve), artifact_path="plots")
        return run.info.run_id


def write_topk(path: Path, runs: dict[str, ModelRun], home: Settings) -> None:
    """One JSON line per model and test user: the held-out items and the user's top 10, so anyone
    can recompute the metrics."""
    from longview.store import load_catalogue, load_events
    from training.sequences import item_index

    ids = item_index(load_catalogue(home)["item_id"].astype(str).tolist(), load_events(home, columns=["item_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for name, run in runs.items():
            for user, truth, top in zip(run.users, run.truth, run.top, strict=True):
                out.write(json.dumps({"model": name, "user_id": user, "held_out": [ids[i - 1] for i in truth],
                                      "top": [ids[i - 1] for i in top]}) + "\n")
