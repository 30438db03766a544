"""`longview ingest` takes the served log through its own suite: good records stored one row per
slot, a malformed record quarantined whole and alone, a file routed twice (a crash before its
removal) stored once; events name their served list by request id."""

from __future__ import annotations

import json
import shutil

import pandas as pd

from control.pipeline import ingest_landing
from longview.ingestion import ingest
from longview.served_log import ServedLog, closed_files
from longview.store import load_events, load_served

USER = "u_" + "b" * 24


def record(n: int, slots: int = 3, **extra) -> dict:
    return {"request_id": f"r_{n:032x}", "user_id": USER, "time": f"2026-01-01T00:00:{n:02d}+00:00",
            "policy": "engagement", "model_name": "sequence", "model_version": "4", "exploration": 0.1,
            "fallback": None, "slots": [{"item_id": f"i{k}", "score": 2.0 - k / 10, "propensity": 0.9 if k else 0.93,
                                         "explored": False} for k in range(slots)], **extra}


def write_log(folder, records: list, torn: str = "") -> None:
    log = ServedLog(folder)
    for r in records:
        log.append(r)
    log.close()
    if torn:  # a record the writer was killed in the middle of
        path = closed_files(folder)[-1]
        path.write_bytes(path.read_bytes() + torn.encode())


def bad_slot(n: int, **slot) -> dict:
    r = record(n)
    r["slots"][1] = {**r["slots"][1], **slot}
    return r


def test_served_log_is_validated_stored_per_slot_and_bad_records_kept_whole(home):
    good = [record(n) for n in range(10)]
    bad = [bad_slot(20, propensity=0), bad_slot(21, score="inf"), bad_slot(22, item_id="no spaces"),
           record(23, user_id="alice"),  # a raw id: the log holds pseudonyms only
           record(24, request_id="r_1"), bad_slot(25, explored="maybe"), record(26, model_version=None),
           {**record(27), "slots": [{"item_id": "i1", "score": 1, "propensity": 1, "explored": False, "position": 5}]}]
    bad[-1]["slots"][0].pop("position")
    write_log(home.served_log_dir, good + bad[:-1], torn=json.dumps(record(28))[:30])
    summaries = ingest_landing(home)
    (summary,) = [s for s in summaries if s["file"].startswith("served log")]
    stored = load_served(home)
    assert summary["received"] == summary["accepted"] + summary["quarantined"]
    assert summary["accepted"] == 30 and len(stored) == 30
    assert set(stored["request_id"]) == {r["request_id"] for r in good}
    assert stored.groupby("request_id")["position"].apply(list).map(lambda p: p == [0, 1, 2]).all()
    assert stored["explored"].dtype == bool and stored["propensity"].between(0, 1).all()
    assert str(stored["timestamp"].dtype) == "datetime64[ns, UTC]"
    kept = pd.read_parquet(next(home.quarantine_dir.glob("served-*.parquet")))
    kept["request_id"] = kept["request_id"].fillna("(none)")
    # each bad record whole (every slot of it), each with its own reason; the torn line alone
    assert kept.groupby("request_id").size().to_dict() == {
        **{f"r_{n:032x}": 3 for n in (20, 21, 22, 23, 25, 26)}, "r_1": 3, "(none)": 1}
    reasons = kept.groupby("request_id")["reason"].apply(lambda r: " | ".join(sorted(set(r))))
    assert "propensity is not in (0, 1]" in reasons[f"r_{20:032x}"]
    assert "score is not a finite number" in reasons[f"r_{21:032x}"]
    assert "another slot of this record failed" in reasons[f"r_{21:032x}"]
    assert "not a pseudonym" in reasons[f"r_{23:032x}"]
    assert "torn record" in reasons["(none)"]
    assert closed_files(home.served_log_dir) == []  # routed, so removed


def test_a_log_file_routed_twice_is_stored_once(home, tmp_path):
    write_log(home.served_log_dir, [record(n) for n in range(4)])
    saved = tmp_path / "copy.jsonl"
    shutil.copy(closed_files(home.served_log_dir)[0], saved)
    ingest_landing(home)
    shutil.copy(saved, home.served_log_dir / "served-20990101T000000000000-1.jsonl")  # as if not removed
    (again,) = [s for s in ingest_landing(home) if s["file"].startswith("served log")]
    assert again["accepted"] == 0 and again["quarantined"] == 12
    assert len(load_served(home)) == 12


def test_events_name_their_served_list_and_a_malformed_request_id_is_quarantined(home, tmp_path):
    path = tmp_path / "events.csv"
    rid = "r_" + "c" * 32
    path.write_text("event_id,user_id,item_id,event_type,timestamp,request_id\n"
                    + "".join(f"e{n},u1,i1,click,2024-03-01T10:00:0{n}+00:00,{rid}\n" for n in range(6))
                    + "e9,u1,i1,click,2024-03-01T10:00:09+00:00,r_<script>\n")
    result = ingest(home, path)
    assert (result.accepted, result.quarantined) == (6, 1)
    stored = load_events(home, columns=["event_id", "request_id"])
    assert set(stored["request_id"]) == {rid}
    legacy = tmp_path / "legacy.csv"
    legacy.write_text("event_id,user_id,item_id,event_type,timestamp\nold1,u1,i1,click,2024-03-02T10:00:00+00:00\n")
    batch = home.events_dir / f"batch-{ingest(home, legacy).batch_id}.parquet"
    pd.read_parquet(batch).drop(columns="request_id").to_parquet(batch)  # as stored before the column existed
    assert load_events(home, columns=["event_id", "request_id"])["request_id"].isna().sum() == 1
