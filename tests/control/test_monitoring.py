"""The monitor step: PSI's properties, the drift alarm on real data homes (a stable synthetic world
and the same world after a shifted batch), the real service's metrics, online engagement from the
real feedback outbox, hostile metrics text, and `longview monitor` end to end."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import asdict
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from control import pipeline
from control.drift import compare, psi
from control.monitoring import EXPERIMENT, monitor
from control.service_metrics import ServiceHealth, histogram_quantile, read_metrics, service_health
from control.service_process import free_port, running_service
from longview.outbox import Outbox
from longview.privacy import pseudonym_key
from longview.settings import Settings, get_settings
from longview.store import dataset_clock, load_events
from serving.feedback import outbox_row
from serving.schemas import FeedbackRequest
from tests.conftest import SMALL_WORLD, last_json, longview, settings_of

ALARM = 0.25
values = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=2, max_size=200)


# PSI ---------------------------------------------------------------------------------------------

@given(values)
def test_identical_samples_have_no_drift(sample):
    assume(min(sample) < max(sample))
    assert psi(np.array(sample), np.array(sample[::-1])) == pytest.approx(0.0, abs=1e-12)


@given(values, values, st.integers(2, 20))
def test_psi_is_never_negative(reference, recent, bins):
    assume(min(reference) < max(reference))
    assert psi(np.array(reference), np.array(recent), bins) >= 0.0


@given(values, st.floats(1e-3, 1e6))
def test_a_clear_shift_is_significant(reference, gap):
    reference = np.array(reference)
    assume(reference.min() < reference.max())
    recent = reference - reference.min() + reference.max() + gap  # everything above the old maximum
    assert psi(reference, recent) >= ALARM
    assert compare("x", "event", reference, recent, 10, 1, ALARM).level == "significant"


def test_a_one_sigma_shift_of_a_normal_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert psi(reference, rng.normal(1.0, 1.0, size=2000)) >= ALARM
    assert psi(reference, rng.normal(size=2000)) < 0.1


HOSTILE = {
    "empty": [],
    "all missing": [np.nan] * 200,
    "infinities": [np.inf, -np.inf] * 100,
    "text": ["a", "b", None] * 100,
    "constant": [3.0] * 200,
    "few": [1.0, 2.0, 3.0],
}


@pytest.mark.parametrize("name", HOSTILE)
def test_unusable_columns_are_skipped_with_a_reason(name):
    column = np.array(HOSTILE[name], dtype=object)
    usable = np.linspace(0, 1, 500)
    for reference, recent in ((column, usable), (usable, column) if name != "constant" else (column, column)):
        drift = compare(name, "event", reference, recent, bins=10, min_rows=50, alarm=ALARM)
        assert drift.psi is None and drift.level == "skipped" and drift.skipped


@given(st.lists(st.one_of(st.floats(), st.none(), st.integers(), st.text(max_size=3)), max_size=120),
       st.lists(st.one_of(st.floats(), st.none(), st.integers()), max_size=120))
@pytest.mark.slow
def test_compare_never_raises(reference, recent):
    drift = compare("x", "event", np.array(reference, dtype=object), np.array(recent, dtype=object), 10, 5, ALARM)
    assert (drift.psi is None) == (drift.skipped is not None)
    assert drift.psi is None or drift.psi >= 0.0


# Data homes --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_home(tmp_path_factory) -> Path:
    """The small synthetic world ingested (no features or model: the monitor reads the store), and
    its MLflow database made, once; each test works on a copy."""
    home = tmp_path_factory.mktemp("monitor") / "home"
    settings = settings_of(home)
    pipeline.generate_synthetic(settings)
    pipeline.ingest_landing(settings)
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=settings.tracking_uri).search_experiments()  # creates the database
    return home


@pytest.fixture
def world(synthetic_home, tmp_path) -> Settings:
    copy = tmp_path / "home"
    shutil.copytree(synthetic_home, copy)
    return settings_of(copy)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_a_stable_world_raises_no_alarm(world):
    report = monitor(world, dead_url())
    assert not report.alarm and report.reasons == []
    assert {d.name for d in report.drift} == {"events_1d", "events_7d", "days_since_prev", "dwell", "rating",
                                               "session_depth", "item_popularity"}
    assert all(d.psi is not None and 0 <= d.psi < ALARM for d in report.drift)
    # The windows are on the data's clock (2024), not the wall clock.
    assert report.clock == dataset_clock(load_events(world, columns=["timestamp"])).isoformat()
    assert report.clock.startswith("2024-")
    # An unreachable service is reported, not raised, and is no alarm by itself.
    assert not report.service.reachable and "\n" not in report.service.error
    assert any(note.startswith("service:") for note in report.notes)
    assert report.engagement.feedback_events == 0 and report.engagement.return_rate is None
    # The file is the report, JSON all the way down; MLflow has the run, its metrics and chart.
    written = json.loads(Path(report.report_path).read_text())
    assert written == json.loads(json.dumps(asdict(report)))
    assert Path(report.report_path).parent == world.reports_dir
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=world.tracking_uri)
    run = client.get_run(report.mlflow_run_id)
    assert run.info.experiment_id == client.get_experiment_by_name(EXPERIMENT).experiment_id
    assert run.data.metrics["psi_dwell"] == pytest.approx(next(d.psi for d in report.drift if d.name == "dwell"))
    assert run.data.metrics["alarm"] == 0.0 and run.info.status == "FINISHED"
    assert "plots/psi_by_feature.png" in [a.path for a in client.list_artifacts(run.info.run_id, "plots")]


def shifted_batch(settings: Settings, path: Path) -> int:
    """Five days after the clock, 60 known users each in one long session of rarely seen items with
    views an order of magnitude longer than the world's: a shift in dwell, popularity and depth."""
    clock = dataset_clock(load_events(settings, columns=["timestamp"]))
    rows = []
    for u in range(60):
        t = clock + timedelta(days=1 + u % 5, hours=u % 7)
        for n in range(5):
            item = f"i{150 + (u + n) % 10:04d}"
            t += timedelta(minutes=3)
            rows.append((f"shift-{u}-{n}-c", f"u{u + 1:04d}", item, "click", t, None))
            rows.append((f"shift-{u}-{n}-v", f"u{u + 1:04d}", item, "view", t + timedelta(seconds=5),
                         20_000.0 + 500 * n))
    frame = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type", "timestamp", "value"])
    frame["timestamp"] = frame["timestamp"].map(lambda ts: ts.isoformat())
    frame["session_id"] = "shift-" + frame["user_id"]
    frame.to_csv(path, index=False)
    return len(frame)


