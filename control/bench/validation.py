"""`longview bench validation`: the GX suite and the whole ingest path on ml-100k's events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from control.bench.helpers import bench_home, peak_rss_mib
from longview.settings import Settings


def validation(settings: Settings, root: Path | None = None, repeats: int = 3) -> Iterator[str]:
    """Validate and route the full ml-100k events table, after imports and after the catalogue is in
    (so the unknown-item check runs too); ``repeats`` runs, each on a fresh store (the first one
    also pays for setting up the GX project)."""
    from longview import datasets
    from longview.ids import ID_REGEX
    from longview.ingestion import ingest_frame, prepare_events
    from longview.validation import validate_frame

    info = datasets.spec("ml-100k")
    folder = datasets.locate(info, None, settings.data_dir, settings.downloads_dir)
    tables = datasets.load(info, folder, settings.session_gap_minutes)
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
