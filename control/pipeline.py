"""The loop's steps as plain functions: the CLI, dvc.yaml and the Airflow DAG all call these."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from longview.ingestion import BatchRejected, IngestResult, ingest
from longview.settings import Settings

if TYPE_CHECKING:
    from longview.datasets import Dataset

log = logging.getLogger(__name__)


def landing_files(settings: Settings) -> list[tuple[Path, str]]:
    """Files waiting in the landing folder: the catalogue first (events refer to it), then events."""
    folder = settings.landing_dir
    items = sorted(folder.glob("items*.csv")) + sorted(folder.glob("items*.parquet"))
    events = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in (".csv", ".parquet") and p not in items)
    return [(p, "items") for p in items] + [(p, "events") for p in events]


def ingest_file(settings: Settings, path: Path, table: str = "events") -> IngestResult:
    """Ingest one file; accepted events also refresh their users' online features right away."""
    return freshen_online(settings, ingest(settings, path, table))


def replay(settings: Settings, batch_id: str) -> IngestResult:
    from longview.ingestion import replay_quarantine

    return freshen_online(settings, replay_quarantine(settings, batch_id))


def freshen_online(settings: Settings, result: IngestResult) -> IngestResult:
    """Push the new profile of every user in an accepted events batch to the online store (once the
    feature store exists), so serving sees new events before the next materialisation."""
    if result.table != "events" or not result.accepted:
        return result
    import pandas as pd

    from longview.feature_store import push_fresh_user_features

    batch = settings.events_dir / f"batch-{result.batch_id}.parquet"
    users = pd.read_parquet(batch, columns=["user_id"])["user_id"].unique().tolist()
    try:
        result.online_users_updated = push_fresh_user_features(settings, users)
    except Exception as exc:  # the batch is stored either way; the next materialisation catches up
        log.warning("online features not refreshed: %s", exc)
        result.message += f"; online features not refreshed ({exc}): the next `longview features` catches up"
    return result


def ingest_landing(settings: Settings) -> list[dict]:
    """Ingest every file in the landing folder, moving each to landing/processed/ once routed.

    All files are processed even when one is rejected; then a rejection fails the step."""
    settings.ensure_dirs()
    done = settings.landing_dir / "processed"
    done.mkdir(parents=True, exist_ok=True)
    summaries, rejected = [], []
    for path, table in landing_files(settings):
        try:
            result: IngestResult = ingest_file(settings, path, table)
        except BatchRejected as exc:
            result = exc.result
            rejected.append((f"{path.name}: {exc}", result))
        summaries.append({"file": path.name, **asdict(result)})
        shutil.move(str(path), done / path.name)
    try:  # after the files: feedback may name items a new catalogue file brings
        fed = ingest_outbox(settings)
    except BatchRejected as exc:
        fed = exc.result
        rejected.append((f"{OUTBOX}: {exc}", fed))
    if fed is not None:
        summaries.append({"file": OUTBOX, **asdict(fed)})
    for name, served in ingest_served_log(settings):
        if isinstance(served, BatchRejected):
            rejected.append((f"{name}: {served}", served.result))
            served = served.result
        summaries.append({"file": name, **asdict(served)})
    if rejected:
        raise BatchRejected("; ".join(message for message, _ in rejected), rejected[-1][1])
    return summaries


OUTBOX = "feedback outbox"


def ingest_outbox(settings: Settings) -> IngestResult | None:
    """The feedback the service acknowledged since the last run, validated and routed as one events
    batch (None: nothing pending). The rows are marked ingested only once routed: a crash before
    that re-sends them, and the store's duplicate check drops what was already stored."""
    if not settings.outbox_path.exists():
        return None
    from longview.ingestion import batch_id_of, ingest_frame
    from longview.outbox import Outbox

    outbox = Outbox(settings.outbox_path)
    try:
        rows, last = outbox.pending()
        if rows.empty:
            return None
        batch_id = batch_id_of(rows.to_csv(index=False).encode())
        try:
            result = ingest_frame(settings, rows, "events", batch_id, pseudonymised=True)
        except BatchRejected:
            outbox.mark_ingested(last, batch_id)  # the whole batch is in quarantine, replayable from there
            raise
        outbox.mark_ingested(last, batch_id)
    finally:
        outbox.close()
    return freshen_online(settings, result)


def ingest_served_log(settings: Settings) -> list[tuple[str, IngestResult | BatchRejected]]:
    """Each closed file of the service's served log (longview/served_log.py), validated by the served
    suite and routed as one batch, then removed (its rows are in the store or in quarantine). A
    crash before the removal routes the file again, and the duplicate check drops what was stored."""
    from longview.ingestion import batch_id_of, ingest_frame
    from longview.served_log import closed_files, slot_rows

    results: list[tuple[str, IngestResult | BatchRejected]] = []
    for path in closed_files(settings.served_log_dir):
        content = path.read_bytes()
        name = f"served log {path.name}"
        try:
            results.append((name, ingest_frame(settings, slot_rows(content, path.name), "served",
                                               batch_id_of(content), pseudonymised=True)))
        except BatchRejected as exc:  # the whole file is in quarantine, replayable from there
            results.append((name, exc))
        path.unlink()
    return results