def test_a_shifted_batch_raises_the_alarm(world, tmp_path):
    rows = shifted_batch(world, tmp_path / "shifted.csv")
    assert pipeline.ingest_file(world, tmp_path / "shifted.csv").accepted == rows
    report = monitor(world, dead_url())
    assert report.alarm
    dwell = next(d for d in report.drift if d.name == "dwell")
    assert dwell.psi >= ALARM and dwell.level == "significant"
    assert any(reason.startswith("dwell: PSI") for reason in report.reasons)
    assert report.max_psi == max(d.psi for d in report.drift if d.psi is not None)


def test_a_stricter_setting_or_thin_window_is_honoured(world, monkeypatch):
    monkeypatch.setenv("LONGVIEW_HOME", str(world.home))
    monkeypatch.setenv("LONGVIEW_MONITOR__MIN_ROWS", "500")  # more than the 7-day window has of most
    report = monitor(get_settings(), dead_url())
    skipped = [d for d in report.drift if d.skipped]
    assert skipped and all("fewer than 500 values" in d.skipped for d in skipped)
    assert all(any(note.startswith(f"{d.name}: not compared") for note in report.notes) for d in skipped)
    with pytest.raises(ValidationError):
        get_settings(monitor={"psi_alarm": 0})
    with pytest.raises(ValidationError):
        get_settings(monitor={"bins": 1})


def feedback(settings: Settings, when, *events: dict) -> list[dict]:
    request = FeedbackRequest.model_validate({"events": [{"time": t.to_pydatetime(), **e} for t, e in events]})
    return [outbox_row(pseudonym_key(settings), event, when) for event in request.events]


def click(user: str, item: str = "i0001") -> dict:
    return {"type": "click", "user_id": user, "item_id": item}


def test_engagement_counts_the_feedback_that_came_back(world):
    """Four users send feedback; ingestion routes it into the store; a week later two of them come
    back (still pending in the outbox), one with a three-event session and one with two sessions."""
    clock = dataset_clock(load_events(world, columns=["timestamp"]))
    first, later = clock + timedelta(days=2), clock + timedelta(days=10)
    outbox = Outbox(world.outbox_path)
    try:
        outbox.append(feedback(world, first, *[(first, click(u)) for u in ("ann", "bob", "cy", "dee")]),
                      first.isoformat())
        assert pipeline.ingest_outbox(world).accepted == 4
        back = [(later, click("ann", "i0002")), (later + timedelta(minutes=5), click("ann", "i0003")),
                (later + timedelta(minutes=9), click("ann", "i0004")),
                (later, click("bob", "i0002")), (later + timedelta(hours=5), click("bob", "i0005"))]
        outbox.append(feedback(world, later, *back), later.isoformat())
    finally:
        outbox.close()
    online = monitor(world, dead_url()).engagement
    assert (online.feedback_events, online.pending_events) == (9, 5)
    assert online.clock == (later + timedelta(hours=5)).isoformat()
    assert (online.previous_users, online.returned_users, online.return_rate) == (4, 2, 0.5)
    assert (online.recent_events, online.recent_users, online.recent_sessions) == (5, 2, 3)
    assert online.session_depth == pytest.approx(5 / 3, abs=1e-6)


