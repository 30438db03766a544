"""Fixtures for the longview package's tests."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import redis

from control import pipeline
from longview.feature_store import feature_store
from longview.settings import get_settings
from tests.conftest import require_servers

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def redis_keys(project: str) -> list[bytes]:
    """Every Redis key of a Feast project (Feast ends each key with the project name)."""
    return list(redis.Redis(host="127.0.0.1", port=6379).scan_iter(match=b"*" + project.encode()))


@pytest.fixture
def production(monkeypatch):
    """The production profile on the local servers: this test's own registry database and Feast
    project (which prefixes its Redis keys); both are removed afterwards."""
    require_servers()
    run = uuid.uuid4().hex[:10]
    database, project = f"longview_test_{run}", f"lvtest_{run}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    monkeypatch.setenv("LONGVIEW_PROFILE", "production")
    monkeypatch.setenv("LONGVIEW_FEAST_REGISTRY_POSTGRES_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}")
    monkeypatch.setenv("LONGVIEW_FEAST_PROJECT", project)
    try:
        yield database, project
    finally:
        feature_store(get_settings()).teardown()  # deletes this project's keys only
        leftover = redis_keys(project)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        assert leftover == [], "the test's Redis keys were not all removed"


@pytest.fixture(params=["embedded", "production"])
def profile(request) -> str:
    """Run a test on both profiles: SQLite registry and online store, or PostgreSQL and Redis."""
    if request.param == "production":
        request.getfixturevalue("production")
    return request.param


def _featured(settings):
    pipeline.generate_synthetic(settings)
    pipeline.ingest_landing(settings)
    return settings, pipeline.build_features(settings, progress=False)


@pytest.fixture
def featured(home, monkeypatch):
    """A small synthetic world, ingested, with features built, applied and materialised."""
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_USERS", "40")
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_DAYS", "20")
    return _featured(get_settings())


@pytest.fixture
def featured_any(profile, home, monkeypatch):
    """``featured`` on the embedded and on the production profile."""
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_USERS", "40")
    monkeypatch.setenv("LONGVIEW_SYNTHETIC_DAYS", "20")
    settings = get_settings()
    assert settings.profile == profile
    return _featured(settings)
