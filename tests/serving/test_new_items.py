"""Cold start for items: an item added to the catalogue after training becomes rankable through its
content, picked up by the running service once `longview features` has embedded its text."""

from __future__ import annotations

import shutil
import time

import httpx

from control.pipeline import build_features
from control.service_process import running_service
from longview.ingestion import ingest
from tests.conftest import settings_of

NEW = "i9001"


def test_an_item_added_after_training_is_taken_in_by_its_content(trained, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    settings = settings_of(home)
    with running_service(settings, log_path=tmp_path / "service.log") as url:
        def similar() -> httpx.Response:
            return httpx.post(f"{url}/similar_items", json={"item_id": NEW, "k": 3}, timeout=30)

        assert similar().status_code == 404, "not in the catalogue yet"
        items = tmp_path / "items.csv"
        items.write_text('item_id,title,genres,text,release_time\n'
                         f'{NEW},Nebula of the Warp 5,scifi,"Nebula of the Warp 5: a scifi story, part 5 of 5.",'
                         '2024-04-01T00:00:00+00:00\n')
        assert ingest(settings, items, table="items").accepted == 1
        build_features(settings, progress=False)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and similar().status_code != 200:
            time.sleep(1)
        answer = similar()
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["by"] == "learned item embeddings and content"
        # its nearest items are its own series, known only through its content
        assert all(item["item_id"] in {"i0001", "i0002", "i0003", "i0004"} for item in body["items"][:2])
        ranked = httpx.post(f"{url}/recommend", json={"user_id": "u0003", "k": 100, "exclude_seen": False},
                            timeout=30)
        assert ranked.status_code == 200 and ranked.json()["fallback"] is None
