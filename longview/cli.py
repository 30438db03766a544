"""The `longview` command: one sub-command per step of the loop, plus the demo and the UIs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated

import typer

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
            _fail(f"the parameters file {params} does not exist", 2)
        os.environ["LONGVIEW_PARAMS"] = str(params.resolve())
    try:  # one clear line for a bad value from the environment, a profile or a params file
        get_settings()
    except ValueError as exc:
        _fail(f"invalid settings: {_one_line(exc)}", 2)
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
        _fail(str(exc))
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


def _print_json(result: object) -> None:
    payload = asdict(result) if is_dataclass(result) else result
    typer.echo(json.dumps(payload, default=str))


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def generate(
    out: Annotated[Path | None, typer.Option(help="folder to write to (default: the landing folder)")] = None,
    batches: Annotated[int, typer.Option(min=1, max=100)] = 2,
) -> None:
    """Write the synthetic catalogue and event batches (deterministic with the seed setting)."""
    from longview.pipeline import generate_synthetic

    paths = generate_synthetic(get_settings(), out, batches)
    _print_json({"written": [str(p) for p in paths]})


@app.command("ingest")
def ingest_cmd(
    path: Annotated[Path | None, typer.Argument(help="a CSV or parquet file; none: every file in the landing folder")] = None,
    table: Annotated[str, typer.Option(help="events, items, users or tags")] = "events",
    replay_quarantine: Annotated[str | None, typer.Option(help="validate a quarantined batch again, by batch id")] = None,
) -> None:
    """Validate a batch with Great Expectations: good rows to the store, bad rows to quarantine.

    The last line of output is a JSON summary with received, accepted, quarantined and report."""
    from longview.ingestion import BatchRejected
    from longview.pipeline import ingest_file, ingest_landing, replay

    settings = get_settings()
    try:
        if replay_quarantine is not None:
            _print_json(replay(settings, replay_quarantine).summary())
            return
        if path is None:
            for summary in ingest_landing(settings):
                _print_json(summary)
            return
        result = ingest_file(settings, path, table)
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(str(exc), 2)
    except BatchRejected as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        _print_json(exc.result.summary())
        raise typer.Exit(1) from None
    except Exception as exc:
        _unexpected(exc)
    _print_json(result.summary())


data_app = typer.Typer(help="Real datasets: find or download, map to the canonical tables, validate, ingest.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Option(help="ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, ml-latest, "
                                              "ml-latest-small, ml-1m-sasrec, instacart-sample or synthetic")],
    source: Annotated[Path | None, typer.Option(help="a folder holding the dataset")] = None,
) -> None:
    """Prepare a dataset: look in --source, then LONGVIEW_DATA_DIR/NAME, then download.

    The last line is a JSON summary: the events table's counts at the top level, other tables under `tables`."""
    from longview.datasets import DatasetNotFound, UnknownDataset
    from longview.pipeline import DatasetRejected, prepare_dataset

    settings = get_settings()
    try:
        _print_json(prepare_dataset(settings, dataset, source))
    except (DatasetNotFound, UnknownDataset) as exc:
        _fail(str(exc), 2)
    except DatasetRejected as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        _print_json(exc.summary)
        raise typer.Exit(1) from None
    except Exception as exc:  # no traceback reaches the user: one line, and a way to get the details
        _unexpected(exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _unexpected(exc: Exception) -> None:
    if os.environ.get("LONGVIEW_DEBUG"):
        raise exc
    _fail(f"{type(exc).__name__}: {_one_line(exc)} (set LONGVIEW_DEBUG=1 for the traceback)")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="validation, features, contract, accuracy, "
                                                         "long-term-value, serving, quantization or pipeline")],
    root: Annotated[Path | None, typer.Option(help="where the benchmark's own data homes go (default: HOME/bench)")] = None,
    examples: Annotated[int, typer.Option(min=1, help="contract: how many random examples to try")] = 500,
    dataset: Annotated[str | None, typer.Option(help="accuracy, long-term-value, serving, quantization, pipeline: the "
                                                     "dataset, as for `longview data prepare` (default ml-1m-sasrec; "
                                                     "long-term-value: ml-100k)")] = None,
    source: Annotated[Path | None, typer.Option(help="accuracy, long-term-value, quantization, pipeline: a folder holding the dataset")] = None,
    protocol: Annotated[str, typer.Option(help="accuracy: loo (leave-one-out) or temporal")] = "loo",
    dump_topk: Annotated[Path | None, typer.Option(help="accuracy: write each test user's top 10 here")] = None,
    models: Annotated[str | None, typer.Option(help="accuracy: comma-separated models (default: all)")] = None,
    reuse: Annotated[bool, typer.Option(help="serving: reuse the data home an earlier run prepared (its model "
                                              "and features; a change to the model needs a fresh run)")] = False,
    load_seconds: Annotated[int, typer.Option(min=0, max=3600, help="serving: the Locust load test's length "
                                                                    "(0: none)")] = 60,
    scale_items: Annotated[int, typer.Option(min=0, max=100_000_000, help="serving: items in the in-process "
                                                                         "scoring path's catalogue (0: none)")] = 1_000_000,
) -> None:
    """Run a benchmark on the real data in LONGVIEW_DATA_DIR; prints one line per figure."""
    from longview.bench import BENCHMARKS, BenchmarkError
    from longview.contract_fuzz import ContractViolation
    from longview.datasets import DatasetNotFound, UnknownDataset

    if name not in BENCHMARKS:
        _fail(f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}", 2)
    options: dict[str, object] = {"examples": examples} if name == "contract" else {}
    if name == "accuracy":
        if protocol not in ("loo", "temporal"):
            _fail(f"unknown protocol {protocol!r}: expected loo or temporal", 2)
        options = {"dataset": dataset or "ml-1m-sasrec", "source": source, "protocol": protocol, "dump_topk": dump_topk,
                   "models": models.split(",") if models else None}
    if name == "long-term-value":
        options = {"dataset": dataset or "ml-100k", "source": source}
    if name == "serving":
        options = {"dataset": dataset or "ml-1m-sasrec", "reuse": reuse, "load_seconds": load_seconds,
                   "scale_items": scale_items}
    if name == "quantization":
        options = {"dataset": dataset or "ml-1m-sasrec", "source": source}
    if name == "pipeline":
        options = {"dataset": dataset or "ml-100k", "source": source}
    try:
        for line in BENCHMARKS[name](get_settings(), root, **options):
            typer.echo(line)
    except (DatasetNotFound, UnknownDataset, BenchmarkError) as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(_one_line(exc), 2)
    except ContractViolation as exc:
        _fail(f"the data contract was broken: {_one_line(exc)}")
    except RuntimeError as exc:  # e.g. the pipeline benchmark's stack would not start
        _fail(_one_line(exc))


