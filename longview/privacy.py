"""Pseudonymous ids: user-linked ids are replaced at ingestion by a keyed hash (HMAC-SHA256).

The key comes from the settings (`LONGVIEW_PSEUDONYM_KEY` or `LONGVIEW_PSEUDONYM_KEY_FILE`); with
none configured one is generated into the data home with mode 0600. Without the key the raw ids
cannot be recovered by hashing candidate ids, unlike a plain hash of a small id space.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Callable

import pandas as pd

from longview.settings import Settings

KEY_FILE = Path("secrets") / "pseudonym.key"
# Columns holding ids that identify or are derived from a person, per table.
PERSONAL_ID_COLUMNS = {"events": ("user_id", "event_id", "session_id"), "users": ("user_id",), "items": (),
                       "tags": ("user_id",), "served": ("user_id",)}
PREFIX = {"user_id": "u_", "event_id": "e_", "session_id": "s_"}


def pseudonym_key(settings: Settings) -> bytes:
    if settings.pseudonym_key:
        return settings.pseudonym_key.get_secret_value().encode()
    path = settings.pseudonym_key_file or settings.home / KEY_FILE
    if not path.exists():
        if settings.pseudonym_key_file:
            raise FileNotFoundError(f"pseudonym key file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonym(key: bytes, raw: str, prefix: str = "u_") -> str:
    return prefix + hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()[:24]


def pseudonymise(values: pd.Series, key: bytes, prefix: str) -> pd.Series:
    """Hash each distinct value once; missing values stay missing."""
    uniques = values.dropna().unique()
    mapping = {v: pseudonym(key, str(v), prefix) for v in uniques}
    return values.map(mapping).where(values.notna(), None)


def pseudonymise_table(frame: pd.DataFrame, table: str, key: bytes) -> pd.DataFrame:
    out = frame.copy()
    for column in PERSONAL_ID_COLUMNS[table]:
        if column in out:
            out[column] = pseudonymise(out[column], key, PREFIX[column])
    return out


def masks(key: bytes, table: str) -> dict[str, Callable[[object], object]]:
    """Per personal column, the function that replaces a raw value by its pseudonym (for reports)."""
    def mask(prefix: str) -> Callable[[object], object]:
        return lambda value: None if value is None else pseudonym(key, str(value), prefix)
    return {column: mask(PREFIX[column]) for column in PERSONAL_ID_COLUMNS[table]}
