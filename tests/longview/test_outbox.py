"""The feedback outbox: durable before acknowledged, read back by ingestion through the real events
suite, nothing lost or counted twice, pseudonyms never hashed again."""

from __future__ import annotations

import stat
import threading
from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from control.pipeline import OUTBOX, ingest_landing, ingest_outbox, replay
from longview.ingestion import ingest
from longview.outbox import Outbox
from longview.privacy import pseudonym, pseudonym_key
from longview.store import load_events
from serving.feedback import outbox_row
from serving.schemas import FeedbackRequest

NOW = datetime(2024, 3, 5, 12, tzinfo=timezone.utc)


def rows(key: bytes, *events: dict) -> list[dict]:
    request = FeedbackRequest.model_validate({"events": list(events)})
    return [outbox_row(key, event, NOW) for event in request.events]


def click(user: str = "alice", item: str = "i1", **extra) -> dict:
    return {"type": "click", "user_id": user, "item_id": item, **extra}


@pytest.fixture
def catalogue(home, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,genres\ni1,One,drama\ni2,Two,comedy\n")
    assert ingest(home, items, table="items").accepted == 2
    return home


def test_appended_events_are_on_disk_pending_until_marked_and_private(tmp_path):
    path = tmp_path / "outbox" / "feedback.db"
    outbox = Outbox(path)
    outbox.append(rows(b"k", click(), click("bob", "i2")), NOW.isoformat())
    outbox.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Outbox(path)  # another connection (another process) sees them
    pending, last = again.pending()
    assert len(pending) == 2 and list(pending["item_id"]) == ["i1", "i2"]
    assert len(again.pending([pseudonym(b"k", "bob")])[0]) == 1
    assert again.mark_ingested(last, "batch-1") == 2
    assert again.pending()[0].empty and again.counts() == {"events": 2, "pending": 0}


def test_rows_hold_pseudonyms_and_server_ids_never_raw_ids(tmp_path):
    key = b"secret-key"
    written = rows(key, click("alice.example.com", session_id="sess-42"),
                   {"type": "impression", "user_id": "alice.example.com", "item_id": "i1", "propensity": 0.25},
                   {"type": "view", "user_id": "alice.example.com", "item_id": "i1", "dwell_seconds": 12.5},
                   {"type": "rating", "user_id": "alice.example.com", "item_id": "i1", "rating": 4})
    outbox = Outbox(tmp_path / "f.db")
    outbox.append(written, NOW.isoformat())
    raw = (tmp_path / "f.db").read_bytes() + (tmp_path / "f.db-wal").read_bytes()
    assert b"alice" not in raw and b"sess-42" not in raw
    assert {r["user_id"] for r in written} == {pseudonym(key, "alice.example.com")}
    assert written[0]["session_id"] == pseudonym(key, "sess-42", "s_")
    assert [r["value"] for r in written] == [None, "0.25", "12.5", "4.0"]
    assert len({r["event_id"] for r in written}) == 4 and all(r["event_id"].startswith("e_") for r in written)


def test_concurrent_appends_all_land_once(tmp_path):
    outbox = Outbox(tmp_path / "f.db")

    def send(n: int) -> None:
        for i in range(25):
            outbox.append(rows(b"k", click(f"user{n}", "i1")), NOW.isoformat())

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pending, _ = outbox.pending()
    assert len(pending) == 200 and pending["event_id"].is_unique


def test_ingestion_routes_the_outbox_through_the_events_suite(catalogue, tmp_path):
    home = catalogue
    key = pseudonym_key(home)
    outbox = Outbox(home.outbox_path)
    outbox.append(rows(key, click(), click(item="i404"),
                       {"type": "impression", "user_id": "alice", "item_id": "i2", "propensity": 0.5}),
                  NOW.isoformat())
    summaries = ingest_landing(home)
    fed = next(s for s in summaries if s["file"] == OUTBOX)
    assert (fed["received"], fed["accepted"], fed["quarantined"]) == (3, 2, 1)
    stored = load_events(home)
    assert set(stored["user_id"]) == {pseudonym(key, "alice")}, "pseudonyms are stored as they are, not hashed again"
    assert set(stored["event_type"]) == {"click", "impression"}
    assert stored.loc[stored["event_type"] == "impression", "value"].tolist() == [0.5]
    bad = pd.read_parquet(home.quarantine_dir / f"events-{fed['batch_id']}.parquet")
    assert list(bad["item_id"]) == ["i404"] and "unknown item" in bad["reason"].iloc[0]
    assert outbox.counts() == {"events": 3, "pending": 0}
    assert ingest_outbox(home) is None, "nothing pending: nothing ingested twice"


def test_a_crash_before_marking_resends_and_the_duplicates_are_caught(catalogue):
    home = catalogue
    outbox = Outbox(home.outbox_path)
    outbox.append(rows(pseudonym_key(home), click(), click(item="i2")), NOW.isoformat())
    first = ingest_outbox(home)
    outbox._db.execute("UPDATE feedback SET batch_id = NULL")  # as if the process died before marking
    second = ingest_outbox(home)
    assert first.accepted == 2 and (second.accepted, second.quarantined) == (0, 2)
    assert len(load_events(home)) == 2


def test_a_replayed_outbox_batch_keeps_its_pseudonyms(catalogue, tmp_path):
    home = catalogue
    key = pseudonym_key(home)
    Outbox(home.outbox_path).append(rows(key, click(item="i9"), click(item="i1")), NOW.isoformat())
    first = ingest_outbox(home)
    assert (first.accepted, first.quarantined) == (1, 1)
    items = tmp_path / "more.csv"
    items.write_text("item_id,title\ni9,Nine\n")
    ingest(home, items, table="items")
    again = replay(home, first.batch_id)
    assert again.accepted == 1
    assert load_events(home)["user_id"].tolist() == [pseudonym(key, "alice")] * 2


def test_out_of_range_propensities_are_quarantined_by_the_suite(catalogue):
    """The door checks propensities; the contract checks them again for every batch (a file from
    elsewhere, an outbox written by an older service)."""
    home = catalogue
    row = rows(pseudonym_key(home), {"type": "impression", "user_id": "a", "item_id": "i1", "propensity": 0.5})[0]
    good = [{**row, "event_id": f"e_ok{n}"} for n in range(3)]
    Outbox(home.outbox_path).append([*good, {**row, "event_id": "e_x", "value": "1.5"},
                                     {**row, "event_id": "e_y", "value": "0"}], NOW.isoformat())
    result = ingest_outbox(home)
    assert (result.accepted, result.quarantined) == (3, 2)
    reasons = pd.read_parquet(home.quarantine_dir / f"events-{result.batch_id}.parquet")["reason"]
    assert reasons.str.contains("propensity").all()


ids = st.text(alphabet="abcXYZ019_.:-", min_size=1, max_size=64)
values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), ids)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["impression", "click", "view", "rating", "purchase", "", None])},
    optional={"user_id": st.one_of(ids, values), "item_id": st.one_of(ids, values), "propensity": values,
              "dwell_seconds": values, "rating": values, "time": st.one_of(values, st.just("2024-03-01T10:00:00Z")),
              "session_id": values, "extra": values})


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.fixed_dictionaries({"events": st.lists(events, max_size=4)}), values,
                      st.lists(events, max_size=2)))
def test_any_body_is_either_a_checked_event_list_or_a_validation_error(body):
    try:
        request = FeedbackRequest.model_validate(body)
    except ValidationError:
        return
    for event in request.events:
        row = outbox_row(b"k", event, NOW)
        assert row["user_id"] == pseudonym(b"k", event.user_id) and row["item_id"] == event.item_id
        if event.type == "impression":
            assert 0 < float(row["value"]) <= 1
        elif event.type == "click":
            assert row["value"] is None
