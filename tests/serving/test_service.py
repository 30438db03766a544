"""The real BentoML service over HTTP, reading the real Feast online store and MLflow registry."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from datetime import timedelta

import httpx
import pandas as pd
import pytest

from control.service_process import running_service
from longview.feature_store import feature_store
from longview.features import FEATURE_SERVICE, HISTORY_VIEW
from longview.online_features import online_user_features
from longview.privacy import pseudonym, pseudonym_key
from longview.settings import REGISTERED_MODEL
from serving.schemas import MAX_BATCH, MAX_K
from tests.conftest import settings_of
from tests.serving.conftest import service_log
from training.tracking import CHAMPION, alias_version, mlflow_client


def recommend(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def test_recommendations_name_the_champion_version_policy_and_data(service, trained):
    response = recommend(service, {"user_id": "u0003", "k": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    client = mlflow_client(trained)
    champion = alias_version(client, CHAMPION)
    # the registered model: the trained one, or a better baseline in its place (its `model` tag)
    assert body["model_version"] == str(champion.version) and body["model_name"] == champion.tags["model"]
    assert body["policy"] == "engagement", "a sequence model serves through the engagement-aware policy"
    run = client.get_run(champion.run_id)
    assert body["data_version"] == run.data.tags["data_version"] and body["feature_service"] == FEATURE_SERVICE
    assert len(body["items"]) == 7 and body["fallback"] is None and body["degraded"] is False
    assert {i["reason"] for i in body["items"]} <= {"engagement", "exploration"}
    assert all(0 < i["propensity"] <= 1 for i in body["items"])
    # the policy's marginal objective never rises between ranked slots (explored ones sit lower)
    ranked = [i["score"] for i in body["items"] if i["reason"] == "engagement"]
    assert ranked == sorted(ranked, reverse=True)
    history = online_user_features(feature_store(trained), [pseudonym(pseudonym_key(trained), "u0003")])["history"][0]
    assert len(history) > 20, "the whole history is online, not only the recent items"
    assert not set(history) & {i["item_id"] for i in body["items"]}, "nothing the user engaged with is recommended"


def test_k_defaults_to_ten(service):
    assert len(recommend(service, {"user_id": "u0001"}).json()["items"]) == 10


def test_unknown_user_gets_the_labelled_fallback(service):
    body = recommend(service, {"user_id": "never-seen-before", "k": 4}).json()
    assert body["fallback"].startswith("popularity") and len(body["items"]) == 4


@pytest.mark.parametrize("body", [
    {"user_id": "u0001", "k": 0},
    {"user_id": "u0001", "k": -3},
    {"user_id": "u0001", "k": 10**9},
    {"user_id": "u0001", "k": "ten"},
    {"user_id": "u0001", "k": 2.5},
    {"user_id": "", "k": 5},
    {"user_id": "u" * 5000, "k": 5},
    {"user_id": "u1'; DROP TABLE users;--", "k": 5},
    {"user_id": None, "k": 5},
    {"k": 5},
    [],
    "not an object",
    {"user_id": "u0001", "k": "5"},  # strict: a string is not a number
    {"user_id": 12345, "k": 5},
    {"user_id": "u0001", "k": 5, "debug": True},  # unknown fields are refused, not ignored
    {"user_id": "u0001", "exclude_seen": "yes"},
    {"user_id": "u0001", "context": {"device": "fridge"}},
    {"user_id": "u0001", "context": {"note": "free text"}},
    {"user_id": "u0001", "context": {"time": "2024-03-01T10:00:00"}},  # no time zone
    {"user_id": "u0001", "context": {"time": "yesterday"}},
    {"user_id": "u0001", "context": "web"},
    {"user_id": "u0001", "k": MAX_K + 1},
])
def test_bad_requests_get_a_clear_4xx(service, body):
    response = recommend(service, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.text


def test_a_batch_answers_each_user_as_alone(service):
    """The same users, time and k: one request for all (an unknown user and a repeat among them)
    gives each the list, scores, reasons and propensities they get alone, exploration included."""
    users = ["u0003", "u0010", "never-seen-before", "u0021", "u0003"]
    context = {"time": "2024-03-01T20:00:00+00:00"}
    batch = httpx.post(f"{service}/recommend_batch", json={"user_ids": users, "k": 30, "context": context}, timeout=60)
    assert batch.status_code == 200, batch.text
    answers = batch.json()["recommendations"]
    alone = [recommend(service, {"user_id": u, "k": 30, "context": context}).json() for u in users]
    ids = [a.pop("request_id") for a in answers + alone]
    assert len(set(ids)) == len(ids)  # each list is a request of its own in the served log
    assert answers == alone
    assert answers[2]["fallback"].startswith("popularity") and answers[0] == answers[4]
    # exploration was on (a slot's propensity is below 1 while more than one candidate is left), so
    # the seeded draws are in the comparison
    assert all(a["items"][0]["propensity"] < 1 for a in answers)


@pytest.mark.parametrize("body", [
    {"user_ids": []},
    {"user_ids": "u0001"},
    {"user_ids": ["u0001", ""]},
    {"user_ids": ["u0001", None]},
    {"user_ids": ["u0001"], "k": 0},
    {"user_ids": ["u0001"], "user_id": "u0002"},
    {"user_ids": [f"u{n}" for n in range(MAX_BATCH + 1)]},
])
def test_bad_batches_get_a_clear_4xx(service, body):
    response = httpx.post(f"{service}/recommend_batch", json=body, timeout=30)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_similar_items_by_the_served_models_item_vectors(service, trained):
    response = httpx.post(f"{service}/similar_items", json={"item_id": "i0010", "k": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by"] == "learned item embeddings and content", "the demo's sequence model fused genres and text"
    items = [i["item_id"] for i in body["items"]]
    assert len(set(items)) == 6 and "i0010" not in items
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    champion = alias_version(mlflow_client(trained), CHAMPION)
    assert body["model_version"] == str(champion.version)
    unknown = httpx.post(f"{service}/similar_items", json={"item_id": "no-such-item", "k": 3})
    assert unknown.status_code == 404 and "not in the served model's catalogue" in unknown.json()["error"]
    for bad in ({"item_id": "i0010", "k": 0}, {"item_id": "", "k": 3}, {"item_id": "i0010", "k": "3"},
                {"item_id": "<script>", "k": 3}, {"item_id": "i0010", "user_id": "u1"}, {"k": 3}):
        assert httpx.post(f"{service}/similar_items", json=bad).status_code == 400, bad


def test_rejected_requests_keep_raw_user_ids_out_of_the_service_log(service, trained):
    raw = "raw-user-7f3a9c"
    for body in ({"user_id": raw, "k": "five"}, {"user_id": raw + "'; --", "k": 3}, {"user_id": raw, "k": 3, "x": 1}):
        assert recommend(service, body).status_code == 400
    bad_json = b'{"user_id": "' + raw.encode() + b'", "k": 3'
    assert httpx.post(f"{service}/recommend", content=bad_json, headers={"content-type": "application/json"}).status_code == 400
    assert recommend(service, {"user_id": raw, "k": 3}).status_code == 200
    log = service_log(trained.home, __name__).read_text()
    assert "validation error" in log, "the rejections were logged"
    assert raw not in log


def test_the_champion_came_in_with_its_users_states_warm(service, trained):
    """Before reporting ready, the service encoded the materialised users' histories into the
    model's state cache (serving.warm_seconds), the demo home's every user with a history."""
    import pandas as pd

    from longview.features import HISTORY_VIEW

    users = len(pd.read_parquet(trained.features_dir / f"{HISTORY_VIEW}.parquet"))
    log = service_log(trained.home, __name__).read_text()
    assert f"{users} users' states encoded ahead of their requests" in log


def test_malformed_json_gets_a_4xx(service):
    response = httpx.post(f"{service}/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_oversized_and_deeply_nested_bodies_are_refused(service, trained):
    limit = trained.serving.max_body_bytes
    padded = json.dumps({"user_id": "u0001", "k": 5, "pad": "x" * limit}).encode()
    big = httpx.post(f"{service}/recommend", content=padded, headers={"content-type": "application/json"})
    assert big.status_code == 413 and "larger than the service accepts" in big.json()["error"]

    def chunks():  # no Content-Length: the limit counts the streamed bytes
        yield b'{"user_id": "u0001", "k": 5, "pad": "'
        for _ in range(limit // 1000 + 2):
            yield b"x" * 1000
        yield b'"}'
    chunked = httpx.post(f"{service}/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    nested = b'{"user_id": "u0001", "context": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert len(nested) < limit
    deep = httpx.post(f"{service}/recommend", content=nested, headers={"content-type": "application/json"})
    assert 400 <= deep.status_code < 500, deep.text
    # and the service still answers
    assert recommend(service, {"user_id": "u0001", "k": 3}).status_code == 200


def test_context_and_exclude_seen_are_honoured(service, trained):
    context = {"time": "2024-03-01T20:00:00+00:00", "device": "tv", "surface": "home"}
    assert recommend(service, {"user_id": "u0003", "k": 5, "context": context}).status_code == 200
    history = set(online_user_features(feature_store(trained), [pseudonym(pseudonym_key(trained), "u0003")])["history"][0])
    unseen = recommend(service, {"user_id": "u0003", "k": MAX_K}).json()["items"]
    again = recommend(service, {"user_id": "u0003", "k": MAX_K, "exclude_seen": False}).json()["items"]
    catalogue = len(pd.read_parquet(trained.catalogue_path))
    assert not history & {i["item_id"] for i in unseen}
    assert len(unseen) == min(MAX_K, catalogue - len(history))
    assert history & {i["item_id"] for i in again}, "with exclude_seen false, seen items may come back"


def write_history(settings, user: str, history: list[str]) -> None:
    """Overwrite a user's online history, stamped later than anything materialised."""
    stamp = pd.Timestamp.now(tz="UTC") + timedelta(days=1)
    row = {"user_id": pseudonym(pseudonym_key(settings), user), "history": history, "event_timestamp": stamp,
           "created_timestamp": stamp}
    feature_store(settings).write_to_online_store(HISTORY_VIEW, pd.DataFrame([row]))


