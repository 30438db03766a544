"""The promotion gate: @challenger becomes @champion only if it passes every rule of the `gate`
settings section on the same holdout, both models scored as they are served (the registered
models, loaded from the registry). Each rule has a name and a verdict; every decision, and every
rollback, is appended to the audit log (training/audit.py) before the alias moves.

Rules:
* ``artifact_loads``: the challenger's registered artifact loads (a missing or corrupted one is
  refused with the reason, and @champion is untouched);
* ``scores_finite``: it scores every holdout user without NaN;
* ``not_worse_than_champion``: its NDCG@10 is at least the champion's minus
  ``LONGVIEW_GATE__ACCURACY_TOLERANCE``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from longview.settings import REGISTERED_MODEL, Settings
from training.evaluation import K, NaNScores, Reindexed, evaluate
from training.gate_holdout import GateHoldout, gate_holdout
from training.tracking import CHALLENGER, CHAMPION, alias_version, load_version, mlflow_client

METRIC = f"ndcg_at_{K}"


def holdout_score(settings: Settings, holdout: GateHoldout, version: str) -> float:
    """The registered version's METRIC on the holdout's users, with its own exclusion rule."""
    return score_packaged(load_version(settings, version), holdout)


def score_packaged(packaged, holdout: GateHoldout) -> float:
    scorer = Reindexed(packaged, holdout.item_ids, holdout.content)
    return float(evaluate(scorer, holdout.test, holdout.n_items, K, packaged.exclude).summary()[METRIC])


@dataclass
class Verdict:
    rule: str
    passed: bool
    detail: str


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def judge(settings: Settings, holdout: GateHoldout, challenger: str, champion: str | None
          ) -> tuple[list[Verdict], dict]:
    """Each rule's verdict on ``challenger`` against ``champion`` (None: no champion yet), in
    order, stopping at the first that cannot be judged further; and the metrics measured."""
    verdicts, metrics = [], {}
    try:
        packaged = load_version(settings, challenger)
    except Exception as exc:  # a missing file, a truncated one, bad JSON, wrong shapes: a clear refusal
        return [Verdict("artifact_loads", False, f"version {challenger}: {_one_line(exc)}")], metrics
    verdicts.append(Verdict("artifact_loads", True, "loaded from the registry"))
    try:
        challenger_score = score_packaged(packaged, holdout)
    except NaNScores as exc:
        return [*verdicts, Verdict("scores_finite", False, str(exc))], metrics
    metrics["challenger"] = {METRIC: challenger_score}
    verdicts.append(Verdict("scores_finite", True, f"{len(holdout.test.users)} holdout users scored, no NaN"))
    if champion is None:
        verdicts.append(Verdict("not_worse_than_champion", True, "no champion yet"))
        return verdicts, metrics
    try:
        champion_score = holdout_score(settings, holdout, champion)
    except Exception as exc:  # a champion that no longer loads cannot be served either: it is replaced
        verdicts.append(Verdict("not_worse_than_champion", True,
                                f"the champion, version {champion}, does not load or score: {_one_line(exc)}"))
        return verdicts, metrics
    metrics["champion"] = {METRIC: champion_score}
    tolerance = settings.gate.accuracy_tolerance
    passed = challenger_score >= champion_score - tolerance
    verdicts.append(Verdict("not_worse_than_champion", passed,
                            f"{METRIC} on the same holdout: challenger {challenger_score:.4f} "
                            f"{'>=' if passed else '<'} champion {champion_score:.4f} - tolerance {tolerance:g}"))
    return verdicts, metrics


def promote(settings: Settings, trigger: str = "cli") -> PromotionResult:
    from training import audit

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
                             reason, verdicts)
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
    _write(settings, result)
    return result


def rollback(settings: Settings, to_version: str | None = None, trigger: str = "cli") -> PromotionResult:
    """Point @champion back at the champion before it (its ``previous_champion`` tag) or at
    ``to_version``; the target must exist and load. Audited like a promotion."""
    from mlflow.exceptions import MlflowException

    from training import audit

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
    _write(settings, result)
    return result


def _write(settings: Settings, result: PromotionResult) -> None:
    settings.train_dir.mkdir(parents=True, exist_ok=True)
    (settings.train_dir / "promotion.json").write_text(json.dumps(asdict(result), indent=2))
