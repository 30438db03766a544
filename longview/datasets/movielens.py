"""MovieLens in the GroupLens layouts: 100K (``u.*``), 1M/10M (``*.dat``, ``::``), and the CSV layout
of 20M/25M/32M/latest/latest-small.

Ids: user ``u{userId}`` (``u196``), movie ``m{movieId}`` (``m242``). Every rating is one event of type
``rating`` whose value is the rating as text ("4", "3.5"). Titles and genres come from the movies
file; tags (10M and CSV layouts) are added to the item text; release time is the 100K release date,
else January 1 of the "(1995)" year that ends a title.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.tables import (
    add_missing_items,
    event_frame,
    item_frame,
    number_text,
    prefixed,
    title_year,
    user_frame,
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
TAGS_PER_ITEM = 10
CSV_RATINGS = {"userId": "user", "movieId": "item", "rating": "rating", "timestamp": "timestamp"}
_RATING_TYPES = {0: "int64", 1: "int64", 2: "float64", 3: "int64"}


def read_text(path: Path) -> str:
    """A text file as str: byte order mark dropped, UTF-8 else latin-1, CRLF/CR made LF."""
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # GroupLens' .dat/u.item files are ISO-8859-1
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _lines(path: Path) -> pd.Series:
    lines = pd.Series(read_text(path).split("\n"), dtype=object)
    return lines[lines.str.strip() != ""].reset_index(drop=True)


def _read_ratings(path: Path, rename: dict | None = None, **kwargs) -> pd.DataFrame:
    """user, item, rating, timestamp (numeric) from a ratings file; C parser, BOM and CRLF safe.
    Without ``rename`` the four columns read are taken in that order."""
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", **kwargs)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot read ratings from {path}: {exc}") from exc
    if rename:
        frame.columns = [str(c).strip() for c in frame.columns]
        return frame.rename(columns=rename)[["user", "item", "rating", "timestamp"]]
    frame.columns = ["user", "item", "rating", "timestamp"]
    return frame


def _events(ratings: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    return event_frame(prefixed("u", ratings["user"].to_numpy()), prefixed("m", ratings["item"].to_numpy()),
                       ratings["timestamp"].to_numpy(), "rating", value=number_text(ratings["rating"].to_numpy()),
                       gap_minutes=gap_minutes)


def _clean_genres(genres: pd.Series) -> pd.Series:
    def clean(text: str) -> str:
        return "|".join(g.strip() for g in str(text).split("|") if g.strip() not in NO_GENRE)
    return genres.fillna("").map(clean).astype(object)


def _tag_text(movie: pd.Series, tag: pd.Series) -> pd.Series:
    """Per movie id (raw), its most used tags (case-insensitive, at most TAGS_PER_ITEM), ", "-joined."""
    tags = pd.DataFrame({"movie": movie.astype(str).str.strip(),
                         "tag": tag.fillna("").astype(str).str.split().str.join(" ")})
    tags = tags[tags["tag"] != ""]
    if tags.empty:
        return pd.Series(dtype=object)
    tags["key"] = tags["tag"].str.lower()
    counted = tags.groupby(["movie", "key"], sort=False).agg(n=("tag", "size"), tag=("tag", "first")).reset_index()
    counted = counted.sort_values(["movie", "n"], ascending=[True, False], kind="stable")
    top = counted.groupby("movie", sort=False).head(TAGS_PER_ITEM)
    return top.groupby("movie", sort=False)["tag"].agg(", ".join)


def _items(movie_id: pd.Series, title: pd.Series, genres: pd.Series, tags: pd.Series | None,
           release: pd.Series | None = None) -> pd.DataFrame:
    movie_id = movie_id.astype(str).str.strip()
    title = title.astype(str).str.strip()
    from_title = title_year(title)
    release = from_title if release is None else release.where(release.notna(), from_title)
    aligned = None if tags is None else pd.Series(movie_id.map(tags).to_numpy(object), index=title.index)
    return item_frame("m" + movie_id, title, _clean_genres(genres), release, aligned)


def load_100k(folder: Path, session_gap_minutes: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``u.data`` (user, item, rating, unix time), ``u.item`` (latin-1, 19 genre flags), ``u.user``."""
    ratings = _read_ratings(folder / "u.data", sep=r"\s+", header=None, usecols=[0, 1, 2, 3], dtype=_RATING_TYPES)
    events = _events(ratings, session_gap_minutes)

    genre_names = GENRES_100K
    if (folder / "u.genre").exists():
        rows = _lines(folder / "u.genre").str.rsplit("|", n=1)
        genre_names = [r[0] for r in sorted(rows, key=lambda r: int(r[1]))]
    raw = pd.read_csv(io.StringIO(read_text(folder / "u.item")), sep="|", header=None, dtype=str,
                      keep_default_na=False, quoting=csv.QUOTE_NONE)
    flags = raw.iloc[:, 5:5 + len(genre_names)].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    names = np.array(genre_names[:flags.shape[1]], dtype=object)
    genres = pd.Series(["|".join(names[row]) for row in flags], dtype=object)
    release = pd.to_datetime(raw[2].str.strip(), format="%d-%b-%Y", errors="coerce", utc=True)
    release_text = pd.Series(release.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_numpy(object), index=raw.index)
    items = _items(raw[0], raw[1], genres, None, release_text.where(release.notna(), None))
    items = add_missing_items(items, events, "movie")

    users = None
    if (folder / "u.user").exists():
        u = pd.read_csv(io.StringIO(read_text(folder / "u.user")), sep="|", header=None, dtype=str,
                        keep_default_na=False, quoting=csv.QUOTE_NONE).iloc[:, :5]
        u.columns = ["user_id", "age", "gender", "occupation", "zip"]
        u = u.apply(lambda c: c.str.strip())
        u["user_id"] = "u" + u["user_id"]
        users = u.replace({"": None})
    return events, items, user_frame(users, events)


