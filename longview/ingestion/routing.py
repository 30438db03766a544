"""Routing: validate a batch with Great Expectations, append good rows, quarantine the rest with reasons.

Every received row ends in exactly one place: the store (accepted) or quarantine (with the failed
expectation named), so ``received == accepted + quarantined`` always holds."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from longview.ids import ID_REGEX, PSEUDONYM_REGEX, REQUEST_ID_REGEX
from longview.ingestion.preparing import (
    PREPARE,
    add_distribution_columns,
    canonical_events,
    canonical_items,
    history_days,
    stored_columns,
)
from longview.ingestion.quarantine import mark_replayed, quarantine_file, quarantine_rows, quarantined_batch
from longview.ingestion.reading import UNREADABLE, read_raw
from longview.ingestion.served import canonical_served, whole_records
from longview.ingestion.served import duplicates as served_duplicates
from longview.privacy import masks, pseudonym_key, pseudonymise_table
from longview.settings import Settings
from longview.store import load_catalogue, load_events, load_served, load_tags, load_users, row_fingerprints
from longview.validation import validate_frame

TABLES = ("events", "items", "users", "tags", "served")


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


def batch_id_of(content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:10]
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{digest}"


def _epoch(day: str) -> float:
    return pd.Timestamp(day, tz="UTC").timestamp()


def _parameters(settings: Settings, table: str) -> dict:
    latest = datetime.now(timezone.utc).timestamp() + settings.future_tolerance_hours * 3600
    if table == "items":
        return {"id_regex": ID_REGEX, "earliest_release_epoch": _epoch(settings.earliest_release),
                "latest_epoch": latest}
    if table in ("users", "tags"):
        return {"id_regex": ID_REGEX}
    catalogue = load_catalogue(settings)
    if table == "served":
        return {"id_regex": ID_REGEX, "request_id_regex": REQUEST_ID_REGEX, "pseudonym_regex": PSEUDONYM_REGEX,
                "earliest_epoch": _epoch(settings.earliest_event), "latest_epoch": latest,
                "max_position": settings.serving.max_k - 1,
                "known_items": None if catalogue.empty else sorted(catalogue["item_id"])}
    return {
        "id_regex": ID_REGEX,
        "request_id_regex": REQUEST_ID_REGEX,
        "earliest_epoch": _epoch(settings.earliest_event),
        "latest_epoch": latest,
        "dwell_cap_seconds": settings.dwell_cap_seconds,
        "rating_min": settings.rating_min,
        "rating_max": settings.rating_max,
        "known_items": None if catalogue.empty else sorted(catalogue["item_id"]),
    }


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")


def ingest(settings: Settings, path: Path, table: str = "events", parameters: dict | None = None) -> IngestResult:
    """Validate one file and route each row. Raises BatchRejected when the batch fails as a whole."""
    _check_table(table)
    path = Path(path)
    settings.ensure_dirs()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    content = path.read_bytes()
    batch_id = batch_id_of(content)
    try:
        raw = read_raw(content, path.suffix)
    except UNREADABLE as exc:
        kept = quarantine_file(settings, table, batch_id, content, path.suffix)
        result = IngestResult(0, 0, 0, None, batch_id, table, message=f"unreadable file kept at {kept}: {exc}")
        raise BatchRejected(f"cannot read {path}: {exc}", result) from exc
    return ingest_frame(settings, raw, table, batch_id, parameters)


def _reject(settings: Settings, table: str, batch_id: str, raw: pd.DataFrame, reasons: pd.Series,
            why: str, report: str | None, data_docs: str | None, pseudonymised: bool) -> BatchRejected:
    quarantine_rows(settings, table, batch_id, raw, reasons, pseudonymised)
    result = IngestResult(len(raw), 0, len(raw), report, batch_id, table, data_docs, message=f"batch rejected: {why}")
    return BatchRejected(result.message, result)


def ingest_frame(settings: Settings, raw: pd.DataFrame, table: str, batch_id: str | None = None,
                 parameters: dict | None = None, pseudonymised: bool = False) -> IngestResult:
    """Validate a frame of text values (as read from a file) and route each row.

    ``parameters`` override the suite parameters from the settings (e.g. a dataset's rating scale).
    ``pseudonymised``: the personal ids are pseudonyms already (the service's feedback outbox)."""
    _check_table(table)
    settings.ensure_dirs()
    batch_id = batch_id or batch_id_of(pd.util.hash_pandas_object(raw.astype(str), index=False).to_numpy().tobytes())
    received = len(raw)
    if received == 0:
        return IngestResult(0, 0, 0, None, batch_id, table, message="empty file: nothing to ingest")
    raw = raw.reset_index(drop=True)
    frame = PREPARE[table](raw)
    suite_parameters = {**_parameters(settings, table), **(parameters or {})}
    stored = load_events(settings, columns=["event_id", "timestamp"]) if table == "events" else None
    if table == "events" and {"user_id", "item_id", "event_epoch"} <= set(frame.columns):
        history = history_days(stored)
        frame = add_distribution_columns(frame, history)
        big = received >= settings.min_rows_for_distribution
        suite_parameters |= {
            "max_user_share": settings.max_user_share if big else None,
            "max_item_share": settings.max_item_share if big else None,
            "max_day_volume_ratio": settings.max_day_volume_ratio if big and len(history) else None,
        }
    secret = pseudonym_key(settings)
    outcome = validate_frame(settings, table, frame, suite_parameters, batch_id,
                             {} if pseudonymised else masks(secret, table))
    report = str(outcome.report) if outcome.report else None

    if outcome.table_failures:
        why = "; ".join(outcome.table_failures)
        raise _reject(settings, table, batch_id, raw, pd.Series(f"batch rejected: {why}", index=raw.index),
                      why, report, outcome.data_docs, pseudonymised)

    reasons = pd.Series("", index=raw.index, dtype=object)
    for idx, why in outcome.row_reasons.items():
        reasons[idx] = "; ".join(why)
    # From here on, personal ids are pseudonyms (quarantine below still keeps rows as received).
    if not pseudonymised:
        frame = pseudonymise_table(frame, table, secret)
    if table == "served":  # a slate is stored whole or kept whole
        reasons = whole_records(frame, reasons)
    valid = reasons == ""  # duplicates are looked for among valid rows only
    if table == "served":
        dup = served_duplicates(frame, valid, load_served(settings, columns=["request_id", "position"]))
    elif table == "events":
        # Duplicates: repeated within this batch, or already in the store (whose ids are pseudonyms too).
        ids = frame["event_id"][valid]
        dup = ids.duplicated(keep="first") | ids.isin(set(stored["event_id"]))
    elif table == "tags":
        # Tags have no id: a row equal to an earlier one in the batch or in the store is a duplicate.
        rows = stored_columns(frame.loc[valid], list(raw.columns))
        previous = load_tags(settings)
        dup = row_fingerprints(rows).duplicated(keep="first") | _unchanged(rows, previous)
    else:
        # Catalogue rows are upserts: the last row for an id wins, earlier ones are duplicates, and
        # so is a row identical to the stored one (a re-sent file adds nothing).
        rows = canonical_items(frame[valid]) if table == "items" else stored_columns(frame.loc[valid], list(raw.columns))
        id_column = f"{table[:-1]}_id"
        previous = load_catalogue(settings) if table == "items" else load_users(settings)
        dup = rows[id_column].duplicated(keep="last") | _unchanged(rows, previous)
    reasons[dup[dup].index] = "duplicate"

    bad = reasons != ""
    # Duplicates are expected (re-sent batches) and do not count towards a broken feed.
    failed_share = float((bad & (reasons != "duplicate")).mean())
    if failed_share > settings.max_failure_share:
        share = f"{failed_share:.0%} of rows failed validation (limit {settings.max_failure_share:.0%})"
        raise _reject(settings, table, batch_id, raw, reasons.where(bad, "batch rejected: " + share), share,
                      report, outcome.data_docs, pseudonymised)

    if bad.any():
        quarantine_rows(settings, table, batch_id, raw[bad], reasons[bad], pseudonymised)
    good = ~bad
    if good.any():
        if table == "events":
            clock = stored["timestamp"].max() if len(stored) else None
            canonical_events(frame[good], clock).to_parquet(settings.events_dir / f"batch-{batch_id}.parquet",
                                                           index=False)
        elif table == "served":
            settings.served_dir.mkdir(parents=True, exist_ok=True)
            canonical_served(frame[good]).to_parquet(settings.served_dir / f"batch-{batch_id}.parquet", index=False)
        elif table == "tags":
            _write(settings.tags_path, pd.concat([previous, rows[good[rows.index]]], ignore_index=True))
        else:
            path = settings.catalogue_path if table == "items" else settings.users_path
            _upsert(path, previous, rows[good[rows.index]], id_column)
    return IngestResult(received, int(good.sum()), int(bad.sum()), report, batch_id, table, outcome.data_docs,
                        message="ok" if not bad.any() else f"{int(bad.sum())} rows quarantined")


def _unchanged(rows: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """Rows identical to a stored row (same values in every column the batch has)."""
    if stored.empty or not set(rows.columns) <= set(stored.columns):
        return pd.Series(False, index=rows.index)
    return row_fingerprints(rows).isin(set(row_fingerprints(stored[list(rows.columns)])))


def replay_quarantine(settings: Settings, batch_id: str, parameters: dict | None = None) -> IngestResult:
    """Validate a quarantined batch again (after the data or the configuration was fixed).

    Rows that now pass are ingested; the rest go to a new quarantine file. The old file moves to
    quarantine/replayed/ so no row is counted twice."""
    table, path, rows, pseudonymised = quarantined_batch(settings, batch_id)
    result = ingest_frame(settings, rows, table, parameters=parameters, pseudonymised=pseudonymised)
    mark_replayed(settings, path)
    return result


def _write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index(drop=True).to_parquet(path, index=False)


def _upsert(path: Path, previous: pd.DataFrame, rows: pd.DataFrame, key: str) -> None:
    _write(path, pd.concat([previous, rows], ignore_index=True).drop_duplicates(key, keep="last"))
