"""Benchmarks (commands, not timed tests): each prepares what it needs in its own data home under
the given folder and prints one line per figure."""

from __future__ import annotations

import gc
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

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


def validation(settings: Settings, root: Path | None = None, repeats: int = 3) -> Iterator[str]:
    """Validate and route the full ml-100k events table, after imports and after the catalogue is in
    (so the unknown-item check runs too); ``repeats`` runs, each on a fresh store (the first one
    also pays for setting up the GX project)."""
    from longview import datasets
    from longview.ids import ID_REGEX
    from longview.ingestion import ingest_frame, prepare_events
    from longview.validation import validate_frame

    folder = datasets.locate("ml-100k", None, settings.data_dir, settings.downloads_dir)
    tables = datasets.load("ml-100k", folder, settings.session_gap_minutes)
    scale = {"rating_min": tables.spec.rating_min, "rating_max": tables.spec.rating_max}
    validate_s, ingest_s = [], []
    for n in range(repeats):
        home = bench_home(settings, f"validation-{n}", root)
        ingest_frame(home, tables.items, "items")
        params = {"id_regex": ID_REGEX, "earliest_epoch": 0.0, "latest_epoch": time.time(),
                  "dwell_cap_seconds": home.dwell_cap_seconds, "known_items": sorted(tables.items["item_id"]), **scale}
        start = time.perf_counter()
        validate_frame(home, "events", prepare_events(tables.events), params, f"bench-{n}")
        validate_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = ingest_frame(home, tables.events, "events", parameters=scale)
        ingest_s.append(time.perf_counter() - start)
        assert result.accepted == len(tables.events), result.message
    rows = f"{len(tables.events):,} rows"
    for what, times in (("GX suite alone", validate_s), ("validate + route + store", ingest_s)):
        yield f"ml-100k events {what} ({rows}): first {times[0]:.2f} s, best {min(times):.2f} s of {repeats}"
    yield f"peak memory: {peak_rss_mib():.0f} MiB"


def _latency(read: Callable[[list[str]], object], users: list[str], size: int, calls: int, seed: int) -> tuple[float, float]:
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
def _redis_store(settings: Settings) -> Iterator[Settings]:
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


def features(settings: Settings, root: Path | None = None, calls: int = 2000) -> Iterator[str]:
    """Prepare ml-100k in its own data home, build its features, then time online reads of exactly
    the serving feature set for random users, on SQLite and on Redis, every call reading the store."""
    from longview.feature_store import apply, materialize
    from longview.online_features import OnlineFeatureReader, online_user_features
    from longview.features import USER_VIEW, write_feature_tables
    from longview.pipeline import prepare_dataset

    home = bench_home(settings, "features", root)
    prepare_dataset(home, "ml-100k")
    start = time.perf_counter()
    tables = write_feature_tables(home, progress=False)
    yield (f"ml-100k feature tables ({len(tables.users):,} user rows, {len(tables.items):,} item rows, "
           f"{0 if tables.texts is None else len(tables.texts):,} text embeddings): {time.perf_counter() - start:.1f} s")
    clock = tables.clock
    # A serving process does not hold the tables: free them, or the garbage collector's passes
    # over their millions of objects would be timed as read latency.
    del tables
    gc.collect()
    users = sorted(pd.read_parquet(home.features_dir / f"{USER_VIEW}.parquet", columns=["user_id"])["user_id"].unique())

    def measure(name: str, profile: Settings) -> Iterator[str]:
        store = apply(profile)
        start = time.perf_counter()
        materialize(profile, store, clock)
        yield f"{name} materialise ml-100k (all views, from the start): {time.perf_counter() - start:.1f} s"
        reader = OnlineFeatureReader(store)
        for size in (1, 100):
            median, p99 = _latency(reader.read, users, size, calls, profile.seed)
            label = "entity" if size == 1 else "entities"
            yield f"{name} {size} {label}: median {median:.2f} ms, p99 {p99:.2f} ms ({calls} calls)"
        median, p99 = _latency(lambda ids: online_user_features(store, ids), users, 1, calls // 4, profile.seed)
        yield f"{name} 1 entity via the Feast SDK (reference): median {median:.2f} ms, p99 {p99:.2f} ms ({calls // 4} calls)"

    yield from measure("sqlite", home)
    with _redis_store(home) as production:
        yield from measure("redis", production)
    yield f"peak memory: {peak_rss_mib():.0f} MiB"


def contract(settings: Settings, root: Path | None = None, examples: int = 500, max_rows: int = 2_000) -> Iterator[str]:
    """Property-based corruption of the real datasets in every loader layout (longview/contract_fuzz.py):
    ``examples`` random examples of up to ``max_rows`` rows, each checked against the data contract.
    A violation ends the run with the smallest failing example Hypothesis found."""
    from longview import contract_fuzz
    from longview.datasets import DatasetNotFound

    for name in ("ml-100k", "ml-1m-sasrec", "instacart-sample"):
        if not (settings.data_dir / name).is_dir():
            raise DatasetNotFound(f"the contract benchmark needs {settings.data_dir / name} (set LONGVIEW_DATA_DIR)")
    folder = (root or settings.home / "bench") / "contract"
    shutil.rmtree(folder, ignore_errors=True)
    step = max(examples // 20, 1)
    result = contract_fuzz.run(settings.data_dir, folder, examples, max_rows=max_rows,
                               progress=lambda n: print(f"  {n} examples", flush=True) if n % step == 0 else None)
    yield (f"contract: {result['examples']} examples tried (up to {max_rows:,} rows each), all routed as the "
           f"contract says, in {result['seconds']:.0f} s")
    yield "layouts: " + ", ".join(f"{k} {v}" for k, v in sorted(result["layouts"].items()))
    yield "corruptions tried: " + ", ".join(f"{k} {v}" for k, v in sorted(result["kinds"].items(), key=lambda kv: -kv[1]))
    yield f"peak memory: {peak_rss_mib():.0f} MiB"


def accuracy(settings: Settings, root: Path | None = None, **options) -> Iterator[str]:
    """Every model on one real dataset and protocol (training/benchmark.py)."""
    from training.benchmark import accuracy as run

    return run(settings, root, **options)


def long_term_value(settings: Settings, root: Path | None = None, **options) -> Iterator[str]:
    """The long-term value head against its baseline on one real dataset (training/value_benchmark.py)."""
    from training.value_benchmark import long_term_value as run

    return run(settings, root, **options)


def serving(settings: Settings, root: Path | None = None, **options) -> Iterator[str]:
    """The running service against its HTTP floor (longview/bench_serving.py)."""
    from longview.bench_serving import serving as run

    return run(settings, root, **options)


def quantization(settings: Settings, root: Path | None = None, **options) -> Iterator[str]:
    """The int8 copy of the sequence model against float32: NDCG@10 and latency (training/quantization_benchmark.py)."""
    from training.quantization_benchmark import quantization as run

    return run(settings, root, **options)


def pipeline(settings: Settings, root: Path | None = None, **options) -> Iterator[str]:
    """The whole loop in one process against the same loop through Airflow (longview/bench_pipeline.py)."""
    from longview.bench_pipeline import pipeline as run

    return run(settings, root, **options)


BENCHMARKS: dict[str, Callable[..., Iterator[str]]] = {"validation": validation, "features": features,
                                                       "contract": contract, "accuracy": accuracy,
                                                       "long-term-value": long_term_value, "serving": serving,
                                                       "quantization": quantization, "pipeline": pipeline}
