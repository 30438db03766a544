"""Feature tables, computed from the event store as of the dataset clock (never the wall clock).

Every row carries two times: ``event_timestamp`` (the moment the profile describes) and
``created_timestamp`` (when, on the dataset clock, everything behind the row had arrived). A late
event (one that arrived after the store's clock had passed its time) gives the rows it changes a
later ``created_timestamp``; the rows it replaced are kept as older versions, so a training set
built with Feast's ``filter_by_created_timestamp`` sees only what was known at each label time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from longview.feature_tables import (  # noqa: F401  (the tables' names and builders, re-exported)
    HISTORY_VIEW,
    ITEM_VIEW,
    TABLES,
    TEXT_SCHEMA,
    TEXT_VIEW,
    USER_VIEW,
    FeatureInputs,
    TableSpec,
    engagements,
    genre_matrix,
    genre_vocabulary,
    item_profile_table,
    item_text_table,
    tie_ordered,
    user_history_table,
    user_profile_table,
)
from longview.settings import Settings
from longview.store import dataset_clock, load_catalogue, load_events, row_fingerprints

FEATURE_SERVICE = "recommender_v3"
CONTENT_SERVICE = "item_content_v1"
MANIFEST = "manifest.json"


@dataclass
class FeatureTables:
    """The tables of one `longview features` run, by view (a None table: the data has nothing for it)."""

    frames: dict[str, pd.DataFrame | None]
    clock: pd.Timestamp

    @property
    def users(self) -> pd.DataFrame:
        return self.frames[USER_VIEW]

    @property
    def histories(self) -> pd.DataFrame:
        return self.frames[HISTORY_VIEW]

    @property
    def items(self) -> pd.DataFrame:
        return self.frames[ITEM_VIEW]

    @property
    def texts(self) -> pd.DataFrame | None:  # None: the catalogue has no item text
        return self.frames[TEXT_VIEW]


def keep_superseded(previous: pd.DataFrame | None, current: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``current`` plus the rows of ``previous`` that a later version replaced (same key, earlier
    created_timestamp, other values): what was known before late data arrived stays queryable."""
    if previous is None or previous.empty or list(previous.columns) != list(current.columns):
        return current
    latest = current.set_index(key)["created_timestamp"]
    old_keys = pd.MultiIndex.from_frame(previous[key]) if len(key) > 1 else pd.Index(previous[key[0]])
    replaced_at = pd.Series(latest.reindex(old_keys).to_numpy(), index=previous.index)
    changed = ~row_fingerprints(previous).isin(set(row_fingerprints(current)))
    superseded = previous[changed & replaced_at.notna() & (previous["created_timestamp"] < replaced_at)]
    return pd.concat([superseded, current], ignore_index=True).sort_values([*key, "created_timestamp"],
                                                                          kind="stable").reset_index(drop=True)


def compute_feature_tables(settings: Settings, progress: bool = True) -> FeatureTables:
    events = load_events(settings)
    clock = dataset_clock(events)
    catalogue = load_catalogue(settings)
    if catalogue.empty:
        raise ValueError("the item catalogue is empty: ingest it first (longview ingest items.csv --table items)")
    inputs = FeatureInputs(settings, events, catalogue, clock, progress)
    return FeatureTables({spec.view: spec.build(inputs) for spec in TABLES}, clock)


def write_feature_tables(settings: Settings, progress: bool = True) -> FeatureTables:
    """Compute the tables and write them where the Feast sources read them, keeping superseded
    versions; the manifest says what the data offers (text embeddings or not)."""
    tables = compute_feature_tables(settings, progress)
    folder = settings.features_dir
    folder.mkdir(parents=True, exist_ok=True)
    for spec in TABLES:
        path = folder / f"{spec.view}.parquet"
        table = tables.frames[spec.view]
        if table is None:
            table = pd.DataFrame({name: pd.Series(dtype=object) for name in spec.schema.names})
        elif spec.versioned_by is not None:
            table = keep_superseded(pd.read_parquet(path) if path.exists() else None, table, list(spec.versioned_by))
        table.to_parquet(path, index=False, schema=spec.schema)
    manifest = {"text_embedding": tables.texts is not None}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return tables


def read_manifest(features_dir: Path) -> dict:
    path = features_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"text_embedding": False}
