"""Straight layers: no module of the engine or of the built-in plugins imports a unit that sits above its own in the
declared order below, at module level or inside a function (a lazy import is still a dependency).

A unit is a module directly under `bench` (`bench.store`, `bench.spec`, ...) or one of the installed plugin packages
(`bench.attacks`, `bench.defenses`, `bench.metrics`). Units of one layer may not import each other; a module may
import anything inside its own unit. A new unit must be given a layer here before its imports are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"bench": "bench", "attacks": "bench.attacks", "defenses": "bench.defenses", "metrics": "bench.metrics"}

# Bottom first. Each layer may import only the layers listed before it.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    # foundations: pure helpers and the declarations everything else is keyed by
    ("hashing", "params", "profiles", "registry", "threads", "images", "weights", "install_hint", "metric_value",
     "logistic_regression", "run_files", "paper_parity", "matching", "locks", "devices", "__version__",
     "record_cache"),
    ("spec", "hyper", "features", "nn"),  # the run spec and hyper-parameters; feature containers; network blocks
    ("plugins",),  # plugin base classes and their registries
    # shared embedders; old plugin APIs; loading a SemSim checkpoint; the table of metric conventions (it registers
    # the metric variants through bench.plugins); the shared trainer of learned attacks (LearnedAttack is an Attack)
    ("embedders", "compat", "semsim_checkpoint", "metric_conventions", "training"),
    ("extractors", "datasets"),
    ("attacks", "defenses", "metrics"),  # the built-in plugins
    ("store",),  # SQLite: never imports the runner or the reports
    ("annotations",),  # the human study: collecting answers, correlation statistics
    ("report",),  # tables and figures read from the store
    ("run",),  # plan, compute, write into the store, refresh the leaderboard
    ("contract", "plugin_kit"),
    ("submission",),
    ("cli",),
    ("__main__",),
]

# What still points upwards, as (importing unit, imported unit): the reason it is left and the way out. Empty now
# (the last entry, metrics -> semsim_train, went when checkpoint loading moved to bench/semsim_checkpoint.py;
# training now lives in bench/annotations/semsim_*.py).
ALLOWED: dict[tuple[str, str], str] = {}


def _layer_of() -> dict[str, int]:
    out: dict[str, int] = {}
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            assert f"bench.{unit}" not in out, f"{unit} is declared twice"
            out[f"bench.{unit}"] = i
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            name = ".".join([package, *rel.parts]).removesuffix(".__init__")
            found.append((name, path))
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every `bench.*` module that `path` imports, module-level or inside functions, with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno))
            if node.module == "bench":  # `from bench import weights` imports the unit bench.weights
                out += [(f"bench.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in out if name.startswith("bench.")]


def _edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import that crosses units."""
    edges = []
    for module, path in _modules():
        src = _unit(module)
        for name, line in _imports(path):
            dst = _unit(name)
            if dst != src:
                edges.append((src, dst, f"{path.relative_to(ROOT)}:{line} imports {name}"))
    return edges


def test_every_unit_has_a_layer() -> None:
    layer = _layer_of()
    units = {_unit(m) for m, _ in _modules()} | {dst for _, dst, _ in _edges()}
    missing = sorted(u for u in units if u not in layer and u != "bench")
    assert not missing, f"declare a layer for {missing} in tests/test_layers.py"


def test_no_unit_imports_upwards() -> None:
    layer = _layer_of()
    bad = [where for src, dst, where in _edges()
           if src in layer and dst in layer and layer[dst] >= layer[src] and (src, dst) not in ALLOWED]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_allow_list_holds_only_what_still_exists() -> None:
    present = {(src, dst) for src, dst, _ in _edges()}
    stale = sorted(set(ALLOWED) - present)
    assert not stale, f"remove {stale} from ALLOWED: those imports are gone"


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from bench.report.leaderboard import x\n", ["bench.report.leaderboard"]),
    ("import bench.store.db as db\n", ["bench.store.db"]),
    ("from bench import weights, errors\n", ["bench", "bench.weights", "bench.errors"]),
    ("from . import sibling\nimport numpy\n", []),
])
def test_imports_are_found_wherever_they_are(tmp_path: Path, source: str, expected: list[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert sorted(n for n, _ in _imports(path)) == sorted(e for e in expected if e.startswith("bench."))


PLUGIN_UNITS = {"bench.attacks", "bench.defenses", "bench.metrics"}


def test_the_engine_never_imports_a_plugin_package() -> None:
    """The engine (everything under bench/) reaches the built-in plugins only through the registry, which imports
    them by name when a registry is first used (bench/registry.py); no engine module imports a plugin module, at
    module level or inside a function. What several families need (e.g. pairing a batch's reconstructions with its
    originals, bench/matching.py) has an engine home that the families import."""
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for module, path in _modules()
           if _unit(module) not in PLUGIN_UNITS
           for name, line in _imports(path) if _unit(name) in PLUGIN_UNITS]
    assert not bad, "the engine imports plugin packages:\n" + "\n".join(bad)


# Inside run/, only the coordinators that refresh the leaderboard after writing the store reach the reports; what
# computes a run (also on Dask workers: plan, stages, evaluate, outputs, the grid picture) never does.
REPORT_CALLERS_IN_RUN = {"bench.run.runner", "bench.run.grid"}


def test_computing_a_run_does_not_import_the_reports() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for module, path in _modules()
           if module.startswith("bench.run.") and module not in REPORT_CALLERS_IN_RUN
           for name, line in _imports(path) if _unit(name) == "bench.report"]
    assert not bad, "\n".join(bad)


def _plugin_home(module: str) -> str | None:
    """Where a plugin module lives: its attack family (bench.attacks.<family or module>), bench.defenses or
    bench.metrics; None for the engine."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "attacks":
        return ".".join(parts[:3])
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in ("defenses", "metrics") else None


# Engine modules that only hold the machinery of feature kinds, not a kind of their own.
FEATURE_MACHINERY = {"bench.features", "bench.features.base", "bench.features.pictures"}


def test_a_feature_kind_in_the_engine_is_shared_by_several_plugin_homes() -> None:
    """A feature kind that the engine holds (bench/features/<kind>.py) is read by at least two plugin homes (attack
    families, the defenses): one that only one family uses belongs in that family's package, as the gradient
    releases do (attacks/gradinv/plugins.py)."""
    users: dict[str, set[str]] = {m: set() for m, _ in _modules()
                                  if m.startswith("bench.features.") and m not in FEATURE_MACHINERY}
    assert users, "no feature-kind module found under bench/features"
    for module, path in _modules():
        home = _plugin_home(module)
        for name, _ in _imports(path):
            if home and name in users:
                users[name].add(home)
    lonely = {m: sorted(h) for m, h in users.items() if len(h) < 2}
    assert not lonely, f"feature kinds used by fewer than two plugin homes (move them to that family): {lonely}"


@pytest.mark.parametrize("module, home", [("bench.attacks.gradinv.plugins", "bench.attacks.gradinv"),
                                          ("bench.attacks.mean_image", "bench.attacks.mean_image"),
                                          ("bench.defenses.pe_miu", "bench.defenses"),
                                          ("bench.metrics", "bench.metrics"), ("bench.run.grid", None)])
def test_plugin_homes(module: str, home: str | None) -> None:
    assert _plugin_home(module) == home
