from pathlib import Path

import pytest

from longview.settings import PROJECT_ROOT, get_settings


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("LONGVIEW_MODEL", "ease")
    settings = get_settings()
    assert settings.home == (tmp_path / "h").resolve()
    assert settings.model == "ease"
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"


def test_relative_home_is_pinned_to_an_absolute_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LONGVIEW_HOME", raising=False)
    assert get_settings().home == tmp_path / ".longview"


def test_project_folders_are_found_from_the_package():
    settings = get_settings()
    assert (settings.dags_dir / "longview_loop.py").exists()
    assert (settings.expectations_dir / "events.json").exists()
    assert (settings.feature_repo_dir / "feature_store.yaml").exists()
    assert settings.project_root == PROJECT_ROOT


def test_yaml_profile_sits_between_defaults_and_environment(monkeypatch, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("holdout_share: 0.3\nseed: 11\n")
    monkeypatch.setenv("LONGVIEW_CONFIG", str(profile))
    monkeypatch.setenv("LONGVIEW_SEED", "12")
    settings = get_settings()
    assert (settings.seed, settings.holdout_share) == (12, 0.3)


def test_airflow_environment_points_at_this_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    env = get_settings().airflow_env()
    assert env["AIRFLOW_HOME"].startswith(str(tmp_path))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///" + str(tmp_path))
    assert Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).name == "dags"


def test_production_profile_switches_every_store(monkeypatch, tmp_path):
    monkeypatch.setenv("LONGVIEW_PROFILE", "production")
    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    settings = get_settings()
    assert settings.profile == "production"
    assert settings.tracking_uri.startswith("postgresql")
    assert settings.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    from longview.feature_store import repo_config

    config = repo_config(settings)
    assert config.online_store.type == "redis"
    assert config.registry.registry_type == "sql"


