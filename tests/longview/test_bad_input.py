"""Bad input for the item catalogue and the users table, and broken files for all three tables.

Each case is one kind of corruption a real feed produces. Every case asserts the reason the row
was quarantined with (or the clear error the batch was rejected with) and that every received row
is accounted for. The events table's row-level cases live in test_ingestion.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from longview.ingestion import BatchRejected, ingest
from longview.store import load_catalogue, load_events, load_users
from tests.conftest import last_json, longview

ITEM_HEADER = "item_id,title,genres,text,release_time\n"
GOOD_ITEMS = [f"i{n},Film {n} (1995),Drama|Comedy,A film about {n}.,1995-01-01T00:00:00+00:00\n" for n in range(12)]
USER_HEADER = "user_id,age,gender,occupation,zip\n"
GOOD_USERS = [f"u{n},{20 + n},{'FMX'[n % 3]},engineer,9470{n % 10}\n" for n in range(12)]
EVENT_HEADER = "event_id,user_id,item_id,event_type,timestamp,value,session_id\n"
GOOD_EVENTS = [f"g{n},u1,i1,click,2024-03-0{1 + n % 9}T10:00:00+00:00,,s1\n" for n in range(12)]

TABLES = {
    "events": (EVENT_HEADER, GOOD_EVENTS, load_events),
    "items": (ITEM_HEADER, GOOD_ITEMS, load_catalogue),
    "users": (USER_HEADER, GOOD_USERS, load_users),
}

# kind -> (row, the failed expectation and column named in the quarantine reason)
BAD_ITEMS = {
    "missing id": (",Lost Film,Drama,,\n", "not_be_null(item_id)"),
    "missing title": ("i90,,Drama,,\n", "not_be_null(title)"),
    "blank title": ("i90,   ,Drama,,\n", "match_regex(title): title is blank"),
    "id with spaces": ("item 90,Film,Drama,,\n", "match_regex(item_id)"),
    "path traversal id": ("../../etc/passwd,Film,Drama,,\n", "match_regex(item_id)"),
    "SQL injection id": ("i1'; DROP TABLE items;--,Film,Drama,,\n", "match_regex(item_id)"),
    "oversized id": (f"{'i' * 300},Film,Drama,,\n", "match_regex(item_id)"),
    "look-alike unicode digits in id": ("i\uff19\uff10,Film,Drama,,\n", "match_regex(item_id)"),
    "oversized title": (f"i90,{'x' * 600},Drama,,\n", "lengths_to_be_between(title)"),
    "terminal escape sequence in title": ("i90,\x1b[2J\x1b[31mFilm,Drama,,\n", "title contains control characters"),
    "script tag in title": ("i90,<script>alert(1)</script>,Drama,,\n", "title contains markup"),
    "HTML in text": ("i90,Film,Drama,<img src=x onerror=alert(1)>,\n", "text contains markup"),
    "oversized text": (f"i90,Film,Drama,{'word ' * 5000},\n", "lengths_to_be_between(text)"),
    "empty genre in the list": ("i90,Film,Drama||Comedy,,\n", "match_regex(genres)"),
    "release time not a time": ("i90,Film,Drama,,sometime in spring\n", "release_time is not a valid"),
    "release time in the future": ("i90,Film,Drama,,2999-01-01T00:00:00+00:00\n", "between(release_epoch)"),
    "release time before the earliest release": ("i90,Film,Drama,,1700-01-01\n", "between(release_epoch)"),
    "same id twice in the batch": (GOOD_ITEMS[0], "duplicate"),
}

BAD_USERS = {
    "missing id": (",30,F,writer,10001\n", "not_be_null(user_id)"),
    "id with spaces": ("user 90,30,F,writer,10001\n", "match_regex(user_id)"),
    "path traversal id": ("../../etc/passwd,30,F,writer,10001\n", "match_regex(user_id)"),
    "SQL injection id": ("u1' OR '1'='1,30,F,writer,10001\n", "match_regex(user_id)"),
    "oversized id": (f"{'u' * 300},30,F,writer,10001\n", "match_regex(user_id)"),
    "look-alike unicode digits in id": ("u\uff19\uff10,30,F,writer,10001\n", "match_regex(user_id)"),
    "age not a number": ("u90,thirty,F,writer,10001\n", "match_regex(age): age is not a whole number"),
    "age out of range": ("u90,150,F,writer,10001\n", "between(age_years)"),
    "unknown gender code": ("u90,30,Q,writer,10001\n", "in_set(gender)"),
    "malformed zip": ("u90,30,F,writer,not a zip code!\n", "match_regex(zip)"),
    "blank occupation": ("u90,30,F,   ,10001\n", "occupation is blank"),
    "terminal escape sequence in occupation": ("u90,30,F,\x1b]0;pwned\x07writer,10001\n",
                                               "occupation contains control characters"),
    "script tag in occupation": ("u90,30,F,<script>x()</script>,10001\n", "occupation contains markup"),
    "oversized occupation": (f"u90,30,F,{'w' * 200},10001\n", "lengths_to_be_between(occupation)"),
    "same id twice in the batch": (GOOD_USERS[0], "duplicate"),
}


def write(tmp_path: Path, header: str, rows: list[str], name: str = "batch.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


def quarantined(settings, result) -> pd.DataFrame:
    return pd.read_parquet(settings.quarantine_dir / f"{result.table}-{result.batch_id}.parquet")


def check_one_bad_row(settings, tmp_path, table: str, row: str, reason: str) -> None:
    header, good, load = TABLES[table]
    result = ingest(settings, write(tmp_path, header, good + [row]), table=table)
    assert result.received == result.accepted + result.quarantined
    assert (result.accepted, result.quarantined) == (len(good), 1)
    q = quarantined(settings, result)
    assert len(q) == 1 and reason in q["reason"].iloc[0], q["reason"].iloc[0]
    assert q["batch_id"].iloc[0] == result.batch_id
    assert len(load(settings)) == len(good)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BAD_ITEMS))
def test_bad_item_is_quarantined_with_its_reason(home, tmp_path, kind):
    check_one_bad_row(home, tmp_path, "items", *BAD_ITEMS[kind])


@pytest.mark.parametrize("kind", sorted(BAD_USERS))
def test_bad_user_is_quarantined_with_its_reason(home, tmp_path, kind):
    check_one_bad_row(home, tmp_path, "users", *BAD_USERS[kind])


def test_stored_users_are_pseudonymised_and_keep_their_attributes(home, tmp_path):
    ingest(home, write(tmp_path, USER_HEADER, GOOD_USERS), table="users")
    users = load_users(home)
    assert users["user_id"].str.startswith("u_").all()
    assert sorted(users["gender"].unique()) == ["F", "M", "X"]
    assert not users["user_id"].isin([f"u{n}" for n in range(12)]).any()


@pytest.mark.slow
@pytest.mark.parametrize("table", ["items", "users"])
def test_resending_a_file_adds_nothing_and_changed_rows_update(home, tmp_path, table):
    header, good, load = TABLES[table]
    first = ingest(home, write(tmp_path, header, good), table=table)
    assert (first.accepted, first.quarantined) == (len(good), 0)
    again = ingest(home, write(tmp_path, header, good, name="again.csv"), table=table)
    assert (again.accepted, again.quarantined) == (0, len(good))
    assert set(quarantined(home, again)["reason"]) == {"duplicate"}
    changed = good[0].replace("engineer", "artist").replace("Film 0", "Film Zero")
    update = ingest(home, write(tmp_path, header, [changed], name="update.csv"), table=table)
    assert (update.accepted, update.quarantined) == (1, 0)
    stored = load(home)
    assert len(stored) == len(good)
    column = "title" if table == "items" else "occupation"
    assert {"Film Zero (1995)", "artist"} & set(stored[column])


# kind -> (bytes written after the header, the error the batch is rejected with)
BROKEN_FILES = {
    "row with too many fields": (lambda good: good[0].rstrip("\n") + ",extra,fields\n", "cannot read"),
    "unterminated quote": (lambda good: '"' + good[0], "cannot read"),
    "not UTF-8": (lambda good: good[0].replace("0", "\udcff"), "cannot read"),
}


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("kind", sorted(BROKEN_FILES))
def test_unreadable_file_is_rejected_and_kept_byte_for_byte(home, tmp_path, table, kind):
    header, good, load = TABLES[table]
    make, error = BROKEN_FILES[kind]
    path = tmp_path / "broken.csv"
    path.write_bytes((header + "".join(good) + make(good)).encode("utf-8", "surrogateescape"))
    with pytest.raises(BatchRejected, match=error):
        ingest(home, path, table=table)
    assert any(p.read_bytes() == path.read_bytes() for p in home.quarantine_dir.iterdir() if p.is_file())
    assert load(home).empty


@pytest.mark.parametrize("table", sorted(TABLES))
def test_missing_required_column_rejects_the_batch_and_keeps_it(home, tmp_path, table):
    header, good, load = TABLES[table]
    columns = header.rstrip("\n").split(",")
    drop = 0 if table == "users" else 1  # events: user_id, items: title, users: user_id
    keep = [i for i in range(len(columns)) if i != drop]
    rows = [",".join(row.rstrip("\n").split(",")[i] for i in keep) + "\n" for row in good]
    path = write(tmp_path, ",".join(columns[i] for i in keep) + "\n", rows)
    with pytest.raises(BatchRejected, match=f"required columns missing: {columns[drop]}") as info:
        ingest(home, path, table=table)
    result = info.value.result
    assert (result.received, result.accepted, result.quarantined) == (len(good), 0, len(good))
    assert len(quarantined(home, result)) == len(good)
    assert load(home).empty


@pytest.mark.parametrize("table", sorted(TABLES))
def test_mostly_broken_batch_is_rejected_whole(home, tmp_path, table):
    header, good, load = TABLES[table]
    broken = ["," + row.split(",", 1)[1] for row in good[:9]]  # first column (an id) missing
    if table == "events":
        broken = [row.replace(",u1,", ",,") for row in good[:9]]
    path = write(tmp_path, header, broken + good[9:])
    with pytest.raises(BatchRejected, match="75% of rows failed validation"):
        ingest(home, path, table=table)
    assert len(pd.concat([pd.read_parquet(p) for p in home.quarantine_dir.glob("*.parquet")])) == 12
    assert load(home).empty


@pytest.mark.parametrize("table", sorted(TABLES))
def test_header_only_and_empty_files_are_not_errors(home, tmp_path, table):
    header, _, load = TABLES[table]
    for name, text in (("empty.csv", ""), ("header.csv", header)):
        path = tmp_path / name
        path.write_text(text)
        result = ingest(home, path, table=table)
        assert (result.received, result.accepted, result.quarantined) == (0, 0, 0)
        assert "empty" in result.message
    assert load(home).empty


@pytest.mark.slow
def test_cli_reports_a_rejected_catalogue_batch_clearly(home, tmp_path):
    env = {"LONGVIEW_HOME": str(home.home)}
    path = write(tmp_path, "item_id,genres\n", ["i1,Drama\n"])
    out = longview("ingest", str(path), "--table", "items", env=env)
    assert out.returncode == 1
    assert "required columns missing: title" in out.stderr
    assert last_json(out.stdout)["quarantined"] == 1
    bad_table = longview("ingest", str(path), "--table", "orders", env=env)
    assert bad_table.returncode == 2 and "orders" in bad_table.stderr
