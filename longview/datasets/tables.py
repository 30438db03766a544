"""Shared builders for the canonical tables: ids, ISO times, event and item frames.

Every output column holds Python ``str`` or ``None`` (object dtype, never NaN), the same shape
``longview.ingestion.read_raw`` gives a file, so the ingestion suite can validate a loaded dataset.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from longview.datasets.sessions import session_ids

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
EVENT_COLUMNS = ["event_id", "user_id", "item_id", "event_type", "timestamp", "value", "session_id"]
ITEM_COLUMNS = ["item_id", "title", "genres", "text", "release_time"]
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")


def prefixed(prefix: str, raw: np.ndarray | pd.Series) -> np.ndarray:
    """``prefix + str(value)`` for every value, built once per distinct value (fast on 25M rows)."""
    codes, uniques = pd.factorize(np.asarray(raw), use_na_sentinel=False)
    labels = np.array([f"{prefix}{u}" for u in uniques], dtype=object)
    return fit_ids(labels)[codes] if len(labels) else np.array([], dtype=object)


def fit_ids(ids: np.ndarray) -> np.ndarray:
    """Ids longer than 64 characters become ``h`` + 20 hex digits of their SHA-1 (stable)."""
    ids = np.asarray(ids, dtype=object)
    long = pd.Series(ids, dtype=object).str.len().to_numpy() > 64
    if long.any():
        ids = ids.copy()
        ids[long] = [f"h{hashlib.sha1(s.encode()).hexdigest()[:20]}" for s in ids[long]]
    return ids


def iso_utc(epoch: np.ndarray) -> np.ndarray:
    """Whole Unix seconds to ``YYYY-MM-DDTHH:MM:SS+00:00`` strings."""
    codes, uniques = pd.factorize(np.asarray(epoch, dtype="int64"))  # format each distinct second once
    text = np.datetime_as_string(uniques.astype("datetime64[s]"), unit="s")
    labels = np.array([f"{t}+00:00" for t in text], dtype=object)
    return labels[codes] if len(labels) else np.array([], dtype=object)


def number_text(values: np.ndarray) -> np.ndarray:
    """Numbers as short text ("4", "3.5"); NaN becomes None."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=float))
    labels = np.array([format(float(u), "g") for u in uniques] + [None], dtype=object)
    return labels[codes]  # code -1 (NaN) picks the trailing None


def event_frame(user_id: np.ndarray, item_id: np.ndarray, epoch: np.ndarray, event_type: str,
                value: np.ndarray | None = None, session_id: np.ndarray | None = None,
                gap_minutes: float | None = 30.0) -> pd.DataFrame:
    """Canonical events in time order (stable), with deterministic ids.

    event_id is ``{user}-{item}-{unix seconds}``, with ``.{n}`` added to the 2nd, 3rd... repeat.
    Sessions: given ones are kept; else derived with ``gap_minutes`` of inactivity; ``None`` leaves
    them empty."""
    epoch = np.asarray(epoch, dtype="int64")
    order = np.argsort(epoch, kind="stable")
    user = np.asarray(user_id, dtype=object)[order]
    item = np.asarray(item_id, dtype=object)[order]
    epoch = epoch[order]
    frame = pd.DataFrame({"user_id": user, "item_id": item})
    codes, uniques = pd.factorize(epoch)
    seconds = pd.Series(uniques.astype(str).astype(object)[codes], dtype=object)
    event_id = (frame["user_id"] + "-" + frame["item_id"] + "-" + seconds).to_numpy(object)
    if pd.Series(event_id).duplicated().any():
        repeat = pd.Series(event_id).groupby(event_id, sort=False).cumcount().to_numpy()
        event_id[repeat > 0] = [f"{e}.{n}" for e, n in zip(event_id[repeat > 0], repeat[repeat > 0])]
    if session_id is not None:
        sessions = np.asarray(session_id, dtype=object)[order]
    elif gap_minutes is not None:
        sessions = session_ids(frame["user_id"], pd.Series(epoch), gap_minutes).to_numpy(object)
    else:
        sessions = np.full(len(frame), None, dtype=object)
    out = pd.DataFrame({
        "event_id": fit_ids(event_id),
        "user_id": user,
        "item_id": item,
        "event_type": np.full(len(frame), event_type, dtype=object),
        "timestamp": iso_utc(epoch),
        "value": np.full(len(frame), None, dtype=object) if value is None else np.asarray(value, dtype=object)[order],
        "session_id": sessions,
    })
    return out


