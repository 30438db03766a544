"""`longview bench NAME`: the benchmarks of control/bench, with their options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control.cli_output import fail, one_line
from longview.settings import get_settings

app = typer.Typer()


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="validation, features, contract, accuracy, long-term-value, "
                                             "long-term, off-policy, serving, quantization, pipeline or layout")],
    root: Annotated[Path | None, typer.Option(help="where the benchmark's own data homes go (default: HOME/bench)")] = None,
    examples: Annotated[int, typer.Option(min=1, help="contract: how many random examples to try")] = 500,
    dataset: Annotated[str | None, typer.Option(help="accuracy, long-term-value, serving, quantization, pipeline: the "
                                                     "dataset, as for `longview data prepare` (default ml-1m-sasrec; "
                                                     "long-term-value: ml-100k)")] = None,
    source: Annotated[Path | None, typer.Option(help="accuracy, long-term-value, long-term, off-policy, quantization, "
                                                     "pipeline: a folder holding the dataset")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="long-term: simulated users (default: the setting)")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, max=100, help="long-term: seeds (default: the setting)")] = None,
    days: Annotated[int | None, typer.Option(min=1, max=365, help="long-term: simulated days (default: the setting)")] = None,
    episodes: Annotated[int, typer.Option(min=1, max=100_000, help="long-term: RecSim users per seed")] = 50,
    tune: Annotated[bool, typer.Option(help="long-term: choose the engagement weights first, as `longview tune "
                                            "engagement` does (validation, tuning users and seeds)")] = True,
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
    from control.bench import BENCHMARKS, BenchmarkError, benchmark
    from control.bench.contract_fuzz import ContractViolation
    from longview.datasets import DatasetNotFound, UnknownDataset

    if name not in BENCHMARKS:
        fail(f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}", 2)
    options: dict[str, object] = {"examples": examples} if name == "contract" else {}
    if name == "accuracy":
        if protocol not in ("loo", "temporal"):
            fail(f"unknown protocol {protocol!r}: expected loo or temporal", 2)
        options = {"dataset": dataset or "ml-1m-sasrec", "source": source, "protocol": protocol, "dump_topk": dump_topk,
                   "models": models.split(",") if models else None}
    if name == "long-term-value":
        options = {"dataset": dataset or "ml-100k", "source": source}
    if name == "off-policy":
        options = {"source": source}
    if name == "long-term":
        options = {"source": source, "users": users, "seeds": seeds, "days": days, "episodes": episodes, "tune": tune}
    if name == "serving":
        options = {"dataset": dataset or "ml-1m-sasrec", "reuse": reuse, "load_seconds": load_seconds,
                   "scale_items": scale_items}
    if name == "quantization":
        options = {"dataset": dataset or "ml-1m-sasrec", "source": source}
    if name == "pipeline":
        options = {"dataset": dataset or "ml-100k", "source": source}
    try:
        for line in benchmark(name)(get_settings(), root, **options):
            typer.echo(line)
    except (DatasetNotFound, UnknownDataset, BenchmarkError) as exc:
        fail(str(exc), 2)
    except ValueError as exc:
        fail(one_line(exc), 2)
    except ContractViolation as exc:
        fail(f"the data contract was broken: {one_line(exc)}")
    except RuntimeError as exc:  # e.g. the pipeline benchmark's stack would not start
        fail(one_line(exc))
