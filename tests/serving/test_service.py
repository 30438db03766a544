"""The real BentoML service over HTTP, reading the real Feast online store and MLflow registry."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pandas as pd
import pytest

from longview.feature_store import feature_store, online_user_features
from longview.features import HISTORY_VIEW
from longview.privacy import pseudonym, pseudonym_key
from longview.service_process import running_service
from training.tracking import CHAMPION, alias_version, mlflow_client


@pytest.fixture(scope="module")
def service(trained):
    with running_service(trained, log_path=trained.home / "test-service.log") as url:
        yield url


def recommend(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def test_recommendations_name_the_champion_version(service, trained):
    response = recommend(service, {"user_id": "u0003", "k": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    champion = alias_version(mlflow_client(trained), CHAMPION)
    # the registered model: the trained one, or a better baseline in its place (its `model` tag)
    assert body["model_version"] == str(champion.version) and body["model_name"] == champion.tags["model"]
    assert len(body["items"]) == 7 and body["fallback"] is None
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    history = online_user_features(feature_store(trained), [pseudonym(pseudonym_key(trained), "u0003")])["history"][0]
    assert len(history) > 20, "the whole history is online, not only the recent items"
    assert not set(history) & {i["item_id"] for i in body["items"]}, "nothing the user engaged with is recommended"


def test_unknown_user_gets_the_labelled_fallback(service):
    body = recommend(service, {"user_id": "never-seen-before", "k": 4}).json()
    assert body["fallback"].startswith("popularity") and len(body["items"]) == 4


@pytest.mark.parametrize("body", [
    {"user_id": "u0001"},
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
])
def test_bad_requests_get_a_clear_4xx(service, body):
    response = recommend(service, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.text


def test_malformed_json_gets_a_4xx(service):
    response = httpx.post(f"{service}/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


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
