"""The service's health as its own Prometheus metrics tell it (``GET /metrics``).

BentoML counts every request by endpoint and response code (``bentoml_service_request_total``) and
times them in a histogram (``bentoml_service_request_duration_seconds``); the service counts the
answers that fell back to the cold-start list by reason (``longview_fallbacks_total``,
serving/ranking.py FALLBACK_LABELS). Counters run from the service's start, so every figure here
covers the service's lifetime so far, not a day."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx

ENDPOINT = "/recommend"
REQUESTS = "bentoml_service_request"  # a counter's family name, without _total
DURATION = "bentoml_service_request_duration_seconds"
FALLBACKS = "longview_fallbacks"
MAX_BYTES = 16 * 2**20  # a service's metrics are kilobytes; more is not worth reading


@dataclass
class ServiceHealth:
    url: str
    reachable: bool = False  # /metrics answered 200
    metrics_ok: bool = False  # and its text was read as Prometheus metrics
    error: str | None = None  # one line
    requests: int = 0  # /recommend requests answered, any status
    server_errors: int = 0  # of those, 5xx
    batch_requests: int = 0  # /recommend_batch requests (their users' fallbacks are counted too)
    fallbacks: dict[str, int] = field(default_factory=dict)
    # Fallbacks per /recommend answer; None without requests, or with batch traffic (the metrics do
    # not say how many users the batches held, so no honest denominator exists).
    fallback_share: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


def check_service_url(url: str) -> str:
    """The base URL without a trailing slash; ValueError unless it is http(s)://host[:port][/path]."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.fragment:
        raise ValueError(f"not a service URL: {url!r} (expected http://HOST:PORT)")
    return str(parsed).rstrip("/")


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def service_health(url: str, timeout: float = 3.0) -> ServiceHealth:
    """Fetch and read ``{url}/metrics``; an unreachable service or unreadable text is reported in
    ``error``, never raised."""
    health = ServiceHealth(url=url)
    try:
        with httpx.stream("GET", f"{url}/metrics", timeout=timeout) as response:
            if response.status_code != 200:
                health.error = one_line(f"{url}/metrics answered {response.status_code}")
                return health
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    health.error = f"{url}/metrics sent more than {MAX_BYTES // 2**20} MiB"
                    return health
    except httpx.HTTPError as exc:
        health.error = one_line(f"{url}/metrics unreachable: {type(exc).__name__}: {exc}")
        return health
    health.reachable = True
    return read_metrics(body.decode("utf-8", errors="replace"), health)


def read_metrics(text: str, health: ServiceHealth) -> ServiceHealth:
    """Fill ``health`` from a Prometheus text exposition; malformed text sets ``error``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[tuple[str, dict[str, str], float]] = []
    try:
        for family in text_string_to_metric_families(text):
            samples += [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
    except Exception as exc:  # the parser raises ValueError, TypeError, IndexError... on hostile text
        health.error = one_line(f"unreadable metrics: {type(exc).__name__}: {exc}")
        return health
    if not any(name.startswith(REQUESTS) for name, _, _ in samples):
        health.error = f"no {REQUESTS}_total in the metrics: not a BentoML service?"
        return health
    health.metrics_ok = True
    recommend = [(labels, v) for name, labels, v in samples
                 if name == f"{REQUESTS}_total" and labels.get("endpoint") == ENDPOINT]
    health.requests = _count(v for _, v in recommend)
    health.server_errors = _count(v for labels, v in recommend if labels.get("http_response_code", "").startswith("5"))
    health.batch_requests = _count(v for name, labels, v in samples
                                   if name == f"{REQUESTS}_total" and labels.get("endpoint") == "/recommend_batch")
    for name, labels, v in samples:
        if name == f"{FALLBACKS}_total":
            reason = labels.get("reason", "unknown")
            health.fallbacks[reason] = health.fallbacks.get(reason, 0) + _count([v])
    if health.requests and not health.batch_requests:
        health.fallback_share = round(sum(health.fallbacks.values()) / health.requests, 6)
    buckets = _buckets([(labels, v) for name, labels, v in samples
                        if name == f"{DURATION}_bucket" and labels.get("endpoint") == ENDPOINT])
    for q, attr in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms")):
        seconds = histogram_quantile(q, buckets)
        setattr(health, attr, None if seconds is None else round(seconds * 1000.0, 3))
    return health


def _count(values) -> int:
    """A counter's total; negative, NaN or infinite values (which no counter has) count as 0."""
    return int(sum(v for v in values if math.isfinite(v) and v > 0))


def _buckets(samples: list[tuple[dict[str, str], float]]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) summed over the series (response codes), by bound."""
    totals: dict[float, float] = {}
    for labels, value in samples:
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):
            continue
        if math.isnan(bound) or not math.isfinite(value) or value < 0:
            continue
        totals[bound] = totals.get(bound, 0.0) + value
    return sorted(totals.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' estimate: linear within the bucket that holds the q-th observation (the lowest
    bucket from 0); in the +Inf bucket, the highest finite bound. None without observations or
    with counts that fall as bounds rise (not a histogram)."""
    if len(buckets) < 2 or buckets[-1][0] != math.inf:  # +Inf alone bounds nothing
        return None
    counts = [c for _, c in buckets]
    total = counts[-1]
    if total <= 0 or any(b < a for a, b in zip(counts, counts[1:])):
        return None
    rank = q * total
    if buckets[0][0] <= 0 and counts[0] >= rank:
        return buckets[0][0]  # no lower bound to interpolate from
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return None
