"""`longview up` / `status` / `down`: the local stack, detached, on 127.0.0.1 only.

Airflow runs as its separate components (API server, scheduler, DAG processor, triggerer) with the
LocalExecutor; the scheduler and triggerer skip their log servers, because Airflow 3's binds every
interface and no setting changes it (the API server reads the task logs from the shared folder
instead). Beside them: the MLflow server, the Feast UI and the BentoML service. Each component leads
a session of its own, recorded in HOME/stack/stack.json with its start time, so `down` stops all
of its processes, task runners in their own process groups included; their output goes to
HOME/stack/logs/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from longview.settings import Settings

AIRFLOW_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class StackError(RuntimeError):
    """The stack cannot start (already running, a port taken, a component failed) or stop."""


@dataclass
class Component:
    name: str
    argv: list[str]
    port: int
    health: str  # a path on the component's port that answers 200 once it works
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_file(settings: Settings) -> Path:
    return settings.home / "stack" / "stack.json"


def password_file(settings: Settings) -> Path:
    return settings.airflow_home / "simple_auth_manager_passwords.json.generated"


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def airflow_environment(settings: Settings) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, **settings.airflow_env(), "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def components(settings: Settings) -> list[Component]:
    """What `up` starts, in order: Airflow's parts, then the MLflow server, the Feast UI, the service."""
    from control.service_process import bentoml_command, service_env
    from longview.feature_store import config_file, config_values

    ports = settings.stack
    airflow = airflow_environment(settings)
    af = _bin("airflow")
    feast_env = {**os.environ, **config_values(settings)}
    return [
        Component("airflow-api-server", [af, "api-server", "--host", "127.0.0.1", "--port", str(ports.airflow_port),
                                         "--workers", "1"], ports.airflow_port, "/api/v2/monitor/health", airflow),
        Component("airflow-scheduler", ([sys.executable, "-m", "control.airflow_scheduler"] if ports.preload
                                        else [af, "scheduler"]) + ["--skip-serve-logs"], ports.airflow_port, "", airflow),
        Component("airflow-dag-processor", [af, "dag-processor"], ports.airflow_port, "", airflow),
        Component("airflow-triggerer", [af, "triggerer", "--skip-serve-logs"], ports.airflow_port, "", airflow),
        Component("mlflow", [_bin("mlflow"), "server", "--backend-store-uri", settings.tracking_uri,
                             "--host", "127.0.0.1", "--port", str(ports.mlflow_port), "--workers", "1"],
                  ports.mlflow_port, "/health", {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}),
        Component("feast-ui", [_bin("feast"), "-c", str(settings.feature_repo_dir), "-f", str(config_file(settings)),
                               "ui", "-h", "127.0.0.1", "-p", str(ports.feast_port)], ports.feast_port, "/", feast_env),
        # Without a champion the service starts but is not ready (/readyz says why): /livez is the check.
        Component("service", bentoml_command(ports.service_port), ports.service_port, "/livez", service_env(settings),
                  settings.project_root),
    ]


