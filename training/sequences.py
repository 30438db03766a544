"""Users' interaction sequences from the event store, and the evaluation protocols' splits.

Both protocols hold out items per user and score them against the whole catalogue:

* leave-one-out: each user's last positive engagement is the test item and the one before it the
  validation item; the model trains on what came before the validation item. The protocol of the
  published sequential-recommendation results.
* temporal: one global split time; the model is asked for the new items users engaged with
  positively after it: how a deployed model meets the future. Validation is the same question one
  window earlier (a validation time before the split, ``validation_share`` of engagements between
  them): models train on what came before the validation time, are chosen (epochs, weights) on what
  users did next, then are brought up to the split (refit) before the test users are scored.

Events at the same instant are ordered as serving reads them (longview.features.tie_ordered).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from longview.features import engagements, tie_ordered
from longview.settings import Settings
from training.models.base import VISIT_GAP_SECONDS, Interactions, Queries

PROTOCOLS = ("loo", "temporal")
# (user ids, Unix seconds) -> profile vectors as known just before each time (training/user_profiles.py)
ProfileSource = Callable[[Sequence[str], np.ndarray], np.ndarray]


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
    # Temporal only: every interaction before the split. Models are chosen on the validation window
    # after ``train``, then brought up to the split with refit() before the test users are scored.
    refit: Interactions | None = None

    @property
    def known(self) -> Interactions:
        """What the tested model knows: everything before the split (temporal) or the training set."""
        return self.refit if self.refit is not None else self.train


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
class UserSequence:
    user: str
    items: np.ndarray
    positive: np.ndarray
    times: np.ndarray
    visits: np.ndarray  # True where a visit (session) starts
    profiles: np.ndarray | None = None  # per position: the profile just before that event


def visit_starts(eng: pd.DataFrame) -> np.ndarray:
    """Per engagement row (by user and time): whether it starts a visit: a user's first row, a new
    session id, or, where the data has no session ids, VISIT_GAP_SECONDS of silence."""
    users = eng["user_id"].to_numpy()
    session = eng["session_id"].to_numpy(dtype=object) if "session_id" in eng else np.full(len(eng), None)
    times = eng["timestamp"].astype("int64").to_numpy() / 1e9
    first = np.r_[True, users[1:] != users[:-1]]
    known = pd.notna(session)
    both = np.r_[False, known[1:] & known[:-1]]
    changed = np.r_[True, session[1:] != session[:-1]]
    silent = np.r_[True, np.diff(times) > VISIT_GAP_SECONDS]
    return first | np.where(both, changed, silent)


def user_sequences(eng: pd.DataFrame, index: dict[str, int]) -> list[UserSequence]:
    items = eng["item_id"].map(index).to_numpy(dtype=np.int64)
    positive = eng["positive"].to_numpy(dtype=bool)
    times = eng["timestamp"].astype("int64").to_numpy() / 1e9
    visits = visit_starts(eng)
    bounds = np.flatnonzero(np.r_[True, eng["user_id"].to_numpy()[1:] != eng["user_id"].to_numpy()[:-1], True])
    users = eng["user_id"].to_numpy()
    return [UserSequence(str(users[a]), items[a:b], positive[a:b], times[a:b], visits[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])]


def final_profiles(users: list[UserSequence], ends: list[int], profiles: ProfileSource | None) -> np.ndarray | None:
    """Per user, the profile just after the event at position ``end - 1`` (what Feast held once
    that visit was over), in one lookup; None without a profile source."""
    if profiles is None or not users:
        return None
    last = np.array([u.times[e - 1] for u, e in zip(users, ends, strict=True)])
    return profiles([u.user for u in users], last + 1.0)  # the source looks a second before the time


def _with_profiles(users: list[UserSequence], profiles: ProfileSource | None) -> None:
    """Every position's profile, in one lookup for all users."""
    if profiles is None or not users:
        return
    matrix = profiles([u.user for u in users for _ in u.items], np.concatenate([u.times for u in users]))
    bounds = np.cumsum([0] + [len(u.items) for u in users])
    for u, a, b in zip(users, bounds[:-1], bounds[1:], strict=True):
        u.profiles = matrix[a:b]


