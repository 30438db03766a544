"""The same Feast definitions on the production profile: a PostgreSQL SQL registry and a Redis
online store, against the real servers on 127.0.0.1. Each test run gets its own database and its
own Feast project (which prefixes every Redis key), and removes both afterwards."""

from __future__ import annotations

import uuid

import pandas as pd
import psycopg
import pytest
import redis

from longview import pipeline
from longview.feature_store import OnlineFeatureReader, feature_store, historical_user_features, online_user_features
from longview.features import FEATURE_SERVICE, USER_VIEW
from longview.privacy import pseudonym, pseudonym_key
from longview.settings import get_settings
from tests.conftest import require_servers

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def redis_keys(project: str) -> list[bytes]:
    return list(redis.Redis(host="127.0.0.1", port=6379).scan_iter(match=b"*" + project.encode()))


@pytest.fixture
def production(tmp_path, monkeypatch):
    require_servers()
    run = uuid.uuid4().hex[:10]
    database, project = f"longview_test_{run}", f"lvtest_{run}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    monkeypatch.setenv("LONGVIEW_PROFILE", "production")
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LONGVIEW_FEAST_REGISTRY_POSTGRES_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}")
    monkeypatch.setenv("LONGVIEW_FEAST_PROJECT", project)
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_USERS", "30")
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_DAYS", "15")
    settings = get_settings()
    try:
        yield settings, database, project
    finally:
        store = feature_store(settings)
        store.teardown()  # deletes this project's keys only
        leftover = redis_keys(project)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        assert leftover == [], "the test run's Redis keys were not all removed"


def test_production_profile_registry_online_store_parity_and_push(production, tmp_path):
    settings, database, project = production
    pipeline.generate_synthetic(settings)
    pipeline.ingest_landing(settings)
    result = pipeline.build_features(settings)
    store = feature_store(settings)
    assert store.config.online_store.type == "redis" and store.config.registry.registry_type == "sql"

    # The registry lives in this run's PostgreSQL database.
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as db:
        views = {name for (name,) in db.execute("SELECT feature_view_name FROM feature_views WHERE project_id = %s",
                                                (project,))}
    assert views == {"user_profile", "item_profile", "item_text"}
    assert redis_keys(project), "materialisation wrote the online rows to Redis"

    # Online (Redis) equals offline at the materialisation time, through the SDK and the fast reader.
    table = pd.read_parquet(settings.features_dir / f"{USER_VIEW}.parquet")
    users = sorted(table["user_id"].unique())[:10]
    online = online_user_features(store, users)
    as_of = pd.Timestamp(result.clock) + pd.Timedelta(seconds=1)
    offline = historical_user_features(store, pd.DataFrame({"user_id": users, "event_timestamp": as_of}))
    offline = offline.set_index("user_id").loc[users]
    reader = OnlineFeatureReader(store)
    fast = reader.read(users)
    assert reader.read(users) == fast and len(reader.views[0][1]) == 12, "reads leave the reader as it was"
    for i, user in enumerate(users):
        assert online["recent_items"][i] == list(offline.loc[user, "recent_items"]) == fast["recent_items"][i]
        assert online["events_30d"][i] == offline.loc[user, "events_30d"] == fast["events_30d"][i]
        assert online["mean_return_gap"][i] == pytest.approx(offline.loc[user, "mean_return_gap"])

    # A new event reaches Redis through the push API; an older row pushed later does not win.
    user = pseudonym(pseudonym_key(settings), "u0002")
    item = pd.read_parquet(settings.catalogue_path)["item_id"].iloc[0]
    when = pd.Timestamp(result.clock) + pd.Timedelta(minutes=5)
    path = tmp_path / "fresh.csv"
    path.write_text("event_id,user_id,item_id,event_type,timestamp,value,session_id\n"
                    f"p1,u0002,{item},click,{when.isoformat()},,fresh\n")
    assert pipeline.ingest_file(settings, path).online_users_updated == 1
    fresh = online_user_features(store, [user])
    assert fresh["recent_items"][0][-1] == item
    stale = {name: values[0] for name, values in fresh.items()}
    stale.update({"recent_items": ["not-this"], "event_timestamp": when - pd.Timedelta(days=1)})
    stale["created_timestamp"] = stale["event_timestamp"]
    from feast.data_source import PushMode

    store.push("user_profile_push", pd.DataFrame([stale]), to=PushMode.ONLINE)
    assert online_user_features(store, [user])["recent_items"][0][-1] == item
    assert store.get_feature_service(FEATURE_SERVICE).name == FEATURE_SERVICE
