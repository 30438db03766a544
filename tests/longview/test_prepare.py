"""`longview data prepare` on the real datasets in LONGVIEW_DATA_DIR and on the synthetic world."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import SMALL_WORLD, last_json, longview, real_data

EXPECTED = {  # dataset: (events, users, items)
    "ml-100k": (100_000, 943, 1_682),
    "instacart-sample": (150_000, 593, 14_190),
    "ml-1m-sasrec": (987_019, 6_040, 3_416),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepare_real_dataset(tmp_path, name):
    data_dir = real_data(name).parent
    home = tmp_path / "home"
    result = longview("data", "prepare", "--dataset", name,
                      env={"LONGVIEW_HOME": str(home), "LONGVIEW_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = last_json(result.stdout)
    events, users, items = EXPECTED[name]
    assert (summary["received"], summary["accepted"], summary["quarantined"]) == (events, events, 0)
    assert summary["tables"]["users"]["accepted"] == users
    assert summary["tables"]["items"]["accepted"] == items
    stored = pd.concat(pd.read_parquet(p) for p in (home / "events").glob("*.parquet"))
    assert len(stored) == events and stored["user_id"].nunique() == users
    assert stored["user_id"].str.startswith("u_").all(), "user ids are pseudonymised"
    derived = {"ml-100k": set(), "instacart-sample": {"items", "users"}, "ml-1m-sasrec": {"items", "users"}}[name]
    assert set(summary["derived"]) == derived, "a table made from another is named in the summary"
    marker = json.loads((home / "dataset.json").read_text())
    assert marker == {"dataset": name, "source": summary["source"], "ordinal_time": name == "ml-1m-sasrec"}


@pytest.mark.slow
def test_prepare_synthetic_and_again_adds_nothing(tmp_path):
    env = {**SMALL_WORLD, "LONGVIEW_SYNTHETIC_USERS": "30", "LONGVIEW_HOME": str(tmp_path / "home")}
    first = last_json(longview("data", "prepare", "--dataset", "synthetic", env=env).stdout)
    assert first["accepted"] == first["received"] > 0 and first["tables"]["items"]["accepted"] == 160
    assert first["dvc"].startswith("off:"), "a data home outside the project is not versioned by DVC"
    again = last_json(longview("data", "prepare", "--dataset", "synthetic", env=env).stdout)
    assert (again["accepted"], again["quarantined"]) == (0, first["received"])


@pytest.mark.slow
def test_prepare_says_what_is_wrong(tmp_path):
    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(tmp_path / "empty")}
    unknown = longview("data", "prepare", "--dataset", "ml-5k", env=env)
    assert unknown.returncode == 2 and "unknown dataset" in unknown.stderr
    no_download = longview("data", "prepare", "--dataset", "instacart-sample", env=env)
    assert no_download.returncode == 2 and "where to get it" in no_download.stderr.lower()
    wrong_source = longview("data", "prepare", "--dataset", "ml-100k", "--source", str(tmp_path), env=env)
    assert wrong_source.returncode == 2 and "u.data" in wrong_source.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name,texts", [("ml-100k", 1_682), ("instacart-sample", 0)])
def test_features_on_real_dataset(tmp_path, name, texts):
    """`longview features` on a real dataset with item text (ml-100k) and one without (instacart)."""
    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(real_data(name).parent)}
    assert longview("data", "prepare", "--dataset", name, env=env).returncode == 0
    result = longview("features", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = last_json(result.stdout)
    events, users, items = EXPECTED[name]
    assert summary["users"] == users and summary["text_embeddings"] == texts
    assert summary["feature_service"] == "recommender_v3"
