"""The real service on the demo's data home: one per test module, with a log file of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.service_process import running_service


def service_log(home: Path, module: str) -> Path:
    return home / f"{module.rsplit('.', 1)[-1].replace('_', '-')}.log"


@pytest.fixture(scope="module")
def service(trained, request):
    with running_service(trained, log_path=service_log(trained.home, request.module.__name__)) as url:
        yield url