class DatasetRejected(Exception):
    """A dataset was refused: a file's structure is broken or a table failed as a whole. ``summary``
    says what happened to each table (what was ingested before stays ingested)."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


# Tags join their items' text, items must be known before events name them.
PREPARE_ORDER = ("tags", "items", "users", "events")


def prepare_dataset(settings: Settings, dataset: Dataset, source: Path | None = None) -> dict:
    """Find (or download, or for the synthetic world generate) a dataset, map it to the canonical
    tables and ingest each table through the same validation and routing as `longview ingest`.
    Raises DatasetRejected (with the summary) when a file cannot be read as a table or a table fails
    as a whole. ``dataset``: its spec, or its name (looked up here, once)."""
    from longview import datasets
    from longview.datasets.synthetic import WorldSize
    from longview.ingestion import batch_id_of, ingest_frame, quarantine_file
    from longview.store import load_tags

    info = datasets.spec(dataset)
    name = info.name
    folder = datasets.locate(info, source, settings.data_dir, settings.downloads_dir)
    scale = {} if info.rating_min is None else {"rating_min": info.rating_min, "rating_max": info.rating_max}
    origin, ordinal = "generated" if folder is None else str(folder), info.ordinal_time
    world = WorldSize(settings.synthetic_users, settings.synthetic_items, settings.synthetic_days, settings.seed)
    try:
        loaded = datasets.load(info, folder, settings.session_gap_minutes, world)
    except datasets.SourceRejected as exc:
        settings.ensure_dirs()
        try:
            content = exc.path.read_bytes()
            batch_id = batch_id_of(content)
            kept = f"kept at {quarantine_file(settings, exc.table, batch_id, content, exc.path.suffix)}"
        except OSError as err:
            batch_id, kept = "", f"not kept: {err.strerror or err}"
        message = f"cannot read {exc.path}: {exc.problem}"
        rejected = IngestResult(exc.rows, 0, exc.rows, None, batch_id, exc.table,
                                message=f"file rejected ({exc.problem}); {kept}")
        summary = _prepare_summary(settings, name, origin, ordinal, {exc.table: rejected}, {}, message)
        raise DatasetRejected(message, summary) from None
    tables = {"tags": loaded.tags, "items": loaded.items, "users": loaded.users, "events": loaded.events}
    notes = loaded.notes
    results: dict[str, IngestResult] = {}
    for table in PREPARE_ORDER:
        frame = tables.get(table)
        if frame is None:
            continue
        if table == "items" and tables.get("tags") is not None:
            frame = datasets.with_tag_text(frame, load_tags(settings))  # the accepted tags only
        try:
            results[table] = ingest_frame(settings, frame, table, parameters=scale if table == "events" else None)
        except BatchRejected as exc:
            results[table] = exc.result
            message = f"{table}: {exc}"
            raise DatasetRejected(message, _prepare_summary(settings, name, origin, ordinal, results, notes,
                                                            message, [t for t in tables if tables[t] is not None]))
    # What training needs to know about this data home's times (real, or only an order).
    (settings.home / "dataset.json").write_text(json.dumps({"dataset": name, "source": origin, "ordinal_time": ordinal}))
    return _prepare_summary(settings, name, origin, ordinal, results, notes)


def _prepare_summary(settings: Settings, name: str, origin: str, ordinal: bool, results: dict[str, IngestResult],
                     notes: dict[str, str], rejected: str | None = None, expected: list[str] | None = None) -> dict:
    """The events' counts at the top level, every other table under ``tables``; a table the dataset
    has but that was not reached (the dataset was rejected first) counts nothing."""
    from longview.versioning import dvc_tracking

    def counts(table: str) -> IngestResult:
        return results.get(table) or IngestResult(0, 0, 0, None, "", table, message="not ingested: the dataset "
                                                                                    "was rejected first")
    others = [t for t in PREPARE_ORDER if t != "events" and (t in results or t in (expected or []))]
    return {**asdict(counts("events")), "dataset": name, "source": origin, "ordinal_time": ordinal,
            "rejected": rejected, "derived": notes, "dvc": dvc_tracking(settings),
            "tables": {t: {k: getattr(counts(t), k) for k in ("received", "accepted", "quarantined", "report",
                                                               "message")} for t in others}}


def build_features(settings: Settings, progress: bool = True):
    from longview import feature_store

    return feature_store.build_features(settings, progress)


def train(settings: Settings, epochs: int | None = None, run_key: str | None = None, progress: bool = True):
    """Train, evaluate and register (training/train.py), keeping the holdout for the gate."""
    import training.train
    from gate.holdout import keep_for_gate

    return training.train.train(settings, epochs, progress, run_key, on_holdout=keep_for_gate)


def promote(settings: Settings, trigger: str = "cli"):
    from gate import promotion

    return promotion.promote(settings, trigger)


def rollback(settings: Settings, to_version: str | None = None, trigger: str = "cli"):
    from gate import promotion

    return promotion.rollback(settings, to_version, trigger)


def restore(settings: Settings) -> dict:
    """A serving-ready state from what `dvc pull` brought back: the online store rebuilt from the
    feature tables, and the exported champion registered and behind @champion."""
    from gate.champion_copy import adopt_key, read_record, restore_champion
    from longview.feature_store import restore_online

    record = read_record(settings)
    kept_key = adopt_key(settings, record)  # before anything else is written
    online = restore_online(settings)
    champion = restore_champion(settings, record)
    return {"online_users": online["users"], "clock": online["clock"], "champion": champion.version,
            "copied_from": champion.copied_from, "registered": champion.registered, "key_kept_in_home": kept_key}


def generate_synthetic(settings: Settings, out_dir: Path | None = None, batches: int = 2) -> list[Path]:
    from longview.datasets import synthetic

    world = synthetic.generate(settings.synthetic_users, settings.synthetic_items, settings.synthetic_days, settings.seed)
    return synthetic.write(world, out_dir or settings.landing_dir, batches)
