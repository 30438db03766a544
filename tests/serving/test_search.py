"""/search: free text matched against the catalogue's texts with the catalogue's own text model,
blended with the served model's view of a user. Unit tests of serving/search.py through the real
encoder, then the real service over HTTP."""

from __future__ import annotations

import json
import sqlite3

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from longview.features import MANIFEST, TEXT_SCHEMA, TEXT_VIEW, item_text_table
from serving.schemas import MAX_K, MAX_QUERY_CHARS, SearchRequest
from serving.search import BLEND_WEIGHT, CatalogueSearch, NoTexts, SearchCache, clean_query, user_preference
from tests.serving.conftest import service_log
from training.tracking import CHAMPION, alias_version, load_version, mlflow_client

TEXTS = {
    "i1": "Orbit of the Nebula: astronauts on a starship travel through outer space to distant planets.",
    "i2": "Haunting of the Night: a horror story of ghosts in an old house.",
    "i3": "Summer of the Wedding: a romance story about two people falling in love.",
    "i4": "Laughs of the Party: a comedy story full of jokes and pranks.",
    "i5": "Oceans of the Wild: a documentary about whales and coral reefs.",
    "i6": "Blade of the Siege: an action story of sword fights and battles.",
}
SPACE = "a film about space travel and planets"


def write_text_table(folder, texts: dict[str, str]) -> None:
    """The item_text table and manifest as `longview features` writes them (longview/features.py)."""
    catalogue = pd.DataFrame({"item_id": list(texts), "text": list(texts.values())})
    table = item_text_table(catalogue, pd.Timestamp("2024-01-01", tz="UTC"), progress=False)
    rows = table if table is not None else pd.DataFrame({name: pd.Series(dtype=object) for name in TEXT_SCHEMA.names})
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / f"{TEXT_VIEW}.parquet", index=False, schema=TEXT_SCHEMA)
    (folder / MANIFEST).write_text(json.dumps({"text_embedding": table is not None}))


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> CatalogueSearch:
    folder = tmp_path_factory.mktemp("features")
    write_text_table(folder, TEXTS)
    return CatalogueSearch.from_features(folder)


def ids(hits) -> list[str]:
    return [h.item_id for h in hits]


# -- serving/search.py ------------------------------------------------------------------------------

def test_a_query_about_space_finds_the_space_item_first(catalogue):
    hits = catalogue.search(SPACE, k=3)
    assert ids(hits)[0] == "i1" and len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score == h.text_score for h in hits), "without a user the score is the cosine"
    assert -1.0 <= hits[-1].text_score <= hits[0].text_score <= 1.0
    assert ids(catalogue.search("scary ghosts", k=1)) == ["i2"]
    assert ids(catalogue.search("  whales in the sea \n", k=1)) == ["i5"], "surrounding whitespace is ignored"


def test_the_text_vectors_are_one_float32_matrix_of_unit_rows(catalogue):
    assert catalogue.vectors.dtype == np.float32 and catalogue.vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(catalogue.vectors, axis=1), 1.0, atol=1e-5)
    assert catalogue.item_ids == list(TEXTS)


def test_blending_moves_the_users_preferred_item_up(catalogue):
    plain = catalogue.search("a story", k=len(TEXTS))
    liked = ids(plain)[-1]  # the item the text alone ranks last
    scores = {item: (5.0 if item == liked else 1.0) for item in TEXTS}
    blended = catalogue.search("a story", k=len(TEXTS), user_scores=scores)
    assert ids(blended).index(liked) < ids(plain).index(liked)
    cosine = {h.item_id: h.text_score for h in plain}
    for hit in blended:  # (1 - w) x cosine + w x the preference min-max scaled over the items searched
        preference = 1.0 if hit.item_id == liked else 0.0
        assert hit.text_score == pytest.approx(cosine[hit.item_id], abs=1e-6)
        assert hit.score == pytest.approx((1 - BLEND_WEIGHT) * hit.text_score + BLEND_WEIGHT * preference, abs=1e-6)
    # a weak preference does not overturn a clear text match
    nudged = catalogue.search(SPACE, k=1, user_scores={**{i: 0.0 for i in TEXTS}, "i1": -1.0, "i4": 1.0})
    assert ids(nudged) == ["i1"]


