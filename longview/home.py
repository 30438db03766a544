"""The data home's layout (every path of runtime state under LONGVIEW_HOME), the checkout's folders
the platform reads (dags, expectations, the Feast repo), and the environment Airflow runs in on it.
A mixin of the settings object: ``settings.events_dir`` and so on."""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from longview.sections import StackSettings

PROJECT_FILE = Path("feast") / "project"  # the Feast project a data home uses, recorded at its first use


def home_project(home: Path) -> str:
    """The Feast project a new data home gets unless one is set: one per home path."""
    return "longview_" + hashlib.sha256(str(home).encode()).hexdigest()[:10]


def recorded_project(home: Path) -> str | None:
    """The Feast project recorded in the data home, if any (and well formed)."""
    try:
        name = (home / PROJECT_FILE).read_text().strip()
    except OSError:
        return None
    return name if re.fullmatch(r"[A-Za-z0-9_]{1,60}", name) else None


class HomeLayout:
    """Paths and URIs derived from the settings' ``home``, ``project_root`` and servers."""

    home: Path
    project_root: Path
    profile: str
    postgres_url: str
    feast_registry_postgres_url: str | None
    mlflow_tracking_uri: str | None
    airflow_database_url: str | None
    stack: "StackSettings"

    @property
    def feast_registry_url(self) -> str:
        return self.feast_registry_postgres_url or self.postgres_url.rsplit("/", 1)[0] + "/feast"

    # Layout of the data home.
    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def events_dir(self) -> Path:
        return self.home / "events"

    @property
    def outbox_path(self) -> Path:
        """The service's feedback outbox (longview/outbox.py), ingested with the landing folder."""
        return self.home / "outbox" / "feedback.db"

    @property
    def served_log_dir(self) -> Path:
        """The service's log of the slates it served (longview/served_log.py), until ingested."""
        return self.home / "served-log"

    @property
    def served_dir(self) -> Path:
        """Served slates after ingestion, one row per slot (what off-policy estimates read)."""
        return self.home / "served"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def catalogue_path(self) -> Path:
        return self.home / "catalogue" / "items.parquet"

    @property
    def users_path(self) -> Path:
        return self.home / "catalogue" / "users.parquet"

    @property
    def tags_path(self) -> Path:
        return self.home / "catalogue" / "tags.parquet"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def train_dir(self) -> Path:
        return self.home / "train"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def gx_dir(self) -> Path:
        return self.home / "gx"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dags_dir(self) -> Path:
        return self.project_root / "dags"

    @property
    def expectations_dir(self) -> Path:
        return self.project_root / "expectations"

    @property
    def feature_repo_dir(self) -> Path:
        return self.project_root / "feature_repo"

    @cached_property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.service_port}"

    def airflow_env(self) -> dict[str, str]:
        """Environment for any airflow command that works on this data home."""
        if self.profile == "production":
            db = self.airflow_database_url or self.postgres_url.rsplit("/", 1)[0] + "/airflow"
        else:
            db = f"sqlite:///{self.airflow_home / 'airflow.db'}"
        port = self.stack.airflow_port
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_dir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.stack.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            # Where task processes report back: the API server on its own port.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "LONGVIEW_HOME": str(self.home),
            "LONGVIEW_PROFILE": self.profile,
        }

    def ensure_dirs(self) -> None:
        for d in (self.landing_dir, self.events_dir, self.quarantine_dir, self.reports_dir,
                  self.features_dir, self.train_dir, self.feast_dir, self.artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.chmod(0o700)  # it holds rows as received, raw ids included
