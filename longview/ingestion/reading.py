"""Reading a batch: file bytes to a frame of text values, and text times to seconds since the epoch."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pandas as pd

from longview.datasets.tables import as_text  # noqa: F401  (re-exported: ingestion reads text frames)

# What reading a damaged file raises: it is then kept byte for byte and the batch is rejected.
UNREADABLE = (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError)


def read_raw(content: bytes, suffix: str) -> pd.DataFrame:
    """A CSV or parquet file's bytes as a frame with every value as text (or None), so GX sees what
    arrived."""
    if not content:
        return pd.DataFrame()
    if suffix == ".parquet":
        return as_text(pd.read_parquet(io.BytesIO(content)))
    frame = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False, encoding="utf-8-sig",
                        on_bad_lines="error")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.replace({"": None}).astype(object)


def _iso_epoch(text: str) -> float:
    """Seconds since the epoch of one ISO-8601 string (naive means UTC); NaN if it is not one.
    Python's parser also covers years pandas cannot hold (2999 is 'future', not 'not a time')."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, TypeError):
        return float("nan")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_epoch(text: pd.Series) -> pd.Series:
    """ISO-8601 strings or Unix seconds to float seconds since the epoch; anything else to NaN."""
    is_epoch = text.notna() & text.astype(str).str.fullmatch(r"\d{9,10}(\.\d+)?")
    out = pd.to_numeric(text.where(is_epoch), errors="coerce").astype(float)
    rest = text.notna() & ~is_epoch
    if rest.any():
        times = pd.to_datetime(text[rest], utc=True, errors="coerce", format="ISO8601")
        epoch = (times.astype("int64") / 1e9).where(times.notna())
        slow = epoch.isna()
        if slow.any():
            epoch[slow] = text[rest][slow].map(_iso_epoch)
        out[rest] = epoch
    return out


def epoch_times(epoch: pd.Series) -> pd.Series:
    """Float seconds since the epoch to UTC times, to the microsecond (float seconds carry rounding
    noise below it); NaN becomes NaT. Only known values are converted: casting NaN with a unit was
    seen to raise an overflow error inside pandas."""
    out = pd.Series(pd.NaT, index=epoch.index, dtype="datetime64[ns, UTC]")
    known = epoch.notna()
    if known.any():
        out[known] = pd.to_datetime(epoch[known].astype(float), unit="s", utc=True).dt.round("us")
    return out
