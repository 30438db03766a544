"""What every model shares: the data it trains on, the interface it trains, scores and saves
through, and the report of a fit. Baselines and the sequence model alike, so the benchmark, the
registry and the gate treat them the same."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:  # the models load without the platform: only training needs settings
    from longview.settings import Settings


DAY_SECONDS = 86_400.0


@dataclass
class Interactions:
    """Users' item sequences as catalogue indices (1..n_items; 0 is padding), in time order.

    ``times`` are Unix seconds per position, None where the data has no real time (only order);
    ``positive`` marks positive engagements, the only positions used as labels; ``content`` holds
    one row of item features per index (row 0 for padding), None where the data has none."""

    item_ids: list[str]
    sequences: list[np.ndarray]
    positive: list[np.ndarray]
    times: list[np.ndarray] | None = None
    content: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def counts(self) -> np.ndarray:
        """Positive engagements per item index (index 0 stays 0)."""
        parts = [s[p] for s, p in zip(self.sequences, self.positive, strict=True)]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return np.bincount(flat, minlength=self.n_items + 1).astype(np.float64)


@dataclass
class Queries:
    """Users to score: their histories (inputs) and, where the data has real time, the request time."""

    histories: list[np.ndarray]
    now: np.ndarray | None = None  # Unix seconds per user

    def __len__(self) -> int:
        return len(self.histories)

    def slice(self, start: int, stop: int) -> "Queries":
        return Queries(self.histories[start:stop], None if self.now is None else self.now[start:stop])


# A validation callback: the model's validation metric (higher is better).
Validate = Callable[["Recommender"], float]


@dataclass
class FitReport:
    epochs: int = 0
    train_seconds: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)  # one row per epoch or validation pass
    chosen: dict[str, float] = field(default_factory=dict)  # hyper-parameters picked on validation
    notes: list[str] = field(default_factory=list)


class Recommender(ABC):
    """Scores the whole catalogue for users given their histories."""

    name: ClassVar[str]
    needs_time: ClassVar[bool] = False  # True: meaningless on data without real timestamps

    @abstractmethod
    def fit(self, data: Interactions, settings: Settings, validate: Validate | None = None,
            progress: bool = True) -> FitReport:
        """Learn from the training interactions; ``validate`` scores the model on held-out items."""

    @abstractmethod
    def score(self, queries: Queries) -> torch.Tensor:
        """users x (n_items + 1) scores, float32; column 0 (padding) is -inf."""

    @abstractmethod
    def config(self) -> dict:
        """Everything but tensors needed to rebuild the model (JSON-serialisable)."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """The learned state, saved with torch.save and loaded with weights_only=True."""

    def refit(self, data: Interactions, settings: Settings) -> None:
        """Bring the fitted model up to ``data`` (the same users and catalogue, more recent
        interactions), keeping what validation chose. By default the model fits again: right for
        models with nothing chosen on validation."""
        self.fit(data, settings, validate=None, progress=False)

    @classmethod
    @abstractmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "Recommender":
        """The model back from config() and tensors()."""


def padded(sequences: list[np.ndarray], length: int) -> torch.Tensor:
    """Left-padded int64 matrix of the last ``length`` items of each sequence (most recent last)."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:] if length else seq[:0]
        if len(tail):
            out[row, length - len(tail):] = tail
    return torch.from_numpy(out)


def no_padding(scores: torch.Tensor) -> torch.Tensor:
    scores[:, 0] = float("-inf")
    return scores


def cold_start(scores: torch.Tensor, histories: list[np.ndarray], popularity: np.ndarray) -> torch.Tensor:
    """Users without a known history get the popularity ranking (their rows of ``scores`` replaced
    by each item's share of positive engagements), not whatever an empty input scores."""
    empty = torch.tensor([len(h) == 0 for h in histories], dtype=torch.bool)
    if empty.any():
        scores[empty] = torch.as_tensor(popularity / max(float(popularity.sum()), 1.0), dtype=scores.dtype)
        scores[empty, 0] = float("-inf")
    return scores
