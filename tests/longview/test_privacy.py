"""User ids are pseudonymised at ingestion with a keyed hash; raw ids never reach the stores or MLflow."""

from __future__ import annotations

import stat

import pandas as pd
import pytest

from longview.privacy import pseudonym, pseudonym_key, pseudonymise
from longview.settings import get_settings


def test_key_is_generated_once_with_owner_only_permissions(home):
    key = pseudonym_key(home)
    path = home.home / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pseudonym_key(home) == key and len(key) == 64


def test_configured_key_wins_and_changes_every_pseudonym(home, monkeypatch):
    generated = pseudonym(pseudonym_key(home), "u1")
    monkeypatch.setenv("LONGVIEW_PSEUDONYM_KEY", "a-secret-from-the-vault")
    configured = get_settings()
    assert pseudonym_key(configured) == b"a-secret-from-the-vault"
    assert pseudonym(pseudonym_key(configured), "u1") != generated


def test_a_missing_key_file_is_a_clear_error(home, monkeypatch, tmp_path):
    monkeypatch.setenv("LONGVIEW_PSEUDONYM_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(FileNotFoundError, match="absent.key"):
        pseudonym_key(get_settings())


def test_pseudonyms_are_stable_distinct_and_keep_missing_values():
    out = pseudonymise(pd.Series(["a", "b", "a", None], dtype=object), b"k", "u_")
    assert out[0] == out[2] != out[1]
    assert out[3] is None
    assert out[0].startswith("u_") and len(out[0]) == 26


RAW_IDS = [b"u0001", b"u0002", b"u0042", b"u0150"]


def test_raw_user_ids_never_reach_stores_features_or_mlflow(trained):
    places = [trained.events_dir, trained.features_dir, trained.feast_dir, trained.artifacts_dir,
              trained.home / "mlflow.db", trained.home / "service.log", trained.catalogue_path.parent]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*")) if p.is_file()]
    assert len(files) > 5
    leaks = [(str(f), raw) for f in files for raw in RAW_IDS if raw in f.read_bytes()]
    assert leaks == []
    stored = pd.read_parquet(next(trained.events_dir.glob("*.parquet")))
    assert stored["user_id"].str.startswith("u_").all()
