"""`longview bench contract`: property-based corruption of the real datasets (the harness:
control/bench/contract_fuzz.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from control.bench.helpers import peak_rss_mib
from longview.settings import Settings


def contract(settings: Settings, root: Path | None = None, examples: int = 500, max_rows: int = 2_000) -> Iterator[str]:
    """Property-based corruption of the real datasets in every loader layout (control/bench/contract_fuzz.py):
    ``examples`` random examples of up to ``max_rows`` rows, each checked against the data contract.
    A violation ends the run with the smallest failing example Hypothesis found."""
    from control.bench import contract_fuzz
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
