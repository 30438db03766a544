"""The `longview` command: one sub-command per step of the loop, plus the demo and the UIs."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from control import cli_bench, cli_simulate, cli_stack
from control.cli_output import fail, one_line, print_json, run_step, unexpected
from longview.settings import get_settings

app = typer.Typer(help="Longview: a recommender platform that optimises long-term engagement.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

@app.callback()
def main(home: Annotated[Path | None, typer.Option(help="data home (default: $LONGVIEW_HOME or ./.longview)")] = None,
         params: Annotated[Path | None, typer.Option(help="a parameters file (DVC's params.yaml) whose sections "
                                                          "override the profile's settings ($LONGVIEW_PARAMS)")] = None,
         ) -> None:
    if home is not None:
        os.environ["LONGVIEW_HOME"] = str(home.resolve())
    if params is not None:
        if not params.is_file():
            fail(f"the parameters file {params} does not exist", 2)
        os.environ["LONGVIEW_PARAMS"] = str(params.resolve())
    try:  # one clear line for a bad value from the environment, a profile or a params file
        get_settings()
    except ValueError as exc:
        fail(f"invalid settings: {one_line(exc)}", 2)
    _CREATED[:] = _ensure_databases()


_CREATED: list[str] = []  # the databases this invocation made (what `longview init` reports)


def _ensure_databases() -> list[str]:
    """The production profile's PostgreSQL databases, made where missing before any command needs
    them (a stop with one line naming what to create where they cannot be)."""
    from longview.databases import DatabaseUnavailable, ensure_databases, required_databases

    try:
        wanted = required_databases(get_settings())
    except ValueError:
        return []  # bad settings: the command itself says what is wrong
    try:
        return ensure_databases(wanted)
    except DatabaseUnavailable as exc:
        fail(str(exc))
        return []


def entrypoint(prog_name: str = "longview") -> None:
    """The console script: run the command, then Python's exit handlers, then end the process.

    Arrow's native thread pools (parquet reads: pandas, Feast) can abort an otherwise finished process
    at interpreter teardown with "terminate called without an active exception" (apache/arrow#34314),
    which turns a command that did all its work into exit -6. Python's own clean-up (atexit handlers,
    logging, MLflow, non-daemon threads) still runs here; only the C++ static destructors are skipped."""
    import atexit
    import threading

    try:
        app(prog_name=prog_name)
        code: int = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # What the interpreter itself does at exit, in its order: threading's exit hooks (they tell
    # concurrent.futures' workers to stop) and the join of non-daemon threads, then atexit handlers.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that went away (`| head`) or a closed stream
            pass
    os._exit(code)


@app.command()
def generate(
    out: Annotated[Path | None, typer.Option(help="folder to write to (default: the landing folder)")] = None,
    batches: Annotated[int, typer.Option(min=1, max=100)] = 2,
) -> None:
    """Write the synthetic catalogue and event batches (deterministic with the seed setting)."""
    from control.pipeline import generate_synthetic

    paths = generate_synthetic(get_settings(), out, batches)
    print_json({"written": [str(p) for p in paths]})


@app.command("ingest")
def ingest_cmd(
    path: Annotated[Path | None, typer.Argument(help="a CSV or parquet file; none: every file in the landing folder")] = None,
    table: Annotated[str, typer.Option(help="events, items, users or tags")] = "events",
    replay_quarantine: Annotated[str | None, typer.Option(help="validate a quarantined batch again, by batch id")] = None,
) -> None:
    """Validate a batch with Great Expectations: good rows to the store, bad rows to quarantine.

    The last line of output is a JSON summary with received, accepted, quarantined and report."""
    from control.pipeline import ingest_file, ingest_landing, replay
    from longview.ingestion import BatchRejected

    settings = get_settings()
    try:
        if replay_quarantine is not None:
            print_json(replay(settings, replay_quarantine).summary())
            return
        if path is None:
            for summary in ingest_landing(settings):
                print_json(summary)
            return
        result = ingest_file(settings, path, table)
    except FileNotFoundError as exc:
        fail(str(exc), 2)
    except ValueError as exc:
        fail(str(exc), 2)
    except BatchRejected as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        print_json(exc.result.summary())
        raise typer.Exit(1) from None
    except Exception as exc:
        unexpected(exc)
    print_json(result.summary())


data_app = typer.Typer(help="Real datasets: find or download, map to the canonical tables, validate, ingest.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(cli_bench.app)  # `longview bench`
app.add_typer(cli_stack.app)  # serve, airflow, ui, up, status, down
app.add_typer(cli_simulate.app)  # `longview simulate`
app.add_typer(cli_simulate.tune_app, name="tune")  # `longview tune engagement`


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest, "
                                              "ml-latest-small, ml-1m-sasrec, instacart-sample or synthetic")],
    source: Annotated[Path | None, typer.Option(help="a folder holding the dataset")] = None,
) -> None:
    """Prepare a dataset: look in --source, then LONGVIEW_DATA_DIR/NAME, then download.

    The last line is a JSON summary: the events table's counts at the top level, other tables under `tables`."""
    from control.pipeline import DatasetRejected, prepare_dataset
    from longview.datasets import DatasetNotFound, UnknownDataset, spec

    settings = get_settings()
    try:
        print_json(prepare_dataset(settings, spec(dataset), source))
    except (DatasetNotFound, UnknownDataset) as exc:
        fail(str(exc), 2)
    except DatasetRejected as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        print_json(exc.summary)
        raise typer.Exit(1) from None
    except Exception as exc:  # no traceback reaches the user: one line, and a way to get the details
        unexpected(exc)


