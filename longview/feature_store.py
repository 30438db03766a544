"""The Feast store that serves the feature tables offline (training) and online (serving).

The definitions in ``feature_repo/`` are the single source of truth; this module applies them for
the profile's store (SQLite or PostgreSQL registry, SQLite or Redis online store), materialises
incrementally, pushes fresh rows for users with new events, and reads features back.
"""

from __future__ import annotations

import importlib
import string
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import yaml

from longview.features import (
    CONTENT_SERVICE,
    FEATURE_SERVICE,
    HISTORY_VIEW,
    TABLES,
    USER_VIEW,
    user_history_table,
    user_profile_table,
    write_feature_tables,
)
from longview.online_features import entity_key, feature_service, online_read
from longview.settings import Settings, environment
from longview.store import load_catalogue, load_events

DEFINITION_MODULES = ("entities", "data_sources", "features", "feature_services")
USER_PUSH_SOURCE, HISTORY_PUSH_SOURCE = "user_profile_push", "user_history_push"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class FeaturesResult:
    users: int
    items: int
    user_rows: int
    item_rows: int
    text_embeddings: int
    clock: str
    feature_service: str
    materialized_from: str
    # rows the online store lacked (or held older) after materialisation, written again, per view
    online_repaired: dict[str, int] = field(default_factory=dict)


def config_file(settings: Settings) -> Path:
    name = "feature_store.yaml" if settings.profile == "embedded" else "feature_store.production.yaml"
    return settings.feature_repo_dir / name


def config_values(settings: Settings) -> dict[str, str]:
    """What the ${…} placeholders of feature_store*.yaml stand for (also the feast CLI's environment)."""
    return {
        "LONGVIEW_FEAST_PROJECT": settings.feast_project,
        "LONGVIEW_FEAST_REGISTRY_URL": settings.feast_registry_url,
        "LONGVIEW_REDIS_URL": settings.redis_url,
        **repo_environment(settings),
    }


def repo_environment(settings: Settings) -> dict[str, str]:
    """What the repo's definitions read (feature_repo/data_sources.py): where the tables are."""
    return {"LONGVIEW_HOME": str(settings.home), "LONGVIEW_FEATURES_DIR": str(settings.features_dir)}


def repo_config(settings: Settings):
    """The profile's feature_store.yaml, filled in from the settings."""
    from feast import RepoConfig

    text = string.Template(config_file(settings).read_text()).substitute(config_values(settings))
    return RepoConfig(repo_path=settings.feature_repo_dir, **yaml.safe_load(text))


def feature_store(settings: Settings):
    from feast import FeatureStore

    from longview.home import PROJECT_FILE

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    recorded = settings.home / PROJECT_FILE
    if not recorded.exists():  # the home keeps its project when copied or moved
        recorded.write_text(settings.feast_project + "\n")
    return FeatureStore(config=repo_config(settings))


def load_definitions(settings: Settings) -> list:
    """Import the feature repo's modules afresh for this data home (its sources point into it)."""
    from feast import Entity, FeatureService, FeatureView, FileSource, PushSource

    repo = str(settings.feature_repo_dir)
    for name in DEFINITION_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, repo)
    try:  # data_sources.py reads where the tables are from the environment
        with environment(repo_environment(settings)):
            modules = [importlib.import_module(name) for name in DEFINITION_MODULES]
    finally:
        sys.path.remove(repo)
    objects: list = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, (Entity, FileSource, PushSource, FeatureView, FeatureService)) and value not in objects:
                objects.append(value)
    return objects


def apply(settings: Settings, store=None):
    """`feast apply` of the repo's definitions; objects no longer defined are removed."""
    store = store or feature_store(settings)
    objects = load_definitions(settings)
    from feast import FeatureService, FeatureView

    defined = {o.name for o in objects if isinstance(o, (FeatureView, FeatureService))}
    stale = [fv for fv in store.list_feature_views() if fv.name not in defined]
    stale += [fs for fs in store.list_feature_services() if fs.name not in defined]
    store.apply(objects, objects_to_delete=stale, partial=False)
    return store