def title_year(titles: pd.Series) -> pd.Series:
    """Jan 1 of the "(1995)" year that ends a MovieLens title, as an ISO string; else None."""
    year = titles.str.extract(_YEAR, expand=False)
    return year.map(lambda y: f"{y}-01-01T00:00:00+00:00" if isinstance(y, str) else None).astype(object)


def item_text(title: pd.Series, genres: pd.Series, tags: pd.Series | None = None) -> pd.Series:
    """One sentence per item: "Toy Story (1995). Genres: Animation, Comedy. Tags: pixar, fun." """
    text = title + np.where(title.str.endswith((".", "!", "?")), "", ".")
    has_genres = genres != ""
    text[has_genres] = text[has_genres] + " Genres: " + genres[has_genres].str.replace("|", ", ", regex=False) + "."
    if tags is not None:
        tags = tags.reindex(title.index).fillna("")
        has_tags = tags != ""
        text[has_tags] = text[has_tags] + " Tags: " + tags[has_tags] + "."
    return text


def item_frame(item_id, title, genres=None, release_time=None, tags: pd.Series | None = None) -> pd.DataFrame:
    """Canonical items. ``genres`` is "|"-joined ("" when none); ``tags`` (aligned, ", "-joined) go to text."""
    frame = pd.DataFrame({"item_id": np.asarray(item_id, dtype=object),
                          "title": np.asarray(title, dtype=object)})
    frame["title"] = frame["title"].fillna("").astype(str).str.strip()
    frame.loc[frame["title"] == "", "title"] = frame["item_id"]
    n = len(frame)
    frame["genres"] = np.full(n, "", dtype=object) if genres is None else np.asarray(genres, dtype=object)
    frame["genres"] = frame["genres"].fillna("").astype(str)
    if tags is not None:
        tags = pd.Series(np.asarray(tags, dtype=object), index=frame.index)
    frame["text"] = item_text(frame["title"], frame["genres"], tags)
    if release_time is None:
        frame["release_time"] = None
    else:
        frame["release_time"] = pd.Series(np.asarray(release_time, dtype=object), index=frame.index)
    return none_for_nan(frame[ITEM_COLUMNS])


def add_missing_items(items: pd.DataFrame, events: pd.DataFrame, title_prefix: str) -> pd.DataFrame:
    """Items that events name but the catalogue lacks get an id-only row (title "<prefix> <id>", no text)."""
    missing = pd.Index(events["item_id"].unique()).difference(pd.Index(items["item_id"]))
    if len(missing) == 0:
        return items
    extra = item_frame(missing, [f"{title_prefix} {m[1:]}" for m in missing]).assign(text=None)
    return pd.concat([items, extra], ignore_index=True)


def none_for_nan(frame: pd.DataFrame) -> pd.DataFrame:
    """Object dtype everywhere, missing values as None."""
    out = frame.astype(object)
    return out.where(out.notna(), None)


def user_frame(users: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """The users file's rows (all text), plus id-only rows for users seen in events but not there."""
    seen = pd.DataFrame({"user_id": pd.unique(events["user_id"])})
    if users is None:
        out = seen
    else:
        out = pd.concat([users, seen[~seen["user_id"].isin(users["user_id"])]], ignore_index=True)
    key = pd.to_numeric(out["user_id"].str.lstrip("u"), errors="coerce")
    out = out.assign(_key=key).sort_values(["_key", "user_id"], kind="stable").drop(columns="_key")
    return none_for_nan(out.reset_index(drop=True))
