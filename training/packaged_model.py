"""The model as it travels through MLflow: weights, the feature encoder and the popularity fallback
in one pyfunc, so serving needs nothing but the registry URI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from training.encoding import FeatureEncoder
from training.model import SequenceRecommender


class PackagedRecommender(mlflow.pyfunc.PythonModel):
    """Ranks the catalogue for users described by their Feast user-profile features."""

    def __init__(self) -> None:
        self.model: SequenceRecommender | None = None
        self.encoder: FeatureEncoder | None = None
        self.popularity: np.ndarray | None = None

    # -- building and saving ------------------------------------------------------------------
    @classmethod
    def from_parts(cls, model: SequenceRecommender, encoder: FeatureEncoder, popularity: np.ndarray) -> "PackagedRecommender":
        packaged = cls()
        packaged.model, packaged.encoder, packaged.popularity = model.eval(), encoder, popularity
        return packaged

    def bundle(self) -> dict:
        assert self.model is not None and self.encoder is not None and self.popularity is not None
        return {
            "state_dict": self.model.state_dict(),
            "encoder": self.encoder.to_config(),
            "dim": self.model.genre_projection.out_features,
            "genres": self.model.genres[1:].clone(),
            "popularity": torch.as_tensor(self.popularity, dtype=torch.float32),
        }

    def load_context(self, context) -> None:
        bundle = torch.load(context.artifacts["bundle"], weights_only=True)
        self.encoder = FeatureEncoder.from_config(bundle["encoder"])
        model = SequenceRecommender(len(self.encoder.item_ids), self.encoder.n_dense, bundle["genres"], bundle["dim"])
        model.load_state_dict(bundle["state_dict"])
        self.model = model.eval()
        self.popularity = bundle["popularity"].numpy()

    # -- ranking ------------------------------------------------------------------------------
    def _top_k(self, scores: np.ndarray, k: int, exclude: set[str]) -> list[tuple[str, float]]:
        assert self.encoder is not None
        scores = scores.astype(np.float64).copy()
        for item in exclude:
            idx = self.encoder.index.get(item)
            if idx is not None:
                scores[idx - 1] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.encoder.item_ids[i], float(scores[i])) for i in order if np.isfinite(scores[i])]

    def score(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """users x items scores (softmax probabilities) for user-profile feature rows."""
        assert self.model is not None and self.encoder is not None
        seqs, dense = self.encoder.encode(rows)
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(seqs), torch.from_numpy(dense))
        return torch.softmax(logits, dim=1)[:, 1:].numpy()

    def recommend(
        self, rows: Sequence[Mapping[str, object]], k: int, exclude: Sequence[set[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        scores = self.score(rows)
        exclude = exclude or [set(r.get("recent_items") or []) for r in rows]
        return [self._top_k(s, k, ex) for s, ex in zip(scores, exclude)]

    def popular(self, k: int, exclude: set[str] | None = None) -> list[tuple[str, float]]:
        assert self.popularity is not None
        share = self.popularity / max(float(self.popularity.sum()), 1.0)
        return self._top_k(share, k, exclude or set())

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        ranked = self.recommend(model_input.to_dict("records"), k)
        return pd.DataFrame({"items": [[i for i, _ in r] for r in ranked], "scores": [[s for _, s in r] for r in ranked]})
