"""MovieLens 1M in the SASRec preprocessing: ``sequences.txt``, one user per line, item ids in time
order, space separated; no timestamps, ratings or titles.

Ids: user ``u{line number}`` (1-based, blank lines skipped), item ``i{id}``. Times are ordinal: the
n-th item of a user (n = 0, 1, ...) is at ORIGIN + n minutes, so only the order within a user is
real. Events are ``click``s without value; sessions are left empty (there is no time to split on).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.tables import event_frame, item_frame, prefixed, user_frame

FILES = ["sequences.txt"]
ORIGIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
STEP_SECONDS = 60


def read_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user number, item id, position) arrays, one entry per interaction."""
    lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    lengths = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    try:
        items = np.array(" ".join(lines).split(), dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"{path}: item ids must be integers ({exc})") from exc
    users = np.repeat(np.arange(1, len(lines) + 1), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.arange(len(items)) - starts
    return users, items, positions


def load(folder: Path, session_gap_minutes: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    users, items, positions = read_sequences(folder / "sequences.txt")
    epoch = int(ORIGIN.timestamp()) + positions * STEP_SECONDS
    events = event_frame(prefixed("u", users), prefixed("i", items), epoch, "click", gap_minutes=None)
    ids = np.sort(pd.unique(items))
    catalogue = item_frame([f"i{i}" for i in ids], [f"item {i}" for i in ids])
    return events, catalogue, user_frame(None, events)