def test_changing_online_features_changes_the_ranking(service, trained):
    user = "u0011"
    before = recommend(service, {"user_id": user, "k": 10}).json()
    current = online_user_features(feature_store(trained), [pseudonym(pseudonym_key(trained), user)])["history"][0]
    # Rewrite this user's history as someone who engaged with a different part of the catalogue.
    catalogue = pd.read_parquet(trained.catalogue_path)
    others = [i for i in catalogue["item_id"] if i not in set(current)][-30:]
    write_history(trained, user, others)
    after = recommend(service, {"user_id": user, "k": 10}).json()
    assert after["fallback"] is None
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    assert not set(others) & {i["item_id"] for i in after["items"]}


def test_a_history_of_unknown_items_gets_the_labelled_fallback(service, trained):
    write_history(trained, "u0012", ["no-such-item", "i9999999"])
    body = recommend(service, {"user_id": "u0012", "k": 5}).json()
    assert body["fallback"] == "popularity: none of this user's items are known to the model"
    assert len(body["items"]) == 5


def listening_pids(url: str) -> set[int]:
    """The processes holding the service's listening socket (BentoML's arbiter and its worker)."""
    import psutil

    port = int(url.rsplit(":", 1)[1])
    return {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
            and c.status == psutil.CONN_LISTEN and c.pid}


