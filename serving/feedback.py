"""What users did with what they were shown, from /feedback to the outbox and the online store.

An event is acknowledged only once it is on disk in the outbox (longview/outbox.py), with the user
and session pseudonymised and a server-assigned id; the users' online rows are then recomputed
from the event store plus their pending outbox rows and pushed to Feast, so their next /recommend
sees it. The next ingestion validates the outbox like any batch."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime, timezone

import pandas as pd

from longview.feature_store import push_fresh_user_features
from longview.outbox import Outbox
from longview.privacy import pseudonym
from longview.settings import Settings
from longview.store import load_catalogue
from serving.schemas import FeedbackEvent, FeedbackReceipt

log = logging.getLogger(__name__)

# The event store's `value` column holds each type's number (the impression's logged propensity).
VALUE_FIELD = {"impression": "propensity", "view": "dwell_seconds", "rating": "rating"}


class FutureEvent(ValueError):
    """An event dated beyond the contract's tolerance for clocks ahead."""


def outbox_row(key: bytes, event: FeedbackEvent, received: datetime) -> dict[str, str | None]:
    """An event as an outbox row: the canonical text columns, a server-assigned id, pseudonyms for
    the user and session (raw ids never reach the disk)."""
    field = VALUE_FIELD.get(event.type)
    return {"event_id": "e_" + secrets.token_hex(12), "user_id": pseudonym(key, event.user_id),
            "item_id": event.item_id, "event_type": event.type,
            "timestamp": (event.time or received).astimezone(timezone.utc).isoformat(),
            "value": None if field is None else repr(float(getattr(event, field))),
            "session_id": None if event.session_id is None else pseudonym(key, event.session_id, "s_"),
            "request_id": event.request_id}


def typed_events(rows: pd.DataFrame) -> pd.DataFrame:
    """Outbox rows (text) as the event store's typed rows."""
    from longview.ingestion import canonical_events
    from longview.ingestion.preparing import prepare_events

    return canonical_events(prepare_events(rows))


class FeedbackSink:
    def __init__(self, settings: Settings, key: bytes) -> None:
        self.settings, self.key = settings, key
        self.outbox = Outbox(settings.outbox_path)
        self._pushing = threading.Lock()  # one online-row recomputation at a time
        self._catalogue: tuple[int, pd.DataFrame] | None = None  # read again only when the file changes

    def record(self, events: Sequence[FeedbackEvent], store=None) -> FeedbackReceipt:
        """Store the events durably, then reflect them online. Raises FutureEvent (nothing stored)
        for an event dated too far ahead. ``reflected`` is False (with a note) when the online
        store could not be updated: the events are stored either way."""
        received = datetime.now(timezone.utc)
        tolerance = self.settings.future_tolerance_hours
        if any(e.time is not None and e.time.timestamp() > received.timestamp() + tolerance * 3600 for e in events):
            raise FutureEvent(f"an event's time is more than {tolerance:g} hours in the future")
        rows = [outbox_row(self.key, event, received) for event in events]
        self.outbox.append(rows, received.isoformat())
        users = sorted({row["user_id"] for row in rows})
        receipt = FeedbackReceipt(accepted=len(rows), event_ids=[row["event_id"] for row in rows], reflected=False)
        try:
            with self._pushing:
                pending, _ = self.outbox.pending(users)
                push_fresh_user_features(self.settings, users, store, pending=typed_events(pending),
                                         catalogue=self._stored_catalogue())
            receipt.reflected = True
        except Exception as exc:  # stored either way: the next ingestion and materialisation catch up
            log.error("feedback stored but online features not updated: %s", exc)
            receipt.note = "stored; the users' online features catch up at the next ingestion"
        return receipt

    def _stored_catalogue(self) -> pd.DataFrame | None:
        """The stored catalogue, read once per version of its file (None before there is one)."""
        path = self.settings.catalogue_path
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        if self._catalogue is None or self._catalogue[0] != stamp:
            self._catalogue = (stamp, load_catalogue(self.settings))
        return self._catalogue[1]
