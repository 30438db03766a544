"""Quarantine: rows (or whole files) kept exactly as received, with the reason, to be fixed and replayed.

Quarantine keeps raw ids, so its folder and files are readable by the owner only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from longview.settings import Settings

# Marks rows whose personal ids were pseudonyms when received (the feedback outbox's): a replay
# must not hash them again.
PSEUDONYMISED = "pseudonymised"


def quarantine_rows(settings: Settings, table: str, batch_id: str, raw: pd.DataFrame, reasons: pd.Series,
                    pseudonymised: bool = False) -> Path:
    settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
    path = settings.quarantine_dir / f"{table}-{batch_id}.parquet"
    rows = raw.astype(object).where(raw.notna(), None).copy()
    rows["reason"] = reasons.astype(str)
    rows["batch_id"] = batch_id
    if pseudonymised:
        rows[PSEUDONYMISED] = True
    rows.to_parquet(path, index=False)
    path.chmod(0o600)
    return path


def quarantine_file(settings: Settings, table: str, batch_id: str, content: bytes, suffix: str) -> Path:
    """A file that could not be read as a table, kept byte for byte."""
    settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
    kept = settings.quarantine_dir / f"{table}-{batch_id}.unreadable{suffix}"
    kept.write_bytes(content)
    kept.chmod(0o600)
    return kept


def quarantined_batch(settings: Settings, batch_id: str) -> tuple[str, Path, pd.DataFrame, bool]:
    """The table, file and rows (as received) of a quarantined batch, and whether its personal ids
    were pseudonyms when received."""
    if not batch_id or "/" in batch_id or batch_id.startswith("."):
        raise ValueError(f"not a batch id: {batch_id!r}")
    matches = sorted(settings.quarantine_dir.glob(f"*-{batch_id}.parquet"))
    if not matches:
        raise FileNotFoundError(f"no quarantined batch {batch_id} in {settings.quarantine_dir}")
    path = matches[0]
    rows = pd.read_parquet(path).drop(columns=["reason", "batch_id"])
    pseudonymised = PSEUDONYMISED in rows
    rows = rows.drop(columns=[PSEUDONYMISED], errors="ignore")
    return path.name.split("-", 1)[0], path, rows.astype(object).where(rows.notna(), None), pseudonymised


def mark_replayed(settings: Settings, path: Path) -> None:
    """Move a replayed batch aside so no row is counted twice."""
    done = settings.quarantine_dir / "replayed"
    done.mkdir(exist_ok=True)
    path.replace(done / path.name)
