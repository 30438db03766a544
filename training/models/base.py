"""What every model shares: the data it trains on, the interface it trains, scores and saves
through, and the report of a fit. Baselines and the sequence model alike, so the benchmark, the
registry and the gate treat them the same."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:  # the models load without the platform: only training needs settings
    from longview.settings import Settings


DAY_SECONDS = 86_400.0
CONTEXT_FEATURES = 5  # request_context's columns
MAX_GAP_DAYS = 36_500.0  # gaps since the last visit are capped at a century (a clock gone wrong)
VISIT_GAP_SECONDS = 30 * 60.0  # without sessions in the data, a visit ends after 30 minutes of silence


def request_context(now: np.ndarray, last: np.ndarray) -> np.ndarray:
    """What a request's time says, as side inputs (n x CONTEXT_FEATURES, float32): its hour of
    day and day of week (UTC, as points on circles, so 23h sits next to 0h) and log(1 + days since
    the user's previous event), the gap since the last visit."""
    now, last = np.asarray(now, dtype=np.float64), np.asarray(last, dtype=np.float64)
    hour = 2 * np.pi * (now % DAY_SECONDS) / DAY_SECONDS
    weekday = 2 * np.pi * ((now // DAY_SECONDS) % 7) / 7
    with np.errstate(over="ignore", invalid="ignore"):  # absurd times: the gap is capped below
        days = np.nan_to_num((now - last) / DAY_SECONDS, nan=0.0, posinf=MAX_GAP_DAYS)
    gap = np.log1p(np.clip(days, 0.0, MAX_GAP_DAYS))
    return np.stack([np.sin(hour), np.cos(hour), np.sin(weekday), np.cos(weekday), gap], axis=-1).astype(np.float32)


# The user profile from Feast (feature_repo/features.py: user_profile) as the sequence model reads it:
# these fields log-scaled, then the genre taste as shares. A missing profile reads as zeros.
PROFILE_FIELDS = ("events_1d", "events_7d", "events_30d", "active_days", "last_return_gap", "mean_return_gap",
                  "mean_session_depth")


def profile_vectors(rows: list[Mapping[str, object] | None], taste_width: int) -> np.ndarray:
    """n x (len(PROFILE_FIELDS) + taste_width) float32 from user-profile rows (field: value, as
    Feast returns them). A missing row, field or taste, a value that is not a finite number and a
    taste of another width read as zeros; negative counts and gaps as zeros too."""
    out = np.zeros((len(rows), len(PROFILE_FIELDS) + taste_width), dtype=np.float32)
    for r, row in enumerate(rows):
        if not row:
            continue
        for c, name in enumerate(PROFILE_FIELDS):
            out[r, c] = np.log1p(min(max(_finite(row.get(name)), 0.0), MAX_GAP_DAYS))
        taste = row.get("taste")
        if taste_width and taste is not None and not isinstance(taste, (str, bytes)):
            try:
                values = np.asarray(taste, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                continue
            if len(values) == taste_width:
                out[r, len(PROFILE_FIELDS):] = np.clip(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), 0, 1)
    return out


def _finite(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if np.isfinite(number) else 0.0


@dataclass
class Interactions:
    """Users' item sequences as catalogue indices (1..n_items; 0 is padding), in time order.

    ``times`` are Unix seconds per position, None where the data has no real time (only order);
    ``positive`` marks positive engagements, the only positions used as labels; ``content`` holds
    one row of item features per index (row 0 for padding), None where the data has none;
    ``profiles`` per position the user's profile vector (profile_vectors) as Feast knew it just
    before that position's event, None where the data has no real time.

    For the long-term value head, where times are real: ``visits`` marks per position where a
    visit (session) starts (None: a new visit after VISIT_GAP_SECONDS without events),
    ``observed_until`` per user the time up to which their sequence is complete (their last visit
    is censored there) and ``final_profiles`` per user the profile just after their last event."""

    item_ids: list[str]
    sequences: list[np.ndarray]
    positive: list[np.ndarray]
    times: list[np.ndarray] | None = None
    content: np.ndarray | None = None
    profiles: list[np.ndarray] | None = None
    visits: list[np.ndarray] | None = None
    observed_until: np.ndarray | None = None
    final_profiles: np.ndarray | None = None

    def visit_starts(self, user: int) -> np.ndarray:
        """Where ``user``'s visits start (the data's sessions, or VISIT_GAP_SECONDS of silence)."""
        if self.visits is not None:
            return self.visits[user]
        assert self.times is not None, "visits need times"
        return np.r_[True, np.diff(self.times[user]) > VISIT_GAP_SECONDS]

    @property
    def profile_width(self) -> int:
        return 0 if not self.profiles else int(self.profiles[0].shape[1])

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
    """Users to score: their histories (inputs) and, where the data has real time, the request time
    and the time of each user's last event (for the gap since the last visit)."""

    histories: list[np.ndarray]
    now: np.ndarray | None = None  # Unix seconds per user
    last: np.ndarray | None = None  # Unix seconds of each history's last event
    profiles: np.ndarray | None = None  # users x profile width (profile_vectors), None: unknown

    def __len__(self) -> int:
        return len(self.histories)

    def slice(self, start: int, stop: int) -> "Queries":
        def part(values):
            return None if values is None else values[start:stop]
        return Queries(self.histories[start:stop], part(self.now), part(self.last), part(self.profiles))

    def context(self, profile_width: int = 0) -> np.ndarray | None:
        """request_context of each query, followed by ``profile_width`` columns of its profile
        (zeros where unknown or of another width); None unless both times are known for every query."""
        if self.now is None or self.last is None:
            return None
        context = request_context(self.now, self.last)
        if not profile_width:
            return context
        profiles = self.profiles
        if profiles is None or profiles.shape != (len(self), profile_width):
            profiles = np.zeros((len(self), profile_width), dtype=np.float32)
        return np.concatenate([context, profiles.astype(np.float32)], axis=1)


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

    def forecast_returns(self, queries: Queries):
        """The chance that each user, at the end of a visit (``queries.now``: its last event), returns
        within H days and the expected days to return (value_head.ReturnForecast), or None for a
        model without a long-term value head."""
        return None

    def item_similarity(self, item: int) -> tuple[torch.Tensor, str] | None:
        """How alike every catalogue item is to ``item`` (index 0, the padding, at -inf) and what the
        likeness is of, or None for a model without item representations."""
        return None

    def add_items(self, content: np.ndarray | None) -> bool:
        """Take in items added to the catalogue since training (one row of item content each, in
        the training content's layout, appended after the known items) and say whether they can now
        be scored. Most models cannot rank what they never saw; models of content can."""
        return False

    @classmethod
    @abstractmethod
    def restore(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "Recommender":
        """The model back from config() and tensors()."""


def padded(sequences: list[np.ndarray], length: int, dtype: type = np.int64) -> torch.Tensor:
    """Left-padded matrix of the last ``length`` rows of each sequence (most recent last): item
    indices by default; rows of features (e.g. request contexts) keep their trailing shape."""
    trailing = np.asarray(sequences[0]).shape[1:] if len(sequences) else ()
    out = np.zeros((len(sequences), length, *trailing), dtype=dtype)
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
