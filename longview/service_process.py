"""Start and stop the BentoML service as a child process (for `serve`, the demo and the tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import httpx

from longview.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What `bentoml serve` runs: the service class in the checkout; or a built Bento's tag or folder.
SERVICE = "serving.service:Recommender"


def bentoml_command(port: int, target: str = SERVICE) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", target, "--host", "127.0.0.1", "--port", str(port)]


def service_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LONGVIEW_HOME": str(settings.home), "LONGVIEW_PROFILE": settings.profile,
                "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(settings.home / "bentoml")})
    return env


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0, probe: str = "/readyz") -> None:
    """Until ``probe`` answers 200: ``/readyz`` (a model and features loaded) or ``/livez`` (up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the service at {url} was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class ServiceURL(str):
    """The service's base URL, and the pid of the process that leads its process group."""

    pid: int = 0


@contextmanager
def running_service(settings: Settings, port: int | None = None, log_path: Path | None = None,
                    ready: bool = True, target: str = SERVICE, cwd: Path | None = None) -> Iterator[ServiceURL]:
    """Run the service until the block ends; yields its base URL once it is ready (``ready``) or
    only up (with no champion yet, it starts but is not ready). ``target``: what `bentoml serve`
    runs (a built Bento's tag, found in the data home's BENTOML_HOME, or its folder); ``cwd``: where
    (default: the checkout)."""
    port = port or free_port()
    log_path = log_path or settings.home / "service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(bentoml_command(port, target), env=service_env(settings), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd or settings.project_root)
        url = ServiceURL(f"http://127.0.0.1:{port}")
        url.pid = process.pid  # the process group's leader: benchmarks read the group's memory
        try:
            wait_ready(url, process, probe="/readyz" if ready else "/livez")
            yield url
        finally:
            stop(process)
