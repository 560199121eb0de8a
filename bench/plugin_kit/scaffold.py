"""Write a new plugin package from the templates: names derived from the plugin name, files never overwritten."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.plugin_kit import templates

# kind given on the command line -> (registry kind, entry-point group, template)
KINDS: dict[str, tuple[str, str, str]] = {
    "attack": ("attacks", "bench.attacks", templates.ATTACK),
    "defense": ("defenses", "bench.defenses", templates.DEFENSE),
    "metric": ("metrics", "bench.metrics", templates.METRIC),
}
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Names:
    """Every name the package uses, derived from the plugin name (`my-attack`)."""

    plugin: str  # my-attack: the registry name (`bench run --attack my-attack`)
    distribution: str  # leakbench-my-attack: the pip distribution
    module: str  # leakbench_my_attack: the import package
    cls: str  # MyAttack: the plugin class


def names_for(name: str) -> Names:
    """The package's names; a BenchError for a plugin name that is not lower-case words joined by hyphens."""
    if not _NAME.match(name):
        raise BenchError(f"plugin name {name!r}: use lower-case letters and digits in words joined by hyphens "
                         f"(e.g. my-attack)")
    dist = name if name.startswith("leakbench-") else f"leakbench-{name}"
    return Names(plugin=name, distribution=dist, module=dist.replace("-", "_"),
                 cls="".join(part.capitalize() for part in name.split("-")))


def scaffold(name: str, kind: str, directory: Path) -> Path:
    """Write the package for plugin `name` of `kind` (attack, defense or metric) under `directory`; its folder."""
    if kind not in KINDS:
        raise BenchError(f"--kind {kind!r}: use one of {', '.join(KINDS)}")
    from bench import registry

    reg_kind, group, plugin_template = KINDS[kind]
    n = names_for(name)
    if name in registry.REGISTRIES[reg_kind]:
        raise BenchError(f"a {kind} named {name!r} is already registered; choose another name")
    root = Path(directory) / n.distribution
    if root.exists():
        raise BenchError(f"{root} already exists; choose another --dir or remove it")
    fields = {"name": n.plugin, "dist": n.distribution, "module": n.module, "cls": n.cls, "kind": kind,
              "kinds": reg_kind, "group": group}
    files = {
        "pyproject.toml": templates.PYPROJECT,
        "README.md": templates.README,
        f"{n.module}/__init__.py": templates.INIT,
        f"{n.module}/plugin.py": plugin_template,
        "tests/test_contract.py": templates.TEST,
    }
    try:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(templates.render(text, fields))
    except OSError as exc:
        raise BenchError(f"cannot write the package under {directory}: {exc.strerror or exc}") from None
    return root
