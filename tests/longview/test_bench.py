"""The benchmark command's own errors (the benchmarks themselves are run by hand, not in tests)."""

from __future__ import annotations

from tests.conftest import longview


def test_an_unknown_benchmark_is_a_clear_error(tmp_path):
    unknown = longview("bench", "speed", env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert unknown.returncode == 2
    assert "unknown benchmark 'speed': expected one of validation, features, contract, accuracy" in unknown.stderr


def test_the_contract_benchmark_says_how_many_examples_it_tried(tmp_path):
    from tests.conftest import real_data

    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(real_data("ml-100k").parent)}
    result = longview("bench", "contract", "--examples", "3", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "contract: 3 examples tried" in result.stdout and "corruptions tried:" in result.stdout
