"""The promotion gate: @challenger becomes @champion only if it is at least as good on the same
holdout, both scored as they are served (the registered models, loaded from the registry)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from longview.settings import REGISTERED_MODEL, Settings
from training.evaluation import K, Reindexed, evaluate
from training.sequences import Split, split_from_store
from training.tracking import CHALLENGER, CHAMPION, alias_version, load_version, mlflow_client
from training.train import protocol_for

METRIC = f"ndcg_at_{K}"


def holdout_score(settings: Settings, split: Split, version: str) -> float:
    """The registered version's METRIC on the split's test users, with its own exclusion rule."""
    packaged = load_version(settings, version)
    scorer = Reindexed(packaged, split.train.item_ids, split.train.content)
    return float(evaluate(scorer, split.test, split.train.n_items, K, packaged.exclude).summary()[METRIC])


@dataclass
class PromotionResult:
    promoted: bool
    champion: str  # the version @champion points to after the gate
    challenger: str
    challenger_score: float
    champion_score: float | None
    reason: str


def promote(settings: Settings) -> PromotionResult:
    client = mlflow_client(settings)
    challenger = alias_version(client, CHALLENGER)
    if challenger is None:
        raise ValueError(f"no @{CHALLENGER} version of {REGISTERED_MODEL}: run `longview train` first")
    champion = alias_version(client, CHAMPION)
    protocol, real_time = protocol_for(settings)
    split, _ = split_from_store(settings, protocol, real_time)
    challenger_score = holdout_score(settings, split, challenger.version)

    if champion is None:
        promoted, champion_score, reason = True, None, "no champion yet: the first model is promoted"
    elif champion.version == challenger.version:
        promoted, champion_score, reason = False, challenger_score, "the challenger already is the champion"
    else:
        champion_score = holdout_score(settings, split, champion.version)
        promoted = challenger_score >= champion_score
        verdict = ">=" if promoted else "<"
        reason = f"{METRIC} on the same holdout: challenger {challenger_score:.4f} {verdict} champion {champion_score:.4f}"

    stamp = datetime.now(timezone.utc).isoformat()
    client.set_model_version_tag(REGISTERED_MODEL, challenger.version, "gate",
                                 json.dumps({"promoted": promoted, "reason": reason, "at": stamp}))
    if promoted:
        if champion is not None:
            client.set_model_version_tag(REGISTERED_MODEL, challenger.version, "previous_champion", champion.version)
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, challenger.version)
    result = PromotionResult(
        promoted=promoted,
        champion=str(challenger.version if promoted else champion.version),  # type: ignore[union-attr]
        challenger=str(challenger.version),
        challenger_score=challenger_score,
        champion_score=champion_score,
        reason=reason,
    )
    settings.train_dir.mkdir(parents=True, exist_ok=True)
    (settings.train_dir / "promotion.json").write_text(json.dumps(asdict(result), indent=2))
    return result
