"""MovieLens in the GroupLens layouts: 100K (``u.*``), 1M/10M (``*.dat``, ``::``), and the CSV layout
of 20M/25M/32M/latest/latest-small.

Ids: user ``u{userId}`` (``u196``), movie ``m{movieId}`` (``m242``); MovieLens ids are unsigned
integers below 2^63, and any other id is a row problem. Every rating is one event of type
``rating`` whose value is the rating as text ("4", "3.5"). Titles and genres come from the movies
file; tags (10M and CSV layouts) are their own table, and the accepted ones join the item text;
release time is the 100K release date, else January 1 of the "(1995)" year that ends a title.
Columns the platform does not use (100K's video date and IMDb link, links.csv) are not checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.fields import (
    Problems,
    finite_numbers,
    number_text,
    unix_seconds,
    unsigned_ids,
    whole_numbers,
)
from longview.datasets.source import BLANKS, Records, SourceRejected, read_records
from longview.datasets.tables import (
    TAG_COLUMNS,
    derived_users,
    event_frame,
    iso_or_raw,
    item_frame,
    title_year,
    with_source,
)

# The files each layout cannot do without.
LAYOUT_FILES = {
    "ml-100k": ["u.data", "u.item"],
    "ml-dat": ["ratings.dat", "movies.dat"],
    "ml-csv": ["ratings.csv", "movies.csv"],
}
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]
NO_GENRE = {"unknown", "(no genres listed)", ""}
OCCUPATIONS_1M = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                  "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]
RATINGS = ["user", "movie", "rating", "timestamp"]
TAGS = ["user", "movie", "tag", "timestamp"]
CSV_NAMES = {"userId": "user", "movieId": "movie", "rating": "rating", "timestamp": "timestamp",
             "title": "title", "genres": "genres", "tag": "tag"}
USERS_FILE_NOTE = "users: derived from the ratings (the dataset has no users file)"

Loaded = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame | None, dict[str, str]]


def _csv(path: Path, table: str, columns: list[str]) -> Records:
    """A CSV-layout file (header, quoted fields, UTF-8) with its columns renamed to the short names."""
    records = read_records(path, table, columns, ",", header=True, quoted=True)
    records.fields.columns = [CSV_NAMES[c] for c in records.fields.columns]
    return records


def _events(records: Records, gap_minutes: float) -> pd.DataFrame:
    f, problems = records.fields, Problems(records)
    user = unsigned_ids(f["user"], "user id", problems, "u")
    movie = unsigned_ids(f["movie"], "movie id", problems, "m")
    rating = finite_numbers(f["rating"], "rating", problems)
    epoch = unix_seconds(f["timestamp"], "timestamp", problems)
    value = np.where(rating.notna(), number_text(rating), f["rating"].to_numpy(object))
    return event_frame(user, movie, epoch, "rating", file=records.file, source_line=records.line,
                       problem=problems.text, value=value, raw_time=f["timestamp"], gap_minutes=gap_minutes)


def _clean_genres(genres: pd.Series) -> pd.Series:
    def clean(text: str) -> str:
        return "|".join(g.strip(BLANKS) for g in str(text).split("|") if g.strip(BLANKS) not in NO_GENRE)
    return genres.fillna("").map(clean).astype(object)


def _items(records: Records, problems: Problems, genres: pd.Series, release: pd.Series | None = None) -> pd.DataFrame:
    f = records.fields
    movie = unsigned_ids(f["movie"], "movie id", problems, "m")
    from_title = title_year(f["title"].fillna(""))
    release = from_title if release is None else release.where(release.notna(), from_title)
    return item_frame(movie, f["title"], _clean_genres(genres), release, source_line=records.line,
                      problem=problems.text)


def _users(records: Records, problems: Problems) -> pd.DataFrame:
    f = records.fields
    users = pd.DataFrame({"user_id": unsigned_ids(f["user"], "user id", problems, "u")})
    for column in ("age", "gender", "occupation", "zip"):
        users[column] = f[column]
    return with_source(users, records.line, problems.text)


def _tags(records: Records) -> pd.DataFrame:
    f, problems = records.fields, Problems(records)
    tags = pd.DataFrame({"user_id": unsigned_ids(f["user"], "user id", problems, "u"),
                         "item_id": unsigned_ids(f["movie"], "movie id", problems, "m"), "tag": f["tag"]})
    epoch = unix_seconds(f["timestamp"], "timestamp", problems)
    tags["timestamp"] = iso_or_raw(epoch, f["timestamp"].to_numpy(object))
    return with_source(tags[TAG_COLUMNS].astype(object), records.line, problems.text)


def _genre_names(folder: Path) -> list[str]:
    """The 100K genre list from ``u.genre`` (``name|index`` lines), or the published default."""
    path = folder / "u.genre"
    if not path.exists():
        return GENRES_100K
    records = read_records(path, "items", ["name", "index"], "|", latin1=True)
    index = pd.to_numeric(records.fields["index"], errors="coerce")
    if not records.ok.all() or index.isna().any() or sorted(index) != list(range(len(index))):
        raise SourceRejected(path, "items", "is not a list of name|index lines numbered 0, 1, 2, ...")
    return records.fields.assign(index=index).sort_values("index")["name"].tolist()


def load_100k(folder: Path, session_gap_minutes: float = 30.0) -> Loaded:
    """``u.data`` (user, item, rating, unix time), ``u.item`` (latin-1, a 0/1 flag per genre), ``u.user``."""
    events = _events(read_records(folder / "u.data", "events", RATINGS, None), session_gap_minutes)

    genre_names = _genre_names(folder)
    flags = [f"genre{i}" for i in range(len(genre_names))]
    records = read_records(folder / "u.item", "items", ["movie", "title", "release", "video", "url", *flags], "|",
                           latin1=True)
    f, problems = records.fields, Problems(records)
    flag_values = f[flags].fillna("")
    problems.add(~flag_values.isin(["0", "1"]).all(axis=1), "genre flags must be 0 or 1")
    names = np.array(genre_names, dtype=object)
    genres = pd.Series(["|".join(names[row]) for row in (flag_values == "1").to_numpy()], index=f.index, dtype=object)
    release = pd.to_datetime(f["release"], format="%d-%b-%Y", errors="coerce", utc=True)
    problems.add(f["release"].fillna("").ne("") & release.isna(), "release date is not DD-Mon-YYYY")
    release_text = pd.Series(release.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_numpy(object), index=f.index)
    items = _items(records, problems, genres, release_text.where(release.notna(), None))

    notes = {}
    if (folder / "u.user").exists():
        records = read_records(folder / "u.user", "users", ["user", "age", "gender", "occupation", "zip"], "|",
                               latin1=True)
        users = _users(records, Problems(records))
    else:
        users, notes["users"] = derived_users(events), USERS_FILE_NOTE
    return events, items, users, None, notes


def load_dat(folder: Path, session_gap_minutes: float = 30.0) -> Loaded:
    """1M and 10M: ``ratings.dat``, ``movies.dat``, optional ``users.dat`` (1M) and ``tags.dat`` (10M)."""
    def dat(name: str, table: str, names: list[str]) -> Records:
        return read_records(folder / name, table, names, "::", latin1=True)

    events = _events(dat("ratings.dat", "events", RATINGS), session_gap_minutes)
    records = dat("movies.dat", "items", ["movie", "title", "genres"])
    items = _items(records, Problems(records), records.fields["genres"])
    tags = _tags(dat("tags.dat", "tags", TAGS)) if (folder / "tags.dat").exists() else None

    notes = {}
    if (folder / "users.dat").exists():
        records = dat("users.dat", "users", ["user", "gender", "age", "occupation", "zip"])
        problems = Problems(records)
        code = whole_numbers(records.fields["occupation"], "occupation code", 0, len(OCCUPATIONS_1M) - 1, problems,
                             required=False)
        named = code.map(lambda c: OCCUPATIONS_1M[int(c)] if pd.notna(c) else None)
        records.fields["occupation"] = named.where(named.notna(), records.fields["occupation"])
        users = _users(records, problems)
    else:
        users, notes["users"] = derived_users(events), USERS_FILE_NOTE
    return events, items, users, tags, notes


def load_csv(folder: Path, session_gap_minutes: float = 30.0) -> Loaded:
    """20M/25M/32M/latest: ``ratings.csv``, ``movies.csv`` (quoted titles), optional ``tags.csv``."""
    events = _events(_csv(folder / "ratings.csv", "events", ["userId", "movieId", "rating", "timestamp"]),
                     session_gap_minutes)
    records = _csv(folder / "movies.csv", "items", ["movieId", "title", "genres"])
    items = _items(records, Problems(records), records.fields["genres"])
    tags = None
    if (folder / "tags.csv").exists():
        tags = _tags(_csv(folder / "tags.csv", "tags", ["userId", "movieId", "tag", "timestamp"]))
    return events, items, derived_users(events), tags, {"users": USERS_FILE_NOTE}


LOADERS = {"ml-100k": load_100k, "ml-dat": load_dat, "ml-csv": load_csv}
