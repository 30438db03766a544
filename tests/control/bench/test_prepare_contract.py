"""`longview data prepare` keeps the data contract: one bad cell quarantines one row, only structure
rejects a dataset, and no traceback reaches the user. The files are slices of the real ml-100k,
written in the loaders' layouts (`../shared/data` has no copy in the CSV layout)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from control.bench import contract_fuzz
from control.pipeline import DatasetRejected, prepare_dataset
from longview.ingestion import BatchRejected, ingest_frame
from longview.settings import get_settings
from longview.store import load_catalogue, load_events, load_tags
from tests.conftest import last_json, longview, real_data


@pytest.fixture
def data_dir() -> Path:
    return real_data("ml-100k").parent


def write(folder: Path, lines: dict[str, list[str]], crlf: bool = False) -> None:
    for name, rows in lines.items():
        (folder / name).write_bytes(("\r\n" if crlf else "\n").join(rows).encode())


def setfield(line: str, index: int, value: str, sep: str = ",") -> str:
    fields = line.split(sep)
    fields[index] = value
    return sep.join(fields)


def quarantined(settings, table: str) -> pd.DataFrame:
    files = sorted(settings.quarantine_dir.glob(f"{table}-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def reason_by_line(settings, table: str) -> dict[int, str]:
    rows = quarantined(settings, table)
    return dict(zip(rows["source_line"].astype(int), rows["reason"])) if len(rows) else {}


@pytest.mark.slow
def test_csv_layout_quarantines_each_bad_row_alone(home, data_dir, tmp_path):
    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=200)
    ratings = files["ratings.csv"]  # [0] is the header: ratings[k] is line k + 1
    ratings[2] = setfield(ratings[2], 2, "four")  # text in a numeric column
    ratings[3] = setfield(ratings[3], 0, "")  # an empty user id
    ratings[4] = setfield(ratings[4], 1, "12a")  # an id carrying text
    ratings[5] = setfield(ratings[5], 0, "1" * 40)  # a 40-digit id (an OverflowError in a C parser)
    ratings[6] = setfield(ratings[6], 2, "nan")  # where the dataset's ratings are required
    ratings[7] = setfield(ratings[7], 1, "99999999")  # a movie the catalogue does not know
    ratings.insert(9, ratings[8])  # line 9 repeated verbatim as line 10
    ratings[-1] = ratings[-1].rsplit(",", 1)[0]  # the last line lost its timestamp
    (folder / "ratings.csv").write_bytes(("\n".join(ratings)).encode())  # and its newline

    summary = prepare_dataset(home, "ml-latest-small", folder)
    rows = len(ratings) - 1
    assert (summary["received"], summary["accepted"], summary["quarantined"]) == (rows, rows - 8, 8)
    assert summary["rejected"] is None and "users" in summary["derived"]
    reasons = reason_by_line(home, "events")
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 10, len(ratings)]
    assert "rating is not a finite number" in reasons[3]
    assert "user id is missing" in reasons[4]
    assert "movie id is not an unsigned integer below 2^63" in reasons[5]
    assert "user id is not an unsigned integer below 2^63" in reasons[6]
    assert "rating is not a finite number" in reasons[7]
    assert "unknown item (not in the catalogue)" in reasons[8]
    assert reasons[10] == "duplicate"  # the copy; the original (line 9) is stored once
    assert "3 fields where the layout has 4" in reasons[len(ratings)]
    assert len(load_events(home)) == rows - 8
    assert summary["tables"]["items"]["quarantined"] == 0


@pytest.mark.slow
def test_ml100k_layout_tab_quirks(home, data_dir, tmp_path):
    """The original 100K layout: a 40-digit id, a truncated last line, an unknown movie."""
    folder = tmp_path / "ml-100k"
    files = contract_fuzz.write_layout("ml-100k", data_dir, folder, rows=150)
    data = files["u.data"]
    data[0] = setfield(data[0], 0, "9" * 40, "\t")
    data[1] = setfield(data[1], 1, "77777", "\t")
    data[-1] = data[-1].rsplit("\t", 1)[0]
    write(folder, {"u.data": data})
    summary = prepare_dataset(home, "ml-100k", folder)
    assert (summary["accepted"], summary["quarantined"]) == (147, 3)
    reasons = reason_by_line(home, "events")
    assert "user id is not an unsigned integer below 2^63" in reasons[1]
    assert "unknown item" in reasons[2]
    assert "3 fields where the layout has 4" in reasons[150]


@pytest.mark.slow
def test_real_file_quirks_are_accepted(home, data_dir, tmp_path):
    """CRLF line endings, a byte order mark and quoted commas inside titles (movies.csv)."""
    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=300, crlf=True, bom=True)
    assert any('"' in line for line in files["movies.csv"]), "the slice has a quoted title"
    summary = prepare_dataset(home, "ml-latest-small", folder)
    assert summary["quarantined"] == 0 and summary["accepted"] == 300
    items = summary["tables"]["items"]
    assert items["quarantined"] == 0 and items["accepted"] == len(files["movies.csv"]) - 1
    titles = set(load_catalogue(home)["title"])
    assert any(", The (" in t for t in titles), "a title with a comma kept whole"


@pytest.mark.slow
def test_a_bad_tag_is_quarantined_alone(home, data_dir, tmp_path):
    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=300)
    tags = files["tags.csv"]
    assert len(tags) > 4
    user, movie, _, stamp = tags[1].split(",")
    tags[1] = f"{user},{movie},<script>alert(1)</script>,{stamp}"
    tags[2] = setfield(tags[2], 2, "bad\x07tag")
    tags.append(f"{user},{movie},memorable,{stamp}")
    write(folder, {"tags.csv": tags})
    summary = prepare_dataset(home, "ml-latest-small", folder)
    assert summary["tables"]["tags"]["quarantined"] == 2
    assert summary["tables"]["items"]["quarantined"] == 0 and summary["quarantined"] == 0
    reasons = reason_by_line(home, "tags")
    assert "markup" in reasons[2] and "control characters" in reasons[3]
    text = load_catalogue(home).set_index("item_id").loc[f"m{movie}", "text"]
    assert "memorable" in text and "script" not in text
    assert len(load_tags(home)) == len(tags) - 1 - 2
    assert load_tags(home)["user_id"].str.startswith("u_").all(), "tag authors are pseudonymised"


@pytest.mark.parametrize("how", ["missing rating column", "wrong separator", "undecodable bytes"])
def test_structure_rejects_the_dataset_and_keeps_the_file(home, data_dir, tmp_path, how):
    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=100)
    ratings = files["ratings.csv"]
    if how == "missing rating column":
        ratings = [",".join(p for i, p in enumerate(line.split(",")) if i != 2) for line in ratings]
    elif how == "wrong separator":
        ratings = [line.replace(",", ";") for line in ratings]
    content = "\n".join(ratings).encode()
    if how == "undecodable bytes":
        content = content[:50] + b"\xff\xfe" + content[50:]
    (folder / "ratings.csv").write_bytes(content)
    with pytest.raises(DatasetRejected) as err:
        prepare_dataset(home, "ml-latest-small", folder)
    message, summary = str(err.value), err.value.summary
    assert "ratings.csv" in message
    expected = {"missing rating column": "missing required column(s) rating",
                "wrong separator": "missing required column(s) userId, movieId, rating, timestamp",
                "undecodable bytes": "bytes at offset 50 are not UTF-8 text"}[how]
    assert expected in message and summary["rejected"] == message
    assert summary["received"] == summary["quarantined"] == 100 and summary["accepted"] == 0
    assert all(t["received"] == t["accepted"] + t["quarantined"] for t in summary["tables"].values())
    kept = list(home.quarantine_dir.glob("events-*.unreadable.csv"))
    assert [p.read_bytes() for p in kept] == [content]
    assert load_events(home).empty, "nothing was ingested"


@pytest.mark.slow
def test_cli_rejection_is_one_line_and_a_json_summary(tmp_path, data_dir):
    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=50)
    write(folder, {"ratings.csv": [line.rsplit(",", 2)[0] for line in files["ratings.csv"]]})  # rating, time gone
    result = longview("data", "prepare", "--dataset", "ml-latest-small", "--source", str(folder),
                      env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert error.startswith("error: cannot read ") and "ratings.csv: missing required column(s) rating" in error
    summary = last_json(result.stdout)
    assert summary["rejected"] and (summary["received"], summary["quarantined"]) == (50, 50)


@pytest.mark.slow
def test_cli_row_corruption_exits_0(tmp_path, data_dir):
    folder = tmp_path / "ml-1m"
    files = contract_fuzz.write_layout("ml-1m", data_dir, folder, rows=60)
    ratings = files["ratings.dat"]
    ratings[10] = setfield(ratings[10], 1, "x1", "::")
    write(folder, {"ratings.dat": ratings})
    result = longview("data", "prepare", "--dataset", "ml-1m", "--source", str(folder),
                      env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["received"], summary["accepted"], summary["quarantined"]) == (60, 59, 1)


@pytest.mark.slow
def test_catalogue_less_datasets_say_so(home, data_dir, tmp_path):
    folder = tmp_path / "instacart-sample"
    contract_fuzz.write_layout("instacart-sample", real_data("instacart-sample").parent, folder, rows=120)
    summary = prepare_dataset(home, "instacart-sample", folder)
    assert "no catalogue file" in summary["derived"]["items"] and "no users file" in summary["derived"]["users"]
    assert summary["accepted"] == 120 and summary["tables"]["items"]["quarantined"] == 0


def test_an_expectation_that_errors_rejects_the_batch(home, tmp_path):
    """GX catches an error inside an expectation and reports success=False without failing rows;
    the batch is rejected with GX's exception message instead of every row being accepted."""
    project = tmp_path / "project"
    (project / "expectations").mkdir(parents=True)
    suite = json.loads((home.expectations_dir / "users.json").read_text())
    for expectation in suite["expectations"]:
        if expectation["kwargs"].get("column") == "zip" and "regex" in expectation["kwargs"]:
            expectation["kwargs"]["regex"] = "(unclosed"
    (project / "expectations" / "users.json").write_text(json.dumps(suite))
    broken = get_settings(home=home.home, project_root=project)
    rows = pd.DataFrame({"user_id": ["u1", "u2"], "zip": ["12345", "54321"]}, dtype=object)
    with pytest.raises(BatchRejected, match=r"could not run: missing \), unterminated subpattern") as err:
        ingest_frame(broken, rows, "users")
    assert (err.value.result.accepted, err.value.result.quarantined) == (0, 2)


