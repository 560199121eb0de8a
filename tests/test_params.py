"""Declared plugin parameters (bench/params.py) and `bench list --verbose` (bench/cli/lists.py)."""

from __future__ import annotations

import click
import numpy as np
import pytest
from click.testing import CliRunner

from bench import registry
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.params import Param, format_value, label, parse_assignments, resolve_params
from bench.plugins import Defense, register_defense

DECLARED = {
    "keep": Param(float, 0.5, "share of keypoints kept", low=0.0, high=1.0),
    "steps": Param(int, 3, "iterations", low=1),
    "exact": Param(bool, False, "exact mode"),
    "mode": Param(str, "fast", "how", choices=("fast", "slow")),
}


# ------------------------------------------------------------------------------------------------- coercion
@pytest.mark.parametrize(("key", "text", "expected"), [
    ("keep", "0.25", 0.25), ("keep", " 1 ", 1.0), ("keep", "1e-1", 0.1), ("keep", 0, 0.0),
    ("steps", "7", 7), ("steps", " 12 ", 12), ("steps", 4.0, 4), ("steps", np.int64(5), 5),
    ("exact", "true", True), ("exact", "YES", True), ("exact", "on", True), ("exact", "1", True),
    ("exact", "false", False), ("exact", "No", False), ("exact", "0", False), ("exact", True, True),
    ("mode", "slow", "slow"),
])
def test_text_is_coerced_to_the_declared_type(key: str, text: object, expected: object) -> None:
    out = resolve_params("defense 'toy'", DECLARED, {key: text})[key]
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(("key", "text", "words"), [
    ("keep", "half", "not a valid float"), ("keep", "nan", "not a valid float"), ("keep", "inf", "finite"),
    ("keep", True, "not a valid float"),
    ("steps", "2.5", "whole number"), ("steps", 2.5, "whole number"), ("steps", np.float32(2.5), "whole number"),
    ("steps", True, "not a valid int"), ("steps", "", "not a valid int"),
    ("exact", "maybe", "true/false"), ("exact", "2", "true/false"),
])
def test_bad_values_are_one_line_errors(key: str, text: object, words: str) -> None:
    with pytest.raises(BenchError) as err:
        resolve_params("defense 'toy'", DECLARED, {key: text})
    msg = str(err.value)
    assert words in msg and "\n" not in msg and f"parameter {key}=" in msg and "defense 'toy'" in msg


def test_range_and_choice_errors_name_the_valid_values() -> None:
    with pytest.raises(BenchError, match=r"keep='1.5' is out of range; allowed: \[0, 1\]"):
        resolve_params("defense 'toy'", DECLARED, {"keep": "1.5"})
    with pytest.raises(BenchError, match=r"out of range; allowed: \[1, inf\]"):
        resolve_params("defense 'toy'", DECLARED, {"steps": "0"})
    with pytest.raises(BenchError, match="mode='medium' is not allowed; choose one of fast, slow"):
        resolve_params("defense 'toy'", DECLARED, {"mode": "medium"})
    assert resolve_params("x", DECLARED, {"keep": "0", "steps": "1"})["keep"] == 0.0  # bounds are inclusive


def test_unknown_keys_name_the_valid_parameters() -> None:
    with pytest.raises(BenchError) as err:
        resolve_params("defense 'toy'", DECLARED, {"kepe": "0.1", "zzz": 1})
    msg = str(err.value)
    assert "has no parameter kepe, zzz" in msg and "\n" not in msg
    for key in DECLARED:
        assert key in msg
    assert "keep (float = 0.5 in [0, 1] - share of keypoints kept)" in msg
    with pytest.raises(BenchError, match="has no parameter x; it takes no parameters"):
        resolve_params("defense 'none'", {}, {"x": 1})


def test_defaults_are_filled_and_coerced() -> None:
    assert resolve_params("x", DECLARED, None) == {"exact": False, "keep": 0.5, "mode": "fast", "steps": 3}
    assert resolve_params("x", DECLARED, {"steps": "9"}) == {"exact": False, "keep": 0.5, "mode": "fast", "steps": 9}
    assert resolve_params("x", {}, {}) == {}
    # an int default of a float parameter is stored as a float: given or defaulted, the same spec
    loose = {"sigma": Param(float, 1, low=0)}
    default, given = resolve_params("x", loose, {})["sigma"], resolve_params("x", loose, {"sigma": "1"})["sigma"]
    assert default == given and type(default) is type(given) is float


