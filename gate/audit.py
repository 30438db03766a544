"""The registry's audit log: every gate decision and rollback, appended to
``LONGVIEW_HOME/registry/audit.jsonl`` (flushed to disk before the alias moves on) and kept as
tags on the model version it was about (``audit.0001``, ``audit.0002``, ...), so the MLflow UI shows
a version's history and the file shows the registry's."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from longview.settings import REGISTERED_MODEL, Settings

TAG_PREFIX = "audit."
MAX_TAG_CHARS = 5000  # MLflow's limit on a model-version tag's value


def audit_path(settings: Settings) -> Path:
    return settings.home / "registry" / "audit.jsonl"


def record(settings: Settings, client, version: str, entry: dict) -> dict:
    """Append ``entry`` (stamped with the time) to the log and tag it on ``version``."""
    entry = {"at": datetime.now(timezone.utc).isoformat(), **entry}
    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(entry, default=str) + "\n")
        log.flush()
        os.fsync(log.fileno())
    tags = client.get_model_version(REGISTERED_MODEL, version).tags
    number = 1 + sum(1 for key in tags if key.startswith(TAG_PREFIX))
    client.set_model_version_tag(REGISTERED_MODEL, version, f"{TAG_PREFIX}{number:04d}", _tag_value(entry))
    return entry


def _tag_value(entry: dict) -> str:
    """The entry as JSON, within the tag limit: long details are cut (the file keeps them whole)."""
    text = json.dumps(entry, default=str)
    if len(text) <= MAX_TAG_CHARS:
        return text
    short = {**entry, "rules": [{k: (v[:200] if isinstance(v, str) else v) for k, v in rule.items()}
                                for rule in entry.get("rules", [])], "metrics": "in audit.jsonl",
             "reason": str(entry.get("reason", ""))[:1000]}
    return json.dumps(short, default=str)


def read(settings: Settings) -> list[dict]:
    """Every entry of the log, oldest first (none before the first decision)."""
    path = audit_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