@app.command()
def features() -> None:
    """Build the user and item feature tables, `feast apply` the repo and materialise online."""
    from control import pipeline

    run_step(pipeline.build_features)


@app.command()
def train(epochs: Annotated[int | None, typer.Option(min=0, help="override the sequence model's epochs")] = None,
          run_key: Annotated[str | None, typer.Option(help="an id for this run (1-200 characters): run again with "
                                                     "the same key, it registers nothing new")] = None) -> None:
    """Train the `model` setting's model, evaluate it beside every baseline, register it as @challenger.

    Runs under `torchrun --nproc_per_node N` too: each rank trains on its own users, rank 0 registers."""
    from control import pipeline

    if run_key is not None and not 1 <= len(run_key.strip()) <= 200:
        fail("--run-key must be 1-200 characters", 2)
    run_step(lambda s: pipeline.train(s, epochs, run_key))


@app.command()
def promote(
    rollback: Annotated[bool, typer.Option("--rollback", help="point @champion back at the previous champion")] = False,
    to_version: Annotated[str | None, typer.Option(help="with --rollback: the version to restore")] = None,
) -> None:
    """Move @champion to @challenger if it passes every rule of the gate on the same holdout; or,
    with --rollback, restore the previous (or a named) champion. Every decision goes to the audit
    log (LONGVIEW_HOME/registry/audit.jsonl and the version's tags)."""
    from control import pipeline

    if to_version is not None and not rollback:
        fail("--to-version goes with --rollback", 2)
    if to_version is not None and not re.fullmatch(r"[1-9][0-9]{0,9}", to_version.strip()):
        fail(f"--to-version must be a version number, got {to_version!r}", 2)
    if rollback:
        run_step(lambda s: pipeline.rollback(s, to_version))
    else:
        run_step(pipeline.promote)


@app.command()
def init() -> None:
    """Prepare the data home and, on the production profile, the PostgreSQL databases it needs
    (Feast registry, MLflow, Airflow), creating those missing; prints what it made."""
    from longview.databases import required_databases

    settings = get_settings()
    settings.ensure_dirs()
    print_json({"home": str(settings.home), "profile": settings.profile,
                 "databases": [d.url.rsplit("/", 1)[-1] for d in required_databases(settings)], "created": _CREATED})


@app.command()
def restore() -> None:
    """After `dvc pull` on a fresh clone: rebuild the online store from the pulled feature tables and
    register the pulled champion behind @champion, so `longview serve` answers as where it was pushed."""
    from control import pipeline

    run_step(pipeline.restore)


@app.command()
def monitor(service_url: Annotated[str | None, typer.Option(help="the service's base URL (default: "
                                                               "the stack's, http://127.0.0.1:3000)")] = None) -> None:
    """The daily check: feature drift (PSI) of the recent days against before, the service's health
    from its /metrics, and the return rate of users who send feedback. Writes
    HOME/reports/monitor-TIME.json and an MLflow run (experiment longview-monitor); the last line
    is the report, with `alarm` and its `reasons`."""
    from control import monitoring
    from control.service_metrics import check_service_url

    if service_url is not None:
        try:
            check_service_url(service_url)
        except ValueError as exc:
            fail(str(exc), 2)
    run_step(lambda s: monitoring.monitor(s, service_url))


@app.command()
def run(epochs: Annotated[int | None, typer.Option(min=0)] = None) -> None:
    """The batch loop on what is in the landing folder: ingest, features, train, promote."""
    from control import pipeline

    settings = get_settings()
    for summary in pipeline.ingest_landing(settings):
        print_json(summary)
    print_json(pipeline.build_features(settings))
    print_json(pipeline.train(settings, epochs))
    print_json(pipeline.promote(settings))


@app.command()
def demo(epochs: Annotated[int | None, typer.Option(min=0)] = None) -> None:
    """Generate data, run the whole loop, serve the champion and query it over HTTP."""
    from control.demo import run_demo

    run_demo(get_settings(), epochs)