def test_one_id_definition():
    """The suites take the id patterns from longview.ids, as the loaders and the service do."""
    from longview.ids import ID_REGEX, MAX_ID_LENGTH, REQUEST_ID_REGEX
    from longview.ingestion.routing import _parameters
    from serving.schemas import RequestId, UserId

    settings = get_settings()
    named = {"id_regex", "request_id_regex", "pseudonym_regex"}
    for table in ("events", "items", "users", "tags", "served"):
        suite = json.loads((settings.expectations_dir / f"{table}.json").read_text())
        for expectation in suite["expectations"]:
            if expectation["kwargs"].get("column", "").endswith("_id") and "regex" in expectation["kwargs"]:
                regex = expectation["kwargs"]["regex"]
                assert isinstance(regex, dict) and regex["$PARAMETER"] in named, (table, expectation)
                assert regex["$PARAMETER"] in _parameters(settings, table), (table, regex)
    request_id = {type(m).__name__: m for m in RequestId.__metadata__[0].metadata}
    assert request_id["_PydanticGeneralMetadata"].pattern == REQUEST_ID_REGEX
    constraints = {type(m).__name__: m for m in UserId.__metadata__[0].metadata}
    assert constraints["MaxLen"].max_length == MAX_ID_LENGTH == 64
    assert constraints["_PydanticGeneralMetadata"].pattern == ID_REGEX