def test_the_service_follows_champion_while_requests_flow(service, trained):
    """A person moves @champion in the registry (as in the MLflow UI) while requests flow: none
    fails, the same server processes answer throughout, and the new version answers within seconds."""
    client = mlflow_client(trained)
    first = alias_version(client, CHAMPION)
    second = client.create_model_version(REGISTERED_MODEL, first.source, run_id=first.run_id, tags=first.tags)
    before = listening_pids(service)
    answers: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                r = http.post(f"{service}/recommend", json={"user_id": "u0005", "k": 5})
                answers.append((time.monotonic(), r.status_code, r.json().get("model_version")))

    flow = threading.Thread(target=traffic)
    flow.start()
    try:
        time.sleep(1.0)
        moves = []
        for target in (second.version, first.version):  # there and back: the home is left as found
            moves.append((time.monotonic(), str(target)))
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(target))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(t > moves[-1][0] and v == str(target) for t, _, v in answers):
                time.sleep(0.2)
            time.sleep(1.0)
    finally:
        stop.set()
        flow.join(timeout=60)
    assert answers and all(status == 200 for _, status, _ in answers), {s for _, s, _ in answers}
    for (moved, target), until in zip(moves, [moves[1][0], float("inf")], strict=True):
        after = [(t, v) for t, _, v in answers if moved < t < until]
        switched = next(t for t, v in after if v == target)
        assert switched - moved < 10, f"version {target} answered {switched - moved:.1f} s after the move"
        assert all(v == target for t, v in after if t > switched), "no request went back to the old version"
    assert listening_pids(service) == before and before, "the same server process, not a restart"
    assert str(alias_version(client, CHAMPION).version) == str(first.version)


