"""`longview bench long-term`: does the engagement policy bring users back, and at what cost in
accuracy? On ml-100k: the sequence model trained on the leave-one-out split; the engagement
policy's weights chosen for it as `longview tune engagement` does (validation users, the
simulator's tuning users and seeds; ``--no-tune``: the settings' weights); NDCG@10 of the model and
of the policy over it on the real test users; both, and the baselines, served to simulated
users calibrated on real return gaps (the frozen user model); the same policies in RecSim's
interest-evolution environment, learned ones trained on its own logs; and off-policy estimates on
the Open Bandit sample. The last stdout line is one JSON object:
{"ours": {POLICY: {"retention_30", "ndcg_at_10"}}, "external": {POLICY: {"long_term"}}, "ope": {...}}."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from longview.settings import Settings

LOG_EPISODES, LOG_SEED = 300, 100  # RecSim's logging run: a uniform-random policy, seeds no evaluation uses
# The off-policy check in our simulator: the champion explores this share of slots while it logs
# (the served default is 0.02: too little overlap for an estimate), over this many seeds.
OPE_EXPLORATION, OPE_SEEDS = 0.2, 5


def long_term(settings: Settings, root: Path | None = None, source: Path | None = None, users: int | None = None,
              seeds: int | None = None, days: int | None = None, episodes: int = 50, tune: bool = True,
              progress: bool = True) -> Iterator[str]:
    from control.bench.accuracy import prepare
    from control.bench.helpers import bench_home, peak_rss_mib
    from control.bench.off_policy import off_policy
    from control.simulation import fitted_policy, log_simulation, simulate, table
    from longview.store import load_catalogue
    from training.evaluation import K, evaluate, fit_on_split, item_cooccurrence
    from training.models.engagement import EngagementPolicy
    from training.models.packaged import PackagedModel
    from training.models.sequence import SequenceModel
    from training.packaging import model_config
    from training.sequences import split_from_store
    from training.simulation.policies import PackagedPolicy, RandomPolicy

    start = time.perf_counter()
    home = bench_home(settings, "long-term", root)
    options = home.simulation
    days, seeds, users = days or options.days, seeds or options.seeds, users or options.users
    yield from prepare(home, "ml-100k", source, True, progress)
    split, content = split_from_store(home, "loo", True)
    model = SequenceModel()
    fit = fit_on_split(model, split, home, progress)
    yield f"sequence model trained on ml-100k's leave-one-out split ({fit.epochs} epochs; {'; '.join(fit.notes)})"
    packaged = PackagedModel().load(model_config(model, split.train.item_ids, home), model.tensors())
    weights = home.engagement.weights(home.seed)
    if tune:  # as `longview tune engagement` would: validation users, tuning users and seeds
        from control.tuning import table as tuning_table
        from control.tuning import tune_packaged

        tuning = tune_packaged(home, packaged, split, content.vectors, "the benchmark's model", days=days,
                               seeds=seeds, users=users, progress=progress)
        yield from tuning_table(tuning)
        weights = {**weights, **(tuning.chosen.weights if tuning.chosen is not None else {})}
    yield "engagement weights: " + ", ".join(f"{k} {weights[k]:g}" for k in ("value_weight", "diversity_weight",
                                                                             "novelty_weight"))
    popularity, cooccurrence = split.known.counts(), item_cooccurrence(split.known)
    baselines = {name: fitted_policy(name, split.known, home) for name in ("popularity", "recent_popularity")}
    scorers = {"sequence": model, "engagement": EngagementPolicy(model, weights, home.exclude_seen),
               **{name: policy.model.model for name, policy in baselines.items()}}
    accuracy = {name: evaluate(scorer, split.test, split.train.n_items, K, home.exclude_seen, popularity,
                               content.genres, cooccurrence).ndcg for name, scorer in scorers.items()}
    change, low, high = relative_change(accuracy["engagement"], accuracy["sequence"], home.seed)
    yield (f"NDCG@10 on the {len(split.test.users)} test users: " + ", ".join(f"{n} {v.mean():.4f}" for n, v in
                                                                           accuracy.items())
           + f"; engagement vs sequence {change:+.1%} [{low:+.1%}, {high:+.1%}] relative (goal: no worse than -3%)")

    served = [RandomPolicy(sorted(load_catalogue(home)["item_id"].astype(str))), *baselines.values(),
              PackagedPolicy("sequence", packaged), PackagedPolicy("engagement", packaged.under_policy(weights))]
    result = simulate(home, served, days, seeds, users, "reported", progress)
    yield "our simulator (ml-100k users):"
    yield from table(result)
    yield f"retention plot logged to MLflow: run {log_simulation(home, result)}"

    external = external_runs(home, seeds, episodes, weights)
    yield (f"RecSim interest evolution ({episodes} users per seed, seeds {result.seeds[0]}..; total watch time "
           f"per user, mean [95% interval over seeds]; no value term there: no clock, no returns):")
    from control.simulation import mean_interval

    for name, values in external.items():
        mean, lo, hi = mean_interval(values)
        yield f"  {name}: {mean:.2f} [{lo:.2f}, {hi:.2f}]"
    d, lo, hi = mean_interval([a - b for a, b in zip(external["engagement"], external["sequence"], strict=True)])
    base = float(np.mean(external["sequence"]))
    yield f"  engagement - sequence: {d:+.2f} [{lo:+.2f}, {hi:+.2f}] ({d / base:+.1%} relative)"

    checks = simulated_ope(home, packaged, days, users, weights)
    yield (f"off-policy check in our simulator: the engagement policy exploring {OPE_EXPLORATION:.0%} of slots logs "
           f"{days} days of the reported users; the accuracy-only model's top-slot click rate estimated from that "
           f"log, against its true rate on the same requests ({len(checks)} seeds):")
    summary = {}
    for name in ("ips", "snips", "dr"):
        covered = float(np.mean([c.covered(name) for c in checks]))
        half = float(np.median([c.half_width(name) for c in checks]))
        summary[name] = {"coverage": round(covered, 3), "half_width": round(half, 3)}
        yield (f"  {name.upper()}: interval holds the truth in {covered:.0%} of seeds (goal >= 80%), median "
               f"half-width {half:.0%} of the true value (goal <= 25%)")
    for seed, c in enumerate(checks):
        yield (f"  seed {seed}: truth {c.truth:.4f}, DR {c.dr.value:.4f} [{c.dr.low:.4f}, {c.dr.high:.4f}]; "
               f"{c.slates} slates logged, {c.matches} with the challenger's top item on top")

    lines = list(off_policy(home, None))
    yield from lines[:-1]
    ope = json.loads(lines[-1])
    yield f"{time.perf_counter() - start:.0f} s in all, peak memory {peak_rss_mib():.0f} MiB"
    last = f"retention_{days}"
    yield json.dumps({
        "user_model": result.digest, "days": days, "users": result.users, "seeds": result.seeds,
        "engagement_weights": {k: weights[k] for k in ("value_weight", "diversity_weight", "novelty_weight")},
        "ours": {name: {"retention_30" if days == 30 else last: round(result.interval(name, last)[0], 6),
                        "ndcg_at_10": round(float(accuracy[name].mean()), 6) if name in accuracy else None}
                 for name in result.measures},
        "external": {name: {"long_term": round(float(np.mean(values)), 4)} for name, values in external.items()},
        "ope": {"obd_estimate": ope["obd_estimate"], "obd_logged": ope["obd_logged"], "sim_estimator": "dr",
                "sim_coverage": summary["dr"]["coverage"], "sim_half_width": summary["dr"]["half_width"],
                "sim_by_estimator": summary},
    })


def relative_change(ours: np.ndarray, theirs: np.ndarray, seed: int, samples: int = 1000) -> tuple[float, float, float]:
    """mean(ours) / mean(theirs) - 1 over the same users, with a paired bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ours), (samples, len(ours)))
    ratios = ours[picks].mean(axis=1) / np.maximum(theirs[picks].mean(axis=1), 1e-12) - 1
    return float(ours.mean() / theirs.mean() - 1), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def simulated_ope(settings: Settings, packaged, days: int, users: int, weights: dict) -> list:
    """One off-policy check (training/simulation/ope_check.py) per seed: the engagement policy over
    ``packaged`` logs while exploring OPE_EXPLORATION of slots; the challenger is ``packaged``'s own
    ranking, the accuracy-only model."""
    from control.simulation import REPORTED_SEED
    from training.simulation import ope_check
    from training.simulation.build import World
    from training.simulation.policies import PackagedPolicy

    world = World.of(settings, "reported", users)
    champion = PackagedPolicy("engagement", packaged.under_policy({**weights, "exploration": OPE_EXPLORATION}))
    challenger = PackagedPolicy("sequence", packaged)
    return [ope_check.check(champion, challenger, world.population(seed), world.catalogue,
                            world.calibration.model, days, world.start, seed)
            for seed in range(REPORTED_SEED, REPORTED_SEED + OPE_SEEDS)]


