"""`longview bench pipeline`: the whole loop on a real dataset, (a) in one Python process calling the
step functions and (b) through Airflow's scheduler running the asset-chained DAGs on the local
stack, each from the same landing files to the running service answering with the new champion.

Both runs start with their service already up and not ready (no champion yet), as after
`longview up`; the clock starts when the files are handed over (a: the first step is called; b:
`ingest_validate` is triggered through the REST API) and stops when the service answers with the
promoted version. The stack's start-up is reported apart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from longview.settings import Settings, environment, get_settings

# What both runs train with (set in the environment, so the stack's task processes read it too):
# one network and a bounded number of epochs keep the loop to minutes on two cores; the model must
# still pass the gate, which it checks against popularity and every other baseline.
PIPELINE_SETTINGS = {"LONGVIEW_SEQUENCE__ENSEMBLE": "1", "LONGVIEW_SEQUENCE__EPOCHS": "30",
                     "LONGVIEW_SERVING__POLL_SECONDS": "1", "LONGVIEW_SERVING__WARM_SECONDS": "0"}


def write_landing(settings: Settings, dataset: str, source: Path | None) -> dict[str, int]:
    """The dataset's catalogue and events as landing files, as a data producer would drop them."""
    from longview import datasets

    info = datasets.spec(dataset)
    folder = datasets.locate(info, source, settings.data_dir, settings.downloads_dir)
    tables = datasets.load(info, folder, settings.session_gap_minutes)
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    tables.items.to_parquet(settings.landing_dir / "items.parquet", index=False)
    tables.events.to_parquet(settings.landing_dir / "events.parquet", index=False)
    return {"items": len(tables.items), "events": len(tables.events)}


def direct(settings: Settings) -> dict:
    """(a) One process: the step functions, then the service (started before the clock) follows."""
    from control import pipeline
    from control.service_process import running_service, wait_serving

    with running_service(settings, ready=False, log_path=settings.home / "service.log") as url:
        started = time.monotonic()
        steps: dict[str, float] = {}
        for name, step in (("ingest", pipeline.ingest_landing), ("features", pipeline.build_features),
                           ("train", pipeline.train), ("promote", pipeline.promote)):
            began = time.monotonic()
            result = step(settings)
            steps[name] = round(time.monotonic() - began, 1)
            print(f"direct: {name} {steps[name]:.1f} s", flush=True)
        wait_serving(settings, result.champion, url, timeout=120)
        seconds = time.monotonic() - started
    return {"seconds": seconds, "steps": steps, "promoted": result.promoted, "champion": result.champion,
            "reason": result.reason}


def through_airflow(settings: Settings) -> dict:
    """(b) `longview up`, a REST trigger of ingest_validate; the scheduler runs the chain by its assets."""
    from control.service_process import served_version
    from control.stack import AirflowClient, down, up

    began = time.monotonic()
    up(settings, say=lambda line: print(f"stack: {line}", flush=True))
    start_seconds = time.monotonic() - began
    try:
        airflow = AirflowClient(settings)
        started = time.monotonic()
        triggered = airflow.trigger("ingest_validate")["dag_run_id"]
        runs = {}
        for dag_id in ("ingest_validate", "build_features", "train_evaluate_register", "promote_deploy"):
            run = airflow.wait_for_run(dag_id, triggered if dag_id == "ingest_validate" else None, timeout=1800)
            runs[dag_id] = {"state": run["state"], "seconds": _run_seconds(run)}
            print(f"airflow: {dag_id} {run['state']} in {runs[dag_id]['seconds']} s", flush=True)
            if run["state"] != "success":
                raise RuntimeError(f"{dag_id} {run['state']}: see {settings.airflow_home / 'logs'}")
        decision = json.loads((settings.train_dir / "promotion.json").read_text())
        deadline = time.monotonic() + 120
        while served_version(settings.service_url) != decision["champion"] and time.monotonic() < deadline:
            time.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        down(settings, say=lambda _: None)
    return {"seconds": seconds, "start_seconds": start_seconds, "runs": runs, "promoted": decision["promoted"],
            "champion": decision["champion"], "reason": decision["reason"]}


def trained_against_popularity(settings: Settings) -> dict:
    """What the run registered and its NDCG@10 on the temporal holdout beside popularity's (from
    the train step's train/metrics.json)."""
    result = json.loads((settings.train_dir / "metrics.json").read_text())
    name = result["registered"] or result["model"]
    scores = result["baselines"][name] if result["registered"] else result["metrics"]
    return {"registered": name, "ndcg_at_10": scores["ndcg_at_10"],
            "popularity_ndcg_at_10": result["baselines"]["popularity"]["ndcg_at_10"]}


def _described(run: dict) -> str:
    model = run["model"]
    return (f"gate: {'promoted' if run['promoted'] else 'refused'} ({run['reason']}); registered {model['registered']}, "
            f"NDCG@10 {model['ndcg_at_10']:.4f} against popularity's {model['popularity_ndcg_at_10']:.4f}")


def _run_seconds(run: dict) -> float | None:
    from datetime import datetime

    if not run.get("start_date") or not run.get("end_date"):
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(run["end_date"]) - parse(run["start_date"])).total_seconds(), 1)


def pipeline(settings: Settings, root: Path | None = None, dataset: str = "ml-100k",
             source: Path | None = None) -> Iterator[str]:
    from control.bench.helpers import bench_home

    with environment(PIPELINE_SETTINGS):
        a = bench_home(get_settings(data_dir=settings.data_dir), "pipeline-direct", root)
        b = bench_home(get_settings(data_dir=settings.data_dir), "pipeline-airflow", root)
        for home in (a, b):
            sizes = write_landing(home, dataset, source)
        yield f"{dataset}: {sizes['items']} items, {sizes['events']} events in the landing folder"
        first = direct(a)
        first["model"] = trained_against_popularity(a)
        steps = ", ".join(f"{name} {seconds} s" for name, seconds in first["steps"].items())
        yield f"direct: {first['seconds']:.1f} s to a served champion ({steps}); {_described(first)}"
        second = through_airflow(b)
        second["model"] = trained_against_popularity(b)
        runs = ", ".join(f"{dag_id} {run['seconds']} s" for dag_id, run in second["runs"].items())
        yield (f"airflow: {second['seconds']:.1f} s to a served champion ({runs}); stack start "
               f"{second['start_seconds']:.1f} s; {_described(second)}")
    for run in (first, second):
        if not run["promoted"] or run["model"]["ndcg_at_10"] <= run["model"]["popularity_ndcg_at_10"]:
            raise RuntimeError("a run's model did not pass the gate or beat popularity: the comparison would not "
                               "be of a model worth serving")
    yield json.dumps({"direct_seconds": round(first["seconds"], 1), "airflow_seconds": round(second["seconds"], 1),
                      "ratio": round(second["seconds"] / first["seconds"], 3)})
