"""The layout holds: arrows only point down (control -> gate | serving -> training -> longview), no
import cycles at any level, the imports made from strings (registries, the Feast repo, the
scheduler's preload) obey the same layers, no source module grows past 350 lines, and the params
file says what the code says."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

# The layers (lower number, lower layer; gate and serving share one and must not import each
# other), the check of one import against them, and the cycle finder: control/bench/layout.py,
# which `longview bench layout` reports with.
from control.bench.layout import LAYER, PACKAGES, allowed, cycles, import_edges
from longview.settings import PROJECT_ROOT, Settings

MAX_LINES = 350
BIN = Path(sys.executable).parent


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def test_the_import_linter_contracts_hold():
    run = subprocess.run([str(BIN / "lint-imports"), "--config", str(PROJECT_ROOT / ".importlinter")],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("depth", [None, 1, 2], ids=["modules", "top-level packages", "sub-packages"])
def test_no_import_cycles(graph, depth):
    """No cycle among modules, nor among packages once each module is read as its package."""
    assert cycles(import_edges(graph), depth) == []


def test_no_upward_import_anywhere(graph):
    """The same rule as the layers contract, read off grimp's graph directly (a second opinion)."""
    assert sorted((a, b) for a, b in import_edges(graph) if not allowed(a, b)) == []


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """An upward import and a package-level cycle are caught (the checks are not vacuous)."""
    assert not allowed("longview.store", "control.pipeline")
    assert not allowed("gate.promotion", "serving.service") and not allowed("serving.service", "gate.audit")
    assert allowed("control.cli", "longview.settings") and allowed("training.train", "numpy")
    package = tmp_path / "lvprobe"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "high.py").write_text("import lvprobe.low\n")
    (package / "low" / "base.py").write_text("import lvprobe.high\n")
    sys.path.insert(0, str(tmp_path))
    try:
        probe = grimp.build_graph("lvprobe")
    finally:
        sys.path.remove(str(tmp_path))
    assert cycles(import_edges(probe)) == [], "no module imports itself back"
    assert cycles(import_edges(probe), 2) == [["lvprobe.high", "lvprobe.low"]], "but the package low and high do"


def _string_imports(path: Path) -> list[str]:
    """Modules imported from a literal string: importlib.import_module("x.y") and __import__("x")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append(node.args[0].value)
    return found


def test_imports_from_literal_strings_obey_the_layers():
    offending = [(module_of(p), target) for p in source_files() for target in _string_imports(p)
                 if not allowed(module_of(p), target)]
    assert offending == []


def _targets(registry: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(name, *path.split(":")) for name, path in registry.items()]


def test_the_model_registry_names_classes_of_training_models():
    """longview/model_registry.py is imported from training/registry.py: every path must point into
    training/models (the package that travels with a model) at a model class of that name."""
    from longview.model_registry import BASELINES, MODELS
    from training.models.base import Recommender
    from training.registry import model_class

    for name, module, attribute in _targets(MODELS):
        assert module.startswith("training.models."), (name, module)
        cls = getattr(importlib.import_module(module), attribute)
        assert issubclass(cls, Recommender) and cls.name == name and model_class(name) is cls
    assert set(BASELINES) <= set(MODELS)


def test_the_benchmark_registry_names_functions_of_the_bench_wing():
    from control.bench import BENCHMARKS, benchmark

    for name, module, attribute in _targets(BENCHMARKS):
        assert module.startswith("control.bench."), (name, module)
        assert callable(getattr(importlib.import_module(module), attribute)) and benchmark(name).__name__ == attribute
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmark("nope")


def test_the_schedulers_preload_stays_below_the_entry_points():
    from control.airflow_scheduler import PRELOAD

    ours = [m for m in PRELOAD if m.split(".")[0] in LAYER]
    assert ours and all(allowed("control.airflow_scheduler", m) for m in ours)
    for module in ours:
        importlib.import_module(module)  # each names a module that exists


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_feast_repo_imports_nothing_of_the_platform():
    """longview/feature_store.py loads feature_repo/*.py by module name: they must not import the
    platform back (that would be a cycle import-linter cannot see)."""
    repo = sorted((PROJECT_ROOT / "feature_repo").glob("*.py"))
    assert repo
    for path in repo:
        assert not _imported_names(path) & set(PACKAGES), path.name


def test_dag_files_import_only_the_entry_points():
    for path in sorted((PROJECT_ROOT / "dags").glob("*.py")):
        ours = {name for name in _imported_names(path) if name in LAYER}
        assert ours <= {"control"}, (path.name, ours)
        text = path.read_text()
        assert "from control.orchestration import" in text or "import control.orchestration" in text, path.name


def test_no_source_module_is_over_350_lines():
    long = {str(p.relative_to(PROJECT_ROOT)): n for p in [*source_files(), *(PROJECT_ROOT / "feature_repo").glob("*.py")]
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_params_file_says_what_the_code_says():
    """One default per setting: every settings value in params.yaml equals the code's default (a
    different value there would make `dvc repro` train differently from `longview train`)."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    defaults = Settings.model_construct().model_dump()  # the code's defaults, no profile or environment
    checked = 0
    for section, value in params.items():
        if section not in Settings.model_fields:
            continue  # DVC's own sections (data) are for the stage commands
        if isinstance(value, dict):
            for key, item in value.items():
                assert key in defaults[section], f"params.yaml {section}.{key} is no setting"
                assert item == defaults[section][key], f"params.yaml {section}.{key}: {item!r}, code: {defaults[section][key]!r}"
                checked += 1
        else:
            assert value == defaults[section], f"params.yaml {section}: {value!r}, code: {defaults[section]!r}"
            checked += 1
    assert checked >= 20 and defaults["sequence"]["epochs"] == params["sequence"]["epochs"] == 20
