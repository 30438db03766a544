"""Download a dataset archive, check its MD5, unzip it into a cache folder, and reuse that cache.

``cache_dir/<name>/`` holds the unpacked files and a ``.complete`` marker written last, so a download
or unpack cut short is never mistaken for a dataset.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

MARKER = ".complete"


class ChecksumError(ValueError):
    """The downloaded archive is not the one published."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` (https or file) to ``target`` through a ``.part`` file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "longview-datasets"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)
    return target


def verify(path: Path, md5: str | None) -> None:
    if md5 is None:
        return
    actual = md5sum(path)
    if actual.lower() != md5.lower():
        raise ChecksumError(f"{path.name}: md5 {actual} is not the published {md5}; the archive was "
                            "changed or cut short (deleted, download again)")


def unpack(archive: Path, target: Path) -> Path:
    """Unzip ``archive`` so that ``target`` holds the dataset's files (a single top folder in the
    archive, as GroupLens zips have, is stripped). Replaces ``target``; returns it."""
    staging = target.with_name(f".{target.name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = PurePosixPath(member).parts
                if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise ValueError(f"{archive.name}: unsafe path in archive: {member!r}")
            zf.extractall(staging)
        entries = [p for p in staging.iterdir() if p.name != "__MACOSX"]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        shutil.rmtree(target, ignore_errors=True)
        root.replace(target)
        (target / MARKER).write_text(f"unpacked from {archive.name}\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def cached(name: str, cache_dir: Path) -> Path | None:
    folder = cache_dir / name
    return folder if (folder / MARKER).exists() else None


def download(name: str, url: str, cache_dir: Path, md5: str | None = None, timeout: float = 60.0,
             keep_archive: bool = False) -> Path:
    """``cache_dir/name`` with the unpacked dataset: reused when complete, else downloaded,
    checked against ``md5`` (when given) and unpacked."""
    hit = cached(name, cache_dir)
    if hit is not None:
        return hit
    archive = cache_dir / f"{name}.zip"
    if not archive.exists():
        fetch(url, archive, timeout)
    try:
        verify(archive, md5)
    except ChecksumError:
        archive.unlink(missing_ok=True)
        raise
    folder = unpack(archive, cache_dir / name)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return folder