def test_an_unreachable_store_or_registry_degrades_the_answer_not_fails_it(service, trained):
    store_db, registry_db = trained.feast_dir / "online_store.db", trained.home / "mlflow.db"
    tables = [f"{trained.feast_project}_user_history", f"{trained.feast_project}_user_profile"]

    def rename(path, pairs):
        with sqlite3.connect(path) as db:
            for old, new in pairs:
                db.execute(f"ALTER TABLE {old} RENAME TO {new}")

    rename(store_db, [(t, f"{t}_away") for t in tables])
    try:
        body = recommend(service, {"user_id": "u0003", "k": 4}).json()
    finally:
        rename(store_db, [(f"{t}_away", t) for t in tables])
    assert body["degraded"] is True and body["fallback"] == "popularity: the online feature store is unavailable"
    assert len(body["items"]) == 4 and {i["reason"] for i in body["items"]} == {"popular"}
    assert recommend(service, {"user_id": "u0003", "k": 4}).json()["degraded"] is False

    rename(registry_db, [("registered_model_aliases", "aliases_away")])
    try:
        deadline, body = time.monotonic() + 20, {}
        while time.monotonic() < deadline and not body.get("degraded"):
            body = recommend(service, {"user_id": "u0003", "k": 4}).json()
            time.sleep(0.5)
        assert body["degraded"] is True and body["fallback"] is None, body
        assert httpx.get(f"{service}/readyz").status_code == 200, "degraded, still ready"
    finally:
        rename(registry_db, [("aliases_away", "registered_model_aliases")])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and body.get("degraded"):
        body = recommend(service, {"user_id": "u0003", "k": 4}).json()
        time.sleep(0.5)
    assert body["degraded"] is False
    # both counted in Prometheus' /metrics, by what was unreachable, beside the fallbacks by reason
    metrics = httpx.get(f"{service}/metrics").text
    assert metric(metrics, 'longview_degraded_total{unreachable="online_store"}') >= 1
    assert metric(metrics, 'longview_degraded_total{unreachable="registry"}') >= 1
    assert metric(metrics, 'longview_fallbacks_total{reason="store_down"}') >= 1
    assert metric(metrics, 'longview_fallbacks_total{reason="no_features"}') >= 1, "the unknown users' fallbacks"
    assert 'bentoml_service_request_total{' in metrics, "BentoML's own request counts and latencies"


