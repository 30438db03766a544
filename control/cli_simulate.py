"""`longview simulate`: policies served to simulated users (control/simulation.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control.cli_output import fail, one_line
from longview.settings import get_settings

app = typer.Typer()


@app.command()
def simulate(
    policies: Annotated[str, typer.Option(help="comma-separated: random, popularity, recent_popularity, sequence, "
                                               "engagement, or vN (registered version N as served)")]
    = "random,popularity,recent_popularity,sequence,engagement",
    days: Annotated[int | None, typer.Option(min=1, max=365, help="simulated days (default: the setting, 30)")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, max=100, help="runs per policy (default: the setting, 3)")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="simulated users (default: the setting, 300)")] = None,
    version: Annotated[str | None, typer.Option(help="the registered sequence model (default: @champion)")] = None,
    tuning: Annotated[bool, typer.Option(help="the tuning users and seeds instead of the reported ones")] = False,
    calibrate: Annotated[Path | None, typer.Option(help="calibrate the user model on this data home's events, "
                                                        "freeze it in this file, and stop")] = None,
) -> None:
    """Serve each policy to simulated users calibrated on real return gaps; prints a table with 95%
    intervals over seeds and ends with one JSON line. The user model is the frozen file
    (LONGVIEW_SIMULATION__USER_MODEL; its digest is printed); the retention plot goes to MLflow."""
    from control import simulation
    from control.cli_output import print_json

    settings = get_settings()
    try:
        if calibrate is not None:
            print_json(simulation.calibrate(settings, calibrate))
            return
        options = settings.simulation
        served = simulation.policies(settings, [p.strip() for p in policies.split(",") if p.strip()], version)
        result = simulation.simulate(settings, served, days or options.days, seeds or options.seeds,
                                     users or options.users, "tuning" if tuning else "reported")
    except (ValueError, FileNotFoundError) as exc:
        fail(one_line(exc), 2)
    for line in simulation.table(result):
        typer.echo(line)
    typer.echo(f"mlflow run: {simulation.log_simulation(settings, result)}")
    typer.echo(simulation.summary_json(result))
