"""`longview monitor`: the daily look at the served model's world, as one step (CLI and DAG).

Three questions, each on the data's own clock (never the wall clock): have the model's inputs
drifted since the window it learnt from (control/drift.py), is the service healthy by its own
metrics (control/service_metrics.py), and do the users who send feedback come back. The answer
is a JSON report in the data home's reports folder and a run in MLflow's ``longview-monitor``
experiment (PSI per feature as metrics and a bar chart), with ``alarm`` and its reasons."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from control.drift import FeatureDrift, compare, drift_features
from control.service_metrics import ServiceHealth, check_service_url, one_line, service_health
from longview.datasets.sessions import session_numbers
from longview.settings import MonitorSettings, Settings
from longview.store import dataset_clock, load_catalogue, load_events

log = logging.getLogger(__name__)

EXPERIMENT = "longview-monitor"


@dataclass
class Engagement:
    """Online engagement, from the events that came back through /feedback only.

    Windows end at ``clock`` (the later of the event store's clock and the newest feedback event):
    the recent one is the last ``recent_days``, the previous one the ``recent_days`` before it.
    ``return_rate``: the share of users with feedback in the previous window who sent feedback again
    in the recent one (a rolling cohort retention). ``session_depth``: mean feedback events per
    session in the recent window, a user's session ending after ``session_gap_minutes`` of silence.
    Rates are None where their base is empty."""

    clock: str | None = None
    feedback_events: int = 0  # every acknowledged feedback event that is (or will be) in the store
    pending_events: int = 0  # of those, not ingested yet (read from the outbox)
    recent_events: int = 0
    recent_users: int = 0
    recent_sessions: int = 0
    session_depth: float | None = None
    previous_users: int = 0
    returned_users: int = 0
    return_rate: float | None = None


@dataclass
class MonitorReport:
    created_at: str  # when the monitor ran (UTC, wall clock): the report's name
    clock: str  # the event store's clock, which the drift windows end at
    window_start: str  # the recent window is (window_start, clock]
    recent_days: float
    drift: list[FeatureDrift]
    max_psi: float | None
    service: ServiceHealth
    engagement: Engagement
    alarm: bool
    reasons: list[str]  # why the alarm is raised, one line each
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    report_path: str | None = None
    mlflow_run_id: str | None = None


def monitor(settings: Settings, service_url: str | None = None) -> MonitorReport:
    """Check drift, the service and online engagement; write the report and log it to MLflow.

    Raises ValueError for a malformed ``service_url`` or an empty event store; an unreachable
    service, or MLflow, is reported in the report instead."""
    url = check_service_url(service_url or settings.service_url)
    options = settings.monitor
    created = datetime.now(timezone.utc)
    events = load_events(settings)
    clock = dataset_clock(events)
    boundary = clock - pd.Timedelta(days=options.recent_days)
    features = drift_features(events, load_catalogue(settings), boundary, settings.session_gap_minutes)
    drift = [compare(name, source, reference, recent, options.bins, options.min_rows, options.psi_alarm)
             for name, (source, reference, recent) in features.items()]
    health = service_health(url, options.timeout_seconds)
    feedback, pending = feedback_events(settings, events)
    online = engagement(feedback, pending, clock, options.recent_days, settings.session_gap_minutes)
    reasons, notes = judge(drift, health, options)
    if ordinal_time(settings):
        notes.append("the dataset's times are an order only (HOME/dataset.json): its windows of days are nominal")
    scores = [d.psi for d in drift if d.psi is not None]
    report = MonitorReport(created_at=created.isoformat(), clock=clock.isoformat(), window_start=boundary.isoformat(),
                           recent_days=options.recent_days, drift=drift, max_psi=max(scores, default=None),
                           service=health, engagement=online, alarm=bool(reasons), reasons=reasons, notes=notes)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    path = settings.reports_dir / f"monitor-{created:%Y%m%dT%H%M%S%f}.json"
    report.report_path = str(path)
    try:
        report.mlflow_run_id = log_run(settings, report)
    except Exception as exc:  # the report is written either way, and says what MLflow did not get
        log.error("monitor report not logged to MLflow: %s", exc)
        report.notes.append(one_line(f"not logged to MLflow ({settings.tracking_uri}): {type(exc).__name__}: {exc}"))
    path.write_text(report_json(report))
    return report


def ordinal_time(settings: Settings) -> bool:
    """Whether `longview data prepare` recorded the dataset's times as an order only (as train reads it)."""
    path = settings.home / "dataset.json"
    try:
        return bool(json.loads(path.read_text()).get("ordinal_time", False))
    except (OSError, ValueError, AttributeError):
        return False


def report_json(report: MonitorReport) -> str:
    return json.dumps(asdict(report), indent=2) + "\n"


def judge(drift: list[FeatureDrift], health: ServiceHealth, options: MonitorSettings) -> tuple[list[str], list[str]]:
    """The alarm's reasons (significant drift; too many fallbacks over enough requests) and notes
    on what could not be judged. An unreachable service is a note: uptime is the probes' job."""
    reasons = [f"{d.name}: PSI {d.psi:.3f} >= {options.psi_alarm:g} (a significant shift)"
               for d in drift if d.psi is not None and d.psi >= options.psi_alarm]
    notes = [f"{d.name}: not compared, {d.skipped}" for d in drift if d.skipped]
    share = health.fallback_share
    if share is not None and health.requests >= options.min_requests and share >= options.fallback_alarm:
        reasons.append(f"fallbacks: {share:.0%} of {health.requests} /recommend answers fell back "
                       f"(alarm from {options.fallback_alarm:.0%}): {health.fallbacks}")
    elif share is not None and health.requests < options.min_requests:
        notes.append(f"fallbacks: {share:.0%} of only {health.requests} /recommend answers "
                     f"(judged from {options.min_requests})")
    if health.error:
        notes.append(f"service: {health.error}")
    return reasons, notes


def feedback_events(settings: Settings, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The events that came back through /feedback (user_id, event_type, timestamp): those the
    outbox routed into the store (found by their server-assigned ids, which ingestion keeps as they
    are) and those still pending in the outbox; and how many are pending. Rows ingestion
    quarantined are in neither."""
    columns = ["user_id", "event_type", "timestamp"]
    if not settings.outbox_path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), 0
    from longview.outbox import Outbox

    outbox = Outbox(settings.outbox_path)
    try:
        received = outbox.received()
    finally:
        outbox.close()
    stored = events[events["event_id"].isin(set(received["event_id"]))]
    pending = received[received["batch_id"].isna() & ~received["event_id"].isin(set(stored["event_id"]))]
    pending = pd.DataFrame({"user_id": pending["user_id"], "event_type": pending["event_type"],
                            "timestamp": pd.to_datetime(pending["timestamp"], utc=True, format="ISO8601",
                                                        errors="coerce")}).dropna(subset=["timestamp"])
    both = pd.concat([stored[columns], pending[columns]], ignore_index=True)
    both["timestamp"] = pd.to_datetime(both["timestamp"], utc=True)
    return both, len(pending)


def engagement(feedback: pd.DataFrame, pending: int, store_clock: pd.Timestamp, recent_days: float,
               gap_minutes: float) -> Engagement:
    """Return rate and session depth of the feedback events (the definitions: ``Engagement``)."""
    out = Engagement(feedback_events=len(feedback), pending_events=pending)
    if feedback.empty:
        return out
    clock = max(store_clock, feedback["timestamp"].max())
    width = pd.Timedelta(days=recent_days)
    times = feedback["timestamp"]
    recent = feedback[times > clock - width]
    previous = feedback[(times > clock - 2 * width) & (times <= clock - width)]
    out.clock = clock.isoformat()
    out.recent_events, out.recent_users = len(recent), int(recent["user_id"].nunique())
    if len(recent):
        numbers = session_numbers(recent["user_id"], recent["timestamp"].astype("int64") / 1e9, gap_minutes)
        out.recent_sessions = int(pd.DataFrame({"u": recent["user_id"].to_numpy(), "n": numbers}).drop_duplicates().shape[0])
        out.session_depth = round(len(recent) / out.recent_sessions, 6)
    cohort = set(previous["user_id"])
    out.previous_users = len(cohort)
    out.returned_users = len(cohort & set(recent["user_id"]))
    if cohort:
        out.return_rate = round(out.returned_users / len(cohort), 6)
    return out


def log_run(settings: Settings, report: MonitorReport) -> str:
    """A finished run in the ``longview-monitor`` experiment: every number as a metric, the
    thresholds as parameters, the PSI chart and the report itself as artifacts. Returns its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunStatus

    from training.tracking import experiment_id

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run_id = client.create_run(experiment_id(client, settings, EXPERIMENT), run_name=f"monitor {report.clock[:10]}",
                               tags={"alarm": str(report.alarm).lower(), "clock": report.clock}).info.run_id
    report.mlflow_run_id = run_id  # so the logged copy of the report names its run
    try:
        stamp = int(datetime.fromisoformat(report.created_at).timestamp() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in run_metrics(report).items()],
                         params=[Param(k, str(v)) for k, v in {**settings.monitor.model_dump(),
                                                               "service_url": report.service.url}.items()])
        with tempfile.TemporaryDirectory() as tmp:
            chart = psi_chart(report, settings.monitor.psi_alarm, Path(tmp) / "psi_by_feature.png")
            client.log_artifact(run_id, str(chart), "plots")
            copy = Path(tmp) / Path(report.report_path or "monitor.json").name
            copy.write_text(report_json(report))
            client.log_artifact(run_id, str(copy))
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def run_metrics(report: MonitorReport) -> dict[str, float]:
    """The report's numbers under MLflow metric names (absent values are left out, not zeroed)."""
    service, online = report.service, report.engagement
    values: dict[str, float | None] = {f"psi_{d.name}": d.psi for d in report.drift}
    values |= {"max_psi": report.max_psi, "alarm": float(report.alarm),
               "service_reachable": float(service.reachable), "service_requests": service.requests,
               "service_server_errors": service.server_errors, "fallback_share": service.fallback_share,
               "latency_p50_ms": service.latency_p50_ms, "latency_p95_ms": service.latency_p95_ms,
               "feedback_events": online.feedback_events, "feedback_recent_users": online.recent_users,
               "session_depth": online.session_depth, "return_rate": online.return_rate}
    return {k: float(v) for k, v in values.items() if v is not None}


def psi_chart(report: MonitorReport, psi_alarm: float, path: Path) -> Path:
    """PSI per feature against the moderate (0.1) and alarm lines; skipped features are named, at 0."""
    from training.plots import pyplot

    plt = pyplot()
    colours = {"significant": "C3", "moderate": "C1"}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([d.name if d.psi is not None else f"{d.name}\n(skipped)" for d in report.drift],
           [d.psi or 0.0 for d in report.drift], color=[colours.get(d.level, "C0") for d in report.drift])
    ax.axhline(0.1, color="C1", linestyle=":", label="moderate (0.1)")
    ax.axhline(psi_alarm, color="C3", linestyle="--", label=f"alarm ({psi_alarm:g})")
    ax.set(ylabel="PSI", title=f"drift: the {report.recent_days:g} days to {report.clock[:10]} against before")
    ax.tick_params(axis="x", labelrotation=25, labelsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