def test_blending_searches_only_the_items_the_model_knows(catalogue):
    hits = catalogue.search(SPACE, k=10, user_scores={"i2": 0.3, "i4": 0.1, "not-in-catalogue": 9.0})
    assert sorted(ids(hits)) == ["i2", "i4"]
    equal = catalogue.search(SPACE, k=10, user_scores={"i2": 1.0, "i1": 1.0})
    assert ids(equal) == ["i1", "i2"], "equal preferences reorder nothing"
    assert catalogue.search(SPACE, k=3, user_scores={"elsewhere": 1.0}) == []


def test_a_models_scores_are_laid_out_in_the_catalogues_order(catalogue):
    model_items = ["i4", "zz", "i1"]
    preference = catalogue.preference(model_items, np.array([0.5, 9.0, 0.25]))
    expected = np.full(len(TEXTS), np.nan, dtype=np.float32)
    expected[[0, 3]] = [0.25, 0.5]
    np.testing.assert_array_equal(preference, expected)
    assert catalogue.preference(model_items, np.zeros(3))[0] == 0.0, "the layout is kept, not the scores"
    assert ids(catalogue.search(SPACE, k=5, user_scores=preference)) == ["i1", "i4"]
    with pytest.raises(ValueError, match="3 item ids but 2 scores"):
        catalogue.preference(model_items, np.zeros(2))


def test_excluded_items_are_left_out(catalogue):
    assert "i1" not in ids(catalogue.search(SPACE, k=len(TEXTS), exclude={"i1", "unknown"}))


@pytest.mark.parametrize("query", ["", " ", "\t\n ", "\u00a0\u3000"])
def test_an_empty_query_is_refused(catalogue, query):
    with pytest.raises(ValueError, match="the query is empty"):
        catalogue.search(query, k=3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_k_must_be_a_positive_whole_number(catalogue, k):
    with pytest.raises(ValueError, match="k must be"):
        catalogue.search(SPACE, k=k)


def test_k_past_the_catalogue_gives_every_item_and_k_one_the_best(catalogue):
    assert sorted(ids(catalogue.search(SPACE, k=1000))) == sorted(TEXTS)
    assert ids(catalogue.search(SPACE, k=1)) == ids(catalogue.search(SPACE, k=4))[:1]


def test_tied_items_come_in_catalogue_order(tmp_path):
    # identical texts embed identically: exact ties, which the top-k must cut in catalogue order
    texts = {f"i{n}": "a comedy story" for n in range(8)} | {"space": "astronauts in outer space"}
    write_text_table(tmp_path, texts)
    search = CatalogueSearch.from_features(tmp_path)
    assert ids(search.search("a funny comedy", k=3)) == ["i0", "i1", "i2"]
    assert ids(search.search("a funny comedy", k=9))[-1] == "space"


def test_a_catalogue_without_texts_is_a_clear_error(home):
    folder = home.features_dir
    write_text_table(folder, {"i1": "", "i2": "   "})  # nothing to embed: an empty table, as `features` writes
    assert json.loads((folder / MANIFEST).read_text()) == {"text_embedding": False}
    with pytest.raises(NoTexts, match="no texts to search"):
        CatalogueSearch.from_features(folder)
    with pytest.raises(NoTexts, match="no texts to search"):
        SearchCache(home).get()
    with pytest.raises(NoTexts):
        CatalogueSearch(["i1"], np.zeros((1, 384), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="longview features"):
        CatalogueSearch.from_features(folder / "not-built")


def test_the_cache_builds_once_and_again_when_the_table_changes(home):
    folder = home.features_dir
    write_text_table(folder, TEXTS)
    cache = SearchCache(home)
    first = cache.get()
    assert cache.get() is first, "unchanged tables: the same index"
    write_text_table(folder, {k: v for k, v in TEXTS.items() if k != "i1"})
    rebuilt = cache.get()
    assert rebuilt is not first and "i1" not in rebuilt.row
    (folder / f"{TEXT_VIEW}.parquet").write_bytes(b"half-written")
    assert cache.get() is rebuilt, "a table that does not load: the last index keeps answering"


# -- the request schema ---------------------------------------------------------------------------

def test_the_search_request_is_strict_and_bounded():
    assert SearchRequest.model_validate({"query": SPACE}).k == 10
    for body in ({"query": ""}, {"query": "   "}, {"query": "x" * (MAX_QUERY_CHARS + 1)}, {"query": SPACE, "k": 0},
                 {"query": SPACE, "k": MAX_K + 1}, {"query": SPACE, "k": "5"}, {"query": SPACE, "extra": 1},
                 {"query": 5}, {"query": SPACE, "user_id": ""}, {"query": SPACE, "user_id": "a b"}, {}):
        with pytest.raises(ValidationError):
            SearchRequest.model_validate(body)


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=MAX_QUERY_CHARS + 20) | st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2003\u3000"
                                                          "a\u200b", max_size=8))
