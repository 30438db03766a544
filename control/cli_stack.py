"""The local stack's commands: `longview serve`, `airflow`, `ui`, `up`, `status` and `down`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from control.cli_output import fail, print_json
from longview.settings import get_settings

app = typer.Typer()


@app.command()
def serve(port: Annotated[int | None, typer.Option(min=1, max=65535, help="default: the stack's service port, "
                                                                          "3000")] = None) -> None:
    """Serve the @champion model over HTTP on 127.0.0.1 (Swagger UI at the root URL)."""
    from control.service_process import bentoml_command, service_env

    settings = get_settings()
    port = port or settings.stack.service_port
    os.chdir(settings.project_root)
    os.execve(bentoml_command(port)[0], bentoml_command(port), service_env(settings))


def _airflow(args: list[str]) -> int:
    from control.stack import airflow_environment

    settings = get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    # `airflow standalone` starts its components as `airflow …` found on PATH: the venv's comes first.
    return subprocess.call([str(Path(sys.executable).with_name("airflow")), *args], env=airflow_environment(settings))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run any airflow command on this data home (e.g. `longview airflow dags test longview_loop`)."""
    raise typer.Exit(_airflow(ctx.args))


@app.command()
def ui(name: Annotated[str, typer.Argument(help="mlflow, airflow, feast or service")]) -> None:
    """Run one of the UIs in the foreground on this data home, on 127.0.0.1 and its stack port
    (`longview up` starts them all, detached)."""
    from control.stack import components

    if name == "airflow":
        raise typer.Exit(_airflow(["standalone"]))
    component_of = {"mlflow": "mlflow", "feast": "feast-ui", "service": "service"}  # the stack's other parts are not UIs
    if name not in component_of:
        fail(f"unknown UI {name!r}: choose mlflow, airflow, feast or service", 2)
    component = next(c for c in components(get_settings()) if c.name == component_of[name])
    raise typer.Exit(subprocess.call(component.argv, env=component.env, cwd=component.cwd))


@app.command()
def up() -> None:
    """Start the local stack detached on 127.0.0.1: Airflow (API server and UI, scheduler, DAG
    processor, triggerer), the MLflow server, the Feast UI and the service; returns once all are
    healthy and prints their URLs and where the Airflow admin's password is."""
    from control import stack

    try:
        result = stack.up(get_settings(), say=lambda line: typer.echo(line, err=True))
    except stack.StackError as exc:
        fail(str(exc))
    for name, url in result["urls"].items():
        typer.echo(f"{name:8} {url}", err=True)
    typer.echo(f"Airflow login: admin, password in {result['airflow_password_file']}", err=True)
    print_json(result)


@app.command()
def status() -> None:
    """What of the local stack runs, and whether each part answers its health check."""
    from control import stack

    print_json(stack.status(get_settings()))


@app.command()
def down() -> None:
    """Stop every process of the local stack; nothing is left listening."""
    from control import stack

    try:
        print_json(stack.down(get_settings(), say=lambda line: typer.echo(line, err=True)))
    except stack.StackError as exc:
        fail(str(exc))
