"""Ingestion: validate a batch with Great Expectations, append good rows, quarantine the rest with reasons.

Every received row ends in exactly one place: the event store (accepted) or quarantine (with the
failed expectation named), so ``received == accepted + quarantined`` always holds.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.privacy import masks, pseudonym_key, pseudonymise_table
from longview.settings import Settings
from longview.store import load_catalogue, load_events, load_users, row_fingerprints
from longview.validation import validate_frame

EVENT_OPTIONAL = ["value", "session_id"]
TABLES = ("events", "items", "users")


class BatchRejected(Exception):
    """The batch failed as a whole; all of it was kept in quarantine."""

    def __init__(self, message: str, result: "IngestResult") -> None:
        super().__init__(message)
        self.result = result


@dataclass
class IngestResult:
    received: int
    accepted: int
    quarantined: int
    report: str | None
    batch_id: str
    table: str
    data_docs: str | None = None
    message: str = ""
    online_users_updated: int = 0  # users whose online features were refreshed by this batch

    def summary(self) -> dict:
        return asdict(self)


def _batch_id(content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:10]
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{digest}"


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as text (times as ISO-8601) or None: what GX validates, whatever the source."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            text = values.map(lambda v: v.isoformat() if pd.notna(v) else None)
        else:
            text = values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        out[str(column)] = text.astype(object)
    return out


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
    frame["dwell_seconds"] = value.where(event_type == "view")
    frame["rating"] = value.where(event_type == "rating")
    return frame


def prepare_items(raw: pd.DataFrame) -> pd.DataFrame:
    """Items plus the parsed release time (and the text of any release time that does not parse)."""
    frame = raw.copy()
    if "release_time" in frame:
        frame["release_epoch"] = parse_epoch(frame["release_time"])
        unparsed = frame["release_time"].notna() & frame["release_epoch"].isna()
        frame["release_time_unparsed"] = frame["release_time"].where(unparsed, None)
    return frame


def prepare_users(raw: pd.DataFrame) -> pd.DataFrame:
    """Users plus the age as a number for the range check."""
    frame = raw.copy()
    if "age" in frame:
        frame["age_years"] = pd.to_numeric(frame["age"], errors="coerce")
    return frame


PREPARE = {"events": prepare_events, "items": prepare_items, "users": prepare_users}


def add_distribution_columns(frame: pd.DataFrame, history_days: pd.Series) -> pd.DataFrame:
    """Batch-level shares and volumes, one value per row, for the distribution expectations."""
    n = max(len(frame), 1)
    frame["user_share"] = frame.groupby("user_id", dropna=False)["user_id"].transform("size").astype(float) / n
    frame["item_share"] = frame.groupby("item_id", dropna=False)["item_id"].transform("size").astype(float) / n
    day = pd.to_datetime(frame["event_epoch"], unit="s", utc=True, errors="coerce").dt.floor("D")
    busiest = float(history_days.max()) if len(history_days) else float("nan")
    frame["day_volume_ratio"] = day.map(day.value_counts()).astype(float) / busiest
    return frame


def _history_days(stored: pd.DataFrame) -> pd.Series:
    """Events per day over the last 30 days of the stored history (empty with under 7 such days)."""
    if stored.empty:
        return pd.Series(dtype=float)
    recent = stored["timestamp"][stored["timestamp"] > stored["timestamp"].max() - pd.Timedelta(days=30)]
    counts = recent.dt.floor("D").value_counts()
    return counts if len(counts) >= 7 else pd.Series(dtype=float)


def epoch_times(epoch: pd.Series) -> pd.Series:
    """Float seconds since the epoch to UTC times, to the microsecond (float seconds carry rounding
    noise below it); NaN becomes NaT. Only known values are converted: casting NaN with a unit was
    seen to raise an overflow error inside pandas."""
    out = pd.Series(pd.NaT, index=epoch.index, dtype="datetime64[ns, UTC]")
    known = epoch.notna()
    if known.any():
        out[known] = pd.to_datetime(epoch[known].astype(float), unit="s", utc=True).dt.round("us")
    return out


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


def _quarantine(settings: Settings, table: str, batch_id: str, raw: pd.DataFrame, reasons: pd.Series) -> Path:
    settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
    path = settings.quarantine_dir / f"{table}-{batch_id}.parquet"
    rows = raw.astype(object).where(raw.notna(), None).copy()
    rows["reason"] = reasons.astype(str)
    rows["batch_id"] = batch_id
    rows.to_parquet(path, index=False)
    # Quarantine keeps rows exactly as received (raw ids included) so they can be fixed and
    # replayed: readable by the owner only, like the pseudonym key.
    path.chmod(0o600)
    return path


def _epoch(day: str) -> float:
    return pd.Timestamp(day, tz="UTC").timestamp()


def _parameters(settings: Settings, table: str) -> dict:
    latest = datetime.now(timezone.utc).timestamp() + settings.future_tolerance_hours * 3600
    if table == "items":
        return {"earliest_release_epoch": _epoch(settings.earliest_release), "latest_epoch": latest}
    if table == "users":
        return {}
    catalogue = load_catalogue(settings)
    return {
        "earliest_epoch": _epoch(settings.earliest_event),
        "latest_epoch": latest,
        "dwell_cap_seconds": settings.dwell_cap_seconds,
        "rating_min": settings.rating_min,
        "rating_max": settings.rating_max,
        "known_items": None if catalogue.empty else sorted(catalogue["item_id"]),
    }


def ingest(settings: Settings, path: Path, table: str = "events", parameters: dict | None = None) -> IngestResult:
    """Validate one file and route each row. Raises BatchRejected when the batch fails as a whole."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    path = Path(path)
    settings.ensure_dirs()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    content = path.read_bytes()
    batch_id = _batch_id(content)
    try:
        raw = read_raw(content, path.suffix)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        kept = settings.quarantine_dir / f"{table}-{batch_id}.unreadable{path.suffix}"
        kept.write_bytes(content)
        result = IngestResult(0, 0, 0, None, batch_id, table, message=f"unreadable file kept at {kept}: {exc}")
        raise BatchRejected(f"cannot read {path}: {exc}", result) from exc
    return ingest_frame(settings, raw, table, batch_id, parameters)