def _holdout(rows: list[tuple[str, np.ndarray, np.ndarray, float, float, np.ndarray | None]],
             real_time: bool) -> Holdout:
    """rows: (user, history, truth, request time, time of the history's last event, profile at the
    request or None)."""
    profiles = np.stack([r[5] for r in rows]) if rows and all(r[5] is not None for r in rows) else None
    return Holdout([r[0] for r in rows],
                   Queries([r[1] for r in rows], np.array([r[3] for r in rows]) if real_time else None,
                           np.array([r[4] for r in rows]) if real_time else None, profiles),
                   [r[2] for r in rows])


def _profiles_of(users: list[UserSequence], end: list[int]) -> list[np.ndarray] | None:
    if not users or users[0].profiles is None:
        return None
    return [u.profiles[:e] for u, e in zip(users, end, strict=True)]  # type: ignore[index]


def loo_split(events: pd.DataFrame, catalogue_ids: list[str], settings: Settings, real_time: bool,
              content: np.ndarray | None = None, profiles: ProfileSource | None = None) -> Split:
    eng = ordered_engagements(events, settings)
    ids = item_index(catalogue_ids, eng)
    users = user_sequences(eng, {item: i + 1 for i, item in enumerate(ids)})
    _with_profiles(users, profiles if real_time else None)
    train_seq, train_pos, train_times, cuts, val, test = [], [], [], [], [], []
    data_end = max(float(u.times[-1]) for u in users) if users else 0.0
    for u in users:
        where = np.flatnonzero(u.positive)
        if len(where) >= 2 and where[-2] > 0:
            t, v = int(where[-1]), int(where[-2])
            p = u.profiles if u.profiles is not None else [None] * len(u.items)  # the profile at each request
            test.append((u.user, u.items[:t], u.items[t:t + 1], u.times[t], u.times[t - 1], p[t]))
            val.append((u.user, u.items[:v], u.items[v:v + 1], u.times[v], u.times[v - 1], p[v]))
            cut = v
        else:  # nothing to hold out: the whole sequence trains
            cut = len(u.items)
        train_seq.append(u.items[:cut])
        train_pos.append(u.positive[:cut])
        train_times.append(u.times[:cut])
        cuts.append(cut)
    if not test:
        raise ValueError("leave-one-out needs users with at least two positive engagements after their first event")
    train = Interactions(ids, train_seq, train_pos, train_times if real_time else None, content,
                         _profiles_of(users, cuts))
    if real_time:  # a user's sequence is complete until their held-out item (or the data's end)
        train.visits = [u.visits[:c] for u, c in zip(users, cuts, strict=True)]
        train.observed_until = np.array([u.times[c] if c < len(u.items) else data_end
                                         for u, c in zip(users, cuts, strict=True)])
        train.final_profiles = final_profiles(users, cuts, profiles)
    return Split("loo", train, _holdout(val, real_time), _holdout(test, real_time))


def _new_positives(u: UserSequence, start: int, stop: int, exclude_seen: bool) -> np.ndarray:
    """The distinct items ``u`` engaged with positively in positions [start, stop), less those seen
    before ``start`` when seen items are excluded."""
    items = u.items[start:stop][u.positive[start:stop]]
    if exclude_seen:
        items = items[~np.isin(items, u.items[:start])]
    return np.unique(items)


