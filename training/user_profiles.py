"""Users' profiles as model inputs, read from Feast (the one source of features): the user profile
view's rows pulled through Feast's offline store, joined point-in-time onto (user, time) rows and
turned into profile_vectors (training/models/base.py), which the sequence model reads beside the
request context.

The join is done here, with Feast's rules (the latest row at or before the time among rows already
created then, within the view's TTL), because Feast's own join on the file offline store is far too slow for
one row per training event (100,000 on ml-100k): it was left running for minutes. A test
checks that it answers as Feast's get_historical_features does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from longview.feature_store import feature_store
from longview.features import USER_VIEW
from longview.settings import Settings
from training.models.base import PROFILE_FIELDS, profile_vectors

# (user ids, Unix seconds) -> one profile vector per row, as Feast knew it just before each time.
ProfileSource = Callable[[Sequence[str], np.ndarray], np.ndarray]
BEFORE_NS = 1_000_000_000  # a second: on data timed to the second, strictly before the event
FIELDS = [*PROFILE_FIELDS, "taste"]


def pull_profile_rows(store) -> tuple[pd.DataFrame, pd.Timedelta | None]:
    """Every row of the user profile view's source, through Feast's offline store, and its TTL."""
    view = store.get_feature_view(USER_VIEW)
    source = view.batch_source
    created = source.created_timestamp_column or None
    job = store.provider.offline_store.pull_all_from_table_or_query(
        config=store.config, data_source=source, join_key_columns=["user_id"], feature_name_columns=FIELDS,
        timestamp_field=source.timestamp_field, created_timestamp_column=created,
        start_date=datetime(1900, 1, 1, tzinfo=timezone.utc), end_date=datetime(2200, 1, 1, tzinfo=timezone.utc))
    frame = job.to_df()
    rows = pd.DataFrame({"user_id": frame["user_id"].astype(str),
                         "event": pd.to_datetime(frame[source.timestamp_field], utc=True).astype("int64"),
                         "created": pd.to_datetime(frame[created], utc=True).astype("int64") if created
                         else pd.to_datetime(frame[source.timestamp_field], utc=True).astype("int64")})
    for name in FIELDS:
        rows[name] = frame[name].to_numpy()
    ttl = pd.Timedelta(view.ttl) if view.ttl else None
    return rows, (ttl if ttl is not None and ttl > pd.Timedelta(0) else None)


def point_in_time(rows: pd.DataFrame, ttl: pd.Timedelta | None, users: Sequence[str], nanos: np.ndarray) -> list:
    """For each (user, time in ns): the row Feast's point-in-time join picks (the greatest event
    time, then created time, among the user's rows with both at or before the time, if within the
    TTL) as a {field: value} dict, or None."""
    if rows.empty or not len(users):
        return [None] * len(users)
    # A row is visible from max(event, created); the best row visible by each moment is the running
    # maximum of (event, created) in visibility order.
    rank = np.empty(len(rows), dtype=np.int64)
    order = np.lexsort((rows["created"].to_numpy(), rows["event"].to_numpy()))
    rank[order] = np.arange(len(rows))
    table = pd.DataFrame({"user_id": rows["user_id"].to_numpy(),
                          "visible": np.maximum(rows["event"].to_numpy(), rows["created"].to_numpy()), "rank": rank})
    table = table.sort_values(["visible"], kind="stable")
    table["best"] = table.groupby("user_id", sort=False)["rank"].cummax()
    asks = pd.DataFrame({"user_id": [str(u) for u in users], "visible": np.asarray(nanos, dtype=np.int64),
                         "ask": np.arange(len(users))}).sort_values("visible", kind="stable")
    joined = pd.merge_asof(asks, table[["user_id", "visible", "best"]], on="visible", by="user_id",
                           direction="backward").sort_values("ask")
    out: list = [None] * len(users)
    records = rows[FIELDS].to_dict("records")
    events = rows["event"].to_numpy()
    for ask, best, when in zip(joined["ask"], joined["best"], joined["visible"], strict=True):
        if pd.isna(best):
            continue
        row = int(order[int(best)])
        if ttl is not None and when - events[row] > ttl.value:
            continue
        out[int(ask)] = records[row]
    return out


def feast_profiles(settings: Settings, taste_width: int) -> ProfileSource:
    """A ProfileSource over the data home's Feast offline store. Each row is the profile as it
    stood a second before the time asked: a request made just before an event cannot see that event
    (or one at the same instant) in the profile, as a training label must not."""
    rows, ttl = pull_profile_rows(feature_store(settings))

    def lookup(users: Sequence[str], seconds: np.ndarray) -> np.ndarray:
        nanos = np.round(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64) - BEFORE_NS
        return profile_vectors(point_in_time(rows, ttl, users, nanos), taste_width)

    return lookup
