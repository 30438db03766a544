"""The real local stack on the production profile: `longview up` (Airflow's four components, the
MLflow server, the Feast UI and the service, on PostgreSQL and Redis), a REST trigger running the
asset-chained DAGs through the scheduler to a served champion, the Airflow UI driven in a real
browser, and `longview down`. One stack for the module, on databases, a Feast project and ports of
its own, all removed afterwards. The tests run in file order: `down` is the last."""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis

from control.service_process import free_port
from control.stack import AirflowClient, members
from longview.settings import Settings, environment, get_settings
from tests.conftest import SMALL_WORLD, last_json, longview, require_servers

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by `make test`: Playwright downloads nothing


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    files: Path
    urls: dict[str, str]
    password: str
    airflow: AirflowClient

    def wait_for_run(self, dag_id: str, run_id: str | None = None, timeout: float = 300.0) -> dict:
        try:
            return self.airflow.wait_for_run(dag_id, run_id, timeout=timeout)
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {self.airflow.runs(dag_id)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_servers()
    run = uuid.uuid4().hex[:10]
    databases = {part: f"lvstack_{run}_{part}" for part in ("feast", "mlflow", "airflow")}
    project = f"lvstack_{run}"
    root = tmp_path_factory.mktemp("stack")
    home, files = root / "home", root / "files"
    ports = {name: free_port() for name in ("AIRFLOW", "MLFLOW", "FEAST", "SERVICE")}
    server = "postgresql+psycopg://postgres@127.0.0.1:5432"
    env = {**SMALL_WORLD, "LONGVIEW_HOME": str(home), "LONGVIEW_PROFILE": "production",
           "LONGVIEW_SYNTHETIC_USERS": "80", "LONGVIEW_SEQUENCE__EPOCHS": "4", "LONGVIEW_SERVING__POLL_SECONDS": "1",
           "LONGVIEW_FEAST_PROJECT": project, "LONGVIEW_FEAST_REGISTRY_POSTGRES_URL": f"{server}/{databases['feast']}",
           "LONGVIEW_MLFLOW_TRACKING_URI": f"{server}/{databases['mlflow']}",
           "LONGVIEW_AIRFLOW_DATABASE_URL": f"{server}/{databases['airflow']}",
           **{f"LONGVIEW_STACK__{name}_PORT": str(port) for name, port in ports.items()}}
    assert longview("generate", "--out", str(files), env=env).returncode == 0
    (home / "landing").mkdir(parents=True)
    for name in ("items.csv", "events-001.csv"):
        shutil.copy(files / name, home / "landing" / name)
    started = time.monotonic()
    up = longview("up", env=env, timeout=600)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        print(f"longview up took {time.monotonic() - started:.0f} s")
        result = last_json(up.stdout)
        password = json.loads(Path(result["airflow_password_file"]).read_text())["admin"]
        yield Stack(env, home, files, result["urls"], password, AirflowClient(settings_of_stack(env)))
    finally:
        longview("down", env=env)
        keys = list(redis.Redis(host="127.0.0.1", port=6379).scan_iter(match=b"*" + project.encode()))
        if keys:
            redis.Redis(host="127.0.0.1", port=6379).delete(*keys)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            for name in databases.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_of_stack(env: dict[str, str]) -> Settings:
    """The settings the stack's processes read from ``env``."""
    with environment(env):
        return get_settings()


def _ports_env(home: Path) -> dict[str, str]:
    return {"LONGVIEW_HOME": str(home), **{f"LONGVIEW_STACK__{name}_PORT": str(free_port())
                                           for name in ("AIRFLOW", "MLFLOW", "FEAST", "SERVICE")}}


@pytest.mark.slow
def test_up_refuses_a_port_another_program_holds_and_starts_nothing(tmp_path):
    env = _ports_env(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["LONGVIEW_STACK__MLFLOW_PORT"])))
        taken.listen()
        up = longview("up", env=env)
    assert up.returncode == 1 and env["LONGVIEW_STACK__MLFLOW_PORT"] in up.stderr and "LONGVIEW_STACK__" in up.stderr
    assert not (tmp_path / "home" / "stack" / "stack.json").exists()
    assert last_json(longview("status", env=env).stdout) == {"running": False, "components": {}}


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_a_port_setting_out_of_range_is_a_clear_error(tmp_path, port):
    up = longview("up", env={**_ports_env(tmp_path / "home"), "LONGVIEW_STACK__SERVICE_PORT": port})
    assert up.returncode != 0 and "service_port" in up.stderr and "Traceback" not in up.stderr


@pytest.mark.parametrize("name", ["nonsense", "", "mlflow-ui", "../mlflow", "airflow-scheduler"])
def test_ui_names_only_its_four_uis(tmp_path, name):
    ui = longview("ui", name, env=_ports_env(tmp_path / "home"))
    assert ui.returncode == 2 and "unknown UI" in ui.stderr and "Traceback" not in ui.stderr


@pytest.mark.parametrize("content", ["", "{", "[]", '{"components": 3}', '{"components": {"x": {"pgid": "1"}}}',
                                     "\x00\xff"])
