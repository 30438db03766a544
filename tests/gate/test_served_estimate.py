"""The gate's off-policy report (gate/served_estimate.py) on a copy of the demo's home: the champion
serves exploring slates to real users of the store, written by the service's own served-log writer;
clicks come back as events naming the request id, through `longview ingest`; the challenger's
top-slot click rate is estimated from that log alone, and the promotion carries the report."""

from __future__ import annotations

import shutil
import time
from collections import namedtuple

import numpy as np
import pandas as pd
import pytest

from control.pipeline import ingest_landing, train
from gate import audit
from gate.promotion import promote
from gate.served_estimate import MIN_SLATES, served_report
from longview.feature_tables import engagements, tie_ordered
from longview.ids import new_request_id
from longview.served_log import ServedLog, record_of
from longview.store import dataset_clock, load_events, load_served
from tests.conftest import settings_of
from training.tracking import CHAMPION, alias_version, load_version, mlflow_client

Shown = namedtuple("Shown", "item_id score propensity reason")
EXPLORATION = 0.3


@pytest.fixture(scope="module")
def logged(trained, tmp_path_factory):
    """A home whose served log holds 80 slates of the champion (exploring 30% of slots) and whose
    events hold a click on the top item of every third slate; with what was logged, per slate."""
    home = tmp_path_factory.mktemp("served-estimate") / "home"
    shutil.copytree(trained.home, home, ignore=shutil.ignore_patterns("*.log", "bentoml"))
    settings = settings_of(home)
    version = str(alias_version(mlflow_client(settings), CHAMPION).version)
    champion = load_version(settings, version)
    policy = champion.under_policy({**settings.engagement.weights(settings.seed), "exploration": EXPLORATION})
    events = load_events(settings)
    now = dataset_clock(events).timestamp() + 3600
    users = sorted(engagements(events)["user_id"].astype(str).unique())[:80]
    # what the service reads for a user: the user_history view's engagements, in its order
    eng = tie_ordered(engagements(events), settings.seed)
    mine = [eng[eng["user_id"] == u] for u in users]
    histories = [m["item_id"].astype(str).tolist() for m in mine]
    lasts = [pd.Timestamp(m["timestamp"].iloc[-1]).timestamp() for m in mine]
    slates = policy.slots(histories, [now] * len(users), 5, lasts, seeds=list(range(len(users))))
    writer = ServedLog(settings.served_log_dir)
    rows = []
    for n, (user, slate) in enumerate(zip(users, slates, strict=True)):
        request = new_request_id()
        writer.append(record_of(request, user, now, "engagement", "sequence", version, EXPLORATION, None,
                                [Shown(s.item, s.score, s.propensity, "exploration" if s.explored else "model")
                                 for s in slate]))
        rows.append({"request_id": request, "item": slate[0].item, "explored": slate[0].explored,
                     "propensity": slate[0].propensity, "clicked": n % 3 == 0})
    writer.close()  # the service stopping: its open file is closed for ingestion
    clicks = pd.DataFrame([{"event_id": f"e_click{n:04d}", "user_id": "u-click", "item_id": r["item"], "event_type": "click",
                            "timestamp": pd.Timestamp(now + 60, unit="s", tz="UTC").isoformat(),
                            "request_id": r["request_id"]} for n, r in enumerate(rows) if r["clicked"]])
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    clicks.to_csv(settings.landing_dir / "clicks.csv", index=False)
    ingest_landing(settings)
    served = load_served(settings)  # with the demo's own requests, which were logged too
    ours = {r["request_id"] for r in rows}
    assert int(served["request_id"].isin(ours).sum()) == 5 * len(users), "every slot of every slate stored"
    # every slate of the champion in the log: ours, and the demo's (which no click names)
    slates = int(((served["position"] == 0) & (served["model_version"] == version)).sum())
    return settings, version, champion, pd.DataFrame(rows), slates


def test_the_champion_as_its_own_challenger_is_estimated_from_the_log(logged):
    settings, version, champion, rows, slates = logged
    report = served_report(settings, champion, {}, version)
    assert report["slates"] == slates >= len(rows) and report["clicks"] == int(rows["clicked"].sum())
    assert report["champion_rate"] == pytest.approx(rows["clicked"].sum() / slates, abs=1e-6)
    # its greedy top item is the logged one wherever the top slot was not explored
    assert report["matches"] >= int((~rows["explored"]).sum())
    greedy = rows[~rows["explored"]]
    ips = float((greedy["clicked"] / greedy["propensity"]).sum() / slates)
    assert report["ips"]["value"] == pytest.approx(ips, rel=0.1, abs=0.02)
    for name in ("ips", "snips", "dr"):
        found = report[name]
        assert found["low"] <= found["value"] <= found["high"] and np.isfinite(found["value"])


def test_too_few_slates_or_another_versions_give_a_note_not_an_estimate(logged):
    settings, version, champion, _, _ = logged
    other = served_report(settings, champion, {}, "999")
    assert other["slates"] == 0 and "fewer than" in other["note"] and "ips" not in other
    assert MIN_SLATES > 0


def test_promotion_carries_the_report_into_the_result_and_the_audit_log(logged):
    settings, version, _, _, slates = logged
    quick = settings.model_copy(update={"gate": settings.gate.model_copy(update={"simulated_retention": False})})
    challenger = train(quick, progress=False)
    started = time.monotonic()
    result = promote(quick)
    assert time.monotonic() - started < 120
    report = result.off_policy
    assert report is not None and report["champion"] == version and report["slates"] == slates
    assert {"ips", "snips", "dr", "champion_rate"} <= set(report), report
    entry = audit.read(quick)[-1]
    assert entry["challenger"] == challenger.model_version and entry["metrics"]["off_policy"] == report
