"""What only the production profile has: the registry in PostgreSQL and Redis keeping the later row
by itself. (Parity, push, incremental materialisation and bad requests run on both profiles in
test_feature_store.py.) Each test gets its own database and Feast project, removed afterwards."""

from __future__ import annotations

import pandas as pd
import psycopg
from feast.data_source import PushMode

from longview.feature_store import feature_store
from longview.features import USER_VIEW
from longview.online_features import OnlineFeatureReader, online_user_features
from tests.longview.conftest import redis_keys


def test_registry_in_postgres_rows_in_redis_and_redis_keeps_the_later_row(production, featured):
    database, project = production
    settings, result = featured
    store = feature_store(settings)
    assert store.config.online_store.type == "redis" and store.config.registry.registry_type == "sql"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as db:
        views = {name for (name,) in db.execute("SELECT feature_view_name FROM feature_views WHERE project_id = %s",
                                                (project,))}
    assert views == {"user_profile", "user_history", "item_profile", "item_text"}
    assert redis_keys(project), "materialisation wrote the online rows to Redis"

    table = pd.read_parquet(settings.features_dir / f"{USER_VIEW}.parquet")
    user = table.sort_values("event_timestamp")["user_id"].iloc[-1]
    current = online_user_features(store, [user])
    # Pushing an older row straight through Feast (not through our push, which checks first):
    # Redis itself keeps the row with the later event time.
    stale = {name: values[0] for name, values in current.items()}
    stale.update({"recent_items": ["not-this"], "event_timestamp": pd.Timestamp(result.clock) - pd.Timedelta(days=3)})
    stale["created_timestamp"] = stale["event_timestamp"]
    store.push("user_profile_push", pd.DataFrame([stale]), to=PushMode.ONLINE)
    assert online_user_features(store, [user])["recent_items"][0] == current["recent_items"][0]
    reader = OnlineFeatureReader(store)
    first = reader.read([user])
    assert reader.read([user]) == first and len(reader.views[0][1]) == 12, "reads leave the reader as it was"
