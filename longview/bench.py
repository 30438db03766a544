"""Benchmarks (commands, not timed tests): each prepares what it needs in its own data home under
the given folder and prints one line per figure."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from longview.settings import Settings, get_settings


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_home(settings: Settings, name: str, root: Path | None) -> Settings:
    """A fresh data home for one benchmark, reading the same real data."""
    home = (root or settings.home / "bench") / name
    if home.exists():
        import shutil

        shutil.rmtree(home)
    return get_settings(home=home, data_dir=settings.data_dir)


def validation(settings: Settings, root: Path | None = None, repeats: int = 3) -> Iterator[str]:
    """Validate and route the full ml-100k events table, after imports and after the catalogue is in
    (so the unknown-item check runs too); ``repeats`` runs, each on a fresh store (the first one
    also pays for setting up the GX project)."""
    from longview import datasets
    from longview.ingestion import ingest_frame, prepare_events
    from longview.validation import validate_frame

    folder = datasets.locate("ml-100k", None, settings.data_dir, settings.downloads_dir)
    tables = datasets.load("ml-100k", folder, settings.session_gap_minutes)
    scale = {"rating_min": tables.spec.rating_min, "rating_max": tables.spec.rating_max}
    validate_s, ingest_s = [], []
    for n in range(repeats):
        home = bench_home(settings, f"validation-{n}", root)
        ingest_frame(home, tables.items, "items")
        params = {"earliest_epoch": 0.0, "latest_epoch": time.time(), "dwell_cap_seconds": home.dwell_cap_seconds,
                  "known_items": sorted(tables.items["item_id"]), **scale}
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


BENCHMARKS: dict[str, Callable[..., Iterator[str]]] = {"validation": validation}
