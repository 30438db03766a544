"""What every `longview` command shares: the JSON result line, and one clear line for a failure."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass

import typer

from longview.settings import get_settings


def print_json(result: object) -> None:
    payload = asdict(result) if is_dataclass(result) else result
    typer.echo(json.dumps(payload, default=str))


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def unexpected(exc: Exception) -> None:
    if os.environ.get("LONGVIEW_DEBUG"):
        raise exc
    fail(f"{type(exc).__name__}: {one_line(exc)} (set LONGVIEW_DEBUG=1 for the traceback)")


def run_step(step) -> None:
    from longview.online_features import FeatureStoreError

    try:
        print_json(step(get_settings()))
    except (ValueError, FeatureStoreError) as exc:
        fail(str(exc))
