"""Shared fixtures. Every test works in its own data home; the slow, shared state (one full loop
run by the real `longview demo` command) is built once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from longview.settings import Settings, get_settings

BIN = Path(sys.executable).parent
# Small enough to keep the suite fast, big enough for the model to learn something.
SMALL_WORLD = {
    "LONGVIEW_SYNTHETIC_USERS": "150",
    "LONGVIEW_SYNTHETIC_ITEMS": "160",
    "LONGVIEW_SYNTHETIC_DAYS": "45",
    "LONGVIEW_SEQUENCE__EPOCHS": "12",
    "LONGVIEW_SEQUENCE__ENSEMBLE": "1",
    # In this tiny world, 12 epochs leave the sequence model behind item-kNN (the gate would serve
    # item-kNN instead); the loop's tests exercise the sequence model's path, so the fixture lets it
    # trail the best baseline. The rule itself is tested at its default in test_training_and_promotion.
    "LONGVIEW_GATE__BASELINE_TOLERANCE": "0.3",
}


# Fixtures that run the loop, train, start a server or a browser, load a real dataset or need the
# production servers: a test that uses one is slow whatever its own body does (`make test-fast`
# leaves it out). Tests slow on their own carry @pytest.mark.slow (or their module a pytestmark).
SLOW_FIXTURES = {
    "demo_run", "trained", "service", "fed", "bento", "stack", "synthetic_home", "ml100k_run", "contract_home",
    "bag", "catalogue", "ml100k", "sasrec", "basket", "fitted", "timed_model", "int8", "content_world",
    "featured", "featured_any", "production",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def real_data(name: str) -> Path:
    """A real dataset folder from LONGVIEW_DATA_DIR (default ../shared/data). CI always has it, so
    there a missing folder fails; elsewhere the test is skipped with the reason."""
    folder = get_settings().data_dir / name
    if not folder.is_dir():
        message = f"real data {folder} not present (set LONGVIEW_DATA_DIR to the folder holding {name}/)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def require_servers() -> None:
    """The production profile's PostgreSQL and Redis on 127.0.0.1. CI starts them (.ci/run), so there
    an unreachable server fails the test; elsewhere it is skipped with the reason."""
    import psycopg
    import redis

    problems = []
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL on 127.0.0.1:5432 is unreachable: {exc}")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis on 127.0.0.1:6379 is unreachable: {exc}")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh, empty data home for this test."""
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path / "home"))
    for key, value in SMALL_WORLD.items():
        monkeypatch.setenv(key, value)
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def longview(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the real `longview` command."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LONGVIEW_")}  # only what the test says
    return subprocess.run([str(BIN / "longview"), *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, subprocess.CompletedProcess]:
    """`longview demo` on a small synthetic world: the whole loop, ending in HTTP requests."""
    home = tmp_path_factory.mktemp("demo") / "home"
    result = longview("demo", env={**SMALL_WORLD, "LONGVIEW_HOME": str(home)})
    assert result.returncode == 0, f"demo failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return settings_of(home), result


def settings_of(home: Path) -> Settings:
    """The settings a `longview` command run with SMALL_WORLD in ``home`` had."""
    values: dict = {"home": home}
    for key, value in SMALL_WORLD.items():
        section, _, name = key.removeprefix("LONGVIEW_").lower().partition("__")
        if name:
            values.setdefault(section, {})[name] = value
        else:
            values[section] = value
    return get_settings(**values)


@pytest.fixture(scope="session")
def trained(demo_run) -> Settings:
    """A data home with ingested events, features, a registered model and a @champion."""
    return demo_run[0]
