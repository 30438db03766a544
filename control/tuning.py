"""`longview tune engagement`: choose the engagement policy's weights for a registered sequence
model, on data no report uses. Every combination of the grid is scored on the real validation
split (NDCG@10 of the policy's lists against the model's own ranking, the same users); those that
lose at most ``max_ndcg_loss`` (3%) relative are served to the simulator's *tuning* users with the
*tuning* seeds (control/simulation.py), and the one with the highest simulated retention wins (ties:
the better NDCG). The test split, the reported users and the reported seeds are never read, so
`longview simulate` and `longview bench long-term` judge the choice on fresh ground.

The chosen weights become the version's ``engagement_weights`` tag (the service and the gate serve
the version with them: training/served_policy.py); the evidence (every trial, a plot) goes into the
version's MLflow run."""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from longview.settings import Settings

# The weights tried: the value term from off to strong, MMR's penalty, the popularity penalty.
GRID: dict[str, tuple[float, ...]] = {"value_weight": (0.0, 3.0), "diversity_weight": (0.0, 0.3, 0.6),
                                      "novelty_weight": (0.0, 0.05)}
MAX_NDCG_LOSS = 0.03


@dataclass
class Trial:
    weights: dict[str, float]
    ndcg: float  # validation NDCG@10 of the policy with these weights
    ndcg_change: float  # relative to the model's own ranking on the same validation users
    retention: list[float] = field(default_factory=list)  # per tuning seed (empty: not simulated)

    @property
    def feasible(self) -> bool:
        return bool(self.retention)

    @property
    def mean_retention(self) -> float:
        return float(np.mean(self.retention)) if self.retention else float("nan")


@dataclass
class Tuning:
    version: str
    protocol: str
    validation_users: int
    user_model: str
    days: int
    users: int
    seeds: list[int]
    max_ndcg_loss: float
    model_ndcg: float  # the model's own ranking on the validation users
    model_retention: list[float]  # the model's own ranking served to the tuning users, per seed
    trials: list[Trial]
    chosen: Trial | None
    # the chosen weights' retention minus the model's own ranking's, on the same tuning users and
    # seeds: mean and 95% interval over users (each averaged over the seeds); None: nothing chosen
    chosen_difference: tuple[float, float, float] | None = None

    def summary(self) -> dict:
        chosen = self.chosen
        return {"version": self.version, "user_model": self.user_model, "days": self.days, "users": self.users,
                "seeds": self.seeds, "trials": len(self.trials), "feasible": sum(t.feasible for t in self.trials),
                "chosen": None if chosen is None else chosen.weights,
                f"retention_{self.days}": None if chosen is None else round(chosen.mean_retention, 6),
                f"model_retention_{self.days}": round(float(np.mean(self.model_retention)), 6),
                "ndcg_at_10": None if chosen is None else round(chosen.ndcg, 6),
                "difference": None if self.chosen_difference is None else [round(v, 6) for v in self.chosen_difference],
                "model_ndcg_at_10": round(self.model_ndcg, 6)}


