"""The real Feast repo on the embedded profile: apply, materialise, point-in-time joins without
leaks (late data included), online/offline parity, push freshness, incremental materialisation,
and clear errors for bad requests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from control import pipeline
from longview.feature_store import build_features, feature_store, historical_user_features
from longview.features import FEATURE_SERVICE, USER_VIEW
from longview.ingestion import ingest
from longview.online_features import OnlineFeatureReader, online_user_features
from longview.privacy import pseudonym, pseudonym_key
from longview.store import load_events
from tests.longview.conftest import redis_keys

HEADER = "event_id,user_id,item_id,event_type,timestamp,value,session_id\n"


def latest_rows(settings) -> pd.DataFrame:
    table = pd.read_parquet(settings.features_dir / f"{USER_VIEW}.parquet")
    return table.sort_values(["event_timestamp", "created_timestamp"]).groupby("user_id").tail(1).set_index("user_id")


def same(a, b) -> bool:
    """Equal feature values: lists element-wise, numbers to float32 precision."""
    if isinstance(a, (list, np.ndarray)) and isinstance(b, (list, np.ndarray)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return a == pytest.approx(b, rel=1e-6)
    return a == b


def test_apply_materialise_and_read_online(featured):
    settings, result = featured
    assert result.feature_service == FEATURE_SERVICE and result.text_embeddings > 0
    store = feature_store(settings)
    assert {fv.name for fv in store.list_feature_views()} == {"user_profile", "user_history", "item_profile",
                                                              "item_text"}
    latest = latest_rows(settings)
    user = latest.index[0]
    online = online_user_features(store, [user, "nobody-here"])
    assert online["recent_items"][0] == list(latest.loc[user, "recent_items"])
    assert online["events_30d"][0] == latest.loc[user, "events_30d"]
    assert online["recent_items"][1] is None, "an unknown user has no features, not someone else's"
    histories = pd.read_parquet(settings.features_dir / "user_history.parquet").set_index("user_id")
    assert online["history"][0] == list(histories.loc[user, "history"])
    assert online["history"][0][-len(online["recent_items"][0]):] == online["recent_items"][0]
    assert online["history"][1] is None


def test_materialisation_uses_the_dataset_clock_not_the_wall_clock(featured):
    settings, result = featured
    clock = pd.Timestamp(result.clock)
    assert clock.year == 2024, "synthetic data lives in 2024; the clock must come from the data"
    assert clock == load_events(settings)["timestamp"].max()


def test_historical_join_does_not_leak_later_values(featured):
    settings, _ = featured
    table = pd.read_parquet(settings.features_dir / f"{USER_VIEW}.parquet").sort_values("event_timestamp")
    # A user whose 30-day count grew after the first row (pseudonyms differ per home: choose by data).
    user = next(u for u, rows in table.groupby("user_id", sort=True)
                if len(rows) >= 2 and rows["events_30d"].iloc[0] < rows["events_30d"].max())
    mine = table[table["user_id"] == user].reset_index(drop=True)
    first, second = mine.iloc[0], mine.iloc[1]
    between = first["event_timestamp"] + (second["event_timestamp"] - first["event_timestamp"]) / 2
    entity = pd.DataFrame({"user_id": [user, user], "event_timestamp": [between, mine["event_timestamp"].max()]})
    joined = historical_user_features(feature_store(settings), entity).sort_values("event_timestamp")
    assert list(joined["recent_items"].iloc[0]) == list(first["recent_items"])
    assert joined["events_30d"].iloc[0] == first["events_30d"] < mine["events_30d"].max()
    assert list(joined["recent_items"].iloc[1]) == list(mine.iloc[-1]["recent_items"])


def test_online_equals_offline_at_the_materialisation_time(featured_any):
    settings, result = featured_any
    store = feature_store(settings)
    users = sorted(latest_rows(settings).index)
    online = online_user_features(store, users)
    as_of = pd.Timestamp(result.clock) + pd.Timedelta(seconds=1)  # the end of the materialised window
    offline = historical_user_features(store, pd.DataFrame({"user_id": users, "event_timestamp": as_of}))
    offline = offline.set_index("user_id").loc[users]
    features = [f.name for f in store.get_feature_service(FEATURE_SERVICE).feature_view_projections[0].features]
    assert len(features) == 12
    mismatches = [(u, f, online[f][i], offline.loc[u, f]) for f in features for i, u in enumerate(users)
                  if not same(online[f][i], offline.loc[u, f])]
    assert mismatches == []
    # The serving hot path reads exactly the same values as the SDK.
    fast = OnlineFeatureReader(store).read(users)
    assert all(same(fast[f][i], online[f][i]) for f in features for i in range(len(users)))


def _write_events(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text(HEADER + "".join(rows))
    return path


@pytest.mark.slow
def test_late_backfill_does_not_leak_into_training_rows(home, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,genres\n" + "".join(f"i{n},Film {n},drama\n" for n in range(1, 7)))
    ingest(home, items, table="items")
    day = "2024-03-{:02d}T10:00:00+00:00".format
    first = [f"a1,ua,i1,click,{day(1)},,s1\n", f"a2,ua,i2,click,{day(2)},,s2\n", f"a3,ua,i3,click,{day(10)},,s3\n",
             f"b1,ub,i6,click,{day(9)},,t1\n"]
    ingest(home, _write_events(tmp_path, "first.csv", first))
    build_features(home, progress=False)
    # Day 12: a batch with one new event and one late one from day 5 (the store had reached day 10).
    ingest(home, _write_events(tmp_path, "late.csv", [f"a4,ua,i4,click,{day(5)},,s4\n",
                                                      f"a5,ua,i5,click,{day(12)},,s5\n"]))
    build_features(home, progress=False)

    user = pseudonym(pseudonym_key(home), "ua")
    times = [day(8), day(11), day(13)]
    entity = pd.DataFrame({"user_id": user, "event_timestamp": pd.to_datetime(times, utc=True)})
    store = feature_store(home)
    joined = historical_user_features(store, entity).sort_values("event_timestamp")
    recent = [list(r) for r in joined["recent_items"]]
    assert recent[0] == ["i1", "i2"], "on day 8 nobody knew of the day-5 event yet"
    assert recent[1] == ["i1", "i2", "i3"], "on day 11 the day-10 profile was still the one without it"
    assert recent[2] == ["i1", "i2", "i4", "i3", "i5"], "from day 12 on the backfill is known"
    # Without the created-timestamp filter Feast would have leaked the backfill into day 8.
    service = store.get_feature_service(FEATURE_SERVICE)
    leaky = store.get_historical_features(entity_df=entity, features=service).to_df().sort_values("event_timestamp")
    assert "i4" in list(leaky["recent_items"].iloc[0])


def _event_row(event_id: str, user: str, item: str, when: pd.Timestamp) -> str:
    return f"{event_id},{user},{item},click,{when.isoformat()},,fresh-{event_id}\n"


def test_new_events_reach_the_online_store_through_push(featured_any, tmp_path):
    settings, result = featured_any
    store = feature_store(settings)
    raw_user = "u0001"
    user = pseudonym(pseudonym_key(settings), raw_user)
    before = online_user_features(store, [user])
    clock = pd.Timestamp(result.clock)
    item = next(i for i in pd.read_parquet(settings.catalogue_path)["item_id"] if i not in before["recent_items"][0])

    fresh = pipeline.ingest_file(settings, _write_events(tmp_path, "fresh.csv",
                                                         [_event_row("f1", raw_user, item, clock + pd.Timedelta(hours=1))]))
    assert fresh.accepted == 1 and fresh.online_users_updated == 1
    after = online_user_features(store, [user])
    assert after["recent_items"][0][-1] == item
    assert after["history"][0] == [*before["history"][0], item], "the whole history is pushed too"
    assert after["events_1d"][0] >= 1 and after["last_event_epoch"][0] > before["last_event_epoch"][0]

    # A late event (older than what is online) is not pushed over the newer row: the later event
    # time wins. The next materialisation, rebuilt from the event store, brings it in.
    late_item = next(i for i in pd.read_parquet(settings.catalogue_path)["item_id"]
                     if i not in after["recent_items"][0])
    late = pipeline.ingest_file(settings, _write_events(tmp_path, "late.csv",
                                                        [_event_row("f2", raw_user, late_item, clock - pd.Timedelta(days=2))]))
    assert late.accepted == 1 and late.online_users_updated == 0
    assert online_user_features(store, [user])["recent_items"][0] == after["recent_items"][0]
    build_features(settings, progress=False)
    rebuilt = online_user_features(store, [user])["recent_items"][0]
    assert late_item in rebuilt and rebuilt[-1] == item
    assert late_item in online_user_features(store, [user])["history"][0]


def _online_rows(settings) -> list[tuple]:
    """Everything in the online store, in a comparable order."""
    if settings.profile == "production":
        client = redis.Redis(host="127.0.0.1", port=6379)
        return sorted((key, sorted(client.hgetall(key).items())) for key in redis_keys(settings.feast_project))
    with sqlite3.connect(settings.feast_dir / "online_store.db") as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
        return sorted(row for t in tables for row in db.execute(f'select * from "{t}"'))  # noqa: S608


def test_materialisation_is_incremental_and_rerunning_changes_nothing(featured_any):
    settings, first = featured_any
    assert first.materialized_from.startswith("1970"), "the first run starts from the beginning"
    before = _online_rows(settings)
    again = build_features(settings, progress=False)
    overlap = pd.Timedelta(days=settings.materialize_overlap_days)
    assert pd.Timestamp(again.materialized_from) == pd.Timestamp(first.clock) + pd.Timedelta(seconds=1) - overlap
    assert _online_rows(settings) == before


def test_feast_ui_shows_the_repo(featured):
    """`longview ui feast` runs `feast ui` with this profile's config; here on a free port."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from control.service_process import free_port
    from longview.feature_store import config_file, config_values

    settings, _ = featured
    port = free_port()
    feast = Path(sys.executable).parent / "feast"
    process = subprocess.Popen([str(feast), "-c", str(settings.feature_repo_dir), "-f", str(config_file(settings)),
                                "ui", "-h", "127.0.0.1", "-p", str(port)], env={**os.environ, **config_values(settings)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, views = time.monotonic() + 240, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/feature_views",
                                  params={"project": settings.feast_project}, timeout=5)
                if reply.status_code == 200:
                    views = reply.json()
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert views is not None, "feast ui did not answer"
        assert {v["spec"]["name"] for v in views["featureViews"]} == {"user_profile", "user_history", "item_profile",
                                                                      "item_text"}
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_failed_online_refresh_keeps_the_batch_and_says_so(featured, tmp_path):
    settings, result = featured
    (settings.feast_dir / "registry.db").unlink()  # the feature store is broken
    when = pd.Timestamp(result.clock) + pd.Timedelta(hours=2)
    path = _write_events(tmp_path, "fresh.csv", [_event_row("z1", "u0003", "i0001", when)])
    stored_before = len(load_events(settings))
    out = pipeline.ingest_file(settings, path)
    assert (out.accepted, out.online_users_updated) == (1, 0)
    assert "online features not refreshed" in out.message
    assert len(load_events(settings)) == stored_before + 1


def test_a_lost_online_store_is_noticed_and_repaired_by_the_next_run(featured_any):
    """The online store is checked, not assumed: after Redis loses its rows (a flush, or a restart
    without persistence) or the SQLite file is deleted, the registry still records the windows as
    materialised, and the next `longview features` writes every entity's row again, users active
    long ago included; a run with nothing lost writes nothing."""
    settings, first = featured_any
    assert first.online_repaired == {}, "materialisation left nothing missing"
    store = feature_store(settings)
    if settings.profile == "production":
        client = redis.Redis(host="127.0.0.1", port=6379)
        client.delete(*redis_keys(settings.feast_project))
    else:
        with sqlite3.connect(settings.feast_dir / "online_store.db") as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                db.execute(f'DELETE FROM "{table}"')
    users = sorted(pd.read_parquet(settings.features_dir / f"{USER_VIEW}.parquet")["user_id"].unique())
    assert all(v is None for v in online_user_features(store, users)["events_7d"]), "the rows are gone"
    again = build_features(settings, progress=False)
    # materialisation rewrote its overlap window (the recently active); the check wrote the rest
    assert 0 < again.online_repaired["user_profile"] < len(users) and again.online_repaired["user_history"] > 0
    rows = online_user_features(feature_store(settings), users)
    assert all(v is not None for v in rows["events_7d"]), "every user's row is back"
    assert all(v is not None for v in OnlineFeatureReader(feature_store(settings)).read(users)["history"])
    assert build_features(settings, progress=False).online_repaired == {}


def test_two_data_homes_get_feast_projects_of_their_own(tmp_path, monkeypatch):
    from longview.settings import get_settings

    monkeypatch.delenv("LONGVIEW_FEAST_PROJECT", raising=False)
    a, b = get_settings(home=tmp_path / "a"), get_settings(home=tmp_path / "b")
    assert a.feast_project != b.feast_project and a.feast_project.startswith("longview_")
    assert get_settings(home=tmp_path / "a").feast_project == a.feast_project, "stable for a home"
    assert get_settings(home=tmp_path / "a", feast_project="shared").feast_project == "shared", "or set"
    # Recorded at the first Feast use: a copied or moved home keeps its project (and its rows).
    feature_store(a)
    moved = tmp_path / "moved"
    (tmp_path / "a").rename(moved)
    assert get_settings(home=moved).feast_project == a.feast_project != get_settings(home=tmp_path / "c").feast_project
