"""Every built-in attack, defense and metric passes the contract test kit (the one `bench plugin check` runs)."""

from __future__ import annotations

import pytest

from bench import registry
from bench.contract import check_plugin

PLUGINS = [(k, e.name) for k in ("attacks", "defenses", "metrics") for e in registry.REGISTRIES[k]]


@pytest.mark.parametrize("kind, name", PLUGINS, ids=[f"{k}:{n}" for k, n in PLUGINS])
def test_builtin_plugin_passes_contract(kind: str, name: str) -> None:
    results = check_plugin(name, kind)
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed


def test_registry_suggests_close_names() -> None:
    from bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean cfgan"):
        registry.attacks.get("cfgn")
    with pytest.raises(UnknownNameError, match="registered:"):
        registry.attacks.get("zzzzzz")
