"""The gate's holdout, built once per data version and reused: `longview train` saves the test
users it evaluated on (their inputs and held-out items, with the catalogue and item content they
were indexed by), and `longview promote` scores both models on that file instead of rebuilding the
point-in-time join. The key is DVC's hash of the event store and of the feature tables, with the
settings that shape the split: new data, new features or another split make a new holdout.

Saved as a plain .npz of numbers and strings (loaded with allow_pickle=False)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longview.settings import Settings
from training.long_term_value import Visits
from training.models.base import Queries
from training.sequences import Holdout, Split

# The most recent items of each visit's history kept for the value head's rule (the longest input
# a sequence model reads: SequenceSettings.max_len's upper bound).
VISIT_HISTORY = 4096

SPLIT_SETTINGS = ("holdout_share", "validation_share", "seed", "positive_min_rating", "positive_min_dwell_seconds",
                  "exclude_seen", "session_gap_minutes")


def holdout_key(settings: Settings, protocol: str) -> str:
    from longview.versioning import data_version

    shaping = {name: getattr(settings, name) for name in SPLIT_SETTINGS}
    profile = settings.sequence.context and settings.sequence.profile
    text = json.dumps({"events": data_version(settings.events_dir), "features": data_version(settings.features_dir),
                       "protocol": protocol, "profiles": profile, **shaping}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _folder(settings: Settings) -> Path:
    return settings.train_dir / "holdout"


def _flat(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    flat = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    return flat, offsets


def _parts(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


@dataclass
class GateHoldout:
    """What the gate scores models on: the test users and the catalogue they were indexed by, and
    each baseline's per-user NDCG@10 on them (fitted on the same split)."""

    key: str
    item_ids: list[str]
    content: np.ndarray | None
    test: Holdout
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    # The visits that ended after the split, for the value head's rule (None: no real time, or off).
    visits: Visits | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def of(cls, split: Split, key: str, baselines: dict[str, np.ndarray] | None = None,
           visits: Visits | None = None) -> "GateHoldout":
        return cls(key, list(split.train.item_ids), split.train.content, split.test, dict(baselines or {}), visits)

    def save(self, settings: Settings) -> Path:
        folder = _folder(settings)
        folder.mkdir(parents=True, exist_ok=True)
        q = self.test.queries
        histories, history_offsets = _flat(q.histories)
        truth, truth_offsets = _flat(self.test.truth)
        arrays = {"users": np.asarray(self.test.users, dtype=str), "item_ids": np.asarray(self.item_ids, dtype=str),
                  "histories": histories, "history_offsets": history_offsets, "truth": truth,
                  "truth_offsets": truth_offsets}
        for name, value in (("now", q.now), ("last", q.last), ("profiles", q.profiles), ("content", self.content)):
            if value is not None:
                arrays[name] = np.asarray(value)
        arrays.update({f"baseline.{name}": np.asarray(ndcg, dtype=np.float64) for name, ndcg in self.baselines.items()})
        if self.visits is not None:
            v = self.visits
            flat, offsets = _flat([h[-VISIT_HISTORY:] for h in v.queries.histories])
            arrays.update({"visit.users": np.asarray(v.users, dtype=str), "visit.histories": flat,
                           "visit.history_offsets": offsets, "visit.now": np.asarray(v.queries.now, dtype=np.float64),
                           "visit.days": v.days, "visit.returned": v.returned})
            if v.queries.profiles is not None:
                arrays["visit.profiles"] = v.queries.profiles
        path = folder / f"{self.key}.npz"
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(path)  # whole or not at all
        for old in folder.glob("*.npz"):  # one data version at a time
            if old != path:
                old.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, settings: Settings, key: str) -> "GateHoldout | None":
        """The saved holdout for ``key``, or None (never saved, or unreadable: it is rebuilt)."""
        path = _folder(settings) / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                a = {name: f[name] for name in f.files}
            queries = Queries(_parts(a["histories"], a["history_offsets"]), a.get("now"), a.get("last"),
                              a.get("profiles"))
            test = Holdout([str(u) for u in a["users"]], queries, _parts(a["truth"], a["truth_offsets"]))
            baselines = {name.removeprefix("baseline."): a[name] for name in a if name.startswith("baseline.")}
            if any(len(v) != len(test.users) for v in baselines.values()):
                return None
            visits = None
            if "visit.users" in a:
                now = a["visit.now"]
                visits = Visits([str(u) for u in a["visit.users"]],
                                Queries(_parts(a["visit.histories"], a["visit.history_offsets"]), now, now.copy(),
                                        a.get("visit.profiles")), a["visit.days"], a["visit.returned"].astype(bool))
                rows = {len(visits.users), len(now), len(visits.days), len(visits.returned), len(visits.queries.histories)}
                profiles = visits.queries.profiles
                if len(rows) != 1 or (profiles is not None and len(profiles) != len(now)):
                    return None
            return cls(key, [str(i) for i in a["item_ids"]], a.get("content"), test, baselines, visits)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return None


def gate_holdout(settings: Settings) -> tuple[GateHoldout, bool]:
    """(the holdout of the data home's current data version, whether it was reused)."""
    from training.long_term_value import gate_visits
    from training.protocol import protocol_for
    from training.sequences import split_from_store

    protocol, real_time = protocol_for(settings)
    key = holdout_key(settings, protocol)
    saved = GateHoldout.load(settings, key)
    if saved is not None:
        return saved, True
    from training.evaluation import evaluate_baselines

    split, content = split_from_store(settings, protocol, real_time)
    measured = evaluate_baselines(settings, split, content.genres, real_time)
    visits = gate_visits(settings, split)
    holdout = GateHoldout.of(split, key, {name: e.ndcg for name, (_, e) in measured.items()},
                             None if visits is None else visits[1])
    holdout.save(settings)
    return holdout, False


def keep_for_gate(settings: Settings, protocol: str, split: Split, baselines: dict[str, np.ndarray],
                  visits: Visits | None) -> None:
    """training.train's on_holdout hook: save what `longview train` evaluated on for the gate."""
    GateHoldout.of(split, holdout_key(settings, protocol), baselines, visits).save(settings)
