"""Declared plugin parameters: type, default, help and allowed range, coerced and validated before any work.

An attack or defense lists its parameters in a class attribute `params = {"keep": Param(float, 0.5, "...",
low=0, high=1)}`. `--defense-arg keep=0.25` arrives as text; `resolve_params` coerces it, rejects unknown keys and
bad values with one line naming the valid ones, and fills in defaults, so that the spec (and so the run id) always
holds every parameter's value.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from bench.errors import BenchError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
TYPES = (int, float, str, bool)  # what a parameter given as text on the command line can be
_EXPECTED = {int: " (a whole number)", float: " (a finite number)", bool: " (true/false, yes/no, on/off or 1/0)"}


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type (int, float, str or bool), default, help line and allowed values."""

    type: type
    default: Any
    help: str = ""
    low: float | None = None  # inclusive bounds for int and float
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise TypeError(f"Param type must be one of int, float, str, bool; got {self.type!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))  # a list would make the Param unhashable
            if not self.choices:
                raise ValueError("Param choices must not be empty")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"Param bounds are empty: low={self.low} > high={self.high}")

    def describe(self) -> str:
        """`keep: float = 0.5 in [0, 1] - share of keypoints kept` (for `bench list --verbose` and errors)."""
        allowed = ""
        if self.choices is not None:
            allowed = " one of " + "|".join(str(c) for c in self.choices)
        elif self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            allowed = f" in [{lo}, {hi}]"
        return f"{self.type.__name__} = {self.default!r}{allowed}" + (f" - {self.help}" if self.help else "")

    def coerce(self, owner: str, key: str, value: Any) -> Any:
        """`value` (text from the command line, or a Python value) as this parameter's type, or a BenchError."""
        where = f"{owner}: parameter {key}={value!r}"
        try:
            if self.type is bool:
                if isinstance(value, bool):
                    out: Any = value
                elif str(value).strip().lower() in _TRUE:
                    out = True
                elif str(value).strip().lower() in _FALSE:
                    out = False
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(value, str):
                    out = int(value.strip())
                elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                    raise ValueError
                elif not isinstance(value, numbers.Integral) and not float(value).is_integer():
                    raise ValueError  # 2.5 (or numpy's float32(2.5)) is never silently truncated to 2
                else:
                    out = int(value)
            elif self.type is float:
                if isinstance(value, (bool, np.bool_)):
                    raise ValueError
                out = float(value)
                if not math.isfinite(out):
                    raise ValueError
            else:
                out = self.type(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where} is not a valid {self.type.__name__}{_EXPECTED.get(self.type, '')}") from None
        if self.choices is not None and out not in self.choices:
            raise BenchError(f"{where} is not allowed; choose one of {', '.join(map(str, self.choices))}")
        if self.low is not None and out < self.low or self.high is not None and out > self.high:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            raise BenchError(f"{where} is out of range; allowed: [{lo}, {hi}]")
        return out


def resolve_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared parameter's value: `given` coerced and validated, the rest at their defaults."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        if not declared:
            raise BenchError(f"{owner} has no parameter {', '.join(unknown)}; it takes no parameters")
        valid = ", ".join(f"{k} ({p.describe()})" for k, p in sorted(declared.items()))
        raise BenchError(f"{owner} has no parameter {', '.join(unknown)}; its parameters: {valid}")
    # Defaults go through the same coercion as given values: `Param(float, 1)` gives 1.0 either way, so a value
    # given explicitly and the same value by default make the same spec (and so the same run id).
    return {k: p.coerce(owner, k, given[k] if k in given else p.default) for k, p in sorted(declared.items())}


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """`["k=v", "a=b,c=d"]` (from repeated `--defense-arg` options) as {k: v, a: b, c: d}; a bad item is an error.

    Commas separate assignments, so a value cannot hold one; parameters are scalars (int, float, str, bool).
    """
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise BenchError(f"{option} expects KEY=VALUE, got {part!r}")
            if key.strip() in out:
                raise BenchError(f"{option} gives {key.strip()!r} twice")
            out[key.strip()] = value.strip()
    return out


def label(name: str, params: Mapping[str, Any]) -> str:
    """`subsample(keep=0.25)`: a plugin with its parameters, as shown in leaderboards; bare name without any."""
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items())) + ")"


def format_value(value: Any) -> str:
    """A parameter value as typed on the command line: exact floats (shortest round trip, `1` not `1.0`), bools
    as true/false; two different values never print alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, (list, tuple)):  # list hyper-parameters (bench.hyper): `8/16/16` as typed
        return "/".join(format_value(v) for v in value)
    return str(value)
