"""The one settings object: defaults, then a YAML profile, then ``LONGVIEW_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from longview.home import HomeLayout, home_project, recorded_project
from longview.model_registry import BASELINES, MODELS
from longview.sections import (
    EngagementSettings,
    GateSettings,
    MonitorSettings,
    SequenceSettings,
    ServedLogSettings,
    SimulationSettings,
    ServingSettings,
    StackSettings,
    ValueSettings,
)

# The checkout that holds dags/, feature_repo/ and expectations/ (the packages are installed editable).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

REGISTERED_MODEL = "longview-recommender"
# The models of the registry (longview/model_registry.py): a name there is a valid `model` setting.
ModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


def _profile_file() -> Path | None:
    """A profile is a YAML file named by LONGVIEW_CONFIG, or one of the shipped ones by LONGVIEW_PROFILE."""
    explicit = os.environ.get("LONGVIEW_CONFIG")
    if explicit:
        return Path(explicit)
    profile = os.environ.get("LONGVIEW_PROFILE", "embedded")
    shipped = Path(__file__).parent / "profiles" / f"{profile}.yaml"
    return shipped if shipped.exists() else None


def _params_file() -> Path | None:
    """A parameters file (LONGVIEW_PARAMS, or `longview --params`): DVC's params.yaml, whose sections
    named like the settings' (sequence, value, gate, ...) override the profile's."""
    named = os.environ.get("LONGVIEW_PARAMS")
    return Path(named) if named else None


class ParamsSource(YamlConfigSettingsSource):
    """The parameters file's settings sections; its other sections (DVC's own, such as ``data``)
    are for the stage commands, not the settings."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"the parameters file {path} (LONGVIEW_PARAMS) does not exist")
        super().__init__(settings_cls, yaml_file=path)
        self.init_kwargs = {k: v for k, v in self.init_kwargs.items() if k in settings_cls.model_fields}


class Settings(HomeLayout, BaseSettings):
    """Every setting: the sections' models are in longview/sections.py, the data home's layout in
    longview/home.py."""


    model_config = SettingsConfigDict(env_prefix="LONGVIEW_", env_nested_delimiter="__", extra="forbid")

    profile: Literal["embedded", "production"] = "embedded"
    home: Path = Field(default=Path(".longview"), description="data home: all runtime state")
    data_dir: Path = Field(default=PROJECT_ROOT.parent / "shared" / "data", description="real datasets")
    project_root: Path = PROJECT_ROOT

    # Servers of the production profile (unused by the embedded one).
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/longview"
    redis_url: str = "127.0.0.1:6379"
    # The Feast registry's database (production); default: a `feast` database beside postgres_url's.
    feast_registry_postgres_url: str | None = None
    # The Feast project names the registry's objects and prefixes every online-store key. Unset, it
    # is the one the data home recorded at its first Feast use (HOME/feast/project, so a copied or
    # moved home keeps it), or for a new home longview_ and 10 hex digits of its path's hash: two
    # data homes on one registry database and one Redis never read or trust each other's rows.
    feast_project: str = Field(default="", pattern=r"^([A-Za-z0-9_]{1,60})?$")
    mlflow_tracking_uri: str | None = None  # default: SQLite in the data home (embedded)

    # Privacy: the key of the keyed hash that pseudonymises user ids (generated into the home if unset).
    pseudonym_key: SecretStr | None = None
    pseudonym_key_file: Path | None = None

    # Real datasets.
    session_gap_minutes: float = 30.0

    # Validation thresholds.
    dwell_cap_seconds: float = 86_400.0
    rating_min: float = 0.5
    rating_max: float = 5.0
    earliest_event: str = "1995-01-01"
    # Items (films, products) can be much older than any event; the first films date from the 1880s.
    earliest_release: str = "1870-01-01"
    future_tolerance_hours: float = 24.0
    max_failure_share: float = 0.5
    # Distribution checks (a broken feed fails the whole batch). Real data is bursty: the busiest
    # MovieLens day is ~10x its median day, so the volume check compares with the busiest recent day.
    min_rows_for_distribution: int = 1000
    max_user_share: float = 0.2
    max_item_share: float = 0.2
    max_day_volume_ratio: float = 20.0

    # Features and model.
    recent_items: int = 20
    model: ModelName = Field(default="sequence", description="the model `longview train` trains and registers")
    # The baselines `longview train` evaluates beside the model (EASE's fit is cubic in the catalogue:
    # leave it out for catalogues of tens of thousands of items), e.g. LONGVIEW_BASELINES='["popularity"]'.
    baselines: list[ModelName] = Field(default=list(BASELINES))
    sequence: SequenceSettings = SequenceSettings()
    value: ValueSettings = ValueSettings()
    engagement: EngagementSettings = EngagementSettings()
    gate: GateSettings = GateSettings()
    serving: ServingSettings = ServingSettings()
    served_log: ServedLogSettings = ServedLogSettings()
    simulation: SimulationSettings = SimulationSettings()
    stack: StackSettings = StackSettings()
    # Airflow's metadata database on the production profile (default: `airflow` on postgres_url's server).
    airflow_database_url: str | None = None
    monitor: MonitorSettings = MonitorSettings()
    # Positive engagement (labels and metrics): clicks and purchases always; a rating from this
    # value up; a view from this dwell up. Sequences still hold every interaction as input.
    positive_min_rating: float = 4.0
    positive_min_dwell_seconds: float = Field(default=30.0, ge=0)
    # Items a user already engaged with are not recommended again (training/models/ranking.py: the
    # evaluation and the packaged model use the same rule); False where consumption repeats (groceries).
    exclude_seen: bool = True
    recent_popularity_days: float = Field(default=7.0, gt=0)
    item_knn_neighbours: int = Field(default=100, ge=1)
    ease_l2: float = Field(default=500.0, gt=0)
    # Incremental materialisation re-reads this much before the last run's end, for late data.
    materialize_overlap_days: float = Field(default=7.0, ge=0)
    holdout_share: float = 0.2
    # The temporal protocol's validation window: this share of engagements just before the holdout.
    validation_share: float = Field(default=0.1, gt=0.0, lt=1.0)
    seed: int = 7

    # Synthetic data.
    synthetic_users: int = 300
    synthetic_items: int = 240
    synthetic_days: int = 60

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        params = _params_file()
        if params is not None:
            sources.append(ParamsSource(settings_cls, params))
        profile = _profile_file()
        if profile is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=profile))
        return tuple(sources)

    @model_validator(mode="after")
    def _absolute_paths(self) -> "Settings":
        # Airflow tasks and services run in other working directories: pin paths now.
        self.home = self.home.expanduser().resolve()
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.feast_project:
            self.feast_project = recorded_project(self.home) or home_project(self.home)
        return self


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block (what children started in it inherit), then as before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def get_settings(**overrides: object) -> Settings:
    """Read settings afresh (cheap), so a changed environment is always seen."""
    return Settings(**overrides)  # type: ignore[arg-type]
