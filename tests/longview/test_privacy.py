"""User ids are pseudonymised at ingestion with a keyed hash; raw ids never reach the stores or MLflow."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest

from longview.ingestion import ingest
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


def test_validation_reports_name_pseudonyms_and_only_quarantine_keeps_raw_ids(home, tmp_path):
    raw = "bad user 4242"  # fails the id check, so GX lists it among the failing values
    path = tmp_path / "batch.csv"
    rows = [f"g{n},u1,i1,click,2024-03-01T10:00:00+00:00,,s1\n" for n in range(6)]
    path.write_text("event_id,user_id,item_id,event_type,timestamp,value,session_id\n" + "".join(rows)
                    + f"x1,{raw},i1,click,2024-03-01T10:00:00+00:00,,s1\n")
    result = ingest(home, path)
    assert result.quarantined == 1
    written = [Path(result.report), *(p for p in home.gx_dir.rglob("*") if p.is_file())]
    assert any(p.suffix == ".html" for p in written)
    assert [p for p in written if raw.encode() in p.read_bytes()] == []
    # Still traceable by whoever holds the key: the report names the failing id's pseudonym.
    assert pseudonym(pseudonym_key(home), raw) in Path(result.report).read_text()
    # Quarantine keeps the row as received (to fix and replay), readable by the owner only.
    kept = home.quarantine_dir / f"events-{result.batch_id}.parquet"
    assert pd.read_parquet(kept)["user_id"].tolist() == [raw]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.quarantine_dir.stat().st_mode) == 0o700