# The service's metrics ---------------------------------------------------------------------------

def test_the_real_services_metrics_are_read(trained):
    with running_service(trained, log_path=trained.home / "monitoring.log") as url:
        for user in ("u0001", "u0002", "someone-new"):
            assert httpx.post(f"{url}/recommend", json={"user_id": user, "k": 3}, timeout=30).status_code == 200
        health = service_health(url)
    assert health.reachable and health.metrics_ok and health.error is None
    assert health.requests >= 3 and health.server_errors == 0
    assert health.fallbacks.get("no_features", 0) >= 1  # the new user got the cold-start list
    assert 0 < health.fallback_share <= 1
    assert 0 < health.latency_p50_ms <= health.latency_p95_ms < 30_000


def test_an_unreachable_service_is_reported():
    health = service_health(dead_url(), timeout=1)
    assert not health.reachable and not health.metrics_ok
    assert "unreachable" in health.error and "\n" not in health.error
    assert health.latency_p95_ms is None and health.fallback_share is None


REQUESTS = 'bentoml_service_request_total{endpoint="/recommend",http_response_code="200"} %s\n'


def bucket(le: str, count: str) -> str:
    return f'bentoml_service_request_duration_seconds_bucket{{endpoint="/recommend",le="{le}"}} {count}\n'


def test_latency_quantiles_follow_prometheus():
    text = (REQUESTS % "4" + 'longview_fallbacks_total{reason="no_features"} 1\n'
            + bucket("0.005", "1") + bucket("0.01", "3") + bucket("0.025", "4") + bucket("+Inf", "4"))
    health = read_metrics(text, ServiceHealth(url="x"))
    assert health.metrics_ok and health.requests == 4 and health.fallback_share == 0.25
    assert health.latency_p50_ms == pytest.approx(7.5) and health.latency_p95_ms == pytest.approx(22.0)
    assert histogram_quantile(0.95, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1  # beyond the last bound


HOSTILE_METRICS = {
    "empty": "",
    "not metrics": "<html><body>502 Bad Gateway</body></html>",
    "broken syntax": 'bentoml_service_request_total{endpoint="/recommend" 3\n',
    "binary": "\x00\xff\xfe\x01" * 50,
    "other exporter": "node_cpu_seconds_total 12\n",
    "negative and NaN counters": REQUESTS % "-5" + REQUESTS.replace("200", "500") % "NaN",
    "falling buckets": REQUESTS % "3" + bucket("0.1", "3") + bucket("1", "1") + bucket("+Inf", "2"),
    "bad bounds": REQUESTS % "3" + bucket("abc", "3") + bucket("NaN", "1") + bucket("+Inf", "3"),
    "only +Inf": REQUESTS % "3" + bucket("+Inf", "3"),
    "huge": REQUESTS % "1e308" + bucket("0.1", "1e308") + bucket("+Inf", "1e308"),
}


@pytest.mark.parametrize("name", HOSTILE_METRICS)
def test_hostile_metrics_text_is_reported_not_raised(name):
    health = read_metrics(HOSTILE_METRICS[name], ServiceHealth(url="x"))
    assert health.metrics_ok or (health.error and "\n" not in health.error)
    assert health.requests >= 0 and (health.fallback_share is None or 0 <= health.fallback_share)
    for latency in (health.latency_p50_ms, health.latency_p95_ms):
        assert latency is None or latency >= 0
    json.dumps(asdict(health), allow_nan=False)


@hsettings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.text(max_size=300))
def test_any_text_is_read_without_raising(text):
    health = read_metrics(REQUESTS % "1" + text, ServiceHealth(url="x"))
    assert health.metrics_ok or health.error


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"\x89PNG not metrics {{{\n" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_server_answering_garbage_is_reported():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        health = service_health(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert health.reachable and not health.metrics_ok and health.error


# The command -------------------------------------------------------------------------------------

def test_the_command_end_to_end(world):
    env = {**SMALL_WORLD, "LONGVIEW_HOME": str(world.home)}
    result = longview("monitor", "--service-url", dead_url(), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = last_json(result.stdout)
    assert report["alarm"] is False and not report["service"]["reachable"]
    assert json.loads(Path(report["report_path"]).read_text())["mlflow_run_id"] == report["mlflow_run_id"]
    bad = longview("monitor", "--service-url", "ftp://nowhere", env=env, timeout=300)
    assert bad.returncode == 2 and "not a service URL" in bad.stderr