def test_a_settings_section_is_set_field_by_field(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    monkeypatch.setenv("LONGVIEW_SEQUENCE__DIM", "128")
    monkeypatch.setenv("LONGVIEW_SEQUENCE__NEGATIVES", "500")
    settings = get_settings()
    assert (settings.sequence.dim, settings.sequence.negatives, settings.sequence.blocks) == (128, 500, 2)
    monkeypatch.setenv("LONGVIEW_SEQUENCE__DROPOUT", "1.5")
    with pytest.raises(ValidationError, match="dropout"):
        get_settings()
    monkeypatch.delenv("LONGVIEW_SEQUENCE__DROPOUT")
    monkeypatch.setenv("LONGVIEW_SEQUENCE__LAYERS", "3")
    with pytest.raises(ValidationError, match="layers"):
        get_settings()


def test_the_baselines_train_evaluates_are_a_setting(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    monkeypatch.setenv("LONGVIEW_BASELINES", '["popularity", "recent_popularity"]')
    assert get_settings().baselines == ["popularity", "recent_popularity"]
    monkeypatch.setenv("LONGVIEW_BASELINES", '["gru"]')
    with pytest.raises(ValidationError, match="baselines"):
        get_settings()


def test_the_value_head_settings_refuse_what_cannot_be_modelled(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    monkeypatch.setenv("LONGVIEW_VALUE__RETURN_DAYS", "14")
    value = get_settings().value
    assert (value.return_days, value.horizon_days, value.enabled) == (14.0, 30.0, True)
    for name, bad, match in (("RETURN_DAYS", "45", "must not exceed horizon_days"), ("RETURN_DAYS", "-1", "return_days"),
                             ("RETURN_DAYS", "nan", "return_days"), ("HORIZON_DAYS", "1e9", "horizon_days"),
                             ("LOSS_WEIGHT", "0", "loss_weight"), ("BOOTSTRAP_SAMPLES", "5", "bootstrap_samples"),
                             ("ENABLED", "maybe", "enabled"), ("HORIZONS", "3", "horizons")):
        monkeypatch.setenv(f"LONGVIEW_VALUE__{name}", bad)
        with pytest.raises(ValidationError, match=match):
            get_settings()
        monkeypatch.delenv(f"LONGVIEW_VALUE__{name}")


def test_the_policy_gate_and_serving_settings_refuse_nonsense(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    monkeypatch.setenv("LONGVIEW_HOME", str(tmp_path))
    monkeypatch.setenv("LONGVIEW_ENGAGEMENT__DIVERSITY_WEIGHT", "0.5")
    settings = get_settings()
    assert settings.engagement.weights(settings.seed)["seed"] == settings.seed
    assert settings.engagement.diversity_weight == 0.5 and settings.gate.accuracy_tolerance is None
    assert settings.serving.policy == "engagement" and settings.serving.poll_seconds <= 5
    for section, name, bad in (("ENGAGEMENT", "EXPLORATION", "0.9"), ("ENGAGEMENT", "VALUE_WEIGHT", "-1"),
                               ("ENGAGEMENT", "NOVELTY_WEIGHT", "nan"), ("ENGAGEMENT", "CANDIDATES", "0"),
                               ("ENGAGEMENT", "CANDIDATES", "3.5"), ("ENGAGEMENT", "WEIGHTS", "1"),
                               ("GATE", "LATENCY_BUDGET_MS", "0"), ("GATE", "ACCURACY_TOLERANCE", "2"),
                               ("GATE", "BASELINE_TOLERANCE", "-0.1"), ("GATE", "PREFER_BETTER_BASELINE", "maybe"),
                               ("SERVING", "POLL_SECONDS", "60"), ("SERVING", "POLL_SECONDS", "0"),
                               ("SERVING", "POLICY", "random"), ("SERVING", "MAX_K", "0"),
                               ("SERVING", "MAX_BODY_BYTES", "10"), ("SERVING", "API_KEY", "x")):
        monkeypatch.setenv(f"LONGVIEW_{section}__{name}", bad)
        with pytest.raises(ValidationError, match=name.lower()):
            get_settings()
        monkeypatch.delenv(f"LONGVIEW_{section}__{name}")


def test_a_parameters_file_sits_between_the_profile_and_the_environment(monkeypatch, tmp_path):
    """DVC's params.yaml, named by LONGVIEW_PARAMS (or `longview --params`): its settings sections
    override the profile field by field, the environment overrides it, and its other sections
    (DVC's `data`) are for the stage commands."""
    profile = tmp_path / "profile.yaml"
    profile.write_text("sequence:\n  dim: 32\n  blocks: 3\nseed: 5\n")
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  dataset: ml-100k\nsequence:\n  dim: 48\n  epochs: 7\nmodel: item_knn\n")
    monkeypatch.setenv("LONGVIEW_CONFIG", str(profile))
    monkeypatch.setenv("LONGVIEW_PARAMS", str(params))
    monkeypatch.setenv("LONGVIEW_SEQUENCE__EPOCHS", "3")
    settings = get_settings(home=tmp_path / "home")
    assert (settings.sequence.dim, settings.sequence.blocks, settings.sequence.epochs) == (48, 3, 3)
    assert settings.model == "item_knn" and settings.seed == 5
    monkeypatch.setenv("LONGVIEW_PARAMS", str(PROJECT_ROOT / "params.yaml"))  # the repo's own is valid
    monkeypatch.delenv("LONGVIEW_SEQUENCE__EPOCHS")
    assert get_settings(home=tmp_path / "home").sequence.epochs == 20
    for text, field in (("sequence:\n  dim: -1\n", "dim"), ("sequence:\n  colour: blue\n", "colour"),
                        ("model: transformer-xl\n", "model")):
        params.write_text(text)
        monkeypatch.setenv("LONGVIEW_PARAMS", str(params))
        with pytest.raises(ValueError, match=field):
            get_settings(home=tmp_path / "home")
    monkeypatch.setenv("LONGVIEW_PARAMS", str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        get_settings(home=tmp_path / "home")


def test_the_cli_refuses_a_missing_parameters_file(tmp_path):
    from typer.testing import CliRunner

    from control.cli import app

    result = CliRunner().invoke(app, ["--params", str(tmp_path / "nope.yaml"), "features"])
    assert result.exit_code == 2 and "nope.yaml does not exist" in result.output


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
def test_train_refuses_a_run_key_out_of_bounds(key):
    from typer.testing import CliRunner

    from control.cli import app

    result = CliRunner().invoke(app, ["train", "--run-key", key])
    assert result.exit_code == 2 and "--run-key must be 1-200 characters" in result.output
