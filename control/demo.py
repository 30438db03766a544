"""`longview demo`: the whole loop on synthetic data, ending in real HTTP requests to the service."""

from __future__ import annotations

import json
import sys

import httpx
import typer

from control import pipeline
from control.service_process import running_service
from control.stack import urls as stack_urls
from longview.settings import Settings

# A few rows that break the contract, beside good ones, to show quarantine at work.
BAD_BATCH = """event_id,user_id,item_id,event_type,timestamp,value,session_id
demo-bad-1,,i0001,click,2024-03-02T10:00:00+00:00,,demo
demo-bad-2,u0001,i0001,view,2024-03-02T10:00:05+00:00,-30,demo
demo-bad-3,u0001,i0001,rating,2999-01-01T00:00:00+00:00,4,demo
demo-bad-4,u0001,no-such-item,click,2024-03-02T10:00:00+00:00,,demo
demo-good-1,u0001,i0002,click,2024-03-02T10:01:00+00:00,,demo
demo-good-2,u0001,i0002,view,2024-03-02T10:04:00+00:00,180,demo
demo-good-3,u0002,i0003,click,2024-03-02T11:00:00+00:00,,demo
demo-good-4,u0002,i0003,view,2024-03-02T11:02:00+00:00,95.5,demo
demo-good-5,u0003,i0004,click,2024-03-02T12:00:00+00:00,,demo
"""


def _step(title: str) -> None:
    typer.secho(f"\n== {title}", bold=True)


def _show(result: object) -> None:
    from dataclasses import asdict, is_dataclass

    typer.echo(json.dumps(asdict(result) if is_dataclass(result) else result, default=str))


def run_demo(settings: Settings, epochs: int | None = None) -> None:
    settings.ensure_dirs()
    _step(f"1/6 generate synthetic data into {settings.landing_dir}")
    for path in pipeline.generate_synthetic(settings):
        typer.echo(f"  {path}")
    (settings.landing_dir / "events-zz-with-errors.csv").write_text(BAD_BATCH)

    _step("2/6 ingest: validate with Great Expectations, quarantine bad rows")
    for summary in pipeline.ingest_landing(settings):
        _show(summary)
    _step("3/6 features: build tables, feast apply, materialise online")
    _show(pipeline.build_features(settings))
    _step(f"4/6 train: the {settings.model} model on a temporal split, beside every baseline, MLflow @challenger")
    _show(pipeline.train(settings, epochs))
    _step("5/6 promote: the gate moves @champion only if the challenger passes every rule")
    promotion = pipeline.promote(settings, trigger="demo")
    _show(promotion)

    _step("6/6 serve the @champion with BentoML and query it over HTTP")
    requests = [
        {"user_id": "u0001", "k": 5},
        {"user_id": "u0042", "k": 3},
        {"user_id": "someone-new", "k": 3},
        {"user_id": "u0001", "k": 0},
    ]
    with running_service(settings) as url:
        typer.echo(f"  service at {url}")
        for body in requests:
            response = httpx.post(f"{url}/recommend", json=body, timeout=30)
            typer.echo(f"POST /recommend {json.dumps(body)} -> {response.status_code}")
            try:
                typer.echo(json.dumps(response.json(), indent=None))
            except ValueError:
                typer.echo(response.text)
    typer.echo("  service stopped")

    exe = sys.argv[0] if sys.argv and sys.argv[0].endswith("longview") else "longview"
    home = f"--home {settings.home}"
    _step("reopen the UIs on this data")
    urls = stack_urls(settings)
    typer.echo(f"  all of them, detached:           {exe} {home} up   (and `down`)")
    typer.echo(f"  MLflow (runs, plots, registry):  {exe} {home} ui mlflow    -> {urls['mlflow']}")
    typer.echo(f"  Airflow (the DAGs):              {exe} {home} ui airflow   -> {urls['airflow']}")
    typer.echo(f"  Feast (features):                {exe} {home} ui feast     -> {urls['feast']}")
    typer.echo(f"  the service + Swagger page:      {exe} {home} serve        -> {urls['service']}")
