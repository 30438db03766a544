"""Data versions as DVC sees them: a model's `data_version` tag is the hash `dvc.lock` records."""

from __future__ import annotations

import tempfile
from pathlib import Path

from longview.settings import Settings


def dvc_tracking(settings: Settings) -> str:
    """DVC versions the project's default data home only (dvc.yaml names `.longview/` paths)."""
    if settings.home == settings.project_root / ".longview":
        return "tracked: `dvc repro` / `dvc push` version this data home"
    return f"off: DVC tracks {settings.project_root / '.longview'}, not {settings.home}"


def data_version(path: Path) -> str:
    """DVC's md5 of a file or folder (``<md5>.dir`` for a folder), computed by DVC's own hashing
    code, so it equals what `dvc.lock` records for the same content, tracked or not."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    if not path.exists():
        raise FileNotFoundError(f"no data at {path}")
    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:  # DVC writes the folder's tree object here
        _, _, obj = build(LocalHashFileDB(fs, scratch), str(path), fs, "md5")
    return obj.hash_info.value
