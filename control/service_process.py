"""Start and stop the BentoML service as a child process (for `serve`, the demo and the tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


DEPLOY_PROBE_USER = "longview-deploy-check"  # an id no dataset uses: its answer is the cold-start list


def served_version(url: str, api_key: str | None = None) -> str | None:
    """The version the service at ``url`` answers with now (None: not up, or not ready)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        answer = httpx.post(f"{url}/recommend", json={"user_id": DEPLOY_PROBE_USER, "k": 1}, headers=headers, timeout=5)
    except httpx.HTTPError:
        return None
    return str(answer.json().get("model_version")) if answer.status_code == 200 else None


def wait_serving(settings: Settings, version: str | None, url: str | None = None, timeout: float = 60.0) -> dict:
    """Wait until the service answers with ``version``; a service not running here is said, not
    waited for (it loads @champion when it starts). Raises TimeoutError when it never follows."""
    url = url or settings.service_url
    key = settings.serving.api_key.get_secret_value() if settings.serving.api_key else None
    try:
        httpx.get(f"{url}/livez", timeout=3)
    except httpx.HTTPError:
        print(f"no service answers at {url}: it serves @champion (version {version}) when it starts")
        return {"url": url, "running": False, "serving": None}
    deadline, now = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = served_version(url, key)
        if version is None or now == str(version):
            print(f"the service at {url} answers with version {now}")
            return {"url": url, "running": True, "serving": now}
        time.sleep(1.0)
    raise TimeoutError(f"the service at {url} still answers with version {now} after {timeout:.0f} s, not {version}: "
                       f"see its log")