def metric(text: str, name: str) -> float:
    """A sample's value in Prometheus' text format (the sum over processes: 0 when absent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_without_a_champion_the_service_starts_not_ready_says_why_and_follows_one_in(trained, tmp_path, monkeypatch):
    """A fresh service (here on a copy of the demo home whose @champion was removed, with an API key
    configured): up but not ready, saying why; ready as soon as a champion appears, without a restart
    (here at once, through the admin reload). With the key set, a POST without it (or with another)
    gets 401, whatever its body."""
    key = "k" * 20 + "-secret"
    monkeypatch.setenv("LONGVIEW_SERVING__API_KEY", key)
    home = tmp_path / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    settings = settings_of(home)  # afresh: a copy of the settings would keep the first home's cached paths
    client = mlflow_client(settings)
    champion = alias_version(client, CHAMPION)
    client.delete_registered_model_alias(REGISTERED_MODEL, CHAMPION)
    with running_service(settings, log_path=tmp_path / "service.log", ready=False) as url:
        assert httpx.get(f"{url}/readyz").status_code == 503
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": key[:-1]}):
            unauthorised = httpx.post(f"{url}/recommend", json={"user_id": "u0003", "k": 3}, headers=headers)
            assert unauthorised.status_code == 401 and "X-API-Key" in unauthorised.json()["error"]
        big = httpx.post(f"{url}/recommend", content=b"x" * 10**6, headers={"content-type": "application/json"})
        assert big.status_code == 401, "no key, no reading of the body"
        refused = httpx.post(f"{url}/recommend", json={"user_id": "u0003", "k": 3}, headers={"X-API-Key": key})
        assert refused.status_code == 503 and "no @champion model in the registry" in refused.json()["error"]
        headers = {"X-API-Key": key}
        nothing = httpx.post(f"{url}/admin/reload", json={}, headers=headers)
        assert nothing.status_code == 200 and nothing.json()["model_version"] is None
        assert "no @champion" in nothing.json()["problem"]
        assert httpx.post(f"{url}/admin/reload", json={}).status_code == 401
        for bad in ({"force": "yes"}, {"force": 1}, {"force": None}, {"force": True, "version": "1"}, [], "force"):
            assert httpx.post(f"{url}/admin/reload", json=bad, headers=headers).status_code == 400, bad
        malformed = httpx.post(f"{url}/admin/reload", content=b'{"force": tru', headers=headers | {"content-type": "application/json"})
        assert malformed.status_code == 400
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, champion.version)
        # the admin reload asks the registry at once, without waiting for the next poll
        reloaded = httpx.post(f"{url}/admin/reload", json={"force": True}, headers=headers, timeout=60)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json() == {"model_version": str(champion.version), "previous_version": None, "problem": None}
        assert httpx.get(f"{url}/readyz").status_code == 200
        body = httpx.post(f"{url}/recommend", json={"user_id": "u0003", "k": 3}, headers={"X-API-Key": key}).json()
        assert body["model_version"] == str(champion.version) and len(body["items"]) == 3
    assert "not ready: no @champion model" in (tmp_path / "service.log").read_text()


def test_the_policy_reads_the_profile_its_sequence_model_reads(trained):
    """Under the engagement policy, the served sequence model still gets the user's Feast profile
    (not zeros): two users alike but for their profile get different scores."""
    from training.tracking import load_version

    model = load_version(trained, str(alias_version(mlflow_client(trained), CHAMPION).version))
    policy = model.under_policy(trained.engagement.weights(trained.seed))
    assert model.profile_width > 0 and policy.profile_width == model.profile_width
    history, now, last = model.item_ids[:5], 1.7e9, 1.7e9 - 3600
    busy = {"events_7d": 80, "events_30d": 300, "active_days": 30, "mean_session_depth": 20}
    lists = policy.slots([history, history], [now, now], 10, [last, last], [busy, {}], seeds=[1, 1])
    assert max(abs(a.score - b.score) for a, b in zip(*lists)) > 1e-3


def test_the_admin_reload_is_refused_without_a_configured_key(service):
    refused = httpx.post(f"{service}/admin/reload", json={"force": True})
    assert refused.status_code == 403 and "LONGVIEW_SERVING__API_KEY" in refused.json()["error"]


def test_the_benchmark_client_measures_the_service_and_its_floor(service):
    """`longview bench serving`'s machinery on the test service: the floor endpoint answers a
    constant list to a /recommend body, the timed and concurrent clients count every answer, and
    the service's process group has a peak memory to report."""
    from control.bench.serving import concurrent, sequential, service_memory_mb

    bodies = [json.dumps({"user_id": f"u{n:04d}", "k": 5}).encode() for n in range(1, 41)]
    timed = sequential(service, ["/constant_list", "/recommend"], bodies)
    times, answers = timed["/constant_list"]
    assert len(times) == 40 and all(status == 200 for status, _ in answers) and (times > 0).all()
    assert json.loads(answers[0][1]) == json.loads(answers[-1][1]) and len(json.loads(answers[0][1])["items"]) == 10
    times, answers = timed["/recommend"]
    assert len(times) == 40 and (times > 0).all()
    assert [json.loads(data)["user_id"] for _, data in answers] == [f"u{n:04d}" for n in range(1, 41)], "in order"
    # (earlier tests in this module may have promoted another version: fallbacks are not the point here)
    assert all(status == 200 and len(json.loads(data)["items"]) == 5 for status, data in answers)
    rps, errors = concurrent(service, "/recommend", bodies + [b'{"user_id": ""}'], 4)
    assert rps > 0 and errors == 1, "the bad body is the one error"
    assert service_memory_mb(service.pid) > 50
