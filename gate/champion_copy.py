"""The champion outside the registry: a copy DVC versions with the data it was trained on.

`longview promote` (and a rollback) writes the version behind @champion to ``LONGVIEW_HOME/
champion``: its MLflow model folder (the code, config and tensors the registry holds) and
``champion.json`` (the version, its tags and its run's data version). The promote stage declares
the folder as an output, so `dvc push` keeps it beside the event store and the features, and on a
fresh clone `dvc pull` brings it back; `longview restore` then registers it again where the registry
does not already serve that copy, and points @champion at it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from longview.privacy import KEY_FILE, pseudonym, pseudonym_key
from longview.settings import REGISTERED_MODEL, Settings
from training.tracking import CHAMPION, alias_version, mlflow_client

MODEL_DIR, RECORD = "model", "champion.json"
# Tags a restored version carries over from the version it copies.
KEPT_TAGS = ("model", "feature_service", "data_version", "gate", "previous_champion")


def champion_dir(settings: Settings) -> Path:
    return settings.home / "champion"


def export_champion(settings: Settings, client=None) -> dict:
    """Write @champion's model folder and record to champion_dir (replacing what was there); with no
    champion, a record saying so (DVC needs the output either way). Returns the record."""
    import mlflow

    client = client or mlflow_client(settings)
    target = champion_dir(settings)
    version = alias_version(client, CHAMPION)
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if version is None:
        record: dict = {"version": None}
    else:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{REGISTERED_MODEL}/{version.version}",
                                            dst_path=str(staging / MODEL_DIR))
        run_tags = client.get_run(version.run_id).data.tags if version.run_id else {}
        tags = {k: v for k, v in version.tags.items() if k in KEPT_TAGS}
        tags.setdefault("data_version", run_tags.get("data_version", "unknown"))
        tags.setdefault("feature_service", run_tags.get("feature_service", ""))
        record = {"version": str(version.version), "tags": tags, "digest": folder_digest(staging / MODEL_DIR)}
        # so that a restore into this same registry finds the copy already served
        client.set_model_version_tag(REGISTERED_MODEL, version.version, "digest", record["digest"])
    record["key_check"] = key_check(pseudonym_key(settings))
    (staging / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)  # swapped whole: never half an old and half a new copy
    staging.rename(target)
    return record


@dataclass
class RestoredChampion:
    version: str | None  # the registry's version now behind @champion (None: there was no champion to restore)
    copied_from: str | None  # the version number the copy had where it was exported
    registered: bool  # False: the registry already served this copy


def read_record(settings: Settings) -> dict:
    """champion.json of the exported champion; ValueError naming the remedy when it is missing or
    damaged."""
    path = champion_dir(settings) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no exported champion in {path.parent}: run `dvc pull` (or `longview promote`) first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): run `dvc pull` again") from None


def adopt_key(settings: Settings, record: dict) -> bool:
    """The pulled data's user ids are pseudonyms made with the pushing home's key, which DVC does not
    carry (a secret). Without that key here every request would miss its user's features, so this
    refuses (ValueError, naming how to provide it) rather than make a new key; given the right key
    (LONGVIEW_PSEUDONYM_KEY_FILE or LONGVIEW_PSEUDONYM_KEY) and none in the data home yet, it keeps a
    copy there (mode 0600, as the home's own key is kept), so that every later command and the
    service use it without the variable. Returns whether it kept a copy."""
    expected = record.get("key_check")
    if expected is None:
        return False
    remedy = ("set LONGVIEW_PSEUDONYM_KEY_FILE (or LONGVIEW_PSEUDONYM_KEY) to the pseudonym key of the data home "
              "that pushed it (its secrets/pseudonym.key)")
    own = settings.home / KEY_FILE
    if not (settings.pseudonym_key or settings.pseudonym_key_file or own.exists()):
        raise ValueError(f"the pulled data's user ids were pseudonymised with a key this data home does not have: {remedy}")
    key = pseudonym_key(settings)
    if key_check(key) != expected:
        raise ValueError(f"the pulled data's user ids were pseudonymised with another key than this data home's: {remedy}")
    if own.exists():
        return False
    own.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(key.decode())
    return True


def key_check(key: bytes) -> str:
    """A keyed fingerprint of the pseudonym key (it does not reveal the key)."""
    return pseudonym(key, "longview:key-check", prefix="")


def restore_champion(settings: Settings, record: dict | None = None) -> RestoredChampion:
    """Register the exported champion (champion_dir; ``record``: its champion.json, read here when
    not given) and point @champion at it, unless @champion already is a version with the same model
    files. Raises ValueError naming the remedy when the copy is missing or damaged."""
    import mlflow

    folder = champion_dir(settings)
    record = read_record(settings) if record is None else record
    if record.get("version") is None:
        return RestoredChampion(None, None, False)
    model = folder / MODEL_DIR
    if not (model / "MLmodel").is_file() or folder_digest(model) != record.get("digest"):
        raise ValueError(f"the exported champion in {model} is incomplete or changed since it was exported: "
                         f"run `dvc pull` (or `dvc checkout`) again")
    client = mlflow_client(settings)
    current = alias_version(client, CHAMPION)
    if current is not None and current.tags.get("digest") == record["digest"]:
        return RestoredChampion(str(current.version), record["version"], False)
    # The registry's own copy of the files: a later `dvc checkout` may change the exported folder.
    stored = settings.artifacts_dir / "restored" / record["digest"][:16]
    if not stored.exists():
        shutil.copytree(model, stored)
    version = mlflow.register_model(stored.as_uri(), REGISTERED_MODEL)
    tags = dict(record.get("tags", {}), restored_from=record["version"], digest=record["digest"])
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, version.version, key, str(value))
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version.version)
    return RestoredChampion(str(version.version), record["version"], True)


def folder_digest(folder: Path) -> str:
    """One SHA-256 over a folder's relative file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