def members(leader: int) -> list[int]:
    """The live processes of the session ``leader`` began (each component starts one): its own
    process group and any group a member made (Airflow's task runners take their own)."""
    import psutil

    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.pid) == leader:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def _alive(leader: int, created: float) -> bool:
    """Whether the session ``leader`` began still has live processes, and the leader (while it
    runs) is the process started then, not a later one that reuses the number."""
    import psutil

    try:  # reap it if it is this process's own child (an `up` that failed), or it lingers as a zombie
        os.waitpid(leader, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        process = psutil.Process(leader)
        if process.status() != psutil.STATUS_ZOMBIE:
            return abs(process.create_time() - created) < 1.0
    except psutil.Error:
        pass
    return bool(members(leader))


def _signal(leader: int, sig: signal.Signals) -> None:
    for pid in members(leader):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _read_state(settings: Settings) -> dict | None:
    """The recorded stack, or None where there is none or the file is not one this module wrote (a
    damaged file never names a process to signal)."""
    path = state_file(settings)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        components = state["components"]
        for entry in components.values():
            if not (type(entry["pgid"]) is int and entry["pgid"] > 1 and type(entry["port"]) is int
                    and isinstance(entry["created"], float)):
                return None
        return state
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


def running(settings: Settings) -> dict[str, int]:
    """The recorded components whose sessions still run, by name."""
    state = _read_state(settings) or {"components": {}}
    return {name: c["pgid"] for name, c in state["components"].items() if _alive(c["pgid"], c["created"])}


def urls(settings: Settings) -> dict[str, str]:
    p = settings.stack
    return {"airflow": f"http://127.0.0.1:{p.airflow_port}", "mlflow": f"http://127.0.0.1:{p.mlflow_port}",
            "feast": f"http://127.0.0.1:{p.feast_port}", "service": f"http://127.0.0.1:{p.service_port}"}


def _prepare(settings: Settings, say: Callable[[str], None]) -> None:
    """Airflow's metadata schema (created or upgraded) and the Feast registry the UI reads."""
    settings.ensure_dirs()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    say("airflow db migrate")
    done = subprocess.run([_bin("airflow"), "db", "migrate"], env=airflow_environment(settings), capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise StackError(f"`airflow db migrate` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    from longview.feature_store import feature_store

    say("feast apply")
    feature_store(settings)  # applies the repo when the registry lacks it


def _healthy(component: Component) -> bool:
    if not component.health:
        return True
    try:
        answer = httpx.get(component.url + component.health, timeout=3)
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    if component.name == "airflow-api-server":  # every Airflow part reports through it
        report = answer.json()
        return all(report.get(part, {}).get("status") == "healthy" for part in AIRFLOW_PARTS)
    return True


def up(settings: Settings, say: Callable[[str], None] = print) -> dict:
    """Start every component detached and return once all are healthy (or raise StackError, having
    stopped what it started)."""
    if running(settings):
        raise StackError(f"the stack of {settings.home} is already running ({', '.join(running(settings))}): "
                         f"`longview down` first")
    parts = components(settings)
    taken = sorted({c.port for c in parts if _listening(c.port)})
    if taken:
        raise StackError(f"port(s) {', '.join(map(str, taken))} on 127.0.0.1 are taken by another program: stop it "
                         f"or choose others with LONGVIEW_STACK__AIRFLOW_PORT, __MLFLOW_PORT, __FEAST_PORT, "
                         f"__SERVICE_PORT")
    import psutil

    _prepare(settings, say)
    logs = settings.home / "stack" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for folder in (logs.parent, logs):  # the API server's log prints the admin password on first start
        folder.chmod(0o700)
    password = password_file(settings)
    password.touch(mode=0o600)  # Airflow appends to it and keeps its mode: never readable by others
    password.chmod(0o600)
    state: dict = {"started": time.time(), "components": {}, "urls": urls(settings)}
    try:
        for c in parts:
            with open(logs / f"{c.name}.log", "ab") as log:
                process = subprocess.Popen(c.argv, env=c.env, cwd=c.cwd or settings.home, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            state["components"][c.name] = {"pgid": process.pid, "port": c.port, "log": str(logs / f"{c.name}.log"),
                                           "created": psutil.Process(process.pid).create_time()}
            state_file(settings).write_text(json.dumps(state, indent=2))
            say(f"started {c.name} (pid {process.pid})")
        _wait_healthy(settings, parts, say)
    except BaseException:
        down(settings, say=lambda _: None)
        raise
    return {"home": str(settings.home), "profile": settings.profile, "urls": urls(settings),
            "airflow_user": "admin", "airflow_password_file": str(password), "logs": str(logs)}


def _wait_healthy(settings: Settings, parts: list[Component], say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + settings.stack.start_seconds
    waiting = {c.name: c for c in parts}
    while waiting:
        for name, c in list(waiting.items()):
            pgid = running(settings).get(name)
            if pgid is None:
                raise StackError(f"{name} exited while starting: see {settings.home / 'stack' / 'logs' / (name + '.log')}")
            if _healthy(c):
                say(f"{name} is up")
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise StackError(f"not healthy after {settings.stack.start_seconds:.0f} s: {', '.join(waiting)} (see "
                             f"{settings.home / 'stack' / 'logs'})")
        time.sleep(1.0)


def status(settings: Settings) -> dict:
    state = _read_state(settings)
    if state is None:
        return {"running": False, "components": {}}
    parts = {c.name: c for c in components(settings)}
    report = {}
    for name, info in state["components"].items():
        alive = _alive(info["pgid"], info["created"])
        healthy = alive and name in parts and _healthy(parts[name])
        report[name] = {"pid": info["pgid"], "alive": alive, "healthy": healthy, "log": info.get("log")}
    return {"running": any(r["alive"] for r in report.values()), "urls": state.get("urls"), "components": report}


def down(settings: Settings, say: Callable[[str], None] = print, grace: float = 20.0) -> dict:
    """Stop every process of every recorded component's session (SIGTERM, then SIGKILL after
    ``grace`` seconds) and check that none of the stack's ports still listens."""
    state = _read_state(settings)
    if state is None:
        return {"stopped": []}
    leaders = {name: c["pgid"] for name, c in state["components"].items() if _alive(c["pgid"], c["created"])}
    for name, leader in reversed(list(leaders.items())):
        _signal(leader, signal.SIGTERM)
        say(f"stopping {name}")
    for sig, wait in ((signal.SIGKILL, grace), (None, 10.0)):  # then what is left, and until it is gone
        deadline = time.monotonic() + wait
        while any(members(leader) for leader in leaders.values()) and time.monotonic() < deadline:
            time.sleep(0.3)
        if sig is not None:
            for leader in leaders.values():
                _signal(leader, sig)
    ports = sorted({c["port"] for c in state["components"].values()})
    still = [p for p in ports if _listening(p)]
    state_file(settings).unlink(missing_ok=True)
    if still:
        raise StackError(f"stopped the stack's processes, but something still listens on {still}")
    return {"stopped": list(leaders)}


class AirflowClient:
    """The running stack's Airflow REST API (v2), signed in as its admin."""

    def __init__(self, settings: Settings) -> None:
        self.base = f"http://127.0.0.1:{settings.stack.airflow_port}"
        self.password = json.loads(password_file(settings).read_text())["admin"]
        self._token: str | None = None

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        if self._token is None:
            signed = httpx.post(f"{self.base}/auth/token", json={"username": "admin", "password": self.password},
                                timeout=30)
            signed.raise_for_status()
            self._token = signed.json()["access_token"]
        answer = httpx.request(method, f"{self.base}/api/v2{path}", timeout=30,
                               headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        answer.raise_for_status()
        return answer

    def trigger(self, dag_id: str, conf: dict | None = None) -> dict:
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}).json()

    def runs(self, dag_id: str) -> list[dict]:
        """The DAG's runs, oldest first."""
        return sorted(self.request("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"], key=lambda r: r["run_after"])

    def wait_for_run(self, dag_id: str, run_id: str | None = None, timeout: float = 600.0) -> dict:
        """The run ``run_id`` of the DAG (None: its latest, once it has one) when it has finished;
        TimeoutError when it does not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.runs(dag_id) if run_id is None or r["dag_run_id"] == run_id]
            if runs and runs[-1]["state"] in ("success", "failed"):
                return runs[-1]
            time.sleep(1.0)
        raise TimeoutError(f"{dag_id} had no finished run {run_id or ''} after {timeout:.0f} s")
