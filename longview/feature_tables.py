"""The feature tables, one builder each, and TABLES, the registry `longview features` writes them
from: every table is the offline source of the Feast view of the same name. Times are the
dataset clock's, never the wall clock's (longview/features.py says how rows are versioned)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from longview.settings import Settings
from longview.store import INTERACTIONS

USER_VIEW, HISTORY_VIEW, ITEM_VIEW, TEXT_VIEW = "user_profile", "user_history", "item_profile", "item_text"


def genre_vocabulary(catalogue: pd.DataFrame) -> list[str]:
    genres = catalogue["genres"].fillna("").str.split("|").explode()
    return sorted(g for g in genres.unique() if g)


def genre_matrix(catalogue: pd.DataFrame, vocabulary: list[str]) -> np.ndarray:
    """items x genres, one row per catalogue row, 1.0 where the item has the genre."""
    index = {g: i for i, g in enumerate(vocabulary)}
    out = np.zeros((len(catalogue), max(1, len(vocabulary))), dtype=np.float32)
    for row, genres in enumerate(catalogue["genres"].fillna("")):
        for g in genres.split("|"):
            if g in index:
                out[row, index[g]] = 1.0
    return out


def engagements(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item, session) showing interest: the first click, view, rating or purchase."""
    inter = events[events["event_type"].isin(INTERACTIONS)]
    session = inter["session_id"].fillna(inter["event_id"])
    first = ~pd.DataFrame({"u": inter["user_id"], "i": inter["item_id"], "s": session}).duplicated()
    return inter[first].sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)