@pytest.mark.slow
def test_a_damaged_state_file_reads_as_no_stack(tmp_path, content):
    """`status` and `down` never trust a state file they cannot read, nor signal what it names
    without the fields they need."""
    env = _ports_env(tmp_path / "home")
    state = tmp_path / "home" / "stack" / "stack.json"
    state.parent.mkdir(parents=True)
    state.write_text(content)
    status = longview("status", env=env)
    assert status.returncode == 0 and last_json(status.stdout)["running"] is False, status.stderr
    down = longview("down", env=env)
    assert down.returncode == 0, down.stderr


def test_up_serves_every_part_on_loopback_and_refuses_a_second_up(stack):
    status = last_json(longview("status", env=stack.env).stdout)
    assert status["running"] and set(status["components"]) == {
        "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "mlflow", "feast-ui",
        "service"}
    assert all(c["alive"] and c["healthy"] for c in status["components"].values()), status
    password_file = stack.home / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert (stack.home / "stack" / "logs").stat().st_mode & 0o777 == 0o700, "the API server's log holds it too"
    # Every socket the stack listens on is on 127.0.0.1: no log server, no UI on all interfaces.
    listening = set()
    for component in status["components"].values():
        for pid in members(component["pid"]):
            try:
                connections = psutil.Process(pid).net_connections(kind="inet")
            except psutil.Error:  # ended meanwhile
                continue
            for conn in connections:
                if conn.status == psutil.CONN_LISTEN:
                    listening.add((conn.laddr.ip, conn.laddr.port))
    assert listening and {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {int(url.rsplit(":", 1)[1]) for url in stack.urls.values()} <= {port for _, port in listening}
    for url in (stack.urls["mlflow"], stack.urls["feast"]):
        assert httpx.get(url, timeout=10).status_code == 200
    again = longview("up", env=stack.env)
    assert again.returncode == 1 and "already running" in again.stderr and "longview down" in again.stderr


def test_a_rest_trigger_runs_the_asset_chain_to_a_served_champion(stack):
    """A fresh file given to ingest_validate through the REST API; the scheduler runs the chain by
    its assets; the service answers with the champion it produced."""
    started = time.monotonic()
    triggered = stack.airflow.trigger("ingest_validate", {"path": str(stack.files / "events-002.csv")})
    done = stack.wait_for_run("ingest_validate", triggered["dag_run_id"])
    assert done["state"] == "success" and done["run_type"] == "manual", done
    for dag_id in ("build_features", "train_evaluate_register", "promote_deploy"):
        done = stack.wait_for_run(dag_id)
        assert done["state"] == "success" and done["run_type"] == "asset_triggered", (dag_id, done)
    assert [r["run_type"] for r in stack.airflow.runs("train_evaluate_register")] == ["asset_triggered"], \
        "nothing but the assets started training: no catch-up run of the weekly schedule"
    print(f"REST trigger to deployed champion: {time.monotonic() - started:.0f} s")
    from training.tracking import CHAMPION, alias_version, mlflow_client

    champion = alias_version(mlflow_client(settings_of_stack(stack.env)), CHAMPION)
    assert champion is not None and str(champion.version) == "1"
    user = (stack.files / "events-002.csv").read_text().splitlines()[1].split(",")[1]
    served = httpx.post(f"{stack.urls['service']}/recommend", json={"user_id": user, "k": 5}, timeout=30).json()
    assert served["model_version"] == "1" and served["fallback"] is None and len(served["items"]) == 5, served


def test_the_airflow_ui_logs_in_unpauses_and_triggers_the_loop(stack):
    """Chromium, headless: sign in, unpause longview_loop on its page, trigger it through the form
    (epochs set there), and see the run succeed on the Runs tab."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    base = stack.urls["airflow"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(base)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(stack.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/dags/longview_loop")
            toggle = page.get_by_role("checkbox").first
            expect(toggle).not_to_be_checked()  # paused at creation: a person starts the one-click loop
            page.locator("label:has(input[type=checkbox])").first.click()
            expect(toggle).to_be_checked()
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_role("spinbutton").fill("2")  # the epochs param, through the form
            dialog.get_by_role("button", name="Trigger").click()
            expect(dialog).to_be_hidden()
            done = stack.wait_for_run("longview_loop", timeout=600)
            assert done["state"] == "success" and done["conf"].get("epochs") == 2, done
            page.goto(f"{base}/dags/longview_loop/runs")
            expect(page.get_by_text("success").first).to_be_visible(timeout=30_000)
        finally:
            browser.close()
    assert not stack.airflow.request("GET", "/dags/longview_loop").json()["is_paused"]


def test_down_stops_everything_and_leaves_nothing_listening(stack):
    pids = [c["pid"] for c in last_json(longview("status", env=stack.env).stdout)["components"].values()]
    down = longview("down", env=stack.env)
    assert down.returncode == 0, down.stderr
    assert not any(members(leader) for leader in pids), "a process of the stack outlived `down`"
    for url in stack.urls.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=3)
    assert last_json(longview("status", env=stack.env).stdout)["running"] is False
