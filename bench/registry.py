"""One registry per plugin kind, filled by decorators (built-ins) and entry points (outside packages)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
import warnings
from importlib import import_module
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Generic, Iterator, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")

# Modules whose import registers the built-in plugins, per registry.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "attacks": ("bench.attacks",),
    # The gradient-inversion family registers its release kind, white-box extractor and gradient defenses beside
    # its attacks: listing or resolving those kinds alone must load it too.
    "defenses": ("bench.defenses", "bench.attacks.gradinv.plugins"),
    "metrics": ("bench.metrics",),
    "datasets": ("bench.datasets",),
    "extractors": ("bench.extractors", "bench.attacks.gradinv.plugins"),
    "feature_kinds": ("bench.features", "bench.attacks.gradinv.plugins"),
}

# Entry-point groups through which installed distributions add plugins.
ENTRY_POINT_GROUPS: dict[str, str] = {
    "attacks": "bench.attacks",
    "defenses": "bench.defenses",
    "metrics": "bench.metrics",
    "datasets": "bench.datasets",
    "extractors": "bench.extractors",
}


class PluginLoadWarning(UserWarning):
    """An outside plugin's entry point failed to import; the plugin is skipped and everything else works."""


@dataclass
class Entry(Generic[T]):
    """A registered plugin: its name, the object (usually a class), a one-line summary and metadata."""

    name: str
    obj: T
    summary: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"


class Registry(Generic[T]):
    """Name -> plugin mapping of one kind; loads built-ins and entry points lazily on first lookup."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self.failed: dict[str, str] = {}  # entry points that failed to load: name -> "distribution: error"

    def register(self, name: str, obj: T, summary: str = "", source: str = "builtin", **meta: Any) -> T:
        """Add `obj` under `name`; a second registration of one name is an error unless it is the same object."""
        if not name or name != name.strip():
            raise ValueError(f"invalid {self.kind} name {name!r}")
        old = self._entries.get(name)
        if old is not None and old.obj is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered by {old.source}")
        if not summary:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            summary = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name=name, obj=obj, summary=summary, meta=dict(meta), source=source)
        return obj

    def unregister(self, name: str) -> None:
        """Remove a plugin (used by tests that register toys)."""
        self._entries.pop(name, None)

    def load(self) -> None:
        """Import built-in modules and the entry points of installed distributions (once)."""
        if self._loaded:
            return
        self._loaded = True
        for mod in _BUILTIN_MODULES.get(self.kind, ()):
            import_module(mod)
        group = ENTRY_POINT_GROUPS.get(self.kind)
        if group:
            for ep in entry_points(group=group):
                if ep.name in self._entries:
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # an outside plugin that fails to load must not break the command
                    dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed distribution"
                    warnings.warn(f"{self.kind[:-1]} plugin {ep.name!r} from {dist} ({ep.value}) failed to load "
                                  f"and is skipped: {type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=2)
                    self.failed[ep.name] = f"{dist}: {type(exc).__name__}: {exc}"
                    continue
                # An entry point may point at a plugin class, or at a module that registers itself.
                if ep.name not in self._entries and not isinstance(obj, ModuleType):
                    meta = obj.registry_meta() if hasattr(obj, "registry_meta") else {}
                    self.register(ep.name, obj, source=f"entry point {ep.value}", **meta)

    def get(self, name: str) -> Entry[T]:
        """The entry for `name`, or an UnknownNameError that lists the closest registered names."""
        self.load()
        if name in self._entries:
            return self._entries[name]
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"registered: {', '.join(names) or 'none'}"
        return f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}; {hint}"

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load()
        return iter([self._entries[n] for n in sorted(self._entries)])

    def __contains__(self, name: str) -> bool:
        self.load()
        return name in self._entries


attacks: Registry[Any] = Registry("attacks")
defenses: Registry[Any] = Registry("defenses")
metrics: Registry[Any] = Registry("metrics")
datasets: Registry[Any] = Registry("datasets")
extractors: Registry[Any] = Registry("extractors")

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (attacks, defenses, metrics, datasets, extractors)
}
