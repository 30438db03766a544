"""`longview bench off-policy`: off-policy estimates on real logs (the Open Bandit sample). The
Bernoulli Thompson sampling policy's click rate, estimated from the uniform-random policy's logs
with IPS, SNIPS and doubly robust, beside the rate that policy actually logged, all with bootstrap
intervals. About 40 clicks per log: the intervals are wide and also hold the random policy's own
rate, so this demonstrates the estimators on real propensities; it is not a pass/fail check."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from control.bench.helpers import peak_rss_mib
from longview.settings import Settings

FOLDER = "open-bandit-sample"


def off_policy(settings: Settings, root: Path | None = None, source: Path | None = None,
               bootstrap: int = 1000) -> Iterator[str]:
    from longview.datasets import open_bandit
    from training import off_policy as ope

    folder = source or settings.data_dir / FOLDER
    if source is None and not folder.is_dir():
        folder = open_bandit.bundled_folder()  # the same sample, shipped inside obp
    start = time.perf_counter()
    random, bts = open_bandit.load("random", folder), open_bandit.load("bts", folder)
    yield (f"Open Bandit sample ({folder}): {random.rounds:,} uniform-random impressions ({int(random.reward.sum())} "
           f"clicks), {bts.rounds:,} Thompson-sampling impressions ({int(bts.reward.sum())} clicks), "
           f"{random.n_actions} items, {random.len_list} slots")
    estimates = ope.estimate(random, ope.thompson_sampling_distribution(random, seed=settings.seed),
                             bootstrap=bootstrap, seed=settings.seed)
    logged, baseline = ope.logged_rate(bts, bootstrap, settings.seed), ope.logged_rate(random, bootstrap, settings.seed)
    yield f"{'Thompson sampling click rate':<34} {'value':>8}  95% bootstrap interval"
    for name, found in estimates.items():
        yield f"  {name.upper() + ' from the random logs':<32} {found.value:>8.5f}  [{found.low:.5f}, {found.high:.5f}]"
    yield f"  {'logged by Thompson sampling':<32} {logged.value:>8.5f}  [{logged.low:.5f}, {logged.high:.5f}]"
    yield f"{'random policy, logged':<34} {baseline.value:>8.5f}  [{baseline.low:.5f}, {baseline.high:.5f}]"
    covered = [name for name, found in estimates.items() if found.contains(logged.value)]
    holds_random = [name for name, found in estimates.items() if found.contains(baseline.value)]
    yield (f"intervals holding the logged Thompson rate: {', '.join(covered) or 'none'}; holding the random "
           f"policy's rate too: {', '.join(holds_random) or 'none'} (too few clicks to tell the two policies apart)")
    yield f"{time.perf_counter() - start:.1f} s, peak memory {peak_rss_mib():.0f} MiB"
    yield json.dumps({"obd_estimate": {name: found.as_dict() for name, found in estimates.items()},
                      "obd_logged": logged.as_dict(), "obd_random": baseline.as_dict()})
