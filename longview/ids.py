"""Ids: the one definition of a well-formed id, used by the suites, the dataset loaders and the service.

An id is 1-64 letters, digits and ``_.:-``, starting with a letter or digit: short enough for keys
and file names, and free of separators, quotes and markup."""

from __future__ import annotations

import hashlib
import re
import secrets

import numpy as np
import pandas as pd

MAX_ID_LENGTH = 64
ID_REGEX = rf"^[A-Za-z0-9][A-Za-z0-9_.:\-]{{0,{MAX_ID_LENGTH - 1}}}$"
ID_PATTERN = re.compile(ID_REGEX)
# The id /recommend gives each list it serves (the served log's key, echoed by /feedback).
REQUEST_ID_REGEX = r"^r_[0-9a-f]{32}$"


def new_request_id() -> str:
    """A fresh id for a served list, matching REQUEST_ID_REGEX."""
    return "r_" + secrets.token_hex(16)


# A user id after pseudonymisation (longview/privacy.py): what the served log may hold, never a raw id.
PSEUDONYM_REGEX = r"^u_[0-9a-f]{24}$"


def fit_ids(ids: np.ndarray) -> np.ndarray:
    """Ids longer than MAX_ID_LENGTH become ``h`` + 20 hex digits of their SHA-1 (stable)."""
    ids = np.asarray(ids, dtype=object)
    long = pd.Series(ids, dtype=object).str.len().to_numpy() > MAX_ID_LENGTH
    if long.any():
        ids = ids.copy()
        ids[long] = [f"h{hashlib.sha1(s.encode()).hexdigest()[:20]}" for s in ids[long]]
    return ids


def prefixed(prefix: str, raw: np.ndarray | pd.Series) -> np.ndarray:
    """``prefix + str(value)`` for every value, built once per distinct value (fast on 25M rows)."""
    codes, uniques = pd.factorize(np.asarray(raw), use_na_sentinel=False)
    labels = np.array([f"{prefix}{u}" for u in uniques], dtype=object)
    return fit_ids(labels)[codes] if len(labels) else np.array([], dtype=object)
