"""The promotion gate: @challenger becomes @champion only if it passes every rule of the `gate`
settings section on the same holdout, both models scored as they are served (the registered
models, loaded from the registry). Each rule has a name and a verdict; every decision, and every
rollback, is appended to the audit log (gate/audit.py) before the alias moves.

Rules, in order (a rule that cannot be judged ends the list):
* ``artifact_loads``: the challenger's registered artifact loads (a missing or corrupted one is
  refused with the reason, and @champion is untouched);
* ``scores_finite``: it scores every holdout user without NaN;
* ``behavioural_tests``: its lists pass the checks of gate/behaviour.py (no seen items, full
  lists of catalogue items, cold and junk requests answered);
* ``scoring_latency``: one user's request takes at most ``latency_budget_ms`` at the 95th percentile;
* ``not_worse_than_best_baseline``: its NDCG@10 is not below the best baseline's beyond the paired
  noise (the upper end of the 95% paired bootstrap interval over holdout users is not below
  ``-baseline_tolerance``, 0 by default).
  The baselines are those `longview train` measured on this holdout; a baseline trained as the
  model packages and is promoted like any other, so users get whichever is best;
* ``not_worse_than_champion``: its NDCG@10 is at least the champion's minus a tolerance:
  ``LONGVIEW_GATE__ACCURACY_TOLERANCE``, or by default the noise measured on this holdout (the
  half-width of the 95% paired bootstrap interval of the difference), reported in the verdict.
  A tie passes by this rule, and the rules before it decide;
* ``value_head_not_worse``: its return AUC on the holdout's visits is not below the champion's by
  more than ``LONGVIEW_GATE__VALUE_AUC_TOLERANCE`` (default: the noise measured likewise); a
  challenger without a value head does not replace a champion with one;
* ``simulated_retention_not_worse``: served as each is served, to the same simulated users with the
  same fixed seeds, the challenger's day-14 retention is not below the champion's beyond the seed
  noise of a tie (gate/retention.py; ``LONGVIEW_GATE__RETENTION_TOLERANCE`` sets a tolerance, and
  ``LONGVIEW_GATE__SIMULATED_RETENTION=false`` turns the rule off). The accuracy rules judge each
  model's own ranking; this one judges the lists users get (the engagement policy with the
  version's weights, where it serves under it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from gate.holdout import GateHoldout, gate_holdout
from gate.verdicts import Verdict
from gate.verdicts import one_line as _one_line
from longview.settings import REGISTERED_MODEL, Settings
from training.evaluation import K, NaNScores, Reindexed, evaluate
from training.tracking import CHALLENGER, CHAMPION, alias_version, load_version, mlflow_client

METRIC = f"ndcg_at_{K}"


def score_packaged(packaged, holdout: GateHoldout):
    """The registered model's evaluation on the holdout's users (per user), with its own exclusion rule."""
    scorer = Reindexed(packaged, holdout.item_ids, holdout.content)
    return evaluate(scorer, holdout.test, holdout.n_items, K, packaged.exclude)


@dataclass
class PromotionResult:
    promoted: bool
    champion: str | None  # the version @champion points to after the decision
    challenger: str
    challenger_score: float | None
    champion_score: float | None
    reason: str
    rules: list[Verdict] = field(default_factory=list)
    action: str = "promote"  # or "rollback"
    # The challenger's click rate estimated from the champion's served log (gate/served_estimate.py):
    # a report, not a rule. None: no champion to have served anything.
    off_policy: dict | None = None


REQUEST_HISTORY = 200  # the most recent items a request sends (the service's default history length)


def _histories(holdout: GateHoldout, users: int) -> list[list[str]]:
    """Item-id histories of the first ``users`` holdout users (as a request would send them)."""
    return [[holdout.item_ids[i - 1] for i in h[-REQUEST_HISTORY:]] for h in holdout.test.queries.histories[:users]]


def judge(settings: Settings, holdout: GateHoldout, challenger: str, champion: str | None
          ) -> tuple[list[Verdict], dict]:
    """Each rule's verdict on ``challenger`` against ``champion`` (None: no champion yet), in
    order, stopping at the first that cannot be judged further; and the metrics measured."""
    from gate.behaviour import behaviour, latency_ms
    from gate.retention import retention_verdict
    from gate.served_estimate import served_report
    from training.evaluation import paired_difference
    from training.served_policy import version_tags

    gate = settings.gate
    verdicts, metrics = [], {}
    try:
        packaged = load_version(settings, challenger)
    except Exception as exc:  # a missing file, a truncated one, bad JSON, wrong shapes: a clear refusal
        return [Verdict("artifact_loads", False, f"version {challenger}: {_one_line(exc)}")], metrics
    verdicts.append(Verdict("artifact_loads", True, "loaded from the registry"))
    try:
        ours = score_packaged(packaged, holdout)
    except NaNScores as exc:
        return [*verdicts, Verdict("scores_finite", False, str(exc))], metrics
    metrics["challenger"] = {METRIC: float(ours.ndcg.mean())}
    verdicts.append(Verdict("scores_finite", True, f"{len(holdout.test.users)} holdout users scored, no NaN"))

    checked = behaviour(packaged, _histories(holdout, 20))
    verdicts.append(Verdict("behavioural_tests", checked.passed,
                            f"{checked.checked} requests checked, all passed" if checked.passed
                            else "; ".join(checked.failures)[:1000]))
    timing = latency_ms(packaged, _histories(holdout, gate.latency_requests))
    metrics["challenger"]["latency"] = timing
    fast = timing["p95_ms"] <= gate.latency_budget_ms
    verdicts.append(Verdict("scoring_latency", fast, f"one user's request: p50 {timing['p50_ms']:.1f} ms, p95 "
                            f"{timing['p95_ms']:.1f} ms {'<=' if fast else '>'} budget {gate.latency_budget_ms:g} ms"))

    seed = settings.seed
    if holdout.baselines:
        best = max(holdout.baselines, key=lambda name: float(holdout.baselines[name].mean()))
        diff, lo, hi = paired_difference(ours.ndcg, holdout.baselines[best], gate.bootstrap_samples, seed)
        metrics["best_baseline"] = {"name": best, METRIC: float(holdout.baselines[best].mean()),
                                    "difference": [diff, lo, hi]}
        worse = hi < -gate.baseline_tolerance
        verdicts.append(Verdict("not_worse_than_best_baseline", not worse,
                                f"{METRIC} {ours.ndcg.mean():.4f} vs {best} {holdout.baselines[best].mean():.4f}: "
                                f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}] (95% paired bootstrap over {len(ours.ndcg)} "
                                f"users; tolerance {gate.baseline_tolerance:g}): "
                                f"{'worse beyond noise' if worse else 'not worse'}"))
    else:
        verdicts.append(Verdict("not_worse_than_best_baseline", True, "no baseline was measured on this holdout"))

    if champion is None:
        verdicts += [Verdict(rule, True, "no champion yet") for rule in
                     ("not_worse_than_champion", "value_head_not_worse", "simulated_retention_not_worse")]
        return verdicts, metrics
    try:
        champion_model = load_version(settings, champion)
        theirs = score_packaged(champion_model, holdout)
    except Exception as exc:  # a champion that no longer loads cannot be served either: it is replaced
        verdicts.append(Verdict("not_worse_than_champion", True,
                                f"the champion, version {champion}, does not load or score: {_one_line(exc)}"))
        return verdicts, metrics
    metrics["champion"] = {METRIC: float(theirs.ndcg.mean())}
    diff, lo, hi = paired_difference(ours.ndcg, theirs.ndcg, gate.bootstrap_samples, seed)
    measured = (hi - lo) / 2
    tolerance = measured if gate.accuracy_tolerance is None else gate.accuracy_tolerance
    metrics["champion"].update(difference=[diff, lo, hi], tolerance=tolerance, measured_noise=measured)
    passed = diff >= -tolerance
    source = ("measured: half-width of the 95% paired bootstrap interval" if gate.accuracy_tolerance is None
              else f"set; the measured noise is {measured:.4f}")
    verdicts.append(Verdict("not_worse_than_champion", passed,
                            f"{METRIC} on the same holdout: challenger {ours.ndcg.mean():.4f}, champion "
                            f"{theirs.ndcg.mean():.4f}, difference {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                            f"{'>=' if passed else '<'} -tolerance {tolerance:.4f} ({source})"))
    verdicts.append(value_verdict(settings, holdout, packaged, champion_model, metrics))
    challenger_tags = version_tags(settings, challenger)
    verdicts.append(retention_verdict(settings, packaged, challenger_tags, champion_model,
                                      version_tags(settings, champion), metrics))
    try:  # a report, never a reason to refuse
        metrics["off_policy"] = served_report(settings, packaged, challenger_tags, champion)
    except Exception as exc:
        metrics["off_policy"] = {"champion": champion, "error": _one_line(exc)}
    return verdicts, metrics


def value_verdict(settings: Settings, holdout: GateHoldout, challenger, champion, metrics: dict) -> Verdict:
    """``value_head_not_worse``: the challenger's return AUC on the holdout's visits is at least the
    champion's minus a tolerance (``LONGVIEW_GATE__VALUE_AUC_TOLERANCE``, or the measured noise as
    for accuracy). A challenger without a head does not replace a champion with one."""
    from training.long_term_value import auc_metric, paired_bootstrap

    rule = "value_head_not_worse"
    if holdout.visits is None or not len(holdout.visits):
        return Verdict(rule, True, "no visits to judge on (no real event times, or the value head is off)")
    ours = Reindexed(challenger, holdout.item_ids, holdout.content).forecast_returns(holdout.visits.queries)
    theirs = Reindexed(champion, holdout.item_ids, holdout.content).forecast_returns(holdout.visits.queries)
    if theirs is None:
        return Verdict(rule, True, "the champion has no value head")
    if ours is None:
        return Verdict(rule, False, f"the challenger ({challenger.model_name}) has no value head and the champion has one")
    gate, visits = settings.gate, holdout.visits
    known, label = visits.within(ours.return_days)
    mine, other = auc_metric(known, label, ours.within), auc_metric(known, label, theirs.within)
    everyone = np.arange(len(visits))
    a, b = mine(everyone), other(everyone)
    lo, hi = paired_bootstrap(visits.groups(), mine, other, gate.bootstrap_samples, settings.seed)["difference"]
    measured = (hi - lo) / 2
    tolerance = measured if gate.value_auc_tolerance is None else gate.value_auc_tolerance
    passed = bool(a - b >= -tolerance) or not (np.isfinite(a) and np.isfinite(b))
    metrics["value"] = {"challenger_auc": a, "champion_auc": b, "difference": [a - b, lo, hi], "tolerance": tolerance}
    return Verdict(rule, passed, f"return AUC on {int(known.sum()):,} holdout visits: challenger {a:.4f}, champion {b:.4f}, "
                                 f"difference {a - b:+.4f} [{lo:+.4f}, {hi:+.4f}] {'>=' if passed else '<'} "
                                 f"-tolerance {tolerance:.4f}")


def promote(settings: Settings, trigger: str = "cli") -> PromotionResult:
    from gate import audit

    client = mlflow_client(settings)
    challenger = alias_version(client, CHALLENGER)
    if challenger is None:
        raise ValueError(f"no @{CHALLENGER} version of {REGISTERED_MODEL}: run `longview train` first")
    champion = alias_version(client, CHAMPION)
    before = None if champion is None else str(champion.version)
    if before == str(challenger.version):
        verdicts, metrics = [], {}
        promoted, reason = False, "the challenger already is the champion"
    else:
        holdout, reused = gate_holdout(settings)
        verdicts, metrics = judge(settings, holdout, str(challenger.version), before)
        metrics["holdout"] = {"key": holdout.key, "users": len(holdout.test.users), "reused": reused}
        failed = [v for v in verdicts if not v.passed]
        promoted = not failed
        reason = ("; ".join(f"{v.rule}: {v.detail}" for v in failed) if failed
                  else "first model" if before is None else "every rule passed")
    after = str(challenger.version) if promoted else before
    result = PromotionResult(promoted, after, str(challenger.version),
                             metrics.get("challenger", {}).get(METRIC), metrics.get("champion", {}).get(METRIC),
                             reason, verdicts, off_policy=metrics.get("off_policy"))
    entry = audit.record(settings, client, str(challenger.version), {
        "action": "promote", "trigger": trigger, "outcome": "promoted" if promoted else "refused",
        "challenger": str(challenger.version), "champion_before": before, "champion_after": after,
        "metrics": metrics, "rules": [asdict(v) for v in verdicts], "reason": reason})
    client.set_model_version_tag(REGISTERED_MODEL, challenger.version, "gate",
                                 json.dumps({"promoted": promoted, "reason": reason[:1000], "at": entry["at"]}))
    if promoted:
        if before is not None:
            client.set_model_version_tag(REGISTERED_MODEL, challenger.version, "previous_champion", before)
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, challenger.version)
    _write(settings, result, client)
    return result


def rollback(settings: Settings, to_version: str | None = None, trigger: str = "cli") -> PromotionResult:
    """Point @champion back at the champion before it (its ``previous_champion`` tag) or at
    ``to_version``; the target must exist and load. Audited like a promotion."""
    from mlflow.exceptions import MlflowException

    from gate import audit

    client = mlflow_client(settings)
    champion = alias_version(client, CHAMPION)
    if champion is None:
        raise ValueError(f"no @{CHAMPION} version of {REGISTERED_MODEL} to roll back")
    current = str(champion.version)
    target = to_version if to_version is not None else champion.tags.get("previous_champion")
    if target is None:
        raise ValueError(f"version {current} was the first champion: there is none before it "
                         f"(name one with --to-version)")
    target = str(target).strip()
    try:
        client.get_model_version(REGISTERED_MODEL, target)
    except MlflowException:
        raise ValueError(f"{REGISTERED_MODEL} has no version {target!r}") from None
    if target == current:
        raise ValueError(f"version {target} already is the champion")
    try:
        load_version(settings, target)
        verdict = Verdict("artifact_loads", True, "loaded from the registry")
    except Exception as exc:
        verdict = Verdict("artifact_loads", False, f"version {target}: {_one_line(exc)}")
    moved = verdict.passed
    reason = f"rolled back from version {current}" if moved else f"{verdict.rule}: {verdict.detail}"
    audit.record(settings, client, target, {
        "action": "rollback", "trigger": trigger, "outcome": "rolled back" if moved else "refused",
        "challenger": target, "champion_before": current, "champion_after": target if moved else current,
        "metrics": {}, "rules": [asdict(verdict)], "reason": reason})
    if moved:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, target)
    result = PromotionResult(moved, target if moved else current, target, None, None, reason, [verdict], "rollback")
    _write(settings, result, client)
    return result


def _write(settings: Settings, result: PromotionResult, client) -> None:
    """The decision (train/promotion.json), and the champion it leaves, copied out of the registry
    for DVC (gate/champion_copy.py)."""
    from gate.champion_copy import export_champion

    settings.train_dir.mkdir(parents=True, exist_ok=True)
    (settings.train_dir / "promotion.json").write_text(json.dumps(asdict(result), indent=2))
    export_champion(settings, client)
