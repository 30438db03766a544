"""Behavioural tests of a registered model as it is served (CheckList-style: what any list must
satisfy, whatever the metric says), and its single-request scoring latency. Both are gate rules
(gate/promotion.py): ``behavioural_tests`` and ``scoring_latency``.

The checks go through ``PackagedModel.rank``, the serving path, with holdout users' histories:
* seen items are not recommended again (where the model's exclusion rule says so);
* every list is full (k items, or every unseen item of a smaller catalogue), without duplicates,
  of catalogue items, with scores that never rise down the list;
* a user with no history, and one whose history holds only ids the model never saw or junk
  (None, numbers, empty strings), still gets a full list rather than an error."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

K = 10


@dataclass
class Behaviour:
    failures: list[str]
    checked: int  # requests checked

    @property
    def passed(self) -> bool:
        return not self.failures


def _list_faults(items: list[str], scores: list[float], history: list, known: set[str], expected: int,
                 exclude: bool) -> list[str]:
    faults = []
    if len(items) != expected:
        faults.append(f"{len(items)} items instead of {expected}")
    if len(set(items)) != len(items):
        faults.append("an item twice in one list")
    if not set(items) <= known:
        faults.append("an item outside the catalogue")
    if exclude and set(items) & {h for h in history if isinstance(h, str)}:
        faults.append("a seen item recommended again")
    if any(not np.isfinite(s) for s in scores) or any(b > a + 1e-6 for a, b in zip(scores, scores[1:])):
        faults.append("scores that are not finite or rise down the list")
    return faults


def behaviour(packaged, histories: list[list[str]], k: int = K) -> Behaviour:
    """Run the checks on ``histories`` (item ids, oldest first) plus the cold and junk requests."""
    known = set(packaged.item_ids)
    now = float(time.time())
    requests = [*histories, [], ["never-seen-item", None, 42, ""]]
    failures = []
    for history in requests:
        label = "a cold user" if not history else "a junk history" if history[0] == "never-seen-item" else "a holdout user"
        try:
            ranked = packaged.rank([history], [now], k)[0]
        except Exception as exc:  # any error here is a failed check, with its reason
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        seen = {h for h in history if isinstance(h, str) and h in packaged.index}
        expected = min(k, len(known) - (len(seen) if packaged.exclude else 0))
        faults = _list_faults([i for i, _ in ranked], [s for _, s in ranked], history, known, expected, packaged.exclude)
        failures.extend(f"{label}: {fault}" for fault in faults)
    return Behaviour(sorted(set(failures)), len(requests))


def latency_ms(packaged, histories: list[list[str]], k: int = K) -> dict[str, float]:
    """Median and 95th percentile of one user's request to ``packaged.rank``, in milliseconds
    (after one warm-up request: the first builds the item table once per loaded model)."""
    if not histories:
        raise ValueError("latency needs at least one request")
    now = float(time.time())
    packaged.rank([histories[0]], [now], k)
    times = []
    for history in histories:
        start = time.perf_counter()
        packaged.rank([history], [now], k)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "requests": float(len(times))}
