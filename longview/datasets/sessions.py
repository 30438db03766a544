"""Sessions from timestamps: a user's new session starts after ``gap_minutes`` without events."""

from __future__ import annotations

import numpy as np
import pandas as pd

from longview.ids import MAX_ID_LENGTH, fit_ids


def session_numbers(user_id: pd.Series, epoch: pd.Series, gap_minutes: float = 30.0) -> np.ndarray:
    """Per row, the 1-based number of its session among the user's sessions (in time order).

    Rows may come in any order; equal times stay in the session of the row before them."""
    if gap_minutes <= 0:
        raise ValueError(f"gap_minutes must be positive, got {gap_minutes}")
    n = len(user_id)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    user_codes = pd.factorize(np.asarray(user_id, dtype=object))[0]
    seconds = np.asarray(epoch, dtype=float)
    order = np.lexsort((seconds, user_codes))
    u, t = user_codes[order], seconds[order]
    first_of_user = np.r_[True, u[1:] != u[:-1]]
    gap = np.r_[np.inf, np.diff(t)] > gap_minutes * 60.0
    starts = first_of_user | gap
    running = np.cumsum(starts)  # global session counter, 1-based
    base = np.maximum.accumulate(np.where(first_of_user, running - 1, 0))
    numbers = np.empty(n, dtype=np.int64)
    numbers[order] = running - base
    return numbers


def session_ids(user_id: pd.Series, epoch: pd.Series, gap_minutes: float = 30.0) -> pd.Series:
    """Session ids ``{user_id}.s{n}`` (n = 1, 2, ... per user in time order)."""
    numbers = session_numbers(user_id, epoch, gap_minutes)
    users = pd.Series(np.asarray(user_id, dtype=object))
    ids = (users + ".s" + pd.Series(numbers).astype(str)).to_numpy(object)
    if any(len(s) > MAX_ID_LENGTH for s in ids):
        ids = fit_ids(ids)
    return pd.Series(ids, index=getattr(user_id, "index", None), dtype=object)


def derive_sessions(events: pd.DataFrame, gap_minutes: float = 30.0) -> pd.DataFrame:
    """A copy of ``events`` whose ``session_id`` splits each user's events after ``gap_minutes``
    of inactivity. ``timestamp`` may be ISO-8601 text (naive means UTC) or datetimes."""
    times = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601")
    if times.isna().any():
        raise ValueError("derive_sessions: every event needs a timestamp")
    epoch = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    out = events.copy()
    out["session_id"] = session_ids(events["user_id"], epoch, gap_minutes).to_numpy(object)
    out["session_id"] = out["session_id"].astype(object)
    return out