def temporal_split(events: pd.DataFrame, catalogue_ids: list[str], settings: Settings,
                   content: np.ndarray | None = None, profiles: ProfileSource | None = None) -> Split:
    eng = ordered_engagements(events, settings)
    share, validation_share = settings.holdout_share, settings.validation_share
    if not (0.0 < share and 0.0 < validation_share and share + validation_share < 1.0):
        raise ValueError(f"holdout_share ({share}) and validation_share ({validation_share}) must be positive "
                         f"and add up to less than 1")
    split = pd.Timestamp(eng["timestamp"].quantile(1.0 - share))
    validation_time = pd.Timestamp(eng["timestamp"].quantile(1.0 - share - validation_share))
    ids = item_index(catalogue_ids, eng)
    users = user_sequences(eng, {item: i + 1 for i, item in enumerate(ids)})
    _with_profiles(users, profiles)
    split_s, validation_s = split.value / 1e9, validation_time.value / 1e9
    train: tuple[list, list, list, list, list] = ([], [], [], [], [])
    refit: tuple[list, list, list, list, list] = ([], [], [], [], [])
    val, test = [], []
    for u in users:
        before = int(np.searchsorted(u.times, split_s, side="right"))
        if before == 0:
            continue  # a user who arrives after the split is a cold start, not part of this protocol
        cut = int(np.searchsorted(u.times, validation_s, side="right"))
        after = _new_positives(u, before, len(u.items), settings.exclude_seen)
        if len(after):
            test.append((u.user, u.items[:before], after, split_s, u.times[before - 1], None))
        for part, end in ((refit, before), (train, cut)):
            if end:
                part[0].append(u.items[:end])
                part[1].append(u.positive[:end])
                part[2].append(u.times[:end])
                part[3].append(None if u.profiles is None else u.profiles[:end])
                part[4].append(u)
        if cut:
            between = _new_positives(u, cut, before, settings.exclude_seen)
            if len(between):
                val.append((u.user, u.items[:cut], between, validation_s, u.times[cut - 1], None))
    if not test:
        raise ValueError("the temporal holdout is empty: no user engaged positively with a new item after the split")
    if not val:
        raise ValueError("the temporal validation window is empty: no user engaged positively with a new item "
                         "between the validation time and the split; raise validation_share")
    if profiles is not None:  # the profile at each request: one lookup for both windows
        matrix = profiles([r[0] for r in val + test], np.array([r[3] for r in val + test]))
        val = [(*r[:5], p) for r, p in zip(val, matrix[:len(val)], strict=True)]
        test = [(*r[:5], p) for r, p in zip(test, matrix[len(val):], strict=True)]

    def interactions(part: tuple[list, list, list, list, list], until: float) -> Interactions:
        ends = [len(seq) for seq in part[0]]
        return Interactions(ids, part[0], part[1], part[2], content, None if profiles is None else part[3],
                            visits=[u.visits[:e] for u, e in zip(part[4], ends, strict=True)],
                            observed_until=np.full(len(ends), until),
                            final_profiles=final_profiles(part[4], ends, profiles))
    return Split("temporal", interactions(train, validation_s), _holdout(val, True), _holdout(test, True), split,
                 interactions(refit, split_s))


def split_from_store(settings: Settings, protocol: str, real_time: bool, profiles: bool = True):
    """The protocol's split of the data home's event store, with item content and, where the data
    has real time and ``profiles`` is asked for (and the sequence settings read them), users'
    profiles from Feast's offline store (the one source of features). Returns (split, content)."""
    from longview.features import genre_vocabulary
    from longview.store import dataset_clock, load_catalogue, load_events
    from training.content import item_content
    from training.user_profiles import feast_profiles

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: expected loo or temporal")
    if protocol == "temporal" and not real_time:
        raise ValueError("the temporal protocol needs real event times; this dataset only orders events")
    events = load_events(settings)
    catalogue = load_catalogue(settings)
    ids = item_index(catalogue["item_id"].astype(str).tolist(), events)
    content = item_content(settings, ids, dataset_clock(events))
    source = None
    if profiles and real_time and settings.sequence.context and settings.sequence.profile:
        source = feast_profiles(settings, len(genre_vocabulary(catalogue)))
    if protocol == "loo":
        return loo_split(events, ids, settings, real_time, content.vectors, source), content
    return temporal_split(events, ids, settings, content.vectors, source), content
