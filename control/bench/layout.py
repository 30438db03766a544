"""`longview bench layout`: the code's shape, measured: lines per package, the largest modules,
import cycles (modules, packages) and upward imports against the layers
(control -> gate | serving -> training -> longview). Type-only imports are left out, as in
.importlinter. ``python control/bench/layout.py PATH`` measures another checkout (an older commit:
`git worktree add /tmp/before COMMIT`), reading its packages, not this one's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("longview", "training", "serving", "gate", "control")
LAYER = {"longview": 0, "training": 1, "gate": 2, "serving": 2, "control": 3}
LAUNCHER = "longview.__main__"


def allowed(importer: str, imported: str) -> bool:
    """May module ``importer`` import module ``imported`` under the layers? (Libraries: always.)"""
    a, b = importer.split(".")[0], imported.split(".")[0]
    return b not in LAYER or a == b or LAYER[b] < LAYER[a]


def import_edges(graph) -> set[tuple[str, str]]:
    """A grimp graph's direct imports between the project's modules (the launcher left out)."""
    return {(a, b) for a in graph.modules if a != LAUNCHER for b in graph.find_modules_directly_imported_by(a)}


def cycles(edges: set[tuple[str, str]], depth: int | None = None) -> list[list[str]]:
    """The import cycles once each module is read as its package ``depth`` names deep (None: itself)."""
    import networkx as nx

    def at(module: str) -> str:
        return module if depth is None else ".".join(module.split(".")[:depth])
    g = nx.DiGraph([(at(a), at(b)) for a, b in edges if at(a) != at(b)])
    return sorted(sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)


def measure(root: Path) -> dict:
    """The figures for the checkout at ``root`` (its packages must be importable first on sys.path)."""
    import grimp

    packages = [p for p in PACKAGES if (root / p / "__init__.py").exists()]
    lines = {str(f.relative_to(root)): len(f.read_text().splitlines())
             for p in packages for f in sorted((root / p).rglob("*.py"))}
    tests = sum(len(f.read_text().splitlines()) for f in (root / "tests").rglob("*.py"))
    edges = import_edges(grimp.build_graph(*packages, exclude_type_checking_imports=True))
    return {
        "source_lines": sum(lines.values()), "test_lines": tests,
        "lines_per_package": {p: sum(n for f, n in lines.items() if f.startswith(p + "/")) for p in packages},
        "modules": len(lines), "over_300": sum(n > 300 for n in lines.values()),
        "over_350": sum(n > 350 for n in lines.values()),
        "largest": dict(sorted(lines.items(), key=lambda kv: -kv[1])[:8]),
        "module_cycles": cycles(edges), "package_cycles": cycles(edges, 1), "subpackage_cycles": cycles(edges, 2),
        "upward_imports": sorted(f"{a} -> {b}" for a, b in edges if not allowed(a, b)),
    }


def measure_checkout(root: Path) -> dict:
    """measure() in a fresh interpreter whose path starts at ``root`` (so its packages are read)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    # Run as a script: importing this package would import the measured checkout's foundation.
    run = subprocess.run([sys.executable, __file__, "--json", str(root)], env=env, cwd=root,
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"measuring {root} failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def lines(figures: dict) -> Iterator[str]:
    yield (f"source: {figures['source_lines']:,} lines in {figures['modules']} modules "
           f"({', '.join(f'{p} {n:,}' for p, n in figures['lines_per_package'].items())}); tests {figures['test_lines']:,}")
    yield f"modules over 300 lines: {figures['over_300']}, over 350: {figures['over_350']}"
    yield "largest: " + ", ".join(f"{f} {n}" for f, n in figures["largest"].items())
    for what in ("module_cycles", "package_cycles", "subpackage_cycles"):
        found = figures[what]
        yield f"{what.replace('_', ' ')}: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found)
    yield f"upward imports: {len(figures['upward_imports'])}" + "".join(f"\n  {e}" for e in figures["upward_imports"])
    yield json.dumps(figures)


def layout(settings, root: Path | None = None, **_options) -> Iterator[str]:
    """This checkout's figures (``root``, the benchmarks' data folder, is not used: nothing is written)."""
    yield from lines(measure_checkout(Path(settings.project_root)))


if __name__ == "__main__":
    as_json = "--json" in sys.argv
    target = Path([a for a in sys.argv[1:] if a != "--json"][0]).resolve()
    if as_json:
        sys.path.insert(0, str(target))
        print(json.dumps(measure(target)))
    else:
        for line in lines(measure_checkout(target)):
            print(line)
