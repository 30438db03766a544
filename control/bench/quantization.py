"""`longview bench quantization`: what serving the int8 copy of the sequence model
(training/models/quantize.py, ``LONGVIEW_SERVING__QUANTIZE=true``) costs in accuracy and buys in
latency, on a real dataset.

In a data home of its own it prepares the dataset and its features (as `longview bench accuracy`
does), trains a short sequence model (one network, a few epochs: the figure is the difference, not
the accuracy itself), packages it as the registry would, and then, for the float model and its int8
copy on the same users:

- NDCG@10 under the leave-one-out protocol of the accuracy benchmark (whole catalogue, seen items
  excluded), with 95% bootstrap intervals and the paired difference's; and the same for the float
  model scoring against an int8 copy of its item table (quantize.Int8ItemTable, what the service
  does from quantize.INT8_TABLE_FROM items);
- single-user latency of ``PackagedModel.slots`` as the service calls it (one user a call, under
  the serving policy, one torch thread), float and int8 calls interleaved user by user so that
  both see the same load on a shared machine: median and p99.

The last stdout line is one JSON object: {"ndcg_float", "ndcg_int8", "ndcg_delta",
"float_median_ms", "int8_median_ms", "float_p99_ms", "int8_p99_ms", "speedup", "ndcg_int8_table",
"ndcg_int8_table_delta", ...}."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from longview.settings import Settings

# A short training run (the figure is the difference between float and int8, not the accuracy), with
# a learning rate for it: on ml-1m-sasrec (one network, dropout 0.2, cosine decay over 6 epochs),
# 5e-3 reached validation NDCG@10 0.021, 0.028, 0.058, 0.071, 0.079, 0.080 after epochs 1 to 6
# (2e-3 over 3 epochs: 0.022, popularity's level), at ~75 s an epoch on the 2 shared cores.
EPOCHS = 5
LEARNING_RATE = 5e-3
TIME_BUDGET_MINUTES = 6.0  # training stops after this long, whatever the machine
TIMED_USERS = 2000  # single-user calls timed per model (at least 1,000: users repeat where there are fewer)
WARM_UP = 50


def quantization(settings: Settings, root: Path | None = None, dataset: str = "ml-1m-sasrec",
                 source: Path | None = None, epochs: int = EPOCHS, users: int = TIMED_USERS,
                 progress: bool = True) -> Iterator[str]:
    """Prepare ``dataset`` in a data home of its own, train a short sequence model, and compare its
    int8 copy with it: NDCG@10 on the leave-one-out test users and single-user serving latency."""
    from control.bench.accuracy import prepare
    from control.bench.helpers import bench_home, peak_rss_mib
    from longview import datasets
    from training.evaluation import K, bootstrap_interval, evaluate, fit_on_split, paired_difference
    from training.models.packaged import PackagedModel
    from training.models.quantize import quantized, quantized_linears
    from training.models.sequence import SequenceModel
    from training.packaging import model_config
    from training.sequences import split_from_store

    if users < 1000:
        raise ValueError(f"time at least 1,000 single-user calls per model, not {users}")
    real_time = not datasets.spec(dataset).ordinal_time
    home = bench_home(settings, f"quantization-{dataset}", root)
    yield from prepare(home, dataset, source, real_time, progress)

    # One network, a few epochs, validated once at the end; ml-1m-sasrec with SASRec's dropout for
    # MovieLens-1M, as its accuracy benchmark runs it.
    short = {"ensemble": 1, "epochs": epochs, "eval_every": max(epochs, 1), "learning_rate": LEARNING_RATE,
             "time_budget_minutes": TIME_BUDGET_MINUTES}
    if dataset == "ml-1m-sasrec":
        short["dropout"] = 0.2
    trained = home.model_copy(update={"sequence": home.sequence.model_copy(update=short)})
    start = time.perf_counter()
    split, _ = split_from_store(trained, "loo", real_time)
    model = SequenceModel()
    report = fit_on_split(model, split, trained, progress)
    speed = [row["sequences_per_second"] for row in report.curve if "sequences_per_second" in row]
    validation = [row["validation"] for row in report.curve if "validation" in row]
    yield (f"sequence model trained in {time.perf_counter() - start:.0f} s: {report.epochs} epochs"
           + (f", {speed[-1]:.0f} sequences/s" if speed else "")
           + (f", validation NDCG@10 {validation[-1]:.4f}" if validation else "")
           + (f" ({'; '.join(report.notes)})" if report.notes else ""))

    # As the registry holds it, and as serving would quantise it at load.
    packaged = PackagedModel().load(model_config(model, split.train.item_ids, home), model.tensors())
    start = time.perf_counter()
    int8 = quantized(packaged)
    seconds = time.perf_counter() - start
    layers = [module for net in int8.model.nets for module in net.modules() if _is_dynamic_linear(module)]
    weights = sum(layer.weight().numel() for layer in layers)
    total = sum(p.numel() for net in packaged.model.nets for p in net.parameters())
    names = quantized_linears(int8.model.net)
    yield (f"int8 copy made in {seconds * 1e3:.0f} ms: {len(layers)} Linear layers ({', '.join(names)}), "
           f"{weights * 4 / 1024:.0f} KiB of float32 weights -> {weights / 1024:.0f} KiB of int8, of "
           f"{total * 4 / 2**20:.1f} MiB of parameters; the item table stays float32")

    # The float model scoring against an int8 copy of its item table, as the service does for
    # catalogues of quantize.INT8_TABLE_FROM items or more (forced here: ml-1m has 3,416).
    table = copy.copy(packaged.model)
    table.int8_table_from, table._scorers = 0, None
    n = split.train.n_items
    results = {}
    for name, scorer in (("float32", packaged.model), ("int8", int8.model), ("int8 table", table)):
        start = time.perf_counter()
        results[name] = evaluate(scorer, split.test, n, K, home.exclude_seen)
        lo, hi = bootstrap_interval(results[name].ndcg, seed=home.seed)
        yield (f"{name:<7} NDCG@10 {results[name].ndcg.mean():.4f} [{lo:.4f}, {hi:.4f}]  "
               f"HR@10 {results[name].hr.mean():.4f}  ({len(split.test.users):,} leave-one-out test users, "
               f"scored in {time.perf_counter() - start:.0f} s)")
    a, b = results["int8"], results["float32"]
    delta, dlo, dhi = paired_difference(a.ndcg, b.ndcg, seed=home.seed)
    shared = float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.top, b.top, strict=True)]))
    same = float(np.mean([(x == y).all() for x, y in zip(a.top, b.top, strict=True)]))
    verdict = "worse" if dhi < 0 else "better" if dlo > 0 else "within noise"
    yield (f"int8 - float32: NDCG@10 {delta:+.5f} [{dlo:+.5f}, {dhi:+.5f}] ({verdict}; "
           f"{delta / max(b.ndcg.mean(), 1e-12):+.2%} relative); the top 10s share {shared:.1%} of their items, "
           f"{same:.1%} of them are identical")

    c = results["int8 table"]
    table_delta, tlo, thi = paired_difference(c.ndcg, b.ndcg, seed=home.seed)
    shared_table = float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(c.top, b.top, strict=True)]))
    yield (f"int8 item table - float32 (the float encoder scoring against int8 item rows): NDCG@10 "
           f"{table_delta:+.5f} [{tlo:+.5f}, {thi:+.5f}]; the top 10s share {shared_table:.1%} of their items")

    policy = home.serving.policy
    served = {"float32": packaged, "int8": int8}
    if policy == "engagement":
        weights = home.engagement.weights(home.seed)
        served = {name: p.under_policy(weights) for name, p in served.items()}
    requests = _requests(split.test, packaged, users)
    timings = _timed(served, requests)
    yield (f"single-user slots under the {policy} policy, 1 torch thread, {len(requests):,} calls each "
           f"(float32 and int8 interleaved): " + "; ".join(
               f"{name} median {np.median(t):.3f} ms, p99 {np.percentile(t, 99):.3f} ms" for name, t in timings.items()))
    if policy == "engagement":
        own = _timed({"float32": packaged, "int8": int8}, requests[:1000])
        yield ("the same, the model's own ranking (policy model), 1,000 calls each: " + "; ".join(
            f"{name} median {np.median(t):.3f} ms, p99 {np.percentile(t, 99):.3f} ms" for name, t in own.items()))
    yield f"peak memory: {peak_rss_mib():.0f} MiB"

    f, q = timings["float32"], timings["int8"]
    figures = {"ndcg_float": round(float(b.ndcg.mean()), 4), "ndcg_int8": round(float(a.ndcg.mean()), 4),
               "ndcg_delta": round(delta, 5) + 0.0, "float_median_ms": round(float(np.median(f)), 3),
               "int8_median_ms": round(float(np.median(q)), 3), "float_p99_ms": round(float(np.percentile(f, 99)), 3),
               "int8_p99_ms": round(float(np.percentile(q, 99)), 3),
               "speedup": round(float(np.median(f) / np.median(q)), 3),
               "ndcg_delta_interval": [round(dlo, 5) + 0.0, round(dhi, 5) + 0.0], "dataset": dataset,
               "test_users": len(split.test.users), "timed_calls": len(requests), "policy": policy,
               "ndcg_int8_table": round(float(c.ndcg.mean()), 4), "ndcg_int8_table_delta": round(table_delta, 5) + 0.0,
               "ndcg_int8_table_interval": [round(tlo, 5) + 0.0, round(thi, 5) + 0.0]}
    yield json.dumps(figures)


def _is_dynamic_linear(module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


def _requests(holdout, packaged, calls: int) -> list[tuple[list[str], float | None, float | None]]:
    """``calls`` single-user requests from the test users (their inputs as item ids, and their times
    where the data has real ones), in order, starting over where there are fewer users."""
    queries = holdout.queries
    out = []
    for call in range(calls):
        user = call % len(queries)
        history = [packaged.item_ids[i - 1] for i in queries.histories[user]]
        now = None if queries.now is None else float(queries.now[user])
        last = None if queries.last is None else float(queries.last[user])
        out.append((history, now, last))
    return out


def _timed(served: dict, requests: list) -> dict[str, np.ndarray]:
    """Milliseconds per single-user ``slots`` call of each model, one torch thread; the models take
    turns user by user, the first one alternating, so that both meet the same machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = list(served)
        for name in names:  # warm up: item tables, oneDNN and fbgemm primitives, allocator
            for history, now, last in requests[:WARM_UP]:
                served[name].slots([history], [now], 10, [last], seeds=[0])
        times = {name: np.empty(len(requests)) for name in names}
        for call, (history, now, last) in enumerate(requests):
            for name in (names if call % 2 == 0 else names[::-1]):
                start = time.perf_counter()
                served[name].slots([history], [now], 10, [last], seeds=[call])
                times[name][call] = (time.perf_counter() - start) * 1e3
        return times
    finally:
        torch.set_num_threads(threads)
