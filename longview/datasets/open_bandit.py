"""The Open Bandit Dataset (ZOZOTOWN; Saito et al., 2021) as arrays for off-policy estimators.

Each behaviour policy's log (``random``: uniform random, ``bts``: Bernoulli Thompson sampling) holds
impressions of three-slot lists: ``item_id`` (0..79), ``position`` (1..3), ``click``, the logging
policy's ``propensity_score`` and hashed user features; ``item_context.csv`` describes the items.
The folder may be laid out as ``{policy}/all.csv`` (../shared/data/open-bandit-sample) or as the
full release and obp's bundled copy are, ``{policy}/{campaign}/{campaign}.csv``; without a folder,
the sample shipped inside the installed ``obp`` package is read (no download: the full release,
about 11 GB from research.zozo.com, has the second layout and is read with ``source``).

Features are built as obp's own loader builds them (one-hot user features and the user-item
affinities; one-hot item features), without its loader, which expects only the second layout.
A log that is not what it should be (a missing file or column, a value outside its range, a
repeated row) is refused with what and where, never read in part."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import util
from pathlib import Path

import numpy as np
import pandas as pd

POLICIES = ("random", "bts")
REQUIRED = ("item_id", "position", "click", "propensity_score")


class BanditLogError(ValueError):
    """A bandit log that cannot be used as it is: the message says what and where."""


@dataclass(frozen=True)
class BanditLog:
    policy: str
    action: np.ndarray  # item per impression, 0..n_actions-1
    position: np.ndarray  # slot, 0..len_list-1
    reward: np.ndarray  # click, 0/1
    pscore: np.ndarray  # the logging policy's propensity of (item, slot)
    context: np.ndarray  # impressions x user features
    action_context: np.ndarray  # items x item features
    n_actions: int
    len_list: int

    @property
    def rounds(self) -> int:
        return len(self.action)


def bundled_folder() -> Path | None:
    """The sample inside the installed obp package (None where obp is not installed)."""
    found = util.find_spec("obp")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "dataset" / "obd"


def log_file(folder: Path, policy: str, campaign: str = "all") -> Path:
    for candidate in (folder / policy / f"{campaign}.csv", folder / policy / campaign / f"{campaign}.csv"):
        if candidate.is_file():
            return candidate
    raise BanditLogError(f"no {policy!r} log for campaign {campaign!r} in {folder}: expected "
                         f"{policy}/{campaign}.csv or {policy}/{campaign}/{campaign}.csv")


def load(policy: str, folder: Path | None = None, campaign: str = "all") -> BanditLog:
    """One behaviour policy's log; ``folder``: the dataset folder (default: obp's bundled sample)."""
    if policy not in POLICIES:
        raise BanditLogError(f"unknown behaviour policy {policy!r}: expected one of {', '.join(POLICIES)}")
    folder = Path(folder) if folder is not None else bundled_folder()
    if folder is None or not folder.is_dir():
        raise BanditLogError(f"no Open Bandit folder at {folder} (install obp for its bundled sample, or point "
                             f"LONGVIEW_DATA_DIR at a folder holding open-bandit-sample/)")
    path = log_file(folder, policy, campaign)
    frame = _read(path)
    items = _read(path.with_name("item_context.csv"))
    missing = [c for c in REQUIRED if c not in frame]
    if missing or "item_id" not in items:
        raise BanditLogError(f"{path}: missing columns {', '.join(missing) or 'item_id (item_context.csv)'}")
    numbers = {c: pd.to_numeric(frame[c], errors="coerce") for c in REQUIRED}
    for column, values in numbers.items():
        _check(path, column, values.notna() & np.isfinite(values), "is not a number")
    n_actions = len(items)
    item_ids = pd.to_numeric(items["item_id"], errors="coerce")
    if item_ids.isna().any() or sorted(item_ids.astype(int)) != list(range(n_actions)):
        raise BanditLogError(f"{path.with_name('item_context.csv')}: item ids must be 0..{n_actions - 1}, each once")
    _check(path, "item_id", numbers["item_id"].between(0, n_actions - 1) & (numbers["item_id"] % 1 == 0),
           f"is not an item of item_context.csv (0..{n_actions - 1})")
    _check(path, "position", (numbers["position"] >= 1) & (numbers["position"] % 1 == 0), "is not a slot (1, 2, ...)")
    _check(path, "click", numbers["click"].isin([0, 1]), "is not 0 or 1")
    _check(path, "propensity_score", (numbers["propensity_score"] > 0) & (numbers["propensity_score"] <= 1),
           "is not in (0, 1]")
    if frame.duplicated().any():
        raise BanditLogError(f"{path}: {int(frame.duplicated().sum())} rows repeat an earlier row exactly")
    user = [c for c in frame if c.startswith("user_feature")]
    affinity = [c for c in frame if c.startswith("user-item_affinity")]
    context = pd.concat([pd.get_dummies(frame[user], drop_first=True, dtype=float),
                         frame[affinity].apply(pd.to_numeric, errors="coerce")], axis=1)
    if context.isna().any().any():
        raise BanditLogError(f"{path}: a user-item affinity is not a number")
    items = items.set_index(item_ids.astype(int)).sort_index()
    features = [c for c in items if c.startswith("item_feature")]
    numeric = [c for c in features if pd.to_numeric(items[c], errors="coerce").notna().all()]
    action_context = pd.concat([items[numeric].apply(pd.to_numeric),
                                pd.get_dummies(items[[c for c in features if c not in numeric]], drop_first=True,
                                               dtype=float)], axis=1)
    position = numbers["position"].astype(int).to_numpy()
    return BanditLog(policy=policy, action=numbers["item_id"].astype(int).to_numpy(), position=position - 1,
                     reward=numbers["click"].astype(int).to_numpy(),
                     pscore=numbers["propensity_score"].astype(float).to_numpy(),
                     context=context.to_numpy(dtype=float), action_context=action_context.to_numpy(dtype=float),
                     n_actions=n_actions, len_list=int(position.max()))


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise BanditLogError(f"missing file {path}")
    try:
        frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BanditLogError(f"{path} is not a readable CSV table: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise BanditLogError(f"{path} has no rows")
    return frame


def _check(path: Path, column: str, ok: pd.Series, problem: str) -> None:
    bad = ~ok.fillna(False).astype(bool)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # the file's line (after the header)
        raise BanditLogError(f"{path}: {int(bad.sum())} rows' {column} {problem} (first on line {first})")