def test_the_schema_accepts_exactly_the_queries_the_search_takes(query):
    """A query passes the schema if and only if it has 1-MAX_QUERY_CHARS characters and
    serving.search.clean_query finds something in it (so /search never answers 400 past the schema)."""
    try:
        SearchRequest.model_validate({"query": query})
        accepted = True
    except ValidationError:
        accepted = False
    try:
        clean_query(query)
        searchable = True
    except ValueError:
        searchable = False
    assert accepted == (searchable and len(query) <= MAX_QUERY_CHARS)


# -- the served model's view of a user ------------------------------------------------------------

def test_user_scores_are_the_scores_the_model_ranks_by(trained):
    version = str(alias_version(mlflow_client(trained), CHAMPION).version)
    model = load_version(trained, version)
    history = model.item_ids[:5]
    scores = model.user_scores(history, 1.7e9, 1.7e9 - 3600, None)
    assert scores.dtype == np.float32 and scores.shape == (len(model.item_ids),)
    ranked = model.rank([history], [1.7e9], 10, [1.7e9 - 3600], None, exclude=False)[0]
    best = np.argsort(-scores, kind="stable")[:10]
    assert [model.item_ids[i] for i in best] == [item for item, _ in ranked]
    np.testing.assert_allclose(sorted(scores, reverse=True)[:10], [s for _, s in ranked], rtol=1e-5)
    # under the policy: its base model's relevance, not the policy's list-order scores
    policy = model.under_policy(trained.engagement.weights(trained.seed))
    np.testing.assert_array_equal(policy.user_scores(history, 1.7e9, 1.7e9 - 3600, None), scores)
    # and laid out for search
    search = CatalogueSearch.from_features(trained.features_dir)
    preference = user_preference(search, policy, {"history": history, "last_event_epoch": 1.7e9 - 3600}, 1.7e9)
    known = [r for r, item in enumerate(search.item_ids) if item in model.index]
    assert np.isfinite(preference[known]).all()
    assert user_preference(search, policy, {"history": None}, 1.7e9) is None
    assert user_preference(search, policy, {"history": ["never-an-item"]}, 1.7e9) is None


# -- over HTTP, against the running service --------------------------------------------------------

def search(url: str, body) -> httpx.Response:
    return httpx.post(f"{url}/search", json=body, timeout=60)


def genres_of(trained) -> dict[str, str]:
    catalogue = pd.read_parquet(trained.catalogue_path)
    return dict(zip(catalogue["item_id"], catalogue["genres"], strict=True))


