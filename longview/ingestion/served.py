"""The served log as a table: its suite's parsed columns, its duplicates, whole records, typed rows.

A record of the log (one answer) becomes one row per slot; its suite (expectations/served.json)
checks each slot, and a record with any failing slot is quarantined whole, alone: an off-policy
estimate needs every slot of a slate, and the other records of the batch are stored."""

from __future__ import annotations

import pandas as pd

from longview.ingestion.reading import epoch_times, parse_epoch
from longview.served_log import SLOT_COLUMNS

# Slot fields the suite reads as numbers: a value that is present but does not parse stays NaN in
# its parsed column and is failed by a not-null check on that column's rows with text.
NUMBERS = {"position": "position_number", "score": "score_number", "propensity": "propensity_number",
           "exploration": "exploration_number"}


def prepare_served(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.copy()
    for column in SLOT_COLUMNS:
        if column not in frame:
            frame[column] = None
    frame["served_epoch"] = parse_epoch(frame["timestamp"])
    for column, parsed in NUMBERS.items():
        numbers = pd.to_numeric(frame[column], errors="coerce")
        # "inf" and "nan" parse: neither is a score, a propensity or a position
        frame[parsed] = numbers.where(numbers.abs() < float("inf"))
        frame[f"{column}_unparsed"] = frame[column].where(frame[column].notna() & frame[parsed].isna(), None)
    whole = frame["position_number"] == frame["position_number"].round()
    frame.loc[frame["position_number"].notna() & ~whole, "position_unparsed"] = frame["position"]
    return frame


def whole_records(frame: pd.DataFrame, reasons: pd.Series) -> pd.Series:
    """Reasons with every slot of a record that has a failing slot failed too (the first reason of
    the record, named as a sibling's); rows without a request id are records of their own."""
    failed = reasons != ""
    if not failed.any():
        return reasons
    key = frame["request_id"].where(frame["request_id"].notna(), "#" + frame.index.astype(str))
    bad_keys = key[failed]
    first = reasons[failed].groupby(bad_keys).first()
    siblings = key.isin(bad_keys.unique()) & ~failed
    out = reasons.copy()
    out[siblings] = "another slot of this record failed: " + key[siblings].map(first).astype(str)
    return out


def duplicates(frame: pd.DataFrame, valid: pd.Series, stored: pd.DataFrame) -> pd.Series:
    """Slots already stored, or repeated in the batch: the same request id and position (a log file
    ingested again after a crash between storing and removing it)."""
    keys = frame["request_id"].astype(str) + "#" + frame["position_number"].astype("Int64").astype(str)
    seen = set(stored["request_id"].astype(str) + "#" + stored["position"].astype(str)) if len(stored) else set()
    repeated = keys[valid].duplicated(keep="first").reindex(frame.index, fill_value=False)
    return valid & (repeated | keys.isin(seen))


def canonical_served(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed slot rows for the store (accepted rows only)."""
    return pd.DataFrame({
        "request_id": frame["request_id"].astype(str),
        "user_id": frame["user_id"].astype(str),
        "timestamp": epoch_times(frame["served_epoch"]),
        "policy": frame["policy"].astype(str),
        "model_name": frame["model_name"].astype(str),
        "model_version": frame["model_version"].astype(str),
        "exploration": frame["exploration_number"].astype(float),
        "fallback": frame["fallback"].astype(object),
        "position": frame["position_number"].astype("int64"),
        "item_id": frame["item_id"].astype(str),
        "score": frame["score_number"].astype(float),
        "propensity": frame["propensity_number"].astype(float),
        "explored": frame["explored"] == "true",
    })
