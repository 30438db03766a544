"""Users' interaction sequences from the event store, and the evaluation protocols' splits.

Both protocols hold out items per user and score them against the whole catalogue:

* leave-one-out: each user's last positive engagement is the test item and the one before it the
  validation item; the model trains on what came before the validation item. The protocol of the
  published sequential-recommendation results.
* temporal: one global split time; the model trains on what happened before it and is asked for
  the new items users engaged with positively after it: how a deployed model meets the future.
  Early stopping uses each user's last positive engagement before the split, held out of training.

Events at the same instant are ordered as serving reads them (longview.features.tie_ordered).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from longview.features import engagements, tie_ordered
from longview.settings import Settings
from training.models.base import Interactions, Queries

PROTOCOLS = ("loo", "temporal")


@dataclass
class Holdout:
    """Users with held-out items: their inputs and the item indices they engaged with."""

    users: list[str]
    queries: Queries
    truth: list[np.ndarray]


@dataclass
class Split:
    protocol: str
    train: Interactions
    validation: Holdout
    test: Holdout
    split_time: pd.Timestamp | None = None  # temporal only


def positive_engagement(frame: pd.DataFrame, settings: Settings) -> np.ndarray:
    """The setting's positive engagement: clicks and purchases; ratings from positive_min_rating;
    views from positive_min_dwell_seconds."""
    kind = frame["event_type"].to_numpy()
    value = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    return (np.isin(kind, ("click", "purchase"))
            | ((kind == "rating") & (value >= settings.positive_min_rating))
            | ((kind == "view") & (value >= settings.positive_min_dwell_seconds)))


def ordered_engagements(events: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Engagements by user and time (same-instant ones in the seeded order), with ``positive``."""
    eng = engagements(events)
    return tie_ordered(eng.assign(positive=positive_engagement(eng, settings)), settings.seed)


def item_index(catalogue_ids: list[str], events: pd.DataFrame) -> list[str]:
    """The catalogue's items, then any item of ``events`` it lacks (every event's item is indexed)."""
    known = list(dict.fromkeys(catalogue_ids))
    extra = sorted(set(events["item_id"].astype(str)) - set(known))
    return known + extra


@dataclass
class _User:
    user: str
    items: np.ndarray
    positive: np.ndarray
    times: np.ndarray


def _users(eng: pd.DataFrame, index: dict[str, int]) -> list[_User]:
    items = eng["item_id"].map(index).to_numpy(dtype=np.int64)
    positive = eng["positive"].to_numpy(dtype=bool)
    times = eng["timestamp"].astype("int64").to_numpy() / 1e9
    bounds = np.flatnonzero(np.r_[True, eng["user_id"].to_numpy()[1:] != eng["user_id"].to_numpy()[:-1], True])
    users = eng["user_id"].to_numpy()
    return [_User(str(users[a]), items[a:b], positive[a:b], times[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _holdout(rows: list[tuple[str, np.ndarray, np.ndarray, float]], real_time: bool) -> Holdout:
    """rows: (user, history, truth, request time)."""
    return Holdout([r[0] for r in rows],
                   Queries([r[1] for r in rows], np.array([r[3] for r in rows]) if real_time else None),
                   [r[2] for r in rows])


def loo_split(events: pd.DataFrame, catalogue_ids: list[str], settings: Settings, real_time: bool,
              content: np.ndarray | None = None) -> Split:
    eng = ordered_engagements(events, settings)
    ids = item_index(catalogue_ids, eng)
    users = _users(eng, {item: i + 1 for i, item in enumerate(ids)})
    train_seq, train_pos, train_times, val, test = [], [], [], [], []
    for u in users:
        where = np.flatnonzero(u.positive)
        if len(where) >= 2 and where[-2] > 0:
            t, v = int(where[-1]), int(where[-2])
            test.append((u.user, u.items[:t], u.items[t:t + 1], u.times[t]))
            val.append((u.user, u.items[:v], u.items[v:v + 1], u.times[v]))
            cut = v
        else:  # nothing to hold out: the whole sequence trains
            cut = len(u.items)
        train_seq.append(u.items[:cut])
        train_pos.append(u.positive[:cut])
        train_times.append(u.times[:cut])
    if not test:
        raise ValueError("leave-one-out needs users with at least two positive engagements after their first event")
    train = Interactions(ids, train_seq, train_pos, train_times if real_time else None, content)
    return Split("loo", train, _holdout(val, real_time), _holdout(test, real_time))


def temporal_split(events: pd.DataFrame, catalogue_ids: list[str], settings: Settings,
                   content: np.ndarray | None = None) -> Split:
    eng = ordered_engagements(events, settings)
    share = settings.holdout_share
    if not 0.0 < share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {share}")
    split = pd.Timestamp(eng["timestamp"].quantile(1.0 - share))
    ids = item_index(catalogue_ids, eng)
    users = _users(eng, {item: i + 1 for i, item in enumerate(ids)})
    split_s = split.value / 1e9
    train_seq, train_pos, train_times, val, test = [], [], [], [], []
    for u in users:
        before = int(np.searchsorted(u.times, split_s, side="right"))
        if before == 0:
            continue  # a user who arrives after the split is a cold start, not part of this protocol
        history = u.items[:before]
        after = u.items[before:][u.positive[before:]]
        if settings.exclude_seen:
            after = after[~np.isin(after, history)]
        after = np.unique(after)
        if len(after):
            test.append((u.user, history, after, split_s))
        positives = np.flatnonzero(u.positive[:before])
        cut = before
        if len(positives) and positives[-1] > 0:  # the last positive before the split validates
            last = int(positives[-1])
            val.append((u.user, history[:last], history[last:last + 1], u.times[last]))
            cut = last
        train_seq.append(history[:cut])
        train_pos.append(u.positive[:cut])
        train_times.append(u.times[:cut])
    if not test:
        raise ValueError("the temporal holdout is empty: no user engaged positively with a new item after the split")
    train = Interactions(ids, train_seq, train_pos, train_times, content)
    return Split("temporal", train, _holdout(val, True), _holdout(test, True), split)


def split_from_store(settings: Settings, protocol: str, real_time: bool):
    """The protocol's split of the data home's event store, with item content from Feast's offline
    store (the one source of features). Returns (split, content)."""
    from longview.store import dataset_clock, load_catalogue, load_events
    from training.content import item_content

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected loo or temporal")
    if protocol == "temporal" and not real_time:
        raise ValueError("the temporal protocol needs real event times; this dataset only orders events")
    events = load_events(settings)
    catalogue = load_catalogue(settings)
    ids = item_index(catalogue["item_id"].astype(str).tolist(), events)
    content = item_content(settings, ids, dataset_clock(events))
    if protocol == "loo":
        return loo_split(events, ids, settings, real_time, content.vectors), content
    return temporal_split(events, ids, settings, content.vectors), content