def materialize(settings: Settings, store, clock: pd.Timestamp, full: bool = False) -> datetime:
    """Materialise every view up to the dataset clock, incrementally: from where its last run ended
    minus an overlap window (late data), or from the start on its first run (``full``: from the
    start whatever ran before). Writing the same rows again changes nothing, so re-running a window
    is safe. Returns the earliest start."""
    overlap = timedelta(days=settings.materialize_overlap_days)
    end = (clock + pd.Timedelta(seconds=1)).to_pydatetime()
    starts = []
    for view in store.list_feature_views():  # each from its own last run: a new view starts from the beginning
        ends = [] if full else [interval[1] for interval in view.materialization_intervals]
        start = (max(ends) - overlap) if ends else EPOCH
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        if store.config.online_store.type == "redis":
            _rewrite_corrections(store, view, start)
        starts.append(start)
    return min(starts)


REPAIR_CHUNK = 1000  # entities per online read while checking the online store


def repair_online(store) -> dict[str, int]:
    """Check the online store against the offline tables instead of trusting the registry's record
    of what was materialised: each view's latest offline row per entity must be online, with at
    least its event time. Rows that are missing (Redis flushed or restarted without persistence, a
    registry shared with another home) or older are written again. Returns the rows written per
    view (only views with any)."""
    repaired = {}
    for view in store.list_feature_views():
        path = getattr(view.batch_source, "path", None)
        if not path or not Path(path).exists():
            continue
        key = view.entity_columns[0].name
        names = [feature.name for feature in view.features]
        table = pd.read_parquet(path)
        latest = table.sort_values(["event_timestamp", "created_timestamp"], kind="stable").groupby(key).tail(1)
        ids = latest[key].tolist()
        online = []
        for start in range(0, len(ids), REPAIR_CHUNK):
            chunk = ids[start:start + REPAIR_CHUNK]
            online += [ts if values else None for ts, values in online_read(store, view, key, chunk, names[:1])]
        stale = [_later(t, o) for t, o in zip(latest["event_timestamp"], online, strict=True)]
        rows = latest[stale]
        if len(rows):
            store.write_to_online_store(view.name, rows.reset_index(drop=True))
            repaired[view.name] = len(rows)
    return repaired


def _rewrite_corrections(store, view, since: datetime) -> int:
    """Write the latest rows that late data corrected since ``since`` over what Redis holds.

    Redis keeps a row only when its event time is later than the one it has, so a correction (the
    same event time, a later created time) would never replace the old values there, while SQLite
    overwrites. Clearing the view's timestamp field of just those entities lets the write through,
    so both stores end up with the same values."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.infra.online_stores.redis import _versioned_fv_name

    path = getattr(view.batch_source, "path", None)
    if not path or not Path(path).exists():
        return 0
    table = pd.read_parquet(path)
    key = view.entity_columns[0].name
    latest = table.sort_values(["event_timestamp", "created_timestamp"], kind="stable").groupby(key).tail(1)
    corrected = latest[(latest["created_timestamp"] > latest["event_timestamp"])
                       & (latest["created_timestamp"] >= pd.Timestamp(since))]
    if corrected.empty:
        return 0
    config = store.config
    client = store.provider.online_store._get_client(config.online_store)
    ts_field = f"_ts:{_versioned_fv_name(view, config)}"
    for entity in corrected[key]:
        client.hdel(_redis_key(config.project, entity_key(key, entity), config.entity_key_serialization_version),
                    ts_field)
    store.write_to_online_store(view.name, corrected.reset_index(drop=True))
    return len(corrected)


def build_features(settings: Settings, progress: bool = True) -> FeaturesResult:
    """Compute the feature tables, apply the Feast repo and materialise up to the dataset clock."""
    tables = write_feature_tables(settings, progress)
    store = apply(settings)
    start = materialize(settings, store, tables.clock)
    repaired = repair_online(store)
    return FeaturesResult(
        users=int(tables.users["user_id"].nunique()), items=int(tables.items["item_id"].nunique()),
        user_rows=len(tables.users), item_rows=len(tables.items),
        text_embeddings=0 if tables.texts is None else len(tables.texts),
        clock=tables.clock.isoformat(), feature_service=FEATURE_SERVICE, materialized_from=start.isoformat(),
        online_repaired=repaired,
    )


def restore_online(settings: Settings) -> dict:
    """The online store rebuilt from the feature tables in the data home (pulled with `dvc pull`,
    or as `longview features` left them): `feast apply`, then every view materialised from the start
    up to the dataset clock. Raises ValueError naming the remedy when there are no tables."""
    from longview.store import dataset_clock

    missing = [spec.view for spec in TABLES if not (settings.features_dir / f"{spec.view}.parquet").exists()]
    if missing:
        raise ValueError(f"no feature tables ({', '.join(missing)}) in {settings.features_dir}: run `dvc pull` "
                         f"(or `longview features`) first")
    clock = dataset_clock(load_events(settings, columns=["timestamp"]))
    store = apply(settings)
    materialize(settings, store, clock, full=True)
    users = pd.read_parquet(settings.features_dir / f"{HISTORY_VIEW}.parquet", columns=["user_id"])["user_id"].nunique()
    return {"users": int(users), "clock": clock.isoformat()}


def historical_user_features(store, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of the user profile onto (user_id, event_timestamp) rows: the latest row
    at or before each timestamp among those already known then (created_timestamp filter), so
    neither later values nor late-arriving backfills leak into a training row."""
    service = feature_service(store, FEATURE_SERVICE)
    # The history view holds each user's latest state only: it has no past to join.
    refs = [f"{p.name}:{f.name}" for p in service.feature_view_projections if p.name != HISTORY_VIEW
            for f in p.features]
    job = store.get_historical_features(entity_df=entity_df, features=refs, filter_by_created_timestamp=True)
    return job.to_df()


