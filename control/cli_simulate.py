"""`longview simulate`: policies served to simulated users (control/simulation.py)."""

from __future__ import annotations

import json
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
    sensitivity: Annotated[bool, typer.Option(help="rerun under every variant of the user model (each parameter "
                                                   "x0.5 and x1.5, the effects at their interval ends): do the "
                                                   "verdicts against sequence hold?")] = False,
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
        if sensitivity:
            if "sequence" not in {p.name for p in served}:
                raise ValueError("--sensitivity compares every policy with sequence: include it in --policies")
            for line in simulation.sensitivity(settings, served, days or options.days, seeds or options.seeds,
                                               users or options.users):
                typer.echo(line)
            return
        result = simulation.simulate(settings, served, days or options.days, seeds or options.seeds,
                                     users or options.users, "tuning" if tuning else "reported")
    except (ValueError, FileNotFoundError) as exc:
        fail(one_line(exc), 2)
    for line in simulation.table(result):
        typer.echo(line)
    typer.echo(f"mlflow run: {simulation.log_simulation(settings, result)}")
    typer.echo(simulation.summary_json(result))


tune_app = typer.Typer(help="Choose settings by measurement.")


@tune_app.command("engagement")
def tune_engagement(
    version: Annotated[str | None, typer.Option(help="the registered sequence model (default: @challenger, "
                                                     "else @champion)")] = None,
    days: Annotated[int | None, typer.Option(min=1, max=365, help="simulated days (default: the setting, 30)")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, max=100, help="tuning seeds (default: the setting, 3)")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="tuning users (default: the setting, 300)")] = None,
    max_ndcg_loss: Annotated[float, typer.Option(min=0.0, max=1.0, help="the most relative NDCG@10 a policy may "
                                                                      "lose on validation")] = 0.03,
    dry_run: Annotated[bool, typer.Option(help="print the choice; tag and log nothing")] = False,
) -> None:
    """Choose the engagement policy's weights for a version: NDCG@10 on the real validation split
    (at most --max-ndcg-loss below the model's own ranking), then the highest simulated retention
    among the simulator's tuning users and seeds (never the reported ones). The choice becomes the
    version's `engagement_weights` tag, which the service and the gate serve it with; the evidence
    goes into its MLflow run. Ends with one JSON line."""
    from control import tuning

    settings = get_settings()
    try:
        result = tuning.tune_engagement(settings, version, days=days, seeds=seeds, users=users,
                                        max_ndcg_loss=max_ndcg_loss)
    except (ValueError, FileNotFoundError) as exc:
        fail(one_line(exc), 2)
    for line in tuning.table(result):
        typer.echo(line)
    if not dry_run:
        run_id = tuning.record(settings, result)
        if result.chosen is not None:
            typer.echo(f"version {result.version} tagged engagement_weights; evidence in mlflow run: {run_id}")
    typer.echo(json.dumps(result.summary()))
