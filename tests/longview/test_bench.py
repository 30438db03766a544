"""The benchmark command's own errors (the benchmarks themselves are run by hand, not in tests)."""

from __future__ import annotations

from tests.conftest import longview


def test_an_unknown_benchmark_is_a_clear_error(tmp_path):
    unknown = longview("bench", "speed", env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert unknown.returncode == 2
    assert "unknown benchmark 'speed': expected one of validation, features, contract" in unknown.stderr