def load_dat(folder: Path, session_gap_minutes: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """1M and 10M: ``ratings.dat``, ``movies.dat``, optional ``users.dat`` (1M) and ``tags.dat`` (10M)."""
    # ``a::b`` read with the one-character separator ":" gives a, "", b: fields 0, 2, 4, 6.
    ratings = _read_ratings(folder / "ratings.dat", sep=":", header=None, usecols=[0, 2, 4, 6],
                            dtype={0: "int64", 2: "int64", 4: "float64", 6: "int64"})
    events = _events(ratings, session_gap_minutes)

    lines = _lines(folder / "movies.dat")
    head = lines.str.split("::", n=1)
    tail = head.str[1].fillna("").str.rsplit("::", n=1)  # titles may hold ":"; the id and genres cannot
    tags = None
    if (folder / "tags.dat").exists():
        t = _lines(folder / "tags.dat").str.split("::", n=2)
        tags = _tag_text(t.str[1], t.str[2].fillna("").str.rsplit("::", n=1).str[0])
    items = _items(head.str[0], tail.str[0].fillna(""), tail.str[1].fillna(""), tags)
    items = add_missing_items(items, events, "movie")

    users = None
    if (folder / "users.dat").exists():
        u = _lines(folder / "users.dat").str.split("::", expand=True).iloc[:, :5]
        u.columns = ["user_id", "gender", "age", "occupation", "zip"]
        u = u.apply(lambda c: c.fillna("").str.strip())
        code = pd.to_numeric(u["occupation"], errors="coerce")
        named = code.map(lambda c: OCCUPATIONS_1M[int(c)] if pd.notna(c) and 0 <= c < len(OCCUPATIONS_1M) else None)
        u["occupation"] = named.where(named.notna(), u["occupation"])
        u["user_id"] = "u" + u["user_id"]
        users = u[["user_id", "age", "gender", "occupation", "zip"]].replace({"": None})
    return events, items, user_frame(users, events)


def load_csv(folder: Path, session_gap_minutes: float = 30.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """20M/25M/32M/latest: ``ratings.csv``, ``movies.csv`` (quoted titles), optional ``tags.csv``."""
    ratings = _read_ratings(folder / "ratings.csv", rename=CSV_RATINGS,
                            usecols=lambda c: c.strip() in CSV_RATINGS,
                            dtype={"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"})
    events = _events(ratings, session_gap_minutes)

    movies = pd.read_csv(io.StringIO(read_text(folder / "movies.csv")), dtype=str, keep_default_na=False)
    movies.columns = [c.strip() for c in movies.columns]
    tags = None
    if (folder / "tags.csv").exists():
        t = pd.read_csv(io.StringIO(read_text(folder / "tags.csv")), dtype=str, keep_default_na=False)
        t.columns = [c.strip() for c in t.columns]
        tags = _tag_text(t["movieId"], t["tag"])
    items = _items(movies["movieId"], movies["title"], movies["genres"], tags)
    items = add_missing_items(items, events, "movie")
    return events, items, user_frame(None, events)


LOADERS = {"ml-100k": load_100k, "ml-dat": load_dat, "ml-csv": load_csv}