def grid_weights(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def tune_engagement(settings: Settings, version: str | None = None, grid: dict | None = None,
                    days: int | None = None, seeds: int | None = None, users: int | None = None,
                    max_ndcg_loss: float = MAX_NDCG_LOSS, progress: bool = True) -> Tuning:
    """Score every weight combination of ``grid`` on validation and in the simulator's tuning part;
    the version defaults to @challenger (else @champion). Nothing is written: see ``record``."""
    from control.simulation import load_registered
    from training.protocol import protocol_for
    from training.sequences import split_from_store

    version = version or _default_version(settings)
    packaged = load_registered(settings, version)
    if packaged.model_name != "sequence":
        raise ValueError(f"version {version} is a {packaged.model_name} model: only the sequence model has "
                         f"engagement weights to tune")
    protocol, real_time = protocol_for(settings)
    split, content = split_from_store(settings, protocol, real_time)
    return tune_packaged(settings, packaged, split, content.vectors, version, grid, days, seeds, users,
                         max_ndcg_loss, progress)


def tune_packaged(settings: Settings, packaged, split, content, name: str, grid: dict | None = None,
                  days: int | None = None, seeds: int | None = None, users: int | None = None,
                  max_ndcg_loss: float = MAX_NDCG_LOSS, progress: bool = True) -> Tuning:
    """``tune_engagement`` for a packaged sequence model and the split it was trained on (its
    validation users, ``content`` the split's item content rows)."""
    from control.simulation import simulate
    from training.evaluation import K, Reindexed, evaluate
    from training.simulation.policies import PackagedPolicy

    options = settings.simulation
    days, seeds, users = days or options.days, seeds or options.seeds, users or options.users
    holdout, n = split.validation, split.train.n_items

    def validation_ndcg(model) -> float:
        scorer = Reindexed(model, split.train.item_ids, content)
        return float(evaluate(scorer, holdout, n, K, settings.exclude_seen).ndcg.mean())

    base = settings.engagement.weights(settings.seed)
    model_ndcg = validation_ndcg(packaged)
    trials, served = [], [PackagedPolicy("model", packaged)]
    for i, weights in enumerate(grid_weights(grid or GRID)):
        policy = packaged.under_policy({**base, **weights})
        ndcg = validation_ndcg(policy)
        trials.append(Trial(weights, ndcg, ndcg / model_ndcg - 1 if model_ndcg else 0.0))
        if trials[-1].ndcg_change >= -max_ndcg_loss:
            served.append(PackagedPolicy(f"trial {i}", policy))
        if progress:
            print(f"  validation: {_describe(weights)}: NDCG@10 {ndcg:.4f} ({trials[-1].ndcg_change:+.1%})", flush=True)
    if progress:
        print(f"  {len(served) - 1} of {len(trials)} within {max_ndcg_loss:.0%} of the model's NDCG@10 "
              f"({model_ndcg:.4f}); simulating them for the tuning users", flush=True)
    result = simulate(settings, served, days, seeds, users, "tuning", progress)
    last = f"retention_{days}"
    for policy in served[1:]:
        trials[int(policy.name.split()[1])].retention = [m[last] for m in result.measures[policy.name]]
    feasible = [t for t in trials if t.feasible]
    chosen = max(feasible, key=lambda t: (round(t.mean_retention, 12), t.ndcg)) if feasible else None
    difference = None if chosen is None else result.retention_difference(f"trial {trials.index(chosen)}", "model")
    return Tuning(name, split.protocol, len(holdout.users), result.digest, days, result.users, result.seeds,
                  max_ndcg_loss, model_ndcg, [m[last] for m in result.measures["model"]], trials, chosen, difference)


def _default_version(settings: Settings) -> str:
    from training.tracking import CHALLENGER, CHAMPION, alias_version, mlflow_client

    client = mlflow_client(settings)
    for alias in (CHALLENGER, CHAMPION):
        found = alias_version(client, alias)
        if found is not None:
            return str(found.version)
    raise ValueError("no @challenger or @champion to tune: run `longview train` first, or pass --version")


def _describe(weights: dict[str, float]) -> str:
    return ", ".join(f"{name.removesuffix('_weight')} {value:g}" for name, value in weights.items())


def table(tuning: Tuning) -> list[str]:
    last = f"retention_{tuning.days}"
    lines = [f"engagement weights for version {tuning.version}: NDCG@10 on {tuning.validation_users} validation "
             f"users ({tuning.protocol}); {last} of {tuning.users} tuning users, seeds {tuning.seeds[0]}.."
             f"{tuning.seeds[-1]}, user model {tuning.user_model}",
             f"  the model's own ranking: NDCG@10 {tuning.model_ndcg:.4f}, {last} "
             f"{np.mean(tuning.model_retention):.3f}"]
    for trial in sorted(tuning.trials, key=lambda t: -t.mean_retention if t.feasible else np.inf):
        mark = "*" if trial is tuning.chosen else " "
        retention = (f"{last} {trial.mean_retention:.3f}" if trial.feasible
                     else f"not simulated: loses more than {tuning.max_ndcg_loss:.0%} NDCG@10")
        lines.append(f"{mark} {_describe(trial.weights)}: NDCG@10 {trial.ndcg:.4f} ({trial.ndcg_change:+.1%}), {retention}")
    if tuning.chosen is None:
        lines.append(f"no weights keep NDCG@10 within {tuning.max_ndcg_loss:.0%}: nothing chosen")
    else:
        d, lo, hi = tuning.chosen_difference
        lines.append(f"chosen (*): {last} {d:+.3f} [{lo:+.3f}, {hi:+.3f}] against the model's own ranking on the same "
                     f"tuning users (95% over users); the best of {sum(t.feasible for t in tuning.trials)} is "
                     f"favoured by chance too: `longview simulate` judges it on the reported users and seeds")
    return lines


def record(settings: Settings, tuning: Tuning) -> str | None:
    """The chosen weights as the version's ``engagement_weights`` tag; every trial (JSON) and a plot
    of retention against NDCG into the version's run, its figures as metrics. Returns the run id."""
    from longview.settings import REGISTERED_MODEL
    from training.plots import pyplot
    from training.served_policy import WEIGHTS_TAG
    from training.tracking import mlflow_client

    client = mlflow_client(settings)
    found = client.get_model_version(REGISTERED_MODEL, tuning.version)
    if tuning.chosen is not None:
        client.set_model_version_tag(REGISTERED_MODEL, tuning.version, WEIGHTS_TAG, json.dumps(tuning.chosen.weights))
    run_id = found.run_id
    if not run_id:
        return None
    summary = tuning.summary()
    for key in (f"retention_{tuning.days}", f"model_retention_{tuning.days}", "ndcg_at_10", "model_ndcg_at_10"):
        if summary[key] is not None:
            client.log_metric(run_id, f"tuning.{key}", summary[key])
    if tuning.chosen is not None:
        for name, value in tuning.chosen.weights.items():
            client.set_tag(run_id, f"tuning.{name}", str(value))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    simulated = [t for t in tuning.trials if t.feasible]
    ax.scatter([100 * t.ndcg_change for t in simulated], [t.mean_retention for t in simulated], s=14, label="weights tried")
    if tuning.chosen is not None:
        ax.scatter([100 * tuning.chosen.ndcg_change], [tuning.chosen.mean_retention], s=60, marker="*", label="chosen")
    ax.axhline(float(np.mean(tuning.model_retention)), color="grey", lw=0.8, label="the model's own ranking")
    ax.set(xlabel="NDCG@10 change on validation (%)", ylabel=f"simulated retention_{tuning.days} (tuning users)",
           title=f"engagement weights, version {tuning.version}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        plot, data = Path(tmp) / "engagement_tuning.png", Path(tmp) / "engagement_tuning.json"
        fig.savefig(plot)
        plt.close(fig)
        data.write_text(json.dumps({**summary, "trials": [asdict(t) for t in tuning.trials]}))
        client.log_artifact(run_id, str(plot), "plots")
        client.log_artifact(run_id, str(data), "tuning")
    return run_id
