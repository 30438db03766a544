"""Train the recommender on a point-in-time training set, evaluate it beside a popularity baseline,
log everything to MLflow and register the model as @challenger."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from longview.features import FEATURE_SERVICE, genre_matrix, genre_vocabulary
from longview.settings import REGISTERED_MODEL, Settings
from longview.versioning import data_version
from training.datasets import Holdout, TrainingData, build_training_data
from training.encoding import FeatureEncoder
from training.evaluation import ranking_metrics
from training.model import SequenceRecommender
from training.packaged_model import PackagedRecommender
from training.tracking import CHALLENGER, code_version, mlflow_client

K = 10


@dataclass
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    baseline: dict[str, float]


def evaluate(packaged: PackagedRecommender, holdout: Holdout, k: int = K) -> dict[str, float]:
    rows = holdout.features.to_dict("records")
    users = holdout.features["user_id"].tolist()
    ranked = packaged.recommend(rows, k, exclude=[holdout.seen[u] for u in users])
    lists = {u: [item for item, _ in r] for u, r in zip(users, ranked)}
    return ranking_metrics(lists, holdout.truth, len(packaged.encoder.item_ids), k)


def evaluate_popularity(packaged: PackagedRecommender, holdout: Holdout, k: int = K) -> dict[str, float]:
    lists = {u: [i for i, _ in packaged.popular(k, holdout.seen[u])] for u in holdout.truth}
    return ranking_metrics(lists, holdout.truth, len(packaged.encoder.item_ids), k)


def fit(settings: Settings, data: TrainingData, epochs: int) -> tuple[PackagedRecommender, list[float]]:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    vocab = genre_vocabulary(data.catalogue)
    encoder = FeatureEncoder(data.catalogue["item_id"].tolist(), len(vocab), settings.recent_items)
    genres = torch.from_numpy(genre_matrix(data.catalogue, vocab))
    model = SequenceRecommender(len(encoder.item_ids), encoder.n_dense, genres, settings.embedding_dim)

    train = data.train[data.train["label_item"].isin(encoder.index)]
    seqs, dense = encoder.encode(train.to_dict("records"))
    labels = train["label_item"].map(encoder.index).to_numpy(dtype=np.int64)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses: list[float] = []
    with Progress() as progress:
        task = progress.add_task(f"training on {len(labels)} examples", total=epochs)
        for _ in range(epochs):
            model.train()
            order = rng.permutation(len(labels))
            total = 0.0
            for start in range(0, len(order), settings.batch_size):
                batch = order[start:start + settings.batch_size]
                logits = model(torch.from_numpy(seqs[batch]), torch.from_numpy(dense[batch]))
                loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[batch]))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            losses.append(total / max(len(labels), 1))
            progress.update(task, advance=1, description=f"training: loss {losses[-1]:.3f}")
    popularity = data.popularity.reindex(encoder.item_ids).fillna(0).to_numpy(dtype=np.float32)
    return PackagedRecommender.from_parts(model, encoder, popularity), losses


def _plots(losses: list[float], metrics: dict, baseline: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = out / "training_curve.png"
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    fig.tight_layout()
    fig.savefig(curve)
    plt.close(fig)

    bars = out / "model_vs_popularity.png"
    names = [f"ndcg_at_{K}", f"recall_at_{K}", f"coverage_at_{K}"]
    fig, ax = plt.subplots(figsize=(5, 3))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [metrics[n] for n in names], 0.4, label="model")
    ax.bar(x + 0.2, [baseline[n] for n in names], 0.4, label="popularity")
    ax.set_xticks(x, names)
    ax.legend()
    ax.set_title("holdout: model vs popularity")
    fig.tight_layout()
    fig.savefig(bars)
    plt.close(fig)
    return [curve, bars]


def train(settings: Settings, epochs: int | None = None) -> TrainResult:
    import mlflow
    import mlflow.pyfunc
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    epochs = settings.epochs if epochs is None else epochs
    client = mlflow_client(settings)
    data = build_training_data(settings)
    packaged, losses = fit(settings, data, epochs)
    metrics = evaluate(packaged, data.holdout)
    baseline = evaluate_popularity(packaged, data.holdout)

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        mlflow.set_tags({
            # DVC's hash of the training inputs: `dvc.lock` records the same one for the train stage.
            "data_version": data_version(settings.features_dir),
            "dataset_clock": data.clock.isoformat(),
            "holdout_split": data.holdout.split_time.isoformat(),
            "feature_service": FEATURE_SERVICE,
            "code_version": code_version(settings),
        })
        mlflow.log_params({"epochs": epochs, "embedding_dim": settings.embedding_dim, "batch_size": settings.batch_size,
                           "learning_rate": settings.learning_rate, "recent_items": settings.recent_items,
                           "train_examples": len(data.train), "seed": settings.seed})
        for step, loss in enumerate(losses, start=1):
            mlflow.log_metric("train_loss", loss, step=step)
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"popularity_{k}": v for k, v in baseline.items()})
        for plot in _plots(losses, metrics, baseline, tmp_path):
            mlflow.log_artifact(str(plot), artifact_path="plots")
        bundle = tmp_path / "bundle.pt"
        torch.save(packaged.bundle(), bundle)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PackagedRecommender(),
            artifacts={"bundle": str(bundle)},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "longview"],
            registered_model_name=REGISTERED_MODEL,
            # Inputs are Feast user-profile rows (any subset of the feature service); k is a parameter.
            signature=ModelSignature(inputs=None, outputs=None, params=ParamSchema([ParamSpec("k", "long", K)])),
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, version)
        client.set_model_version_tag(REGISTERED_MODEL, version, "ndcg_at_10", f"{metrics['ndcg_at_10']:.4f}")
        client.set_model_version_tag(REGISTERED_MODEL, version, "feature_service", FEATURE_SERVICE)
        result = TrainResult(run.info.run_id, version, metrics, baseline)
    settings.train_dir.mkdir(parents=True, exist_ok=True)
    (settings.train_dir / "metrics.json").write_text(json.dumps(asdict(result), indent=2))
    return result
