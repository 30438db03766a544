"""/feedback over real HTTP: durable before acknowledged, pseudonymised, reflected in the user's
next /recommend through the Feast online store, and in the event store after the next ingestion."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest

from control.pipeline import OUTBOX, ingest_landing
from control.service_process import running_service
from longview.outbox import Outbox
from longview.privacy import pseudonym, pseudonym_key
from longview.store import load_events, load_served
from tests.conftest import settings_of

USER = "u0007"


@pytest.fixture(scope="module")
def fed(trained, tmp_path_factory):
    """A service on a copy of the demo home (feedback changes the home's state)."""
    home = tmp_path_factory.mktemp("feedback") / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    settings = settings_of(home)
    log = home.parent / "service.log"
    with running_service(settings, log_path=log) as url:
        yield settings, url, log


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def test_feedback_is_stored_reflected_at_once_and_ingested_next(fed):
    settings, url, log = fed
    before = post(url, "/recommend", {"user_id": USER, "k": 5}).json()
    top = before["items"][0]
    receipt = post(url, "/feedback", {"events": [
        {"type": "impression", "user_id": USER, "item_id": top["item_id"], "propensity": top["propensity"]},
        {"type": "click", "user_id": USER, "item_id": top["item_id"], "session_id": "web-session-1"},
        {"type": "view", "user_id": USER, "item_id": top["item_id"], "dwell_seconds": 95.0},
    ]})
    assert receipt.status_code == 200, receipt.text
    body = receipt.json()
    assert body["accepted"] == 3 and body["reflected"] is True and len(set(body["event_ids"])) == 3

    # on disk before the answer, under pseudonyms only
    pending, _ = Outbox(settings.outbox_path).pending()
    assert list(pending["event_id"]) == body["event_ids"]
    assert set(pending["user_id"]) == {pseudonym(pseudonym_key(settings), USER)}
    assert not any(USER.encode() in p.read_bytes() for p in settings.outbox_path.parent.iterdir())

    # the next list knows the click: the item is not recommended again, and the model read a new history
    after = post(url, "/recommend", {"user_id": USER, "k": 5}).json()
    assert top["item_id"] not in {i["item_id"] for i in after["items"]}
    assert after["fallback"] is None and after["items"] != before["items"]

    # the next ingestion validates the outbox like any batch and stores the events
    fed_in = next(s for s in ingest_landing(settings) if s["file"] == OUTBOX)
    assert (fed_in["received"], fed_in["accepted"], fed_in["quarantined"]) == (3, 3, 0)
    stored = load_events(settings)
    assert set(body["event_ids"]) <= set(stored["event_id"])
    assert Outbox(settings.outbox_path).counts()["pending"] == 0
    assert USER not in log.read_text()


def test_every_answer_is_in_the_served_log_and_feedback_names_it_by_request_id(fed):
    """The service logs each list itself (pseudonymised, with each slot's propensity), a click that
    echoes the request id is stored with it, and ingestion takes both."""
    settings, url, _ = fed
    answer = post(url, "/recommend", {"user_id": USER, "k": 4}).json()
    batch = post(url, "/recommend_batch", {"user_ids": ["u0003", "u0004"], "k": 2}).json()["recommendations"]
    ids = [answer["request_id"], *(b["request_id"] for b in batch)]
    assert len(set(ids)) == 3 and all(i.startswith("r_") and len(i) == 34 for i in ids)
    top = answer["items"][0]
    receipt = post(url, "/feedback", {"events": [{"type": "click", "user_id": USER, "item_id": top["item_id"],
                                                  "request_id": answer["request_id"]}]})
    assert receipt.status_code == 200, receipt.text
    pending, _ = Outbox(settings.outbox_path).pending()
    assert answer["request_id"] in set(pending["request_id"])

    def logged() -> dict:
        records = {}
        for path in sorted(settings.served_log_dir.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                records[json.loads(line)["request_id"]] = json.loads(line)
        return records
    deadline = time.monotonic() + 2  # the writer commits every 100 ms
    while not set(ids) <= set(logged()) and time.monotonic() < deadline:
        time.sleep(0.05)
    record = logged()[answer["request_id"]]
    assert record["user_id"] == pseudonym(pseudonym_key(settings), USER)
    assert [(s["item_id"], s["propensity"]) for s in record["slots"]] == \
        [(i["item_id"], i["propensity"]) for i in answer["items"]]
    assert record["model_version"] == answer["model_version"] and record["policy"] == answer["policy"]
    assert not any(USER.encode() in p.read_bytes() for p in settings.served_log_dir.iterdir())

    # the service closes its open file when stopped; until then ingestion takes closed files only,
    # so close this one as a rotation would
    for path in settings.served_log_dir.glob("open-*.jsonl"):
        path.rename(path.with_name("served-20000101T000000000000-0.jsonl"))
    summaries = ingest_landing(settings)
    served = next(s for s in summaries if s["file"].startswith("served log"))
    assert served["quarantined"] == 0 and served["accepted"] >= 8
    stored = load_served(settings)
    assert set(ids) <= set(stored["request_id"])
    clicks = load_events(settings, columns=["event_type", "request_id"])
    assert answer["request_id"] in set(clicks["request_id"])


def test_feedback_on_items_outside_the_catalogue_is_acknowledged_then_quarantined(fed):
    settings, url, _ = fed
    known = post(url, "/recommend", {"user_id": "u0011", "k": 1}).json()["items"][0]["item_id"]
    receipt = post(url, "/feedback", {"events": [{"type": "click", "user_id": "u0011", "item_id": "no-such-item"},
                                                 {"type": "click", "user_id": "u0011", "item_id": known}]})
    assert receipt.status_code == 200 and receipt.json()["accepted"] == 2
    fed_in = next(s for s in ingest_landing(settings) if s["file"] == OUTBOX)
    assert (fed_in["accepted"], fed_in["quarantined"]) == (1, 1)


@pytest.mark.parametrize("body", [
    {"events": []},
    {"events": "click"},
    {"event": [{"type": "click", "user_id": "u1", "item_id": "i1"}]},
    {"events": [{"type": "purchase", "user_id": "u1", "item_id": "i1"}]},  # not a feedback type
    {"events": [{"type": "click", "user_id": "u1"}]},
    {"events": [{"type": "click", "user_id": "", "item_id": "i1"}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1' OR 1=1 --"}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "propensity": 0.5}]},  # not a click's field
    {"events": [{"type": "impression", "user_id": "u1", "item_id": "i1"}]},  # its propensity is required
    {"events": [{"type": "impression", "user_id": "u1", "item_id": "i1", "propensity": 0}]},
    {"events": [{"type": "impression", "user_id": "u1", "item_id": "i1", "propensity": 1.5}]},
    {"events": [{"type": "impression", "user_id": "u1", "item_id": "i1", "propensity": "0.5"}]},
    {"events": [{"type": "view", "user_id": "u1", "item_id": "i1", "dwell_seconds": -1}]},
    {"events": [{"type": "view", "user_id": "u1", "item_id": "i1", "dwell_seconds": 1e12}]},
    {"events": [{"type": "rating", "user_id": "u1", "item_id": "i1", "rating": 11}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "time": "2024-03-01T10:00:00"}]},  # naive
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "time": "2999-01-01T00:00:00+00:00"}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1"}] * 1001},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "request_id": "r_123"}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "request_id": "r_" + "G" * 32}]},
    {"events": [{"type": "click", "user_id": "u1", "item_id": "i1", "request_id": 7}]},
])
def test_bad_feedback_gets_a_clear_4xx_and_stores_nothing(fed, body):
    settings, url, _ = fed
    before = Outbox(settings.outbox_path).counts()["events"]
    response = post(url, "/feedback", body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert Outbox(settings.outbox_path).counts()["events"] == before