def ingest_frame(settings: Settings, raw: pd.DataFrame, table: str, batch_id: str | None = None,
                 parameters: dict | None = None) -> IngestResult:
    """Validate a frame of text values (as read from a file) and route each row.

    ``parameters`` override the suite parameters from the settings (e.g. a dataset's rating scale)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    settings.ensure_dirs()
    batch_id = batch_id or _batch_id(pd.util.hash_pandas_object(raw.astype(str), index=False).to_numpy().tobytes())
    received = len(raw)
    if received == 0:
        return IngestResult(0, 0, 0, None, batch_id, table, message="empty file: nothing to ingest")
    raw = raw.reset_index(drop=True)
    frame = PREPARE[table](raw)
    suite_parameters = {**_parameters(settings, table), **(parameters or {})}
    stored = load_events(settings, columns=["event_id", "timestamp"]) if table == "events" else None
    if table == "events" and {"user_id", "item_id", "event_epoch"} <= set(frame.columns):
        history = _history_days(stored)
        frame = add_distribution_columns(frame, history)
        big = received >= settings.min_rows_for_distribution
        suite_parameters |= {
            "max_user_share": settings.max_user_share if big else None,
            "max_item_share": settings.max_item_share if big else None,
            "max_day_volume_ratio": settings.max_day_volume_ratio if big and len(history) else None,
        }
    secret = pseudonym_key(settings)
    outcome = validate_frame(settings, table, frame, suite_parameters, batch_id, masks(secret, table))
    report = str(outcome.report) if outcome.report else None

    if outcome.table_failures:
        why = "; ".join(outcome.table_failures)
        _quarantine(settings, table, batch_id, raw, pd.Series(f"batch rejected: {why}", index=raw.index))
        result = IngestResult(received, 0, received, report, batch_id, table, outcome.data_docs,
                              message=f"batch rejected: {why}")
        raise BatchRejected(result.message, result)

    reasons = pd.Series("", index=raw.index, dtype=object)
    for idx, why in outcome.row_reasons.items():
        reasons[idx] = "; ".join(why)
    # From here on, personal ids are pseudonyms (quarantine below still keeps rows as received).
    frame = pseudonymise_table(frame, table, secret)
    valid = reasons == ""  # duplicates are looked for among valid rows only
    if table == "events":
        # Duplicates: repeated within this batch, or already in the store (whose ids are pseudonyms too).
        ids = frame["event_id"][valid]
        dup = ids.duplicated(keep="first") | ids.isin(set(stored["event_id"]))
    else:
        # Catalogue rows are upserts: the last row for an id wins, earlier ones are duplicates, and
        # so is a row identical to the stored one (a re-sent file adds nothing).
        rows = canonical_items(frame[valid]) if table == "items" else frame.loc[valid, list(raw.columns)]
        id_column = f"{table[:-1]}_id"
        previous = load_catalogue(settings) if table == "items" else load_users(settings)
        dup = rows[id_column].duplicated(keep="last") | _unchanged(rows, previous)
    reasons[dup[dup].index] = "duplicate"

    bad = reasons != ""
    # Duplicates are expected (re-sent batches) and do not count towards a broken feed.
    failed_share = float((bad & (reasons != "duplicate")).mean())
    if failed_share > settings.max_failure_share:
        share = f"{failed_share:.0%} of rows failed validation (limit {settings.max_failure_share:.0%})"
        _quarantine(settings, table, batch_id, raw, reasons.where(bad, "batch rejected: " + share))
        result = IngestResult(received, 0, received, report, batch_id, table, outcome.data_docs,
                              message=f"batch rejected: {share}")
        raise BatchRejected(result.message, result)

    if bad.any():
        _quarantine(settings, table, batch_id, raw[bad], reasons[bad])
    if table == "events":
        if (~bad).any():
            clock = stored["timestamp"].max() if len(stored) else None
            canonical_events(frame[~bad], clock).to_parquet(settings.events_dir / f"batch-{batch_id}.parquet",
                                                            index=False)
    elif (~bad).any():
        path = settings.catalogue_path if table == "items" else settings.users_path
        _upsert(path, previous, rows[~bad[rows.index]], id_column)
    return IngestResult(received, int((~bad).sum()), int(bad.sum()), report, batch_id, table, outcome.data_docs,
                        message="ok" if not bad.any() else f"{int(bad.sum())} rows quarantined")


def _unchanged(rows: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """Rows identical to a stored row (same id, same values in every column the batch has)."""
    if stored.empty or not set(rows.columns) <= set(stored.columns):
        return pd.Series(False, index=rows.index)
    return row_fingerprints(rows).isin(set(row_fingerprints(stored[list(rows.columns)])))


def replay_quarantine(settings: Settings, batch_id: str, parameters: dict | None = None) -> IngestResult:
    """Validate a quarantined batch again (after the data or the configuration was fixed).

    Rows that now pass are ingested; the rest go to a new quarantine file. The old file moves to
    quarantine/replayed/ so no row is counted twice."""
    if not batch_id or "/" in batch_id or batch_id.startswith("."):
        raise ValueError(f"not a batch id: {batch_id!r}")
    matches = sorted(settings.quarantine_dir.glob(f"*-{batch_id}.parquet"))
    if not matches:
        raise FileNotFoundError(f"no quarantined batch {batch_id} in {settings.quarantine_dir}")
    path = matches[0]
    table = path.name.split("-", 1)[0]
    rows = pd.read_parquet(path).drop(columns=["reason", "batch_id"])
    rows = rows.astype(object).where(rows.notna(), None)
    result = ingest_frame(settings, rows, table, parameters=parameters)
    done = settings.quarantine_dir / "replayed"
    done.mkdir(exist_ok=True)
    path.replace(done / path.name)
    return result


def _upsert(path: Path, previous: pd.DataFrame, rows: pd.DataFrame, key: str) -> None:
    merged = pd.concat([previous, rows], ignore_index=True).drop_duplicates(key, keep="last").reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged.to_parquet(path, index=False)
