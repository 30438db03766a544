"""Clean slices of the real datasets written in each loader's layout (MovieLens 100K, the ``::``
layout of 1M/10M, the CSV layout of 20M and later, the SASRec sequences, Instacart): what the
contract harness (contract_fuzz.py) corrupts, and what tests break by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SourceFile:
    """One file of a layout: its rows as fields, how it is written, what each column holds."""

    name: str
    table: str
    sep: str
    kinds: list[str | None]  # per column: a CELL_KINDS key, or None (not checked)
    rows: list[list[str]]
    header: list[str] | None = None
    quoted: bool = False  # CSV quoting
    encoding: str = "utf-8"
    utf8_only: bool = True  # other bytes are a structure problem
    tokens: bool = False  # SASRec: every field of a line is a row
    repeatable: bool = True
    keep: str = "first"  # which copy of a repeated row is kept: events and tags keep the first, upserts the last
    item_column: int | None = None  # the events' movie column (for unknown ids and quarantined movies)
    key_column: int | None = None  # a catalogue's id column



# ------------------------------------------------------------------ slices of the real data

def _read_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return [line for line in path.read_bytes().decode(encoding).splitlines() if line.strip()]


def _ml100k_slice(data_dir: Path, offset: int, n: int) -> tuple[list[list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """Rating rows [offset, offset + n) of u.data, and the u.item and u.user rows they name."""
    folder = data_dir / "ml-100k"
    ratings = [line.split("\t") for line in _read_lines(folder / "u.data")]
    offset = offset % max(len(ratings) - n, 1)
    ratings = ratings[offset:offset + n]
    movies = {row[0]: row for row in (line.split("|") for line in _read_lines(folder / "u.item", "latin-1"))}
    users = {row[0]: row for row in (line.split("|") for line in _read_lines(folder / "u.user", "latin-1"))}
    named_movies = {r[1] for r in ratings}
    named_users = {r[0] for r in ratings}
    return ratings, {k: v for k, v in movies.items() if k in named_movies}, {k: v for k, v in users.items() if k in named_users}


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
RATING_KINDS: list[str | None] = ["id", "id", "number", "time"]


def _genres(movie: list[str]) -> str:
    names = [g for g, flag in zip(GENRES, movie[5:]) if flag == "1" and g != "unknown"]
    return "|".join(names) or "(no genres listed)"


def build_ml100k(data_dir: Path, offset: int, n: int) -> list[SourceFile]:
    ratings, movies, users = _ml100k_slice(data_dir, offset, n)
    return [
        SourceFile("u.data", "events", "\t", RATING_KINDS, ratings, item_column=1, encoding="latin-1",
                   utf8_only=False),
        SourceFile("u.item", "items", "|", ["id", "title", "date", None, None] + ["flag"] * 19, list(movies.values()),
                   encoding="latin-1", utf8_only=False, keep="last", key_column=0),
        SourceFile("u.user", "users", "|", ["id", "age", "gender", "occupation", "zip"], list(users.values()),
                   encoding="latin-1", utf8_only=False, keep="last", key_column=0),
    ]


OCCUPATIONS_1M = {"other": 0, "educator": 1, "artist": 2, "administrator": 3, "student": 4, "healthcare": 6,
                  "executive": 7, "homemaker": 9, "lawyer": 11, "programmer": 12, "retired": 13, "marketing": 14,
                  "scientist": 15, "technician": 17, "engineer": 17, "none": 19, "writer": 20}


def build_ml_dat(data_dir: Path, offset: int, n: int) -> list[SourceFile]:
    """The 1M layout, written from the 100K slice (its rows are real; only the layout is 1M's)."""
    ratings, movies, users = _ml100k_slice(data_dir, offset, n)
    return [
        SourceFile("ratings.dat", "events", "::", RATING_KINDS, ratings, item_column=1, encoding="latin-1",
                   utf8_only=False),
        SourceFile("movies.dat", "items", "::", ["id", "title", "genres"],
                   [[m[0], m[1], _genres(m)] for m in movies.values()], encoding="latin-1", utf8_only=False,
                   keep="last", key_column=0),
        SourceFile("users.dat", "users", "::", ["id", "gender", "age", "code", "zip"],
                   [[u[0], u[2], u[1], str(OCCUPATIONS_1M.get(u[3], 0)), u[4]] for u in users.values()],
                   encoding="latin-1", utf8_only=False, keep="last", key_column=0),
    ]


def build_ml_csv(data_dir: Path, offset: int, n: int) -> list[SourceFile]:
    """The CSV layout of 20M and later, written from the 100K slice; its tags are the first genre of
    each five-star rating's movie (100K has no tags)."""
    ratings, movies, _ = _ml100k_slice(data_dir, offset, n)
    tags = [[r[0], r[1], _genres(movies[r[1]]).split("|")[0].lower(), r[3]] for r in ratings if r[2] == "5"]
    return [
        SourceFile("ratings.csv", "events", ",", RATING_KINDS, [[u, m, f"{float(r):.1f}", t] for u, m, r, t in ratings],
                   header=["userId", "movieId", "rating", "timestamp"], quoted=True, item_column=1),
        SourceFile("movies.csv", "items", ",", ["id", "title", "genres"],
                   [[m[0], m[1], _genres(m)] for m in movies.values()], header=["movieId", "title", "genres"],
                   quoted=True, keep="last", key_column=0),
        SourceFile("tags.csv", "tags", ",", ["id", "id", "tag", "time"], tags,
                   header=["userId", "movieId", "tag", "timestamp"], quoted=True),
    ]


def build_sasrec(data_dir: Path, offset: int, n: int) -> list[SourceFile]:
    lines = _read_lines(data_dir / "ml-1m-sasrec" / "sequences.txt")
    offset = offset % max(len(lines) - 50, 1)
    rows, total = [], 0
    for line in lines[offset:]:
        tokens = line.split()[: max(n - total, 0)][:60]
        if not tokens:
            break
        rows.append(tokens)
        total += len(tokens)
    return [SourceFile("sequences.txt", "events", " ", ["id"] * max(len(r) for r in rows), rows, tokens=True,
                       repeatable=False)]


def build_instacart(data_dir: Path, offset: int, n: int) -> list[SourceFile]:
    lines = _read_lines(data_dir / "instacart-sample" / "orders.csv")
    header, body = lines[0].split(","), lines[1:]
    offset = offset % max(len(body) - n, 1)
    kinds = {"order_id": "id", "user_id": "id", "product_id": "id", "order_number": "count",
             "order_hour_of_day": "count", "add_to_cart_order": "count", "days_since_prior_order": "days"}
    return [SourceFile("orders.csv", "events", ",", [kinds.get(h) for h in header],
                       [line.split(",") for line in body[offset:offset + n]], header=header, quoted=True)]


LAYOUTS = {"ml-100k": build_ml100k, "ml-1m": build_ml_dat, "ml-latest-small": build_ml_csv,
           "ml-1m-sasrec": build_sasrec, "instacart-sample": build_instacart}



def serialise(value: str, source: SourceFile) -> str:
    if source.quoted and any(ch in value for ch in (source.sep, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value



def write_layout(dataset: str, data_dir: Path, folder: Path, rows: int, offset: int = 0, crlf: bool = False,
                 bom: bool = False) -> dict[str, list[str]]:
    """Write a clean slice of a real dataset in ``dataset``'s layout into ``folder``; returns each
    file's lines (header first) as written, for tests that break one of them by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for source in LAYOUTS[dataset](data_dir, offset, rows):
        lines = ([source.sep.join(source.header)] if source.header else []) + \
            [source.sep.join(serialise(v, source) for v in row) for row in source.rows]
        newline = "\r\n" if crlf else "\n"
        data = ("\ufeff" if bom and source.encoding == "utf-8" else "").encode() + \
            (newline.join(lines) + newline).encode(source.encoding)
        (folder / source.name).write_bytes(data)
        written[source.name] = lines
    return written