@pytest.mark.slow
def test_a_quarantined_dataset_row_replays_once_fixed(home, data_dir, tmp_path):
    """Quarantine keeps a dataset row as received with its source problem; fixed (value and
    `source_problem` cleared), the replay stores it."""
    from longview.ingestion import replay_quarantine

    folder = tmp_path / "ml-latest-small"
    files = contract_fuzz.write_layout("ml-latest-small", data_dir, folder, rows=80)
    files["ratings.csv"][5] = setfield(files["ratings.csv"][5], 2, "four")
    write(folder, {"ratings.csv": files["ratings.csv"]})
    summary = prepare_dataset(home, "ml-latest-small", folder)
    with pytest.raises(BatchRejected) as err:  # unfixed, the source problem still stands
        replay_quarantine(home, summary["batch_id"])
    kept = home.quarantine_dir / f"events-{err.value.result.batch_id}.parquet"
    row = pd.read_parquet(kept)
    assert "rating is not a finite number" in row["reason"].iloc[0] and row["source_line"].iloc[0] == 6
    row.assign(value="4", source_problem=None).to_parquet(kept, index=False)
    done = replay_quarantine(home, err.value.result.batch_id)
    assert (done.accepted, done.quarantined) == (1, 0) and len(load_events(home)) == 80


@pytest.mark.slow
def test_tags_file_through_ingest(home, tmp_path):
    """`longview ingest --table tags` keeps the same contract as the loaders' tags."""
    from longview.ingestion import ingest

    path = tmp_path / "tags.csv"
    good = "".join(f"u{n},m{n},tag {n},\n" for n in range(4))
    path.write_text("user_id,item_id,tag,timestamp\nu1,m1,funny,2001-01-01T00:00:00+00:00\n" + good +
                    "u1,m1,<b>x</b>,2001-01-01T00:00:00+00:00\nu2,,dark,\nu3,m2,noir,yesterday\n")
    result = ingest(home, path, "tags")
    assert (result.received, result.accepted, result.quarantined) == (8, 5, 3)
    again = ingest(home, path, "tags")
    assert (again.accepted, again.quarantined) == (0, 8), "a re-sent tag is a duplicate"
    reasons = quarantined(home, "tags")["reason"].tolist()
    assert any("markup" in r for r in reasons) and any("item_id is missing" in r for r in reasons)
    assert any("timestamp is not a valid" in r for r in reasons)


def test_a_broken_genre_list_rejects_the_100k_dataset(home, data_dir, tmp_path):
    folder = tmp_path / "ml-100k"
    contract_fuzz.write_layout("ml-100k", data_dir, folder, rows=30)
    (folder / "u.genre").write_text("unknown|0\nAction|one\n")
    with pytest.raises(DatasetRejected, match="u.genre: is not a list of name|index lines"):
        prepare_dataset(home, "ml-100k", folder)
