"""The champion copied out of the registry for DVC (gate/champion_copy.py): written by every
promotion, registered again by a restore into an empty registry, refused when damaged or when the
pseudonym key is not the one the data was made with."""

from __future__ import annotations

import json
import shutil

import pytest
from pydantic import SecretStr

from gate.champion_copy import MODEL_DIR, RECORD, adopt_key, champion_dir, folder_digest, read_record, restore_champion
from longview.privacy import KEY_FILE
from tests.conftest import settings_of
from training.tracking import CHAMPION, alias_version, load_version, mlflow_client


def _copy_home(trained, target):
    shutil.copytree(trained.home, target, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    return settings_of(target)


def test_a_promotion_leaves_the_champion_exported(trained):
    champion = alias_version(mlflow_client(trained), CHAMPION)
    record = read_record(trained)
    assert record["version"] == str(champion.version)
    assert record["digest"] == folder_digest(champion_dir(trained) / MODEL_DIR) == champion.tags["digest"]
    assert record["tags"]["data_version"] and record["tags"]["feature_service"]
    assert (champion_dir(trained) / MODEL_DIR / "MLmodel").is_file()


def test_a_restore_registers_the_copy_in_an_empty_registry_once(trained, tmp_path):
    settings = _copy_home(trained, tmp_path / "home")
    (settings.home / "mlflow.db").unlink()
    shutil.rmtree(settings.artifacts_dir)
    restored = restore_champion(settings)
    assert restored.registered and restored.version == "1" and restored.copied_from == read_record(trained)["version"]
    version = alias_version(mlflow_client(settings), CHAMPION)
    assert str(version.version) == "1" and version.tags["restored_from"] == restored.copied_from
    assert str(settings.artifacts_dir / "restored") in version.source, "the registry keeps its own copy of the files"
    original = load_version(trained, restored.copied_from)
    histories = [["i0003", "i0005", "i0008"], []]
    assert load_version(settings, "1").rank(histories, None, 5) == original.rank(histories, None, 5)
    assert restore_champion(settings).registered is False, "the champion already is that copy"
    # In the home that exported it, the champion is already the copy: nothing registered twice.
    assert restore_champion(_copy_home(trained, tmp_path / "same")).registered is False


def test_a_missing_damaged_or_tampered_copy_is_refused(trained, tmp_path):
    settings = settings_of(tmp_path / "home")
    with pytest.raises(ValueError, match="run `dvc pull`"):
        read_record(settings)
    shutil.copytree(champion_dir(trained), champion_dir(settings))
    (champion_dir(settings) / MODEL_DIR / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(ValueError, match="incomplete or changed since it was exported"):
        restore_champion(settings)
    shutil.rmtree(champion_dir(settings) / MODEL_DIR)
    with pytest.raises(ValueError, match="incomplete or changed"):
        restore_champion(settings)
    (champion_dir(settings) / RECORD).write_text('{"version": "1", ')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_record(settings)
    (champion_dir(settings) / RECORD).write_text(json.dumps({"version": None}))
    assert restore_champion(settings).version is None, "nothing was champion where it was exported"


def test_the_pseudonym_key_must_be_the_one_the_data_was_made_with(trained, tmp_path):
    record = read_record(trained)
    fresh = settings_of(tmp_path / "fresh")
    with pytest.raises(ValueError, match="LONGVIEW_PSEUDONYM_KEY_FILE"):
        adopt_key(fresh, record)
    assert not (fresh.home / KEY_FILE).exists(), "no new key made"
    wrong = settings_of(tmp_path / "fresh").model_copy(update={"pseudonym_key": SecretStr("w" * 64)})
    with pytest.raises(ValueError, match="another key"):
        adopt_key(wrong, record)
    given = fresh.model_copy(update={"pseudonym_key_file": trained.home / KEY_FILE})
    assert adopt_key(given, record) is True
    assert (fresh.home / KEY_FILE).read_bytes() == (trained.home / KEY_FILE).read_bytes()
    assert (fresh.home / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert adopt_key(fresh, record) is False, "the home's own copy now serves"
