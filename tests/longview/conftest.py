"""Fixtures for the longview package's tests."""

from __future__ import annotations

import pytest

from longview import pipeline
from longview.settings import get_settings


@pytest.fixture
def featured(home, monkeypatch):
    """A small synthetic world, ingested, with features built, applied and materialised."""
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_USERS", "40")
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_DAYS", "20")
    settings = get_settings()
    pipeline.generate_synthetic(settings)
    pipeline.ingest_landing(settings)
    return settings, pipeline.build_features(settings)
