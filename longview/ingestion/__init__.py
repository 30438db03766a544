"""Ingestion: every batch, from a file or a dataset loader, is read as text, prepared, validated by
its table's Great Expectations suite and routed row by row to the store or to quarantine.

- ``reading``: file bytes to text frames, text times to epochs;
- ``preparing``: the parsed columns each suite checks, and typed rows for the store;
- ``routing``: validation, duplicates, quarantine or store, replay;
- ``quarantine``: where rejected rows and unreadable files are kept."""

from longview.ingestion.preparing import (
    SOURCE_COLUMNS,
    arrival_times,
    canonical_events,
    canonical_items,
    prepare_events,
    prepare_items,
    prepare_users,
)
from longview.ingestion.quarantine import quarantine_file
from longview.ingestion.reading import as_text, epoch_times, parse_epoch, read_raw
from longview.ingestion.routing import (
    TABLES,
    BatchRejected,
    IngestResult,
    batch_id_of,
    ingest,
    ingest_frame,
    replay_quarantine,
)

__all__ = ["SOURCE_COLUMNS", "TABLES", "BatchRejected", "IngestResult", "arrival_times", "as_text", "batch_id_of",
           "canonical_events", "canonical_items", "epoch_times", "ingest", "ingest_frame", "parse_epoch",
           "prepare_events", "prepare_items", "prepare_users", "quarantine_file", "read_raw", "replay_quarantine"]
