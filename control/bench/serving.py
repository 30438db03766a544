"""`longview bench serving`: the running BentoML service against its own HTTP floor.

In its own data home, the benchmark prepares a real dataset (ml-1m-sasrec by default), builds its
Feast features, trains a short run of the production model and promotes it, then starts the service
on 127.0.0.1 and measures, with one client (persistent HTTP/1.1 connections, one per worker
thread):
- /recommend at concurrency 1 (median and p99) over requests from distinct known users, and the
  same service's /constant_list endpoint (a constant list, the same request body): the floor, the
  two interleaved request by request on one connection,
- /recommend's throughput at concurrency 8 and 32,
- errors, the share of fallback answers, and the service's peak resident memory;
- then serving/locustfile.py for ``load_seconds`` at 16 concurrent users (mixed endpoints), with
  the service's memory sampled every 10 s (does it level off?);
- and, for scale, the scoring path over ``scale_items`` (1,000,000) items in-process.
Its last line is one JSON object with the figures."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from control.bench.helpers import BenchmarkError, bench_home
from longview.settings import Settings, get_settings

# A short training run (the figure is about serving, not accuracy) of the production architecture:
# the sequence model with its value head and content, served under the engagement-aware policy.
TRAINING = {"ml-1m-sasrec": {"sequence": {"epochs": 3, "ensemble": 1, "eval_every": 3}, "baselines": ["popularity"]},
            "ml-100k": {"sequence": {"epochs": 10, "ensemble": 1, "eval_every": 5}, "baselines": ["popularity"]}}


class Client:
    """One persistent connection; ``post`` returns (status, body, seconds)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        try:
            self.connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            data = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnects on the next request
            status, data = 0, b""
        return status, data, time.perf_counter() - start


def sequential(url: str, paths: list[str], bodies: list[bytes]) -> dict[str, tuple[np.ndarray, list[tuple[int, bytes]]]]:
    """Each body sent to each of ``paths`` in turn, one request at a time on one connection, the
    order of the paths reversed every other body: the endpoints share the machine's moments (a
    slower minute on a shared host slows both alike), so their ratio is fair. Per path, the seconds
    and the (status, body) of each answer."""
    client = Client(url)
    for body in bodies[:50]:  # warm up the connection and the code paths
        for path in paths:
            client.post(path, body)
    times = {path: np.empty(len(bodies)) for path in paths}
    answers: dict[str, list[tuple[int, bytes]]] = {path: [] for path in paths}
    for n, body in enumerate(bodies):
        for path in (paths if n % 2 == 0 else paths[::-1]):
            status, data, seconds = client.post(path, body)
            times[path][n] = seconds
            answers[path].append((status, data))
    return {path: (times[path], answers[path]) for path in paths}


def concurrent(url: str, path: str, bodies: list[bytes], workers: int) -> tuple[float, int]:
    """Requests per second with ``workers`` connections sending ``bodies`` between them, and errors."""
    cursor, lock, errors = iter(bodies), threading.Lock(), [0]

    def work() -> None:
        client = Client(url)
        while True:
            with lock:
                body = next(cursor, None)
            if body is None:
                return
            status, _, _ = client.post(path, body)
            if status != 200:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(bodies) / (time.perf_counter() - start), errors[0]


def service_tree(pid: int) -> list[int]:
    """The service's processes: ``pid`` and its descendants (BentoML's workers run in sessions of
    their own, so the process group is not enough)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _summed_mb(pid: int, field: str) -> float:
    """A /proc status field (VmHWM: peak resident, VmRSS: resident now) over the service's processes, in MB."""
    total = 0
    for process in service_tree(pid):
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith(f"{field}:"))
    return total / 1024


def service_memory_mb(pid: int) -> float:
    """Peak resident memory of the service's processes, summed, in MB."""
    return _summed_mb(pid, "VmHWM")


def resident_mb(pid: int) -> float:
    """Resident memory of the service's processes now, summed, in MB."""
    return _summed_mb(pid, "VmRSS")