@app.command()
def features() -> None:
    """Build the user and item feature tables, `feast apply` the repo and materialise online."""
    from longview.pipeline import build_features

    _run_step(lambda s: build_features(s))


@app.command()
def train(epochs: Annotated[int | None, typer.Option(min=0, help="override the sequence model's epochs")] = None,
          run_key: Annotated[str | None, typer.Option(help="an id for this run (1-200 characters): run again with "
                                                     "the same key, it registers nothing new")] = None) -> None:
    """Train the `model` setting's model, evaluate it beside every baseline, register it as @challenger.

    Runs under `torchrun --nproc_per_node N` too: each rank trains on its own users, rank 0 registers."""
    from longview.pipeline import train as train_step

    if run_key is not None and not 1 <= len(run_key.strip()) <= 200:
        _fail("--run-key must be 1-200 characters", 2)
    _run_step(lambda s: train_step(s, epochs, run_key))


@app.command()
def promote(
    rollback: Annotated[bool, typer.Option("--rollback", help="point @champion back at the previous champion")] = False,
    to_version: Annotated[str | None, typer.Option(help="with --rollback: the version to restore")] = None,
) -> None:
    """Move @champion to @challenger if it passes every rule of the gate on the same holdout; or,
    with --rollback, restore the previous (or a named) champion. Every decision goes to the audit
    log (LONGVIEW_HOME/registry/audit.jsonl and the version's tags)."""
    from longview import pipeline

    if to_version is not None and not rollback:
        _fail("--to-version goes with --rollback", 2)
    if to_version is not None and not re.fullmatch(r"[1-9][0-9]{0,9}", to_version.strip()):
        _fail(f"--to-version must be a version number, got {to_version!r}", 2)
    if rollback:
        _run_step(lambda s: pipeline.rollback(s, to_version))
    else:
        _run_step(pipeline.promote)


