"""Shared builders for the canonical tables: ISO times, event, item and user frames.

Every canonical column holds Python ``str`` or ``None`` (object dtype, never NaN), the same shape
``longview.ingestion.read_raw`` gives a file, so the ingestion suites validate a loaded dataset. Each
frame also carries two source columns: ``source_line``, the row's line in its file (0 for a row
derived from another table), and ``source_problem``, what the layout check found (None: nothing).
A row with a problem keeps its fields as received and is built into nothing else (no sessions, no
derived rows); the suites route it to quarantine."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from longview.datasets.sessions import session_ids
from longview.datasets.source import BLANKS
from longview.ids import ID_PATTERN, fit_ids

EVENT_COLUMNS = ["event_id", "user_id", "item_id", "event_type", "timestamp", "value", "session_id"]
ITEM_COLUMNS = ["item_id", "title", "genres", "text", "release_time"]
TAG_COLUMNS = ["user_id", "item_id", "tag", "timestamp"]
SOURCE_COLUMNS = ["source_line", "source_problem"]
TAGS_PER_ITEM = 10
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")


def iso_utc(epoch: np.ndarray) -> np.ndarray:
    """Whole Unix seconds to ``YYYY-MM-DDTHH:MM:SS+00:00`` strings."""
    codes, uniques = pd.factorize(np.asarray(epoch, dtype="int64"))  # format each distinct second once
    text = np.datetime_as_string(uniques.astype("datetime64[s]"), unit="s")
    labels = np.array([f"{t}+00:00" for t in text], dtype=object)
    return labels[codes] if len(labels) else np.array([], dtype=object)


def iso_or_raw(epoch: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """ISO text where ``epoch`` holds a checked Unix second (>= 0), else the time as received."""
    epoch = np.asarray(epoch, dtype="int64")
    if not len(epoch):
        return np.array([], dtype=object)
    return np.where(epoch >= 0, iso_utc(np.maximum(epoch, 0)), np.asarray(raw, dtype=object)).astype(object)


def _objects(values, n: int) -> np.ndarray:
    return np.full(n, None, dtype=object) if values is None else np.asarray(values, dtype=object)


def _problem_ids(file: str, line: np.ndarray) -> np.ndarray:
    """``{file}:{line}`` for rows that failed their layout check, ``.{n}`` added to further rows of
    the same line (a SASRec line holds many)."""
    ids = pd.Series([f"{file}:{n}" for n in line], dtype=object)
    repeat = ids.groupby(ids, sort=False).cumcount().to_numpy()
    out = ids.to_numpy(object)
    out[repeat > 0] = [f"{i}.{k}" for i, k in zip(out[repeat > 0], repeat[repeat > 0])]
    return fit_ids(out)


def event_frame(user_id, item_id, epoch, event_type: str, *, file: str, source_line, problem: pd.Series,
                value=None, session_id=None, raw_time=None, gap_minutes: float | None = 30.0,
                key=None) -> pd.DataFrame:
    """Canonical events: the clean rows in time order (stable), then the rows with a problem.

    A clean row's event_id is its ``key`` when the dataset has one, else ``{user}-{item}-{unix
    seconds}``: what identifies the row in its source, so a row sent twice has the same id and the
    second is a duplicate. Sessions: given ones are kept; else derived with ``gap_minutes``
    of inactivity; ``None`` leaves them empty. A row with a problem gets the id ``{file}:{line}``,
    its time as received (``raw_time``) unless it parsed, and no session."""
    n = len(problem)
    clean = problem.isna().to_numpy()
    epoch = np.asarray(epoch, dtype="int64")
    good = np.flatnonzero(clean)
    good = good[np.argsort(epoch[good], kind="stable")]
    bad = np.flatnonzero(~clean)
    user, item = np.asarray(user_id, dtype=object), np.asarray(item_id, dtype=object)
    line = np.asarray(source_line, dtype="int64")
    if key is not None:
        good_ids = np.asarray(key, dtype=object)[good]
    else:
        codes, uniques = pd.factorize(epoch[good])  # each distinct second as text once
        second_text = uniques.astype(str).astype(object)[codes] if len(good) else np.array([], dtype=object)
        good_ids = (pd.Series(user[good], dtype=object) + "-" + pd.Series(item[good], dtype=object) + "-"
                    + pd.Series(second_text, dtype=object)).to_numpy(object)
    if session_id is not None:
        good_sessions = np.asarray(session_id, dtype=object)[good]
    elif gap_minutes is not None:
        good_sessions = session_ids(pd.Series(user[good]), pd.Series(epoch[good]), gap_minutes).to_numpy(object)
    else:
        good_sessions = np.full(len(good), None, dtype=object)
    order = np.concatenate([good, bad])
    frame = pd.DataFrame({
        "event_id": np.concatenate([fit_ids(good_ids), _problem_ids(file, line[bad])]),
        "user_id": user[order],
        "item_id": item[order],
        "event_type": np.full(n, event_type, dtype=object),
        "timestamp": np.concatenate([iso_utc(epoch[good]), iso_or_raw(epoch[bad], _objects(raw_time, n)[bad])]),
        "value": _objects(value, n)[order],
        "session_id": np.concatenate([good_sessions, np.full(len(bad), None, dtype=object)]),
    })
    return with_source(none_for_nan(frame), line[order], problem.to_numpy(object)[order])


def with_source(frame: pd.DataFrame, source_line, problem) -> pd.DataFrame:
    out = frame.reset_index(drop=True)
    out["source_line"] = np.asarray(source_line, dtype="int64")
    out["source_problem"] = pd.Series(np.asarray(problem, dtype=object)).where(lambda p: p.notna(), None).astype(object)
    return out


def title_year(titles: pd.Series) -> pd.Series:
    """Jan 1 of the "(1995)" year that ends a MovieLens title, as an ISO string; else None."""
    year = titles.str.extract(_YEAR, expand=False)
    return year.map(lambda y: f"{y}-01-01T00:00:00+00:00" if isinstance(y, str) else None).astype(object)


def item_text(title: pd.Series, genres: pd.Series, tags: pd.Series | None = None) -> pd.Series:
    """One sentence per item: "Toy Story (1995). Genres: Animation, Comedy. Tags: pixar, fun."
    None for an item without a title."""
    has_title = title.notna() & (title.fillna("") != "")
    title = title.fillna("").astype(str)
    text = title + np.where(title.str.endswith((".", "!", "?")), "", ".")
    has_genres = genres.fillna("") != ""
    text[has_genres] = text[has_genres] + " Genres: " + genres[has_genres].str.replace("|", ", ", regex=False) + "."
    if tags is not None:
        tags = tags.reindex(title.index).fillna("")
        has_tags = tags != ""
        text[has_tags] = text[has_tags] + " Tags: " + tags[has_tags] + "."
    return text.where(has_title, None).astype(object)


def item_frame(item_id, title, genres=None, release_time=None, *, source_line=None, problem=None,
               with_text: bool = True) -> pd.DataFrame:
    """Canonical items. ``genres`` is "|"-joined ("" when none). A missing title stays missing (the
    suite quarantines the row): nothing is made up from the id."""
    frame = pd.DataFrame({"item_id": _objects(item_id, len(item_id)), "title": _objects(title, len(item_id))})
    n = len(frame)
    frame["title"] = frame["title"].map(lambda t: t.strip(BLANKS) or None if isinstance(t, str) else None)
    frame["genres"] = pd.Series(np.full(n, "", dtype=object) if genres is None else _objects(genres, n)).fillna("")
    frame["text"] = item_text(frame["title"], frame["genres"]) if with_text else None
    frame["release_time"] = _objects(release_time, n)
    return with_source(none_for_nan(frame[ITEM_COLUMNS]), np.zeros(n, dtype="int64") if source_line is None
                       else source_line, np.full(n, None, dtype=object) if problem is None else problem)


def tag_text(item_id: pd.Series, tag: pd.Series) -> pd.Series:
    """Per item id, its most used tags (case-insensitive, at most TAGS_PER_ITEM), ", "-joined."""
    tags = pd.DataFrame({"item": item_id.astype(str), "tag": tag.fillna("").astype(str).str.split().str.join(" ")})
    tags = tags[tags["tag"] != ""]
    if tags.empty:
        return pd.Series(dtype=object)
    tags["key"] = tags["tag"].str.lower()
    counted = tags.groupby(["item", "key"], sort=False).agg(n=("tag", "size"), tag=("tag", "first")).reset_index()
    counted = counted.sort_values(["item", "n"], ascending=[True, False], kind="stable")
    top = counted.groupby("item", sort=False).head(TAGS_PER_ITEM)
    return top.groupby("item", sort=False)["tag"].agg(", ".join)


def with_tag_text(items: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """Items whose text also names their accepted tags (``tags``: item_id, tag)."""
    if tags.empty:
        return items
    per_item = tag_text(tags["item_id"], tags["tag"])
    aligned = pd.Series(items["item_id"].map(per_item).to_numpy(object), index=items.index)
    out = items.copy()
    has_text = out["text"].notna()
    out.loc[has_text, "text"] = item_text(out["title"], out["genres"], aligned)[has_text]
    return out


def clean_ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The distinct well-formed ids of ``column`` among rows without a problem, in first-seen order."""
    ok = frame["source_problem"].isna() & frame[column].notna()
    ids = pd.unique(frame.loc[ok, column])
    return np.array([i for i in ids if ID_PATTERN.match(i)], dtype=object)