def load_test(url: str, pid: int, users: list[str], seconds: int, folder: Path) -> dict:
    """serving/locustfile.py for ``seconds`` at 16 users against the service, its memory sampled
    every 10 s: requests, failures and the samples (MB)."""
    import subprocess
    import sys

    ids = folder / "load-user-ids.txt"
    ids.write_text("\n".join(users))
    samples, stop = [round(resident_mb(pid))], threading.Event()

    def sample() -> None:
        while not stop.wait(10):
            samples.append(round(resident_mb(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    locustfile = Path(__file__).resolve().parent.parent / "serving" / "locustfile.py"
    report = folder / "load-test.json"
    try:
        run = subprocess.run([str(Path(sys.executable).with_name("locust")), "-f", str(locustfile), "--headless",
                              "-u", "16", "-r", "16", "-t", f"{seconds}s", "--host", url, "--user-ids", f"@{ids}",
                              "--only-summary", "--stop-timeout", "30", "--json-file", str(report.with_suffix(""))],
                             capture_output=True, text=True, timeout=seconds + 120)
    finally:
        stop.set()
        sampler.join()
    stats = json.loads(report.read_text()) if report.exists() else []
    requests = sum(s["num_requests"] for s in stats)
    failures = sum(s["num_failures"] for s in stats)
    if run.returncode not in (0, 1) or not stats:
        raise BenchmarkError(f"the load test did not run: {run.stderr.strip().splitlines()[-1:]}")
    return {"requests": requests, "failures": failures, "rss_mb": samples + [round(resident_mb(pid))]}


def catalogue_scale(items: int, calls: int = 200, seed: int = 7) -> dict:
    """The scoring path at catalogue scale, in-process: a network of the production shape (64
    dimensions, two blocks, 200 positions; random weights: the figure is about speed) over
    ``items`` items, its item table built once as at model load (and, from
    quantize.INT8_TABLE_FROM items, the int8 copy SequenceModel scores against), and per call one
    user's 50-item history encoded, scored against every item and cut to the top 10 with the
    ranking's top_k. The float table's path is timed too, on the same histories, and ``overlap``
    is the share of its top 10 the served path keeps (random weights crowd near-ties: a floor for
    what a trained table keeps; `longview bench quantization` measures the NDCG cost)."""
    import torch

    from training.models.quantize import scoring_table
    from training.models.ranking import top_k
    from training.models.sasrec_net import SASRecNet

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # as the service
    net = SASRecNet(items, 200, 64, 2, 1, 0.0).eval()
    rng = np.random.default_rng(seed)
    histories = [torch.from_numpy(rng.integers(1, items + 1, (1, 50))) for _ in range(calls + 10)]
    with torch.inference_mode():
        table = net.item_table()
        served = scoring_table(table)
        times = {"served": np.empty(calls), "float": np.empty(calls)}
        kept = []
        for n, history in enumerate(histories):
            best = {}
            for name, scorer in (("served", served), ("float", table)):
                start = time.perf_counter()
                best[name] = top_k(net.logits(net.last_hidden(history, table), scorer), 10)
                if n >= 10:
                    times[name][n - 10] = time.perf_counter() - start
            kept.append(len(set(best["served"][0].tolist()) & set(best["float"][0].tolist())) / 10)
    ms = {name: (float(np.median(t)) * 1e3, float(np.percentile(t, 99)) * 1e3) for name, t in times.items()}
    return {"items": items, "int8": served is not table, "median_ms": round(ms["served"][0], 2),
            "p99_ms": round(ms["served"][1], 2), "float_median_ms": round(ms["float"][0], 2),
            "overlap": round(float(np.mean(kept)), 3)}


def prepare(settings: Settings, dataset: str, root: Path | None, reuse: bool = False) -> tuple[Settings, list[str]]:
    """The benchmark's data home, served-ready: features online, a trained @champion. Returns it and
    the dataset's raw user ids (what callers send). ``reuse``: the home an earlier run prepared, if
    there is one (to measure a change to the service; a change to the model needs a new training)."""
    from control.pipeline import build_features, prepare_dataset, promote, train
    from longview import datasets

    folder = (root or settings.home / "bench") / f"serving-{dataset}"
    ready = folder / "serving-ready.json"
    if reuse and ready.exists():
        home = get_settings(home=folder, data_dir=settings.data_dir, **TRAINING.get(dataset, {}))
        print(f"  reusing {folder} (its @champion, features and code as registered then)", flush=True)
        return home, json.loads(ready.read_text())["users"]
    home = bench_home(settings, f"serving-{dataset}", root)
    home = get_settings(home=home.home, data_dir=settings.data_dir, **TRAINING.get(dataset, {}))
    steps = (("prepare", lambda: prepare_dataset(home, dataset)), ("features", lambda: build_features(home, False)),
             ("train", lambda: train(home)), ("promote", lambda: promote(home, "bench")))
    for name, step in steps:
        start = time.perf_counter()
        result = step()
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
        if name == "promote" and not getattr(result, "promoted", True):
            raise BenchmarkError(f"the gate refused the benchmark's model: {getattr(result, 'reason', result)}")
    info = datasets.spec(dataset)
    source = datasets.locate(info, None, settings.data_dir, settings.downloads_dir)
    users = datasets.load(info, source, settings.session_gap_minutes).events["user_id"].dropna().unique()
    users = sorted(str(u) for u in users)
    ready.write_text(json.dumps({"users": users}))
    return home, users


def serving(settings: Settings, root: Path | None = None, dataset: str = "ml-1m-sasrec", requests: int = 2000,
            users: int = 1000, reuse: bool = False, load_seconds: int = 60,
            scale_items: int = 1_000_000) -> Iterator[str]:
    from control.service_process import running_service

    home, known = prepare(settings, dataset, root, reuse)
    users = min(users, len(known))  # ml-100k has 943
    rng = np.random.default_rng(settings.seed)
    chosen = rng.choice(known, users, replace=False)
    order = np.concatenate([chosen, rng.choice(chosen, max(requests - users, 0))])
    rng.shuffle(order)
    bodies = [json.dumps({"user_id": u, "k": 10}).encode() for u in order]
    with running_service(home, log_path=home.home / "bench-service.log") as url:
        timed = sequential(url, ["/constant_list", "/recommend"], bodies)
        (floor_times, floor_answers), (times, answers) = timed["/constant_list"], timed["/recommend"]
        yield (f"{dataset}: {len(bodies)} requests from {len(set(order))} distinct known users, "
               f"concurrency 1, k=10")
        throughput = {}
        for workers in (8, 32):
            throughput[workers] = concurrent(url, "/recommend", bodies * 2, workers)
        load = load_test(url, url.pid, known, load_seconds, home.home) if load_seconds else None
        memory = service_memory_mb(url.pid)
    errors = sum(status != 200 for status, _ in answers + floor_answers) + sum(e for _, e in throughput.values())
    fallbacks = sum(json.loads(data).get("fallback") is not None for status, data in answers if status == 200)
    ok = max(sum(status == 200 for status, _ in answers), 1)
    figures = {
        "floor_median_ms": round(float(np.median(floor_times)) * 1e3, 3),
        "recommend_median_ms": round(float(np.median(times)) * 1e3, 3),
        "ratio": round(float(np.median(times) / np.median(floor_times)), 2),
        "recommend_p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        "rps_c8": round(throughput[8][0], 1), "rps_c32": round(throughput[32][0], 1),
        "errors": int(errors), "fallback_share": round(fallbacks / ok, 4), "peak_memory_mb": round(memory, 1),
    }
    yield (f"floor (/constant_list): median {figures['floor_median_ms']} ms, "
           f"p99 {np.percentile(floor_times, 99) * 1e3:.3f} ms")
    yield (f"/recommend: median {figures['recommend_median_ms']} ms ({figures['ratio']}x the floor), "
           f"p99 {figures['recommend_p99_ms']} ms")
    yield f"/recommend throughput: {figures['rps_c8']} req/s at concurrency 8, {figures['rps_c32']} at 32"
    yield (f"errors {figures['errors']}, fallback share {figures['fallback_share']}, "
           f"service peak memory {figures['peak_memory_mb']} MB")
    if load is not None:
        yield (f"load test (serving/locustfile.py, 16 users, {load_seconds} s): {load['requests']} requests, "
               f"{load['failures']} failed; service memory every 10 s (MB): {load['rss_mb']}")
        figures |= {"load_requests": load["requests"], "load_failures": load["failures"],
                    "load_rss_mb": load["rss_mb"]}
    if scale_items:
        scale = catalogue_scale(scale_items)
        table = "an int8 item table" if scale["int8"] else "the float item table"
        yield (f"scoring path over {scale['items']:,} items (in-process, one thread, {table}): median "
               f"{scale['median_ms']} ms, p99 {scale['p99_ms']} ms; float32 table {scale['float_median_ms']} ms, "
               f"whose top 10 it keeps {scale['overlap']:.0%} of (random weights)")
        figures |= {"scale_items": scale["items"], "scale_median_ms": scale["median_ms"],
                    "scale_p99_ms": scale["p99_ms"], "scale_float_median_ms": scale["float_median_ms"],
                    "scale_overlap": scale["overlap"]}
    yield json.dumps(figures)
