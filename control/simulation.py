"""`longview simulate`: policies served to simulated users calibrated on the data home's real
visits, for D days and several seeds, with 95% intervals over seeds; the retention curves as a plot
in MLflow. The user model is read from a frozen file (its digest printed with every result), so it
is fixed before any policy runs; `--calibrate` makes that file."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longview.settings import Settings

EXPERIMENT = "longview-simulation"
POLICIES = ("random", "popularity", "recent_popularity", "sequence", "engagement")
# Reported runs and tuning runs never share seeds (nor users: training/simulation/build.py users_of).
REPORTED_SEED, TUNING_SEED = 1000, 0


@dataclass
class SimulationResult:
    digest: str
    days: int
    users: int
    part: str
    seeds: list[int]
    measures: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # policy -> per seed
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # policy -> per seed, day 1..D
    # policy -> KS of the simulated visits (seeds pooled) against the same users' real ones: first
    # returns within the run's days, and depths against their returning visits
    fit: dict[str, dict[str, float]] = field(default_factory=dict)
    requests: int = 0

    def interval(self, policy: str, name: str) -> tuple[float, float, float]:
        """Mean over seeds and its 95% t-interval (the mean alone, twice, from one seed)."""
        return mean_interval([m[name] for m in self.measures[policy]])

    def difference(self, policy: str, against: str, name: str) -> tuple[float, float, float]:
        """The paired difference over seeds (same users, same seeds), mean and 95% t-interval."""
        return mean_interval([a[name] - b[name] for a, b in zip(self.measures[policy], self.measures[against],
                                                                   strict=True)])


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def frozen_path(settings: Settings, dataset: str = "ml-100k") -> Path:
    from training.simulation.build import FROZEN_DIR

    return settings.simulation.user_model or FROZEN_DIR / f"{dataset}.json"


def calibrate(settings: Settings, path: Path) -> dict:
    """Calibrate the user model on the data home's events and freeze it at ``path``."""
    from longview.store import load_catalogue, load_events
    from training.simulation import build

    events, items = load_events(settings), load_catalogue(settings)
    if events.empty:
        raise ValueError(f"no events in {settings.home}: prepare a dataset first (`longview data prepare ml-100k`)")
    calibration = build.calibrate(events, items, seed=settings.seed)
    return {"digest": build.save(calibration, path), "path": str(path), **calibration.report}


def policies(settings: Settings, names: list[str], version: str | None = None) -> list:
    """The named policies: random; popularity and recent popularity fitted on the data home's events
    here; the registered sequence model (``version``, default @champion) as its own ranking and
    under the engagement policy with the settings' weights; ``v<N>``: registered version N as served."""
    from training.sequences import split_from_store
    from training.simulation.policies import PackagedPolicy, RandomPolicy
    from training.tracking import CHAMPION, alias_version, load_version, mlflow_client

    def registered_version(number: str):
        from mlflow.exceptions import MlflowException

        try:
            return load_version(settings, number)
        except MlflowException as exc:
            raise ValueError(f"no registered version {number} of the model to simulate: {exc.message}") from None

    unknown = [n for n in names if n not in POLICIES and not (n.startswith("v") and n[1:].isdigit())]
    if unknown:
        raise ValueError(f"unknown policies {', '.join(unknown)}: expected {', '.join(POLICIES)} or vN")
    out, registered, known = [], None, None
    for name in names:
        if name == "random":
            from longview.store import load_catalogue

            out.append(RandomPolicy(sorted(load_catalogue(settings)["item_id"].astype(str))))
        elif name in ("popularity", "recent_popularity"):
            if known is None:
                known = split_from_store(settings, "loo", real_time=True, profiles=False)[0].known
            out.append(fitted_policy(name, known, settings))
        elif name in ("sequence", "engagement"):
            if registered is None:
                if version is None:
                    found = alias_version(mlflow_client(settings), CHAMPION)
                    if found is None:
                        raise ValueError("no @champion to simulate: train and promote a model, or pass --version")
                    version = str(found.version)
                registered = registered_version(version)
                if registered.model_name != "sequence":
                    raise ValueError(f"version {version} is a {registered.model_name} model, not the sequence model")
            served = registered if name == "sequence" else registered.under_policy(
                settings.engagement.weights(settings.seed))
            out.append(PackagedPolicy(name, served))
        else:
            out.append(PackagedPolicy(name, registered_version(name[1:])))
    return out


def fitted_policy(name: str, known, settings: Settings):
    """Model ``name`` fitted on ``known`` (Interactions) here and packaged as a registered one is."""
    from training.models.packaged import PackagedModel
    from training.packaging import model_config
    from training.registry import model_class
    from training.simulation.policies import PackagedPolicy

    model = model_class(name)()
    model.fit(known, settings, progress=False)
    return PackagedPolicy(name, PackagedModel().load(model_config(model, known.item_ids, settings), model.tensors()))