def content_features(store, item_ids: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
    """The content profile of items as of a time (text embeddings only where the data has text)."""
    service = feature_service(store, CONTENT_SERVICE)
    entity = pd.DataFrame({"item_id": item_ids, "event_timestamp": as_of})
    return store.get_historical_features(entity_df=entity, features=service,
                                         filter_by_created_timestamp=True).to_df()


def _online_event_times(store, user_ids: list[str]) -> dict[str, datetime | None]:
    """The event time of each user's row in the online store (None where there is none)."""
    rows = online_read(store, store.get_feature_view(USER_VIEW), "user_id", user_ids, ["events_1d"])
    return {u: (ts if values else None) for u, (ts, values) in zip(user_ids, rows, strict=True)}


def _later(event_time: pd.Timestamp, online: datetime | None) -> bool:
    """Is ``event_time`` later than the online row's, at the store's resolution (SQLite keeps whole
    seconds, Redis nanoseconds)?"""
    if online is None:
        return True
    online = pd.Timestamp(online)
    return event_time > online if online.microsecond or online.nanosecond else event_time.floor("s") > online


def push_fresh_user_features(settings: Settings, user_ids: list[str], store=None,
                             pending: pd.DataFrame | None = None, catalogue: pd.DataFrame | None = None) -> int:
    """Recompute the profile of users with new events from the event store (plus ``pending``:
    typed events not ingested yet, the service's feedback outbox) and write it online through
    Feast's push API, without waiting for the next materialisation. Push writes values, it does
    not aggregate, so the whole row is computed here. A row is pushed only when its event time is
    later than the one online (the later event time wins, as in materialisation). Returns how
    many users were updated. ``catalogue``: the stored catalogue, when the caller keeps it read."""
    from feast.data_source import PushMode

    if not user_ids or not (settings.features_dir / f"{USER_VIEW}.parquet").exists():
        return 0  # nothing to do before the first `longview features`
    store = store or feature_store(settings)
    events = load_events(settings, users=sorted(set(user_ids)))
    catalogue = load_catalogue(settings) if catalogue is None else catalogue
    if pending is not None and len(pending):
        # Outbox rows for items outside the catalogue wait for ingestion (which quarantines them).
        pending = pending[pending["item_id"].isin(set(catalogue["item_id"])) & ~pending["event_id"].isin(
            set(events["event_id"]))]
        events = pd.concat([events, pending[events.columns]], ignore_index=True).sort_values("timestamp",
                                                                                             kind="stable")
    if events.empty:
        return 0
    try:
        rows = user_profile_table(events, catalogue, settings.recent_items)
    except ValueError:
        return 0  # only impressions: no engagement, no profile row
    latest = rows.sort_values("event_timestamp").groupby("user_id").tail(1)
    online = _online_event_times(store, latest["user_id"].tolist())
    newer = latest[[_later(t, online[u]) for u, t in zip(latest["user_id"], latest["event_timestamp"], strict=True)]]
    if not newer.empty:
        store.push(USER_PUSH_SOURCE, newer.reset_index(drop=True), to=PushMode.ONLINE)
        histories = user_history_table(events[events["user_id"].isin(set(newer["user_id"]))], settings.seed)
        store.push(HISTORY_PUSH_SOURCE, histories, to=PushMode.ONLINE)
    return len(newer)