def test_a_query_gets_k_items_from_the_catalogue(service, trained):
    response = search(service, {"query": "a story about outer space and planets", "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    genres = genres_of(trained)
    assert len(body["items"]) == 5 and all(h["item_id"] in genres for h in body["items"])
    assert "scifi" in genres[body["items"][0]["item_id"]], "the synthetic world's space stories are its scifi"
    assert body["personalised"] is False and body["model_name"] is None and body["model_version"] is None
    assert body["degraded"] is False
    scores = [h["score"] for h in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(h["score"] == h["text_score"] for h in body["items"])
    assert len(search(service, {"query": "scary ghosts at night"}).json()["items"]) == 10, "k defaults to ten"


def test_a_known_user_gets_the_query_blended_with_their_taste(service, trained):
    query = {"query": "a light comedy", "k": MAX_K}
    plain = search(service, query).json()
    response = search(service, {**query, "user_id": "u0003"})
    assert response.status_code == 200, response.text
    body = response.json()
    champion = alias_version(mlflow_client(trained), CHAMPION)
    assert body["personalised"] is True and body["degraded"] is False
    assert body["model_version"] == str(champion.version) and body["model_name"] == champion.tags["model"]
    assert len(body["items"]) == min(MAX_K, len(genres_of(trained)))
    cosine = {h["item_id"]: h["text_score"] for h in plain["items"]}
    # the same cosines, a different order: the user's preference moved items
    assert all(h["text_score"] == pytest.approx(cosine[h["item_id"]], abs=2e-6) for h in body["items"]
               if h["item_id"] in cosine)
    assert [h["item_id"] for h in body["items"]] != [h["item_id"] for h in plain["items"]]
    assert any(h["score"] != h["text_score"] for h in body["items"])
    scores = [h["score"] for h in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_an_unknown_user_gets_the_text_match_alone(service):
    query = {"query": "a romance with a wedding", "k": 7}
    plain = search(service, query).json()
    body = search(service, {**query, "user_id": "never-seen-before"}).json()
    assert body == plain and body["personalised"] is False


@pytest.mark.parametrize("body", [
    {"query": ""},
    {"query": "   \n\t"},
    {"query": "space " * 2000},  # 10,000 characters
    {"query": "space", "k": 0},
    {"query": "space", "k": -1},
    {"query": "space", "k": MAX_K + 1},
    {"query": "space", "k": "5"},
    {"query": "space", "k": 2.5},
    {"query": "space", "mode": "fuzzy"},  # unknown fields are refused, not ignored
    {"query": 42},
    {"query": ["space"]},
    {"query": None},
    {"query": "space", "user_id": ""},
    {"query": "space", "user_id": "u1'; DROP TABLE users;--"},
    {"k": 5},
    [],
    "space",
])
def test_bad_search_requests_get_a_clear_4xx(service, body):
    response = search(service, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.text


def test_queries_and_user_ids_stay_out_of_the_service_log(service, trained):
    raw_user, secret = "raw-searcher-5e1b7d", "zanzibar-quokka-4411"
    assert search(service, {"query": f"comedy {secret}", "user_id": raw_user, "k": 3}).status_code == 200
    assert search(service, {"query": f"comedy {secret}", "user_id": raw_user, "k": "3"}).status_code == 400
    assert search(service, {"query": secret, "user_id": raw_user + "!", "k": 3}).status_code == 400
    log = service_log(trained.home, __name__).read_text()
    assert raw_user not in log and secret not in log


def test_a_catalogue_without_texts_is_a_409_and_a_rebuilt_table_is_searched_again(service, trained):
    manifest = trained.features_dir / MANIFEST
    original = manifest.read_text()
    try:
        manifest.write_text(json.dumps({"text_embedding": False}))
        response = search(service, {"query": "space", "k": 3})
        assert response.status_code == 409 and response.json()["error"] == "the catalogue has no texts to search"
    finally:
        manifest.write_text(original)
    assert search(service, {"query": "space", "k": 3}).status_code == 200


def test_an_unreachable_store_gives_the_text_match_flagged_not_a_failure(service, trained):
    store_db = trained.feast_dir / "online_store.db"
    tables = [f"{trained.feast_project}_user_history", f"{trained.feast_project}_user_profile"]

    def rename(pairs):
        with sqlite3.connect(store_db) as db:
            for old, new in pairs:
                db.execute(f"ALTER TABLE {old} RENAME TO {new}")

    query = {"query": "a documentary about the ocean", "k": 5}
    plain = search(service, query).json()
    rename([(t, f"{t}_away") for t in tables])
    try:
        response = search(service, {**query, "user_id": "u0003"})
    finally:
        rename([(f"{t}_away", t) for t in tables])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is True and body["personalised"] is False and body["items"] == plain["items"]
    assert search(service, {**query, "user_id": "u0003"}).json()["personalised"] is True
