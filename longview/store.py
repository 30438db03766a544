"""Reading the data home's tables: the accepted event store, the item catalogue, users and tags."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from longview.datasets.tables import EVENT_COLUMNS as INPUT_COLUMNS
from longview.served_log import SLOT_COLUMNS as SERVED_COLUMNS
from longview.settings import Settings

# The canonical input columns plus when each event arrived (on the dataset clock).
EVENT_COLUMNS = [*INPUT_COLUMNS, "arrived_at"]
# Events that show interest in an item (impressions alone do not).
INTERACTIONS = ("click", "view", "rating", "purchase")


def load_events(settings: Settings, columns: list[str] | None = None, users: list[str] | None = None) -> pd.DataFrame:
    """The accepted events in time order; only ``users``' events when given (filtered in the read)."""
    files = sorted(settings.events_dir.glob("batch-*.parquet"))
    cols = columns or EVENT_COLUMNS
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    filters = None if users is None else [("user_id", "in", list(users))]
    frame = pd.concat([_read_batch(f, cols, filters) for f in files], ignore_index=True)
    if "timestamp" in frame:
        frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return frame


def _read_batch(path, columns: list[str], filters: list | None) -> pd.DataFrame:
    """One stored batch; batches written before events had an arrival time arrived on time, and
    those written before events could name their served list name none."""
    present = set(pq.read_schema(path).names)
    wanted = [c for c in columns if c in present]
    legacy = "arrived_at" in columns and "arrived_at" not in present
    frame = pd.read_parquet(path, columns=wanted + (["timestamp"] if legacy and "timestamp" not in wanted else []),
                            filters=filters)
    if legacy:
        frame["arrived_at"] = frame["timestamp"]
    if "request_id" in columns and "request_id" not in present:
        frame["request_id"] = None
    return frame[columns]


def load_served(settings: Settings, columns: list[str] | None = None) -> pd.DataFrame:
    """The ingested served log, one row per slot (longview/ingestion/served.py), in time order."""
    files = sorted(settings.served_dir.glob("batch-*.parquet"))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns or SERVED_COLUMNS})
    frame = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    if "timestamp" in frame:
        frame = frame.sort_values(["timestamp", "request_id", "position"] if {"request_id", "position"} <= set(frame)
                                  else "timestamp", kind="stable").reset_index(drop=True)
    return frame


def load_catalogue(settings: Settings) -> pd.DataFrame:
    if not settings.catalogue_path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("item_id", "title", "genres", "text")})
    return pd.read_parquet(settings.catalogue_path)


def load_users(settings: Settings) -> pd.DataFrame:
    if not settings.users_path.exists():
        return pd.DataFrame({"user_id": pd.Series(dtype=object)})
    return pd.read_parquet(settings.users_path)


def load_tags(settings: Settings) -> pd.DataFrame:
    if not settings.tags_path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("item_id", "tag")})
    return pd.read_parquet(settings.tags_path)


def row_fingerprints(frame: pd.DataFrame) -> pd.Series:
    """One hash per row over all its values (missing ones alike whether None or NaN), to find rows
    that are exactly equal across tables read at different times."""
    values = frame.astype(object).where(frame.notna(), None).astype(str)
    return pd.util.hash_pandas_object(values, index=False)


def dataset_clock(events: pd.DataFrame) -> pd.Timestamp:
    """The dataset's own 'now': its last event, never the wall clock."""
    if events.empty:
        raise ValueError("the event store is empty: ingest a batch first (longview ingest PATH)")
    return pd.Timestamp(events["timestamp"].max())
