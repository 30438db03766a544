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
    # policy -> per seed, per user: retained at the last day (the paired comparisons' units)
    retained: dict[str, list[list[bool]]] = field(default_factory=dict)
    requests: int = 0

    def interval(self, policy: str, name: str) -> tuple[float, float, float]:
        """Mean over seeds and its 95% t-interval (the mean alone, twice, from one seed)."""
        return mean_interval([m[name] for m in self.measures[policy]])

    def difference(self, policy: str, against: str, name: str) -> tuple[float, float, float]:
        """The paired difference over seeds (same users, same seeds), mean and 95% t-interval."""
        return mean_interval([a[name] - b[name] for a, b in zip(self.measures[policy], self.measures[against],
                                                                   strict=True)])

    def retention_difference(self, policy: str, against: str) -> tuple[float, float, float]:
        """Retention at the last day, ``policy`` minus ``against``: the mean and its 95% interval
        over users, each user's difference averaged over the seeds first (the same users and seeds
        for both: paired where they matter, per user)."""
        from training.simulation.world import Z_95, paired_over_users

        d, se = paired_over_users(np.array(self.retained[policy]).ravel(), np.array(self.retained[against]).ravel(),
                                  len(self.seeds))
        return d, d - Z_95 * se, d + Z_95 * se


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


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
    under the engagement policy with its weights as served (training/served_policy.py); ``v<N>``:
    registered version N as served."""
    from training.sequences import split_from_store
    from training.served_policy import as_served, served_weights, version_tags
    from training.simulation.policies import PackagedPolicy, RandomPolicy
    from training.tracking import CHAMPION, alias_version, mlflow_client

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
                registered = load_registered(settings, version)
                if registered.model_name != "sequence":
                    raise ValueError(f"version {version} is a {registered.model_name} model, not the sequence model")
            served = registered if name == "sequence" else registered.under_policy(
                served_weights(settings, version_tags(settings, version)))
            out.append(PackagedPolicy(name, served))
        else:
            out.append(PackagedPolicy(name, as_served(settings, load_registered(settings, name[1:]),
                                                      version_tags(settings, name[1:]))))
    return out


def load_registered(settings: Settings, number: str):
    """Registered version ``number`` as its PackagedModel; a version that does not exist is a ValueError."""
    from mlflow.exceptions import MlflowException

    from training.tracking import load_version

    try:
        return load_version(settings, number)
    except MlflowException as exc:
        raise ValueError(f"no registered version {number} of the model: {exc.message}") from None


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
             part: str = "reported", progress: bool = True, user_model=None) -> SimulationResult:
    """Each policy of ``served`` (Policy objects: ``policies`` makes them from names) served to the
    same ``users`` simulated users for ``days`` days, once per seed; ``user_model``: another
    UserModel than the frozen one (a sensitivity run)."""
    from dataclasses import replace

    from training.simulation import calibration as cal
    from training.simulation.build import World
    from training.simulation.world import simulate as run_world

    world = World.of(settings, part, users)
    if user_model is not None:
        world = replace(world, calibration=replace(world.calibration, model=user_model))
    calibration, events, items, catalogue = world.calibration, world.events, world.items, world.catalogue
    chosen = world.users
    first = REPORTED_SEED if part == "reported" else TUNING_SEED
    result = SimulationResult(calibration.model.digest(), days, len(chosen), part, list(range(first, first + seeds)))
    # Gaps are compared where both sides see the whole window: a simulated user's first return after
    # day 0, and real returns within ``days`` of a visit with that many days of data after it.
    real_visits = cal.real_visits(events[events["user_id"].isin(set(chosen))], items)
    real_gaps = real_visits.gap[(real_visits.follow_up >= days) & (real_visits.gap <= days)]
    real_depths = cal.GapTargets.of(real_visits, days).depths
    for policy in served:
        gaps, depths = [], []
        for seed in result.seeds:
            run = run_world(policy, world.population(seed), catalogue, calibration.model, days, world.start, seed)
            result.measures.setdefault(policy.name, []).append(run.measures(len(catalogue.item_ids)))
            result.curves.setdefault(policy.name, []).append(run.curve().tolist())
            result.retained.setdefault(policy.name, []).append(run.retained(days).tolist())
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
                d, lo, hi = result.retention_difference(policy, against)
                base = result.interval(against, last)[0]
                relative = f" ({d / base:+.1%} relative)" if base else ""
                yield (f"{policy} - {against}, {last}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]{relative} (95% interval over "
                       f"the {result.users} users, paired, each averaged over the seeds)")


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


# The parameters a sensitivity run scales by one half and by three halves (the return rate through
# its log: log_rate + log(factor)). The two effects are moved to the ends of their 95% intervals
# instead: their point estimates are near zero, where a relative change says nothing.
SCALED = ("returns.log_rate", "returns.rate_spread", "returns.shape", "returns.churn", "depth.centre",
          "depth.spread", "choice.taste_weight", "choice.quality_weight", "choice.position_decay",
          "choice.outside_utility", "choice.boredom_weight", "choice.exposure_decay")
FACTORS = (0.5, 1.5)


def variants(calibration) -> list[tuple[str, object]]:
    """(label, UserModel) for every sensitivity variant of a frozen calibration."""
    from dataclasses import replace

    model, out = calibration.model, []
    for name in SCALED:
        for factor in FACTORS:
            if name == "returns.log_rate":
                varied = replace(model, returns=replace(model.returns, log_rate=model.returns.log_rate + np.log(factor)))
                out.append((f"return rate x{factor:g}", varied))
            elif name == "choice.position_decay":  # a chance: scaled towards 0 or towards 1
                p = model.choice.position_decay
                varied = replace(model, choice=replace(model.choice, position_decay=p * factor if factor < 1
                                                       else 1 - (1 - p) / factor))
                out.append((f"{name} x{factor:g}", varied))
            else:
                out.append((f"{name} x{factor:g}", model.scaled(name, factor)))
    for name in ("satisfaction", "repetition"):
        effect = calibration.report.get("effects", {}).get(name)
        if effect:
            for end in ("low", "high"):
                out.append((f"{name} effect at its 95% {end} end ({effect[end]:+.3f})",
                            replace(model, **{f"{name}_effect": float(effect[end])})))
    return out


def sensitivity(settings: Settings, served: list, days: int, seeds: int, users: int, against: str = "sequence",
                progress: bool = True) -> Iterator[str]:
    """Each policy's retention difference from ``against`` under the frozen user model and under
    every variant; whether each verdict (better, worse, or no difference: the 95% interval over
    users holds 0) and the order of the policies survive. Ends with one JSON line."""
    from training.simulation import build

    calibration = build.load(build.frozen_path(settings))
    last = f"retention_{days}"
    rows, base = [], None
    for label, model in [("frozen", calibration.model), *variants(calibration)]:
        result = simulate(settings, served, days, seeds, users, "reported", progress=False, user_model=model)
        means = {p: result.interval(p, last)[0] for p in result.measures}
        diffs = {p: result.retention_difference(p, against) for p in result.measures if p != against}
        verdicts = {p: "better" if lo > 0 else "worse" if hi < 0 else "no difference" for p, (_, lo, hi) in diffs.items()}
        order = sorted(means, key=lambda p: -means[p])
        base = base or (verdicts, order)
        rows.append({"variant": label, "retention": means, "difference": diffs, "verdicts": verdicts, "order": order,
                     "verdicts_hold": verdicts == base[0], "order_holds": order == base[1]})
        cells = ", ".join(f"{p} {d:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdicts[p]}" for p, (d, lo, hi) in diffs.items())
        yield f"{label}: {last} - {against}: {cells}; order {' > '.join(order)}"
    held = sum(r["verdicts_hold"] for r in rows[1:])
    ordered = sum(r["order_holds"] for r in rows[1:])
    yield (f"the verdicts against {against} hold in {held} of {len(rows) - 1} variants; the whole order of the "
           f"policies in {ordered} of {len(rows) - 1}")
    yield json.dumps({"user_model": calibration.model.digest(), "days": days, "users": users, "seeds": seeds,
                      "verdicts_hold": held, "order_holds": ordered, "variants": len(rows) - 1, "rows": rows})

