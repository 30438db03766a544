"""`longview bench features`: feature tables, materialisation and online reads on SQLite and Redis."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from control.bench.helpers import bench_home, latency, peak_rss_mib, redis_store
from longview.settings import Settings


def features(settings: Settings, root: Path | None = None, calls: int = 2000) -> Iterator[str]:
    """Prepare ml-100k in its own data home, build its features, then time online reads of exactly
    the serving feature set for random users, on SQLite and on Redis, every call reading the store."""
    from control.pipeline import prepare_dataset
    from longview.feature_store import apply, materialize
    from longview.features import USER_VIEW, write_feature_tables
    from longview.online_features import OnlineFeatureReader, online_user_features

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
            median, p99 = latency(reader.read, users, size, calls, profile.seed)
            label = "entity" if size == 1 else "entities"
            yield f"{name} {size} {label}: median {median:.2f} ms, p99 {p99:.2f} ms ({calls} calls)"
        median, p99 = latency(lambda ids: online_user_features(store, ids), users, 1, calls // 4, profile.seed)
        yield f"{name} 1 entity via the Feast SDK (reference): median {median:.2f} ms, p99 {p99:.2f} ms ({calls // 4} calls)"

    yield from measure("sqlite", home)
    with redis_store(home) as production:
        yield from measure("redis", production)
    yield f"peak memory: {peak_rss_mib():.0f} MiB"