def tie_ordered(eng: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Engagements by user and time; those at the same instant (44% of ml-100k users' last two
    ratings share a second) in a seeded-hash order of item and time: not by item id, which would
    leak the catalogue's numbering into "what came last", and not by stored ids, which are
    pseudonyms that differ between data homes. Training and serving read histories in this order."""
    instant = eng["item_id"].astype(str) + "@" + eng["timestamp"].astype("int64").astype(str)
    key = f"ties{seed:012d}"[-16:]  # pandas wants a 16-character hash key
    eng = eng.assign(tiebreak=pd.util.hash_array(instant.to_numpy(), hash_key=key))
    return eng.sort_values(["user_id", "timestamp", "tiebreak"], kind="stable").reset_index(drop=True)


def user_history_table(events: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each user's whole engagement history (item ids, oldest first) in one row stamped at their
    latest engagement: what the served model reads and, by the exclude_seen rule, will not
    recommend again. Only the latest state is kept (training reads sequences from the event store,
    so this view is for serving, not for point-in-time joins)."""
    eng = tie_ordered(engagements(events), seed)
    by_user = eng.groupby("user_id", sort=True)
    table = pd.DataFrame({
        "event_timestamp": by_user["timestamp"].max(),
        "created_timestamp": pd.to_datetime(by_user["arrived_at"].max(), utc=True),
        "history": by_user["item_id"].agg(lambda items: [str(i) for i in items]),
    }).reset_index()
    table["user_id"] = table["user_id"].astype(str)
    return table


def _window_counts(eng: pd.DataFrame, days: int) -> np.ndarray:
    """Each row's count of the user's engagements in (time - days, time]; ``eng`` is sorted by user
    and time. (pandas' groupby-rolling handed the counts back shifted by a row between users.)"""
    times = eng["timestamp"].astype("int64").to_numpy()
    users = eng["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, dtype=np.int64)
    counts = np.zeros(len(eng), dtype=np.int64)
    width = np.int64(days * 86_400 * 10**9)
    for a, b in zip(starts, np.r_[starts[1:], len(eng)]):
        t = times[a:b]
        counts[a:b] = np.arange(1, b - a + 1) - np.searchsorted(t, t - width, side="right")
    return counts


def _return_gaps(eng: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per engagement row (sorted by user and time): the last and mean return gap in days (the time
    between a session's first engagement and the previous engagement) and the mean session depth."""
    user = eng["user_id"]
    session = eng["session_id"].fillna(eng["event_id"])
    new_user = user != user.shift()
    new_session = new_user | (session != session.shift())
    gap = ((eng["timestamp"] - eng["timestamp"].shift()).dt.total_seconds() / 86_400.0).where(new_session & ~new_user)
    last_gap = gap.groupby(user, sort=False).ffill().fillna(0.0)
    mean_gap = (gap.fillna(0.0).groupby(user, sort=False).cumsum()
                / gap.notna().groupby(user, sort=False).cumsum().replace(0, np.nan)).fillna(0.0)
    depth = (eng.groupby("user_id", sort=False).cumcount() + 1) / new_session.groupby(user, sort=False).cumsum()
    return last_gap.to_numpy(), mean_gap.to_numpy(), depth.to_numpy()


def user_profile_table(events: pd.DataFrame, catalogue: pd.DataFrame, recent_n: int) -> pd.DataFrame:
    """A user's profile as it stood right after each of their engagements (point-in-time rows)."""
    eng = engagements(events)
    if eng.empty:
        raise ValueError("no engagement events (click, view, rating, purchase) in the event store")
    eng = eng.sort_values(["user_id", "timestamp", "event_id"], kind="stable").reset_index(drop=True)
    vocab = genre_vocabulary(catalogue)
    genres = genre_matrix(catalogue, vocab)
    item_row = {item: i for i, item in enumerate(catalogue["item_id"])}
    eng_genres = np.zeros((len(eng), genres.shape[1]), dtype=np.float32)
    known = eng["item_id"].map(item_row)
    mask = known.notna().to_numpy()
    eng_genres[mask] = genres[known[mask].astype(int).to_numpy()]

    by_user = eng.groupby("user_id", sort=False)
    taste_cum = pd.DataFrame(eng_genres).groupby(eng["user_id"].to_numpy(), sort=False).cumsum().to_numpy()
    taste = taste_cum / np.maximum(taste_cum.sum(axis=1, keepdims=True), 1e-9)

    # Dwell comes from the view events, which may follow the engagement row: use all views so far.
    views = events[events["event_type"] == "view"][["user_id", "timestamp", "value", "arrived_at"]]
    views = views.sort_values("timestamp")
    by_viewer = views.groupby("user_id")
    views = views.assign(dwell_sum=by_viewer["value"].cumsum(), dwell_n=by_viewer.cumcount() + 1,
                         view_arrived=by_viewer["arrived_at"].cummax())
    dwell = pd.merge_asof(eng[["user_id", "timestamp"]].reset_index().sort_values("timestamp"),
                          views[["user_id", "timestamp", "dwell_sum", "dwell_n", "view_arrived"]],
                          on="timestamp", by="user_id").set_index("index").sort_index()
    mean_dwell = (dwell["dwell_sum"] / dwell["dwell_n"]).fillna(0.0).to_numpy()

    prev = by_user["timestamp"].shift(1)
    days_since_prev = ((eng["timestamp"] - prev).dt.total_seconds() / 86400.0).fillna(0.0)
    day = eng["timestamp"].dt.floor("D")
    active_days = (~pd.DataFrame({"u": eng["user_id"], "d": day}).duplicated()).groupby(eng["user_id"]).cumsum()
    last_gap, mean_gap, depth = _return_gaps(eng)

    recent: list[list[str]] = []
    for _, items in by_user["item_id"]:
        history: list[str] = []
        for item in items:
            history.append(item)
            recent.append(history[-recent_n:])

    # Known once every event behind the row had arrived (late events push this past the row's time).
    arrived = by_user["arrived_at"].cummax()
    created = pd.concat([arrived, dwell["view_arrived"].reindex(arrived.index)], axis=1).max(axis=1)
    table = pd.DataFrame({
        "user_id": eng["user_id"].astype(str),
        "event_timestamp": eng["timestamp"],
        "created_timestamp": pd.to_datetime(created, utc=True),
        "recent_items": recent,
        "events_1d": _window_counts(eng, 1),
        "events_7d": _window_counts(eng, 7),
        "events_30d": _window_counts(eng, 30),
        "days_since_prev": days_since_prev.astype(np.float32),
        "last_event_epoch": eng["timestamp"].astype("int64") / 1e9,
        "active_days": active_days.to_numpy().astype(np.int64),
        "last_return_gap": last_gap.astype(np.float32),
        "mean_return_gap": mean_gap.astype(np.float32),
        "mean_session_depth": depth.astype(np.float32),
        "mean_dwell": mean_dwell.astype(np.float32),
        "taste": [row.astype(np.float32).tolist() for row in taste],
    })
    # Two engagements at the same instant: keep the later row (it has seen both).
    table = table.drop_duplicates(["user_id", "event_timestamp"], keep="last")
    return table.reset_index(drop=True)


def item_profile_table(events: pd.DataFrame, catalogue: pd.DataFrame, clock: pd.Timestamp) -> pd.DataFrame:
    """Each item's popularity at the end of every day it was active in the last 30 days."""
    eng = engagements(events)
    day = eng["timestamp"].dt.floor("D")
    counts = pd.crosstab(day, eng["item_id"]).sort_index()
    full_days = pd.date_range(counts.index.min(), clock.floor("D"), freq="D", tz="UTC")
    counts = counts.reindex(full_days, fill_value=0)
    windows = {f"popularity_{n}d": counts.rolling(n, min_periods=1).sum().stack() for n in (1, 7, 30)}
    # A day's snapshot is known once the latest event of its 30-day window had arrived.
    arrived_ns = eng["arrived_at"].astype("int64").groupby(day).max().reindex(full_days)
    arrived = pd.to_datetime(arrived_ns.rolling(30, min_periods=1).max(), utc=True)
    table = pd.DataFrame(windows)
    table = table[table["popularity_30d"] > 0].reset_index()
    table.columns = ["day", "item_id", *windows]
    # A day's snapshot is stamped at its end (or at the clock for the last, partial day).
    table["event_timestamp"] = (table["day"] + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)).clip(upper=clock)
    table["created_timestamp"] = pd.concat([table["event_timestamp"], table["day"].map(arrived)], axis=1).max(axis=1)
    items = catalogue.set_index("item_id")
    release = items["release_time"] if "release_time" in items else pd.Series(dtype="datetime64[ns, UTC]")
    released = pd.to_datetime(table["item_id"].map(release), utc=True)
    table["age_days"] = ((table["event_timestamp"] - released).dt.total_seconds() / 86400.0).fillna(-1.0)
    table["genres"] = table["item_id"].map(items["genres"]).fillna("")
    columns = ["item_id", "event_timestamp", "created_timestamp", *windows, "age_days", "genres"]
    return table[columns].astype({**{w: np.int64 for w in windows}, "age_days": np.float32})


def _text_digest(texts: pd.Series) -> pd.Series:
    return texts.map(lambda t: hashlib.sha256(t.encode()).hexdigest()[:16])


def item_text_table(catalogue: pd.DataFrame, since: pd.Timestamp, previous: pd.DataFrame | None = None,
                    progress: bool = True) -> pd.DataFrame | None:
    """One text embedding per item that has text (None when no item has any), valid from ``since``
    (an item's description is known from the start of the data). Embeddings in ``previous`` whose
    text is unchanged are reused, so the model is loaded and run only for new or edited texts."""
    from longview.text_embedding import encode

    texts = catalogue["text"] if "text" in catalogue else pd.Series(dtype=object)
    has_text = texts.notna() & (texts.astype(str).str.strip() != "")
    if not has_text.any():
        return None
    digest = _text_digest(texts[has_text].astype(str))
    known = {}
    if previous is not None and "text_digest" in previous:
        known = dict(zip(previous["text_digest"], previous["text_embedding"], strict=True))
    missing = sorted(set(digest) - set(known))
    if missing:
        fresh = texts[has_text][digest.isin(missing)].astype(str)
        fresh = fresh[~_text_digest(fresh).duplicated()]
        vectors = encode(fresh.tolist(), progress=progress)
        known.update(zip(_text_digest(fresh), (v.tolist() for v in vectors), strict=True))
    return pd.DataFrame({
        "item_id": catalogue.loc[has_text, "item_id"].astype(str).to_numpy(),
        "event_timestamp": since,
        "created_timestamp": since,
        "text_embedding": [list(known[d]) for d in digest],
        "text_digest": digest.to_numpy(),
    })


TEXT_SCHEMA = pa.schema([("item_id", pa.string()), ("event_timestamp", pa.timestamp("ns", tz="UTC")),
                         ("created_timestamp", pa.timestamp("ns", tz="UTC")), ("text_embedding", pa.list_(pa.float32())),
                         ("text_digest", pa.string())])


@dataclass
class FeatureInputs:
    """What a table builder reads: the event store and catalogue as of the dataset clock."""

    settings: Settings
    events: pd.DataFrame
    catalogue: pd.DataFrame
    clock: pd.Timestamp
    progress: bool

    def previous(self, view: str) -> pd.DataFrame | None:
        """The table the last run wrote for ``view`` (None on the first run)."""
        path = self.settings.features_dir / f"{view}.parquet"
        return pd.read_parquet(path) if path.exists() else None


@dataclass(frozen=True)
class TableSpec:
    """One table `longview features` writes: the offline source of the Feast view of the same name
    (feature_repo/data_sources.py reads HOME/features/VIEW.parquet). Adding a view: its builder and
    a line in TABLES here, its source, view and service in feature_repo/."""

    view: str
    build: Callable[[FeatureInputs], pd.DataFrame | None]
    # Rows keyed by these columns keep the versions a later run superseded (late data); None: the
    # table is the latest state only.
    versioned_by: tuple[str, ...] | None
    # Written with this schema, and an empty table of it when the build returns None (a view's
    # source must exist); None: as pandas writes it, and the build always returns a table.
    schema: pa.Schema | None = None


TABLES: tuple[TableSpec, ...] = (
    TableSpec(USER_VIEW, lambda i: user_profile_table(i.events, i.catalogue, i.settings.recent_items),
              ("user_id", "event_timestamp")),
    TableSpec(HISTORY_VIEW, lambda i: user_history_table(i.events, i.settings.seed), None),
    TableSpec(ITEM_VIEW, lambda i: item_profile_table(i.events, i.catalogue, i.clock), ("item_id", "event_timestamp")),
    # Without item text the view's source is an empty table: no rows, never zero-filled vectors.
    TableSpec(TEXT_VIEW, lambda i: item_text_table(i.catalogue, i.events["timestamp"].min(), i.previous(TEXT_VIEW),
                                                   i.progress), None, TEXT_SCHEMA),
)
