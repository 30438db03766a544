"""The feedback outbox: events the service acknowledged, kept durably until the next ingestion
validates them like any batch.

A SQLite database in the data home, written with ``synchronous=FULL`` (each commit is fsync'd
before the service answers), so an acknowledged event survives a crash of the service or the
machine. Rows hold pseudonyms, never raw user or session ids: the service pseudonymises at the door.
Ingestion takes the pending rows, routes them through the events suite (accepted to the store,
failures to quarantine) and only then marks them ingested, so a crash in between re-sends them and
the store's duplicate check drops the repeat: nothing is lost, nothing counted twice."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from longview.datasets.tables import EVENT_COLUMNS as INPUT_COLUMNS

# The canonical event columns plus the served list an event is about (/feedback's request_id).
EVENT_COLUMNS = [*INPUT_COLUMNS, "request_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    value TEXT,
    session_id TEXT,
    request_id TEXT,
    received_at TEXT NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_pending ON feedback (batch_id, user_id);
"""


class Outbox:
    """One connection per process, shared by the service's threads under a lock; other processes
    (ingestion, more service workers) wait on SQLite's own locks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # WAL commits are fsync'd, not only checkpoints
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(feedback)")}
        if "request_id" not in columns:  # an outbox made before events could name their served list
            self._db.execute("ALTER TABLE feedback ADD COLUMN request_id TEXT")
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def append(self, rows: Sequence[dict[str, str | None]], received_at: str) -> None:
        """Store events (canonical text columns, ids already pseudonyms) in one durable transaction:
        when this returns, they are on disk."""
        values = [tuple(row.get(c) for c in EVENT_COLUMNS) + (received_at,) for row in rows]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(f"INSERT INTO feedback ({', '.join(EVENT_COLUMNS)}, received_at) "
                                     f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 1))})", values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def pending(self, users: Sequence[str] | None = None) -> tuple[pd.DataFrame, int]:
        """Events not ingested yet (canonical text columns, oldest first; only ``users``' when
        given) and the last sequence number read, for ``mark_ingested``."""
        query = f"SELECT seq, {', '.join(EVENT_COLUMNS)} FROM feedback WHERE batch_id IS NULL"
        params: list[str] = []
        if users is not None:
            users = list(users)
            query += f" AND user_id IN ({', '.join('?' * len(users))})"
            params = users
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        frame = pd.DataFrame(rows, columns=["seq", *EVENT_COLUMNS], dtype=object)
        last = int(frame["seq"].max()) if len(frame) else 0
        return frame.drop(columns="seq"), last

    def mark_ingested(self, up_to: int, batch_id: str) -> int:
        """Mark pending events up to sequence number ``up_to`` as routed by batch ``batch_id``."""
        with self._lock:
            cursor = self._db.execute("UPDATE feedback SET batch_id = ? WHERE batch_id IS NULL AND seq <= ?",
                                      (batch_id, up_to))
        return cursor.rowcount

    def received(self) -> pd.DataFrame:
        """Every event the service acknowledged, ingested or pending (canonical text columns and the
        batch that routed it, None while pending): what came back through /feedback."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(EVENT_COLUMNS)}, batch_id FROM feedback ORDER BY seq").fetchall()
        return pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "batch_id"], dtype=object)

    def counts(self) -> dict[str, int]:
        with self._lock:
            total, pending = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(batch_id IS NULL), 0) FROM feedback").fetchone()
        return {"events": int(total), "pending": int(pending)}
