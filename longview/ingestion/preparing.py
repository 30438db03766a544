"""Preparing a batch for its suite (parsed columns the range checks need) and, once accepted, for
the store (typed rows)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from longview.datasets.tables import SOURCE_COLUMNS
from longview.ingestion.reading import epoch_times, parse_epoch
from longview.ingestion.served import prepare_served

# request_id: the served list an event is about (/feedback echoes the one /recommend returned).
EVENT_OPTIONAL = ["value", "session_id", "request_id"]


def _with_parsed_time(column: str, epoch_column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A preparer that adds ``column``'s parsed epoch, and the text of any value that does not parse
    (``{column}_unparsed``, for its own check: an optional time that is present must parse)."""
    def prepare(raw: pd.DataFrame) -> pd.DataFrame:
        frame = raw.copy()
        if column in frame:
            frame[epoch_column] = parse_epoch(frame[column])
            unparsed = frame[column].notna() & frame[epoch_column].isna()
            frame[f"{column}_unparsed"] = frame[column].where(unparsed, None)
        return frame
    return prepare


def prepare_events(raw: pd.DataFrame) -> pd.DataFrame:
    """The frame GX validates: the raw text columns plus parsed ones the range checks need."""
    frame = raw.copy()
    for col in EVENT_OPTIONAL:
        if col not in frame:
            frame[col] = None
    if "timestamp" in frame:
        frame["event_epoch"] = parse_epoch(frame["timestamp"])
    value = pd.to_numeric(frame["value"], errors="coerce")
    event_type = frame["event_type"] if "event_type" in frame else pd.Series(None, index=frame.index)
    is_rating = event_type == "rating"
    frame["dwell_seconds"] = value.where(event_type == "view")
    frame["rating"] = value.where(is_rating)
    frame["propensity"] = value.where(event_type == "impression")  # the policy's, logged with the impression
    # A rating event needs a value: a missing one is checked as an empty one, which the value check
    # fails (an expectation of its own would cost about a second per 100,000 rows).
    frame.loc[is_rating & frame["value"].isna(), "value"] = ""
    return frame


# Items plus the parsed release time; tags plus the parsed tag time.
prepare_items = _with_parsed_time("release_time", "release_epoch")
prepare_tags = _with_parsed_time("timestamp", "tag_epoch")


def prepare_users(raw: pd.DataFrame) -> pd.DataFrame:
    """Users plus the age as a number for the range check."""
    frame = raw.copy()
    if "age" in frame:
        frame["age_years"] = pd.to_numeric(frame["age"], errors="coerce")
    return frame


PREPARE = {"events": prepare_events, "items": prepare_items, "users": prepare_users, "tags": prepare_tags,
           "served": prepare_served}


def add_distribution_columns(frame: pd.DataFrame, history_days: pd.Series) -> pd.DataFrame:
    """Batch-level shares and volumes, one value per row, for the distribution expectations."""
    n = max(len(frame), 1)
    frame["user_share"] = frame.groupby("user_id", dropna=False)["user_id"].transform("size").astype(float) / n
    frame["item_share"] = frame.groupby("item_id", dropna=False)["item_id"].transform("size").astype(float) / n
    # Day numbers by arithmetic: converting epochs with a unit overflows inside pandas on some values
    # (seen with NaN beside far-future times), and rows with any time at all must get here.
    day = frame["event_epoch"] // 86_400
    busiest = float(history_days.max()) if len(history_days) else float("nan")
    frame["day_volume_ratio"] = day.map(day.value_counts()).astype(float) / busiest
    return frame


def history_days(stored: pd.DataFrame) -> pd.Series:
    """Events per day over the last 30 days of the stored history (empty with under 7 such days)."""
    if stored.empty:
        return pd.Series(dtype=float)
    recent = stored["timestamp"][stored["timestamp"] > stored["timestamp"].max() - pd.Timedelta(days=30)]
    counts = recent.dt.floor("D").value_counts()
    return counts if len(counts) >= 7 else pd.Series(dtype=float)


def arrival_times(times: pd.Series, store_clock: pd.Timestamp | None) -> pd.Series:
    """When each event became known, on the dataset clock. An event newer than the store's clock
    streams in at its own time; an older one is late and arrived with its batch: at the batch's
    latest time, and in any case after the store's clock (it was not there then). A first load
    has nothing late."""
    if store_clock is None or pd.isna(store_clock) or times.empty:
        return times
    batch_arrival = max(times.max(), store_clock + pd.Timedelta(microseconds=1))
    return times.where(times >= store_clock, batch_arrival)


def canonical_events(frame: pd.DataFrame, store_clock: pd.Timestamp | None = None) -> pd.DataFrame:
    """Typed event rows for the store (only ever called on accepted rows)."""
    times = epoch_times(frame["event_epoch"])
    return pd.DataFrame({
        "event_id": frame["event_id"].astype(str),
        "user_id": frame["user_id"].astype(str),
        "item_id": frame["item_id"].astype(str),
        "event_type": frame["event_type"].astype(str),
        "timestamp": times,
        "value": pd.to_numeric(frame["value"], errors="coerce").astype(float),
        "session_id": frame["session_id"].astype(object),
        "request_id": frame["request_id"].astype(object) if "request_id" in frame else None,
        "arrived_at": arrival_times(times, store_clock),
    })


def canonical_items(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed catalogue rows (``frame`` as prepared by ``prepare_items``)."""
    out = pd.DataFrame({"item_id": frame["item_id"].astype(str), "title": frame["title"].astype(str)})
    out["genres"] = frame["genres"].fillna("") if "genres" in frame else ""
    out["text"] = frame["text"] if "text" in frame else None  # none: no text embedding for the item
    if "release_epoch" in frame:
        out["release_time"] = epoch_times(frame["release_epoch"])
    else:
        out["release_time"] = pd.NaT
    return out


def stored_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The batch's own columns as they are stored (users, tags): without the loaders' source columns,
    which are validated and kept in quarantine, never stored."""
    return frame[[c for c in columns if c not in SOURCE_COLUMNS]]
