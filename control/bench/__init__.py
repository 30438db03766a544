"""Benchmarks (commands, not timed tests): `longview bench NAME`. Each prepares what it needs in its
own data home under the given folder and yields one line per figure. The registry names each
benchmark's function by import path, so listing them imports none (a benchmark's module loads its
heavy libraries only when run); adding one is a module here and a line below."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

from control.bench.helpers import BenchmarkError

BENCHMARKS: dict[str, str] = {
    "validation": "control.bench.validation:validation",
    "features": "control.bench.features:features",
    "contract": "control.bench.contract:contract",
    "accuracy": "control.bench.accuracy:accuracy",
    "long-term-value": "control.bench.long_term_value:long_term_value",
    "off-policy": "control.bench.off_policy:off_policy",
    "long-term": "control.bench.long_term:long_term",
    "serving": "control.bench.serving:serving",
    "quantization": "control.bench.quantization:quantization",
    "pipeline": "control.bench.pipeline:pipeline",
    "layout": "control.bench.layout:layout",
}


def benchmark(name: str) -> Callable[..., Iterator[str]]:
    """The benchmark function registered under ``name``: (settings, root, **options) -> lines."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}")
    module, _, function = BENCHMARKS[name].partition(":")
    return getattr(importlib.import_module(module), function)


__all__ = ["BENCHMARKS", "BenchmarkError", "benchmark"]
