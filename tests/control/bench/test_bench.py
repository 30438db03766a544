"""The benchmark command's own errors (the benchmarks themselves are run by hand, not in tests)."""

from __future__ import annotations

import pytest

from tests.conftest import longview


@pytest.mark.slow
def test_an_unknown_benchmark_is_a_clear_error(tmp_path):
    unknown = longview("bench", "speed", env={"LONGVIEW_HOME": str(tmp_path / "home")})
    assert unknown.returncode == 2
    assert "unknown benchmark 'speed': expected one of validation, features, contract, accuracy" in unknown.stderr


@pytest.mark.slow
def test_the_contract_benchmark_says_how_many_examples_it_tried(tmp_path):
    from tests.conftest import real_data

    env = {"LONGVIEW_HOME": str(tmp_path / "home"), "LONGVIEW_DATA_DIR": str(real_data("ml-100k").parent)}
    result = longview("bench", "contract", "--examples", "3", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "contract: 3 examples tried" in result.stdout and "corruptions tried:" in result.stdout


@pytest.mark.slow
def test_the_command_runs_python_exit_handlers_and_keeps_its_exit_code(tmp_path):
    """The console script ends the process itself after Python's clean-up (Arrow's thread pools can abort
    it at C++ teardown): exit handlers must still run and the command's exit code must survive."""
    import subprocess
    import sys

    script = ("import atexit, concurrent.futures, sys\n"
              "from control.cli import entrypoint\n"
              "atexit.register(lambda: print('cleaned up', flush=True))\n"
              # a live thread pool (Feast, MLflow use them): its workers must be told to stop, not awaited
              "pool = concurrent.futures.ThreadPoolExecutor(2)\npool.submit(lambda: 1).result()\n"
              "sys.argv = ['longview', 'bench', 'speed']\n"
              "entrypoint()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"LONGVIEW_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "unknown benchmark 'speed'" in result.stderr
    assert result.stdout.strip().endswith("cleaned up")
