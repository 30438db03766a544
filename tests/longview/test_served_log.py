"""The served log: group-committed off the request path, rotated and bounded, a kill loses at most
the commit window, and every record (good, torn, hostile) is read into rows to validate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longview.served_log import ServedLog, cascade_propensities, closed_files, slot_rows

USER = "u_" + "a" * 24


def record(n: int, slots: int = 3, **extra) -> dict:
    return {"request_id": f"r_{n:032x}", "user_id": USER, "time": "2026-01-01T00:00:00+00:00",
            "policy": "engagement", "model_name": "sequence", "model_version": "1", "exploration": 0.1,
            "fallback": None, "slots": [{"item_id": f"i{k}", "score": 1.0 - k / 10, "propensity": 0.9,
                                         "explored": False} for k in range(slots)], **extra}


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def lines_of(folder: Path) -> list[dict]:
    out = []
    for path in closed_files(folder) + sorted(folder.glob("open-*.jsonl")):  # the open file holds the newest
        out += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def test_append_is_written_by_the_background_thread_within_the_commit_window(tmp_path):
    log = ServedLog(tmp_path, commit_ms=50)
    try:
        log.append(record(1))
        assert log.records_written == 0  # the request path only queues
        wait_for(lambda: log.records_written == 1, seconds=2)
        assert [r["request_id"] for r in lines_of(tmp_path)] == [record(1)["request_id"]]
        assert oct(tmp_path.stat().st_mode & 0o777) == "0o700"
        assert oct(log.open_path.stat().st_mode & 0o777) == "0o600"
    finally:
        log.close()
    assert not log.open_path.exists() and len(closed_files(tmp_path)) == 1  # closed: ingestible


def test_the_open_file_rotates_by_size_and_by_age_and_closed_files_are_bounded(tmp_path):
    clock = [0.0]
    log = ServedLog(tmp_path, commit_ms=100, file_bytes=4096, rotate_seconds=60, max_bytes=3 * 4096,
                    clock=lambda: clock[0])
    try:
        log._stop.set()  # commits by hand below: no thread racing the assertions
        log._thread.join()
        log.append(record(0))
        log.commit()
        assert closed_files(tmp_path) == []
        clock[0] = 61.0  # old enough
        log.commit()
        assert len(closed_files(tmp_path)) == 1
        for n in range(1, 200):  # about 60 KB: rotated by size every ~4 KB, the oldest dropped past 12 KB
            log.append(record(n))
            if n % 10 == 0:
                log.commit()
        log.commit()
        closed = closed_files(tmp_path)
        assert sum(p.stat().st_size for p in closed) <= 3 * 4096
        assert log.files_dropped > 0 and len(closed) >= 2
        kept = [r["request_id"] for r in lines_of(tmp_path)]
        assert kept == sorted(kept) and kept[-1] == record(199)["request_id"]  # the newest are kept, in order
    finally:
        log.close()


def test_a_file_left_open_by_a_dead_writer_is_closed_for_ingestion_and_a_live_ones_is_not(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f"open-{dead.stdout.strip()}.jsonl"
    abandoned.write_text(json.dumps(record(1)) + "\n")
    live = tmp_path / f"open-{os.getppid()}.jsonl"  # a live process (this test's parent) still writing
    live.write_text(json.dumps(record(2)) + "\n")
    log = ServedLog(tmp_path)
    log.close()
    assert live.exists() and not abandoned.exists()
    assert [r["request_id"] for r in lines_of(tmp_path) if r["request_id"] != record(2)["request_id"]] == \
        [record(1)["request_id"]]


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path, monkeypatch):
    monkeypatch.setattr("longview.served_log.MAX_QUEUED", 5)
    log = ServedLog(tmp_path, commit_ms=100)
    log._stop.set()
    log._thread.join()
    for n in range(8):
        log.append(record(n))
    assert log.records_dropped == 3
    log.close()
    assert len(lines_of(tmp_path)) == 5


WRITER = textwrap.dedent("""
    import sys, time
    from longview.served_log import ServedLog
    log = ServedLog(sys.argv[1], commit_ms=100)
    print("ready", flush=True)
    n = 0
    while True:
        log.append({"request_id": f"r_{n:032x}", "mono": time.monotonic(), "slots": [{"item_id": "i1"}]})
        n += 1
        time.sleep(0.001)
""")


@pytest.mark.parametrize("run", range(2))
def test_a_kill_loses_at_most_the_commit_window(tmp_path, run):
    """SIGKILL a writer that appends a record every millisecond: what is on disk is every record up
    to one appended within the window (100 ms, plus a write's time and the scheduler's slack on a
    loaded machine) of the kill, none missing before it, and every line whole."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0 + 0.37 * run)  # two different phases of the commit cycle
    killed_at = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait()
    records = lines_of(tmp_path)  # json.loads of each line: a torn line would fail here
    numbers = [int(r["request_id"][2:], 16) for r in records]
    assert numbers == list(range(len(numbers))) and len(numbers) > 100
    lost_window = killed_at - records[-1]["mono"]
    assert lost_window < 0.1 + 0.15, f"the last record on disk was appended {lost_window:.3f} s before the kill"


def test_slot_rows_one_row_per_slot_and_a_bad_record_one_row_of_its_own():
    good, other = record(1, slots=2), record(2, slots=1)
    content = "\n".join([json.dumps(good), "not json", "[1, 2]", json.dumps({**record(3), "slots": []}),
                         json.dumps({**record(4), "slots": ["x"]}), json.dumps(other),
                         json.dumps(record(5))[:40]]).encode()  # the last line torn
    rows = slot_rows(content, "served-x.jsonl")
    problems = rows["source_problem"].dropna().tolist()
    assert len(rows) == 2 + 1 + 5 and len(problems) == 5
    assert [p.split(": ", 1)[1][:12] for p in problems] == ["not JSON: Ex", "a record mus", "a record nee",
                                                            "every slot m", "a torn recor"]
    ok = rows[rows["source_problem"].isna()]
    assert ok["position"].tolist() == ["0", "1", "0"] and ok["explored"].tolist() == ["false"] * 3
    assert ok["timestamp"].tolist() == [good["time"]] * 3 and ok["source_line"].tolist() == ["1", "1", "6"]
    assert all(isinstance(v, str) or v is None for v in rows.to_numpy().ravel())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_slot_rows_never_raises_on_any_bytes(content):
    rows = slot_rows(content, "f")
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    assert rows["source_line"].astype(int).nunique() == len(lines)  # every line is accounted for
    assert (rows["source_problem"].notna() | rows["position"].notna()).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["request_id", "user_id", "time", "slots", "score", "policy"]),
                                st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                                          st.lists(st.dictionaries(st.text(max_size=3), st.integers()), max_size=3))),
                max_size=5))
def test_slot_rows_on_hostile_records_gives_rows_of_text(records):
    content = "".join(json.dumps(r) + "\n" for r in records).encode()
    rows = slot_rows(content, "f")
    assert rows["source_line"].astype(int).nunique() == len(records)
    assert all(isinstance(v, str) or v is None for v in rows.to_numpy().ravel())


def test_cascade_propensities_are_the_products_of_the_conditionals_down_each_slate():
    conditional = np.array([[0.9, 0.5, 0.2], [1.0, 1.0, 1.0]])
    assert np.allclose(cascade_propensities(conditional), [[0.9, 0.45, 0.09], [1, 1, 1]])
