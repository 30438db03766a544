"""Ingestion against the real Great Expectations suite: routing, conservation, rejection, idempotence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from longview.ingestion import BatchRejected, ingest
from longview.store import load_events
from tests.conftest import last_json, longview

HEADER = "event_id,user_id,item_id,event_type,timestamp,value,session_id\n"
GOOD = [f"g{n},u1,i1,click,2024-03-0{1 + n % 9}T10:00:00+00:00,,s1\n" for n in range(12)]


def write(tmp_path: Path, rows: list[str], name: str = "batch.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(rows))
    return path


def quarantined(settings, result) -> pd.DataFrame:
    return pd.read_parquet(settings.quarantine_dir / f"events-{result.batch_id}.parquet")


def assert_conserved(result) -> None:
    assert result.received == result.accepted + result.quarantined


def test_clean_batch_is_accepted_whole(home, tmp_path):
    result = ingest(home, write(tmp_path, GOOD))
    assert (result.received, result.accepted, result.quarantined) == (12, 12, 0)
    stored = load_events(home)
    assert len(stored) == 12
    assert str(stored["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert Path(result.report).exists()


BAD_ROWS = {
    "null user id": ("b1,,i1,click,2024-03-01T10:00:00+00:00,,s1\n", "not_be_null(user_id)"),
    "null item id": ("b2,u1,,click,2024-03-01T10:00:00+00:00,,s1\n", "not_be_null(item_id)"),
    "null event id": (",u1,i1,click,2024-03-01T10:00:00+00:00,,s1\n", "not_be_null(event_id)"),
    "negative dwell": ("b3,u1,i1,view,2024-03-01T10:00:00+00:00,-4,s1\n", "between(dwell_seconds)"),
    "dwell above cap": ("b4,u1,i1,view,2024-03-01T10:00:00+00:00,999999,s1\n", "between(dwell_seconds)"),
    "future timestamp": ("b5,u1,i1,click,2999-01-01T00:00:00+00:00,,s1\n", "between(event_epoch)"),
    "timestamp before 1995": ("b6,u1,i1,click,1970-01-02T00:00:00+00:00,,s1\n", "between(event_epoch)"),
    "timestamp wrong type": ("b7,u1,i1,click,yesterday,,s1\n", "not_be_null(event_epoch)"),
    "value wrong type": ("b8,u1,i1,rating,2024-03-01T10:00:00+00:00,five,s1\n", "match_regex(value)"),
    "value NaN": ("b9,u1,i1,view,2024-03-01T10:00:00+00:00,nan,s1\n", "match_regex(value)"),
    "value infinite": ("b10,u1,i1,view,2024-03-01T10:00:00+00:00,inf,s1\n", "match_regex(value)"),
    "rating out of scale": ("b11,u1,i1,rating,2024-03-01T10:00:00+00:00,7,s1\n", "between(rating)"),
    "rating without a value": ("b19,u1,i1,rating,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(value)"),
    "65-character id": (f"b20,u{'1' * 64},i1,click,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(user_id)"),
    "unknown event type": ("b12,u1,i1,teleport,2024-03-01T10:00:00+00:00,,s1\n", "in_set(event_type)"),
    "hostile id (SQL)": ("b13,u1'; DROP TABLE events;--,i1,click,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(user_id)"),
    "hostile id (path)": ("b14,../../etc/passwd,i1,click,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(user_id)"),
    "oversized id": (f"b15,{'u' * 500},i1,click,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(user_id)"),
    "look-alike unicode digits in id": ("b16,u\uff11,i1,click,2024-03-01T10:00:00+00:00,,s1\n", "match_regex(user_id)"),
    "session id with spaces": ("b17,u1,i1,click,2024-03-01T10:00:00+00:00,,my session\n", "match_regex(session_id)"),
    "terminal escape in event type": ("b18,u1,i1,\x1b[31mclick,2024-03-01T10:00:00+00:00,,s1\n", "in_set(event_type)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_row_is_quarantined_with_its_reason(home, tmp_path, kind):
    row, expected_reason = BAD_ROWS[kind]
    result = ingest(home, write(tmp_path, GOOD + [row]))
    assert_conserved(result)
    assert (result.accepted, result.quarantined) == (12, 1)
    q = quarantined(home, result)
    assert len(q) == 1
    assert expected_reason in q["reason"].iloc[0]
    assert q["batch_id"].iloc[0] == result.batch_id
    stored = load_events(home)
    assert len(stored) == 12 and stored["user_id"].str.startswith("u_").all()


def test_many_kinds_of_bad_rows_in_one_batch(home, tmp_path):
    rows = [row for row, _ in BAD_ROWS.values()]
    good = [f"h{n},u1,i1,click,2024-03-01T10:00:00+00:00,,s1\n" for n in range(40)]
    result = ingest(home, write(tmp_path, good + rows))
    assert_conserved(result)
    assert (result.accepted, result.quarantined) == (40, len(BAD_ROWS))


@pytest.mark.slow
def test_unknown_item_is_quarantined_once_a_catalogue_exists(home, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,genres\ni1,One,drama\n")
    assert ingest(home, items, table="items").accepted == 1
    result = ingest(home, write(tmp_path, GOOD + ["x1,u1,i404,click,2024-03-01T10:00:00+00:00,,s1\n"]))
    assert result.quarantined == 1
    assert "unknown item" in quarantined(home, result)["reason"].iloc[0]


def test_missing_column_rejects_the_whole_batch(home, tmp_path):
    header = "event_id,user_id,event_type,timestamp,value,session_id\n"
    rows = [f"m{n},u1,click,2024-03-01T10:00:00+00:00,,s1\n" for n in range(5)]
    with pytest.raises(BatchRejected, match="item_id") as info:
        ingest(home, write(tmp_path, rows, header=header))
    result = info.value.result
    assert (result.received, result.accepted, result.quarantined) == (5, 0, 5)
    assert len(quarantined(home, result)) == 5
    assert load_events(home).empty


def test_mostly_broken_batch_is_rejected_and_kept(home, tmp_path):
    rows = [f"n{n},,i1,click,2024-03-01T10:00:00+00:00,,s1\n" for n in range(10)] + GOOD[:2]
    with pytest.raises(BatchRejected, match="failed validation"):
        ingest(home, write(tmp_path, rows))
    assert load_events(home).empty
    (kept,) = home.quarantine_dir.glob("events-*.parquet")
    assert len(pd.read_parquet(kept)) == 12


def test_unreadable_file_is_rejected_and_kept(home, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"\x00\x01 this is not parquet")
    with pytest.raises(BatchRejected, match="cannot read"):
        ingest(home, path)
    assert any(p.read_bytes() == path.read_bytes() for p in home.quarantine_dir.iterdir())


def test_empty_file_is_not_an_error(home, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    result = ingest(home, path)
    assert (result.received, result.accepted, result.quarantined) == (0, 0, 0)
    assert "empty" in result.message


@pytest.mark.slow
def test_duplicates_within_and_across_batches(home, tmp_path):
    first = ingest(home, write(tmp_path, GOOD + [GOOD[0]]))
    assert (first.accepted, first.quarantined) == (12, 1)
    assert quarantined(home, first)["reason"].tolist() == ["duplicate"]
    again = ingest(home, write(tmp_path, GOOD, name="again.csv"))
    assert (again.accepted, again.quarantined) == (0, 12)
    assert len(load_events(home)) == 12


def test_parquet_batches_are_validated_the_same_way(home, tmp_path):
    frame = pd.DataFrame({
        "event_id": ["p1", "p2"], "user_id": ["u1", "u2"], "item_id": ["i1", "i1"],
        "event_type": ["view", "view"], "timestamp": pd.to_datetime(["2024-03-01", "2024-03-02"], utc=True),
        "value": [12.5, -1.0], "session_id": ["s", "s"],
    })
    path = tmp_path / "batch.parquet"
    frame.to_parquet(path)
    result = ingest(home, path)
    assert (result.accepted, result.quarantined) == (1, 1)


@pytest.mark.slow
def test_cli_prints_the_summary_as_last_line(home, tmp_path):
    env = {"LONGVIEW_HOME": str(home.home)}
    path = write(tmp_path, GOOD + [BAD_ROWS["negative dwell"][0]])
    ok = longview("ingest", str(path), env=env)
    assert ok.returncode == 0, ok.stderr
    summary = last_json(ok.stdout)
    assert summary["received"] == summary["accepted"] + summary["quarantined"] == 13
    assert summary["quarantined"] == 1 and Path(summary["report"]).exists()

    missing = write(tmp_path, ["a,b\n"], name="nocols.csv", header="event_id,user_id\n")
    rejected = longview("ingest", str(missing), env=env)
    assert rejected.returncode == 1
    assert "required columns missing" in rejected.stderr
    assert last_json(rejected.stdout)["quarantined"] == 1

    absent = longview("ingest", str(tmp_path / "nope.csv"), env=env)
    assert absent.returncode == 2 and "no such file" in absent.stderr


@pytest.mark.slow
def test_quarantined_rows_are_replayed_after_the_fix(home, tmp_path):
    row = "late1,u1,i9,click,2024-03-01T10:00:00+00:00,,s1\n"
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,One\n")
    ingest(home, items, table="items")
    first = ingest(home, write(tmp_path, GOOD + [row]))
    assert first.quarantined == 1 and "unknown item" in quarantined(home, first)["reason"].iloc[0]
    # The fix: the missing item arrives in the catalogue.
    items.write_text("item_id,title\ni9,Nine\n")
    ingest(home, items, table="items")
    env = {"LONGVIEW_HOME": str(home.home)}
    replay = longview("ingest", "--replay-quarantine", first.batch_id, env=env)
    assert replay.returncode == 0, replay.stderr
    summary = last_json(replay.stdout)
    assert (summary["received"], summary["accepted"], summary["quarantined"]) == (1, 1, 0)
    assert len(load_events(home)) == 13
    assert not (home.quarantine_dir / f"events-{first.batch_id}.parquet").exists()
    again = longview("ingest", "--replay-quarantine", first.batch_id, env=env)
    assert again.returncode == 2 and "no quarantined batch" in again.stderr


def test_arrival_times_mark_late_events_on_the_dataset_clock():
    from longview.ingestion import arrival_times

    times = pd.Series(pd.to_datetime(["2024-03-05", "2024-03-11", "2024-03-12"], utc=True))
    assert arrival_times(times, None).equals(times), "a first load has nothing late"
    clock = pd.Timestamp("2024-03-10", tz="UTC")
    arrived = arrival_times(times, clock)
    # The 03-05 event was not in the store on 03-10: it arrived with its batch (03-12).
    assert arrived.tolist() == pd.to_datetime(["2024-03-12", "2024-03-11", "2024-03-12"], utc=True).tolist()
    only_late = arrival_times(times[:1], clock)
    assert only_late.iloc[0] == clock + pd.Timedelta(microseconds=1), "after the store's clock, never at it"