def external_runs(settings: Settings, seeds: int, episodes: int, weights: dict) -> dict[str, list[float]]:
    """Per policy, the mean watch time per RecSim user for each seed (reported seeds 1000..)."""
    from control.simulation import REPORTED_SEED
    from training.simulation import recsim_env as rs

    logs = rs.logged_histories(LOG_EPISODES, LOG_SEED)
    # RecSim's documents have no content, time or profile: the model learns topic sequences alone
    plain = settings.model_copy(update={"sequence": settings.sequence.model_copy(
        update={"content": False, "context": False, "profile": False, "time_signals": False})})
    relevance = rs.ScoredCandidates("sequence", rs.sequence_scores(logs, plain))
    policies = [rs.RandomCandidates(), rs.ScoredCandidates("popularity", rs.popularity_scores(logs)), relevance,
                rs.EngagementCandidates(relevance, rs.self_information(logs), weights)]
    out: dict[str, list[float]] = {}
    for policy in policies:
        for seed in range(REPORTED_SEED, REPORTED_SEED + seeds):
            env, rng = rs.make_env(seed), np.random.default_rng(seed)
            out.setdefault(policy.name, []).append(
                float(np.mean([rs.run_episode(env, policy, rng)[0].watch_time for _ in range(episodes)])))
    return out