def derived_items(events: pd.DataFrame, title_prefix: str) -> pd.DataFrame:
    """A catalogue for a dataset without one: each item its events name (title "<prefix> <id>", no text)."""
    ids = clean_ids(events, "item_id")
    key = pd.to_numeric(pd.Series(ids, dtype=object).str[1:], errors="coerce").to_numpy()
    ids = ids[np.lexsort((ids, key))] if len(ids) else ids
    return item_frame(ids, [f"{title_prefix} {i[1:]}" for i in ids], with_text=False)


def derived_users(events: pd.DataFrame) -> pd.DataFrame:
    """A users table for a dataset without one: each user its events name, id only."""
    ids = clean_ids(events, "user_id")
    key = pd.to_numeric(pd.Series(ids, dtype=object).str.lstrip("u"), errors="coerce").to_numpy()
    ids = ids[np.lexsort((ids, key))] if len(ids) else ids
    return with_source(pd.DataFrame({"user_id": ids}), np.zeros(len(ids), dtype="int64"), np.full(len(ids), None))


def none_for_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """Object dtype everywhere, missing values as None."""
    out = frame.astype(object)
    return out.where(out.notna(), None)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as text (times as ISO-8601) or None: what GX validates, whatever the source."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            text = values.map(lambda v: v.isoformat() if pd.notna(v) else None)
        else:
            text = values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        out[str(column)] = text.astype(object)
    return out
