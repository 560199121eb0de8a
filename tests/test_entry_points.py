"""Outside distributions add plugins through the bench.* entry-point groups."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.registry import Registry

PLUGIN = '''
from bench.attacks.mean_image import MeanImage


class OutsideAttack(MeanImage):
    """An attack shipped by another distribution."""

    name = "outside-attack"
'''


@pytest.fixture()
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "outside_plugin.py").write_text(PLUGIN)
    info = tmp_path / "outside_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bench.attacks]\noutside-attack = outside_plugin:OutsideAttack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("outside_plugin", None)


def test_entry_point_plugin_is_registered(fake_distribution: Path) -> None:
    attacks = Registry("attacks")  # a fresh registry loads built-ins and entry points on first use
    entry = attacks.get("outside-attack")
    assert entry.obj.__name__ == "OutsideAttack"
    assert entry.source.startswith("entry point outside_plugin:")
    assert entry.summary == "An attack shipped by another distribution."
    assert entry.meta["consumes"] == "*" and entry.meta["profiles"] == ["smoke", "cpu", "paper"]
    assert "outside-attack" in attacks.names()
