"""The served log: every slate the service answers with, as the service itself saw it.

One JSON object per line, per answer: ``request_id`` (returned to the caller and echoed by the
/feedback events about this list), ``user_id`` (the pseudonym; raw ids never reach the disk),
``time`` (the request's time, ISO-8601 UTC), ``policy``, ``model_name``, ``model_version``,
``exploration`` (the share of slots the policy explores, 0 for a deterministic ranking),
``fallback`` (null, or why the list is a fallback) and ``slots``: per position, ``item_id``,
``score``, ``explored`` and ``propensity``.

A slot's ``propensity`` is *conditional*: the chance that the policy showed this item in this slot
given the items in the slots above it (epsilon-greedy per slot: 1 - epsilon + epsilon / remaining for
the greedy pick, epsilon / remaining for any other). The chance of a whole prefix, what the cascade
and standard slate estimators need, is the product of the conditionals down to that slot
(``cascade_propensities``); a position's marginal chance is not logged (it would need every prefix).

Writes are group-committed: ``append`` only queues a line in memory (no disk on the request path); a
background thread writes the queue, flushes and fsyncs it at most every ``commit_ms`` (100 ms by
default), so a crash loses at most the records of that window. The open file is closed (renamed
``served-*.jsonl``, which is what ingestion reads) when it passes ``file_bytes`` or ``rotate_seconds``;
closed files beyond ``max_bytes`` in all are dropped oldest first, counted and warned about."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

OPEN_GLOB = "open-*.jsonl"  # one open file per writing process (BentoML runs one per worker)
CLOSED_GLOB = "served-*.jsonl"
RECORD_FIELDS = ("request_id", "user_id", "time", "policy", "model_name", "model_version", "exploration", "fallback")
SLOT_FIELDS = ("item_id", "score", "propensity", "explored")
# The rows ingestion validates: one per slot, text values as read, plus where each came from.
SLOT_COLUMNS = ["request_id", "user_id", "timestamp", "policy", "model_name", "model_version", "exploration",
                "fallback", "position", "item_id", "score", "propensity", "explored"]
# Records queued while the disk does not keep up; beyond this the newest are dropped (and counted).
MAX_QUEUED = 100_000


class ServedLog:
    """The writer: one per service process. ``append`` never blocks on the disk."""

    def __init__(self, folder: Path, commit_ms: int = 100, file_bytes: int = 8 * 2**20,
                 rotate_seconds: float = 3600.0, max_bytes: int = 512 * 2**20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # pseudonyms and what each was shown: not for other users of the machine
        self.commit_seconds = commit_ms / 1000
        self.file_bytes, self.rotate_seconds, self.max_bytes = file_bytes, rotate_seconds, max_bytes
        self._clock = clock
        self._queue: list[str] = []
        self._lock = threading.Lock()  # guards the queue only: appends never wait on a write
        self._writing = threading.Lock()  # one writer of the file at a time
        self.records_written = 0
        self.records_dropped = 0  # queued beyond MAX_QUEUED: never written
        self.files_dropped = 0  # closed files dropped unread beyond max_bytes
        self._fd: int | None = None
        self._opened_at = 0.0
        self._close_abandoned()  # a crashed writer's file is ingestible at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-log", daemon=True)
        self._thread.start()

    def append(self, record: dict) -> None:
        """Queue one record (a dict of RECORD_FIELDS and ``slots``); written within ``commit_ms``."""
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self.records_dropped += 1
                return
            self._queue.append(line)

    def commit(self) -> int:
        """Write what is queued, then flush and fsync it; returns how many records."""
        with self._writing:
            with self._lock:
                lines, self._queue = self._queue, []
            if lines:
                if self._fd is None:
                    self._open()
                data = "".join(lines).encode()
                view = memoryview(data)
                while view:  # os.write may write less than asked
                    view = view[os.write(self._fd, view):]
                os.fsync(self._fd)
                self.records_written += len(lines)
            if self._fd is not None and (os.fstat(self._fd).st_size >= self.file_bytes
                                         or self._clock() - self._opened_at >= self.rotate_seconds):
                self._rotate()
            return len(lines)

    def close(self) -> None:
        """Write what is queued and close the open file (ingestible from then on)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.commit()
        with self._writing:
            self._rotate()

    def _run(self) -> None:
        while not self._stop.wait(self.commit_seconds):
            try:
                self.commit()
            except Exception:  # a full disk: the queue keeps (up to MAX_QUEUED) and the next commit retries
                log.exception("the served log could not be written")

    @property
    def open_path(self) -> Path:
        return self.folder / f"open-{os.getpid()}.jsonl"

    def _open(self) -> None:
        self._fd = os.open(self.open_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._opened_at = self._clock()

    def _rotate(self) -> None:
        """Close the open file under a closed name (what ingestion reads), then enforce max_bytes."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        _close_file(self.open_path)
        self._bound()

    def _close_abandoned(self) -> None:
        """Close the open files of writers that are gone (a crash): their records are ingestible."""
        for path in self.folder.glob(OPEN_GLOB):
            pid = path.stem.removeprefix("open-")
            if pid == str(os.getpid()) or not (pid.isdigit() and _alive(int(pid))):
                _close_file(path)
                log.info("served log: closed %s, left open by a writer that is gone", path.name)
        self._bound()

    def _bound(self) -> None:
        closed = closed_files(self.folder)
        sizes = [p.stat().st_size for p in closed]
        excess = sum(sizes) - self.max_bytes
        for path, size in zip(closed, sizes):
            if excess <= 0:
                break
            path.unlink(missing_ok=True)
            excess -= size
            self.files_dropped += 1
            log.warning("served log: dropped %s unread (closed files passed %d bytes): run `longview ingest`",
                        path.name, self.max_bytes)


def _close_file(path: Path) -> None:
    if path.exists() and path.stat().st_size:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path.rename(path.with_name(f"served-{stamp}-{path.stem.removeprefix('open-')}.jsonl"))
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def closed_files(folder: Path) -> list[Path]:
    """The closed files, oldest first (their names start with the closing time)."""
    return sorted(Path(folder).glob(CLOSED_GLOB))


def record_of(request_id: str, user: str, when: float, policy: str, model_name: str, model_version: str,
              exploration: float, fallback: str | None, slots: list) -> dict:
    """One answer as a log record (``slots``: items with item_id, score, propensity, explored)."""
    return {"request_id": request_id, "user_id": user,
            "time": datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="microseconds"),
            "policy": policy, "model_name": model_name, "model_version": model_version,
            "exploration": float(exploration), "fallback": fallback,
            "slots": [{"item_id": s.item_id, "score": float(s.score), "propensity": float(s.propensity),
                       "explored": s.reason == "exploration"} for s in slots]}


def slot_rows(content: bytes, file: str) -> pd.DataFrame:
    """A log file's records as rows to validate: one per slot, every value as text (None where
    absent), ``source_line`` the record's line and ``source_problem`` what made a record unreadable
    (it then gets one row, with whatever fields it had, and is quarantined whole)."""
    rows: list[dict] = []
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last complete record
    for number, raw in enumerate(lines, start=1):
        problem, record = _parse(raw, last=number == len(lines) and not content.endswith(b"\n"))
        base = {"request_id": _text(record.get("request_id")), "user_id": _text(record.get("user_id")),
                "timestamp": _text(record.get("time")),
                **{f: _text(record.get(f)) for f in RECORD_FIELDS[3:]}, "source_line": str(number)}
        slots = record.get("slots")
        if problem is None and (not isinstance(slots, list) or not slots):
            problem = "a record needs a non-empty list of slots"
        if problem is None and not all(isinstance(s, dict) for s in slots):
            problem = "every slot must be an object"
        if problem is not None:
            rows.append({**base, "source_problem": f"{file}:{number}: {problem}"})
            continue
        for position, slot in enumerate(slots):
            rows.append({**base, "position": str(position), **{f: _text(slot.get(f)) for f in SLOT_FIELDS},
                         "source_problem": None})
    frame = pd.DataFrame(rows, columns=[*SLOT_COLUMNS, "source_line", "source_problem"], dtype=object)
    return frame.astype(object).where(frame.notna(), None)


def _parse(raw: bytes, last: bool) -> tuple[str | None, dict]:
    if last:
        return "a torn record (the writer stopped mid-line)", {}
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON: {str(exc)[:80]}", {}
    if not isinstance(record, dict):
        return "a record must be a JSON object", {}
    return None, record


def _text(value) -> str | None:
    """A JSON value as the text the suite checks (bools as true/false; nested values as JSON)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:200]
    return str(value)


def cascade_propensities(conditional: np.ndarray) -> np.ndarray:
    """slates x slots: the chance of each slate's prefix down to each slot (the product of the
    logged conditional propensities), what obp's cascade estimators take as ``pscore_cascade``."""
    return np.cumprod(np.asarray(conditional, dtype=np.float64), axis=1)
