"""MovieLens 1M in the SASRec preprocessing: ``sequences.txt``, one user per line, item ids in time
order, space separated; no timestamps, ratings or titles.

Ids: user ``u{line number}`` (1-based among non-blank lines), item ``i{id}``. Each item on a line
is one row (an interaction); an item that is not an unsigned integer below 2^63 is a row problem.
Times are ordinal: the n-th item of a user (n = 0, 1, ...) is at ORIGIN + n minutes, so only the
order within a user is real. Events are ``click``s without value; sessions are left empty (there is
no time to split on). The catalogue is derived from the events (the dataset has none)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from longview.datasets.fields import Problems
from longview.datasets.fields import unsigned_ids as checked_ids
from longview.datasets.source import BLANKS, Records, blank, decode
from longview.datasets.tables import derived_items, derived_users, event_frame

FILES = ["sequences.txt"]
ORIGIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
STEP_SECONDS = 60
NOTES = {"items": "items: derived from the sequences (the dataset has no catalogue file)",
         "users": "users: one per line of the sequences (the dataset has no users file)"}


def read_sequences(path: Path) -> Records:
    """One record per item on a non-blank line: fields ``user`` (the line's rank) and ``item``, and
    ``position`` (the item's place on its line)."""
    lines = pd.Series(decode(path, "events").split("\n"), dtype=object)
    numbers = np.arange(1, len(lines) + 1)
    keep = (~blank(lines)).to_numpy()
    tokens = lines[keep].str.strip(BLANKS).str.split(r"[ \t]+", regex=True)
    lengths = tokens.str.len().to_numpy()
    flat = tokens.explode()
    fields = pd.DataFrame({
        "user": np.repeat(np.arange(1, len(tokens) + 1), lengths).astype(str).astype(object),
        "item": flat.to_numpy(object),
        "position": np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.array([], dtype=int),
    })
    problem = pd.Series(None, index=fields.index, dtype=object)
    return Records(path.name, fields, np.repeat(numbers[keep], lengths), problem)


def load(folder: Path, session_gap_minutes: float = 30.0):
    records = read_sequences(folder / "sequences.txt")
    problems = Problems(records)
    user = "u" + records.fields["user"]
    item = checked_ids(records.fields["item"], "item id", problems, "i")
    epoch = int(ORIGIN.timestamp()) + records.fields["position"].to_numpy(dtype="int64") * STEP_SECONDS
    events = event_frame(user, item, epoch, "click", file=records.file, source_line=records.line,
                         problem=problems.text, gap_minutes=None)
    return events, derived_items(events, "item"), derived_users(events), None, dict(NOTES)
