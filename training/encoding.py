"""Turning user-profile features into model inputs: one piece of code for training and serving."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Count-like features enter as log1p; the taste vector follows them.
DENSE_FEATURES = ("events_1d", "events_7d", "events_30d", "days_since_prev", "active_days", "last_return_gap",
                  "mean_return_gap", "mean_session_depth", "mean_dwell")
# What models saved before return gaps and session depth were features were trained on.
LEGACY_DENSE_FEATURES = ("events_1d", "events_7d", "events_30d", "days_since_prev", "active_days", "mean_dwell")


class FeatureEncoder:
    def __init__(self, item_ids: Sequence[str], n_genres: int, recent_n: int,
                 dense_features: Sequence[str] = DENSE_FEATURES) -> None:
        self.item_ids = list(item_ids)
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}  # 0 is padding
        self.n_genres = n_genres
        self.recent_n = recent_n
        self.dense_features = tuple(dense_features)

    @property
    def n_dense(self) -> int:
        return len(self.dense_features) + self.n_genres

    def sequence(self, recent: Sequence[str] | None) -> np.ndarray:
        """Left-padded item indices, most recent last; unknown items are dropped."""
        idx = [self.index[i] for i in (list(recent) if recent is not None else []) if i in self.index]
        idx = idx[-self.recent_n:]
        out = np.zeros(self.recent_n, dtype=np.int64)
        if idx:
            out[-len(idx):] = idx
        return out

    def dense(self, row: Mapping[str, object]) -> np.ndarray:
        values = []
        for name in self.dense_features:
            v = row.get(name)
            v = 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
            values.append(np.log1p(max(v, 0.0)))
        taste = row.get("taste")
        taste_vec = np.zeros(self.n_genres, dtype=np.float32)
        if taste is not None and len(taste) == self.n_genres:
            taste_vec[:] = np.nan_to_num(np.asarray(taste, dtype=np.float32))
        return np.concatenate([np.asarray(values, dtype=np.float32), taste_vec])

    def encode(self, rows: Sequence[Mapping[str, object]]) -> tuple[np.ndarray, np.ndarray]:
        seqs = np.stack([self.sequence(r.get("recent_items")) for r in rows]) if rows else np.zeros((0, self.recent_n), np.int64)
        dense = np.stack([self.dense(r) for r in rows]) if rows else np.zeros((0, self.n_dense), np.float32)
        return seqs, dense.astype(np.float32)

    def to_config(self) -> dict:
        return {"item_ids": self.item_ids, "n_genres": self.n_genres, "recent_n": self.recent_n,
                "dense_features": list(self.dense_features)}

    @classmethod
    def from_config(cls, config: Mapping) -> "FeatureEncoder":
        dense = config.get("dense_features", LEGACY_DENSE_FEATURES)
        return cls(config["item_ids"], int(config["n_genres"]), int(config["recent_n"]), dense)