def test_param_declarations_are_checked() -> None:
    with pytest.raises(TypeError, match="int, float, str, bool"):
        Param(list, [])
    with pytest.raises(ValueError, match="empty"):
        Param(float, 0.5, low=1, high=0)
    with pytest.raises(ValueError, match="choices"):
        Param(str, "a", choices=())
    assert Param(str, "a", choices=["a", "b"]).choices == ("a", "b")
    assert DECLARED["steps"].describe() == "int = 3 in [1, inf] - iterations"
    assert DECLARED["mode"].describe() == "str = 'fast' one of fast|slow - how"


# ----------------------------------------------------------------------------------------- KEY=VALUE parsing
def test_parse_assignments() -> None:
    assert parse_assignments(["a=1,b=2", "c=x"], "--defense-arg") == {"a": "1", "b": "2", "c": "x"}
    assert parse_assignments([" a = 1 ", "b=", "c=x=y,"], "--attack-arg") == {"a": "1", "b": "", "c": "x=y"}
    assert parse_assignments([], "--defense-arg") == {}


@pytest.mark.parametrize(("items", "words"), [
    (["a=1", "a=2"], "--defense-arg gives 'a' twice"),
    (["a=1,a=1"], "gives 'a' twice"),
    (["a"], "--defense-arg expects KEY=VALUE, got 'a'"),
    (["a=1,b"], "expects KEY=VALUE, got 'b'"),
    (["=1"], "expects KEY=VALUE, got '=1'"),
])
def test_parse_assignments_errors(items: list[str], words: str) -> None:
    with pytest.raises(BenchError) as err:
        parse_assignments(items, "--defense-arg")
    assert words in str(err.value)


# ----------------------------------------------------------------------------------------------------- label
def test_label() -> None:
    assert label("none", {}) == "none"
    assert label("subsample", {"keep": 0.25}) == "subsample(keep=0.25)"
    assert label("noise", {"sigma": 0.01, "bits": 8, "exact": True, "mode": "fast"}) == \
        "noise(bits=8,exact=true,mode=fast,sigma=0.01)"
    assert label("x", {"k": 1.0}) == "x(k=1)"
    # values that differ never print alike (':g' used to round both to 0.123457)
    assert label("x", {"k": 0.1234567}) != label("x", {"k": 0.1234568})
    assert format_value(1e-7) == "1e-07" and format_value(False) == "false"


# --------------------------------------------------------------------------------------------- bench list -v
class _Keyed(Defense):
    """Toy defense with declared parameters, for the listing."""

    name = "toy-keyed"
    version = "3"
    accepts = ("sift",)
    params = {"keep": Param(float, 0.5, "share of keypoints kept", low=0.0, high=1.0),
              "mode": Param(str, "fast", "how", choices=("fast", "slow"))}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        return features


@pytest.fixture()
def cli_group() -> click.Group:
    from bench.cli.lists import list_cmd

    group = click.Group()
    group.add_command(list_cmd, "list")
    register_defense(_Keyed)
    registry.defenses.failed["broken-plugin"] = "broken-dist: ImportError: no module named nowhere"
    yield group
    registry.defenses.unregister(_Keyed.name)
    registry.defenses.failed.pop("broken-plugin", None)


def test_list_verbose_shows_versions_parameters_and_failures(cli_group: click.Group) -> None:
    out = CliRunner().invoke(cli_group, ["list", "defenses", "--verbose"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("toy-keyed"))
    assert "version 3; accepts sift" in lines[at + 1]
    assert lines[at + 2].strip() == "parameters:"
    assert lines[at + 3].strip() == "keep: float = 0.5 in [0, 1] - share of keypoints kept"
    assert lines[at + 4].strip() == "mode: str = 'fast' one of fast|slow - how"
    assert "drop-coordinates" in out.output and "version 2" in out.output
    assert "warning: defense plugin 'broken-plugin' failed to load" in out.output and "broken-dist" in out.output


def test_list_verbose_attacks_show_outputs_and_default_extractor(cli_group: click.Group) -> None:
    out = CliRunner().invoke(cli_group, ["list", "attacks", "-v"])
    assert out.exit_code == 0, out.output
    assert "cfgan" in out.output and "outputs images; default extractor sift" in out.output
    assert "parameters: none" in out.output


def test_list_plain_is_unchanged(cli_group: click.Group) -> None:
    out = CliRunner().invoke(cli_group, ["list"])
    assert out.exit_code == 0, out.output
    for kind in ("attacks:", "defenses:", "metrics:", "datasets:", "extractors:"):
        assert kind in out.output
    assert "[consumes sift with has_coordinates=True" in out.output and "[higher is better]" in out.output
    assert "parameters:" not in out.output and "version 2" not in out.output and "warning" not in out.output
    bad = CliRunner().invoke(cli_group, ["list", "nonsense"])
    assert bad.exit_code == 2
