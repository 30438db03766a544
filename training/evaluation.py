"""Ranking metrics on a chronological holdout (torchmetrics' retrieval metrics, per user, averaged)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics.functional.retrieval import retrieval_normalized_dcg, retrieval_recall


def ranking_metrics(
    ranked: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]], n_items: int, k: int = 10
) -> dict[str, float]:
    """NDCG@k and Recall@k averaged over users, plus catalogue coverage of the top-k lists."""
    if not truth:
        raise ValueError("no holdout users to evaluate")
    ndcg, recall, shown = [], [], set()
    for user, relevant in truth.items():
        top = list(ranked.get(user, []))[:k]
        shown.update(top)
        # Relevant items outside the top k are appended below it so the ideal DCG counts them.
        candidates = top + sorted(relevant - set(top))
        preds = torch.arange(len(candidates), 0, -1, dtype=torch.float32)
        target = torch.tensor([c in relevant for c in candidates])
        ndcg.append(float(retrieval_normalized_dcg(preds, target, top_k=k)))
        recall.append(float(retrieval_recall(preds, target, top_k=k)))
    return {
        f"ndcg_at_{k}": sum(ndcg) / len(ndcg),
        f"recall_at_{k}": sum(recall) / len(recall),
        f"coverage_at_{k}": len(shown) / max(n_items, 1),
        "holdout_users": float(len(truth)),
    }
