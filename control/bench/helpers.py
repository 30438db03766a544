"""What the benchmarks share: a fresh data home each, peak memory, latency percentiles, and the
production profile's servers for a benchmark's own short-lived registry and Feast project."""

from __future__ import annotations

import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from longview.settings import Settings, get_settings


class BenchmarkError(RuntimeError):
    """A benchmark cannot run here (e.g. a server it needs is unreachable)."""


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_home(settings: Settings, name: str, root: Path | None) -> Settings:
    """A fresh data home for one benchmark, reading the same real data."""
    home = (root or settings.home / "bench") / name
    if home.exists():
        shutil.rmtree(home)
    return get_settings(home=home, data_dir=settings.data_dir)


def latency(read: Callable[[list[str]], object], users: list[str], size: int, calls: int, seed: int) -> tuple[float, float]:
    """Median and p99 in ms of ``read`` for ``size`` random users per call."""
    rng = np.random.default_rng(seed)
    for _ in range(min(50, calls)):  # warm up connections and code paths
        read(list(rng.choice(users, size)))
    times = np.empty(calls)
    for n in range(calls):
        batch = list(rng.choice(users, size))
        start = time.perf_counter()
        read(batch)
        times[n] = time.perf_counter() - start
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


@contextmanager
def redis_store(settings: Settings) -> Iterator[Settings]:
    """The production profile on the local servers, with its own registry database and Feast project
    (which prefixes every Redis key); both are removed afterwards."""
    import psycopg

    from longview.feature_store import feature_store

    run = uuid.uuid4().hex[:10]
    database = f"longview_bench_{run}"
    admin = settings.postgres_url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    except psycopg.OperationalError as exc:
        raise BenchmarkError(f"the Redis half of this benchmark needs PostgreSQL at {admin}: {exc}") from exc
    registry = settings.postgres_url.rsplit("/", 1)[0] + f"/{database}"
    production = get_settings(home=settings.home, data_dir=settings.data_dir, profile="production",
                              feast_registry_postgres_url=registry, feast_project=f"bench_{run}")
    try:
        yield production
    finally:
        feature_store(production).teardown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