def simulate(settings: Settings, served: list, days: int = 30, seeds: int = 3, users: int = 300,
             part: str = "reported", progress: bool = True) -> SimulationResult:
    """Each policy of ``served`` (Policy objects: ``policies`` makes them from names) served to the
    same ``users`` simulated users for ``days`` days, once per seed."""
    from longview.store import dataset_clock, load_catalogue, load_events
    from training.simulation import build
    from training.simulation import calibration as cal
    from training.simulation.world import simulate as run_world

    calibration = build.load(frozen_path(settings))
    events, items = load_events(settings), load_catalogue(settings)
    catalogue = build.catalogue_of(events, items)
    chosen = build.users_of(events, part, users)
    first = REPORTED_SEED if part == "reported" else TUNING_SEED
    result = SimulationResult(calibration.model.digest(), days, len(chosen), part, list(range(first, first + seeds)))
    start = dataset_clock(events).timestamp() + 86_400
    # Gaps are compared where both sides see the whole window: a simulated user's first return after
    # day 0, and real returns within ``days`` of a visit with that many days of data after it.
    real_visits = cal.real_visits(events[events["user_id"].isin(set(chosen))], items)
    real_gaps = real_visits.gap[(real_visits.follow_up >= days) & (real_visits.gap <= days)]
    real_depths = cal.GapTargets.of(real_visits, days).depths
    for policy in served:
        gaps, depths = [], []
        for seed in result.seeds:
            population = build.population_of(events, catalogue, calibration.model, chosen, seed)
            run = run_world(policy, population, catalogue, calibration.model, days, start, seed)
            result.measures.setdefault(policy.name, []).append(run.measures(len(catalogue.item_ids)))
            result.curves.setdefault(policy.name, []).append(run.curve().tolist())
            result.requests += run.requests
            gaps += [v[1] - v[0] for v in run.visit_days if len(v) > 1]
            depths += [d for ds in run.depths for d in ds]
            if progress:
                m = result.measures[policy.name][-1]
                print(f"  {policy.name} seed {seed}: retention_{days} {m[f'retention_{days}']:.3f}, "
                      f"{run.requests} slates", flush=True)
        result.fit[policy.name] = {"gap_ks": round(cal.ks(np.array(gaps, float), real_gaps), 4),
                                   "depth_ks": round(cal.ks(np.array(depths, float), real_depths), 4)}
    return result


def table(result: SimulationResult, against: str = "sequence") -> Iterator[str]:
    """One line per policy: each measure's mean over seeds with its 95% interval, and retention's
    paired difference from ``against`` where it ran."""
    measured = next(iter(result.measures.values()))[0]
    names = [n for n in measured if n.startswith("retention_")] + [
        n for n in ("return_days", "active_days", "session_depth", "engagement", "coverage", "ndcg_at_10")]
    yield (f"user model {result.digest}; {result.users} {result.part} users, {result.days} days, seeds "
           f"{result.seeds[0]}..{result.seeds[-1]}; mean [95% interval over seeds]")
    for policy in result.measures:
        cells = [f"{n} {m:.3f} [{lo:.3f}, {hi:.3f}]" for n in names for m, lo, hi in [result.interval(policy, n)]]
        yield f"{policy}: " + ", ".join(cells)
    for policy, fit in result.fit.items():
        yield (f"{policy}: simulated against the same users' real visits, KS of first returns within "
               f"{result.days} days {fit['gap_ks']:.3f}, of returning visits' depths {fit['depth_ks']:.3f}")
    last = f"retention_{result.days}"
    if against in result.measures:
        for policy in result.measures:
            if policy != against:
                d, lo, hi = result.difference(policy, against, last)
                base = result.interval(against, last)[0]
                relative = f" ({d / base:+.1%} relative)" if base else ""
                yield f"{policy} - {against}, {last}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]{relative}"


def summary_json(result: SimulationResult) -> str:
    """The result's means as strict JSON (a measure nothing was seen for, such as the return time
    of a run where nobody came back, is null)."""
    def mean(policy: str, name: str) -> float | None:
        value = result.interval(policy, name)[0]
        return round(value, 6) if np.isfinite(value) else None
    return json.dumps({"user_model": result.digest, "days": result.days, "users": result.users,
                       "seeds": result.seeds, "policies": {policy: {name: mean(policy, name) for name in runs[0]}
                                                           for policy, runs in result.measures.items()}},
                      allow_nan=False)


def log_simulation(settings: Settings, result: SimulationResult) -> str:
    """A run in the ``longview-simulation`` experiment: the measures, the user model's digest, the
    retention curves (plot) and the result (JSON). Returns its id."""
    import mlflow

    from training.plots import pyplot
    from training.tracking import experiment_id, mlflow_client

    client = mlflow_client(settings)
    with mlflow.start_run(experiment_id=experiment_id(client, settings, EXPERIMENT),
                          run_name=f"simulate {result.days} days") as run:
        mlflow.log_params({"user_model": result.digest, "days": result.days, "users": result.users,
                           "part": result.part, "seeds": len(result.seeds)})
        mlflow.log_metrics({f"{policy}.{name}": result.interval(policy, name)[0]
                            for policy, runs in result.measures.items() for name in runs[0]
                            if np.isfinite(result.interval(policy, name)[0])})
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        days = np.arange(1, result.days + 1)
        for policy, curves in result.curves.items():
            curves = np.asarray(curves)
            ax.plot(days, curves.mean(axis=0), label=policy)
            if len(curves) > 1:
                ax.fill_between(days, curves.min(axis=0), curves.max(axis=0), alpha=0.15)
        ax.set(xlabel="day", ylabel="share active in the last 7 days",
               title=f"simulated retention ({result.users} users, user model {result.digest})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "retention.png"
            fig.savefig(path)
            plt.close(fig)
            mlflow.log_artifact(str(path), "plots")
            (Path(tmp) / "simulation.json").write_text(json.dumps(result.__dict__))
            mlflow.log_artifact(str(Path(tmp) / "simulation.json"))
        return run.info.run_id
