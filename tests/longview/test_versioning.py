"""DVC data versions: same content, same version; any change, a new one."""

from __future__ import annotations

import pytest

from longview.versioning import data_version


def test_folder_version_follows_content_not_time(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"one")
    (folder / "b.parquet").write_bytes(b"two")
    first = data_version(folder)
    assert first.endswith(".dir") and len(first) == 36
    (folder / "a.parquet").write_bytes(b"one")  # rewritten, same bytes
    assert data_version(folder) == first
    (folder / "b.parquet").write_bytes(b"three")
    assert data_version(folder) != first
    assert data_version(folder / "a.parquet") == "f97c5d29941bfb1b2fdab0874906ab82"  # md5 of b"one"


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data at"):
        data_version(tmp_path / "absent")