@app.command()
def init() -> None:
    """Prepare the data home and, on the production profile, the PostgreSQL databases it needs
    (Feast registry, MLflow, Airflow), creating those missing; prints what it made."""
    from longview.databases import required_databases

    settings = get_settings()
    settings.ensure_dirs()
    _print_json({"home": str(settings.home), "profile": settings.profile,
                 "databases": [d.url.rsplit("/", 1)[-1] for d in required_databases(settings)], "created": _CREATED})


@app.command()
def restore() -> None:
    """After `dvc pull` on a fresh clone: rebuild the online store from the pulled feature tables and
    register the pulled champion behind @champion, so `longview serve` answers as where it was pushed."""
    from longview import pipeline

    _run_step(pipeline.restore)


@app.command()
def monitor(service_url: Annotated[str | None, typer.Option(help="the service's base URL (default: "
                                                               "the stack's, http://127.0.0.1:3000)")] = None) -> None:
    """The daily check: feature drift (PSI) of the recent days against before, the service's health
    from its /metrics, and the return rate of users who send feedback. Writes
    HOME/reports/monitor-TIME.json and an MLflow run (experiment longview-monitor); the last line
    is the report, with `alarm` and its `reasons`."""
    from longview.monitoring import monitor as check
    from longview.service_metrics import check_service_url

    if service_url is not None:
        try:
            check_service_url(service_url)
        except ValueError as exc:
            _fail(str(exc), 2)
    _run_step(lambda s: check(s, service_url))


def _run_step(step) -> None:
    from longview.online_features import FeatureStoreError

    try:
        _print_json(step(get_settings()))
    except (ValueError, FeatureStoreError) as exc:
        _fail(str(exc))


@app.command()
def run(epochs: Annotated[int | None, typer.Option(min=0)] = None) -> None:
    """The batch loop on what is in the landing folder: ingest, features, train, promote."""
    from longview import pipeline

    settings = get_settings()
    for summary in pipeline.ingest_landing(settings):
        _print_json(summary)
    _print_json(pipeline.build_features(settings))
    _print_json(pipeline.train(settings, epochs))
    _print_json(pipeline.promote(settings))


@app.command()
def serve(port: Annotated[int | None, typer.Option(min=1, max=65535, help="default: the stack's service port, "
                                                                          "3000")] = None) -> None:
    """Serve the @champion model over HTTP on 127.0.0.1 (Swagger UI at the root URL)."""
    from longview.service_process import bentoml_command, service_env

    settings = get_settings()
    port = port or settings.stack.service_port
    os.chdir(settings.project_root)
    os.execve(bentoml_command(port)[0], bentoml_command(port), service_env(settings))


def _airflow(args: list[str]) -> int:
    from longview.stack import airflow_environment

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
    from longview.stack import components

    if name == "airflow":
        raise typer.Exit(_airflow(["standalone"]))
    component_of = {"mlflow": "mlflow", "feast": "feast-ui", "service": "service"}  # the stack's other parts are not UIs
    if name not in component_of:
        _fail(f"unknown UI {name!r}: choose mlflow, airflow, feast or service", 2)
    component = next(c for c in components(get_settings()) if c.name == component_of[name])
    raise typer.Exit(subprocess.call(component.argv, env=component.env, cwd=component.cwd))


@app.command()
def up() -> None:
    """Start the local stack detached on 127.0.0.1: Airflow (API server and UI, scheduler, DAG
    processor, triggerer), the MLflow server, the Feast UI and the service; returns once all are
    healthy and prints their URLs and where the Airflow admin's password is."""
    from longview.stack import StackError, up as start

    try:
        result = start(get_settings(), say=lambda line: typer.echo(line, err=True))
    except StackError as exc:
        _fail(str(exc))
    for name, url in result["urls"].items():
        typer.echo(f"{name:8} {url}", err=True)
    typer.echo(f"Airflow login: admin, password in {result['airflow_password_file']}", err=True)
    _print_json(result)


@app.command()
def status() -> None:
    """What of the local stack runs, and whether each part answers its health check."""
    from longview.stack import status as report

    _print_json(report(get_settings()))


@app.command()
def down() -> None:
    """Stop every process of the local stack; nothing is left listening."""
    from longview.stack import StackError, down as stop

    try:
        _print_json(stop(get_settings(), say=lambda line: typer.echo(line, err=True)))
    except StackError as exc:
        _fail(str(exc))


@app.command()
def demo(epochs: Annotated[int | None, typer.Option(min=0)] = None) -> None:
    """Generate data, run the whole loop, serve the champion and query it over HTTP."""
    from longview.demo import run_demo

    run_demo(get_settings(), epochs)
