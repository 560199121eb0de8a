"""Attack hyper-parameters as declared parameters, derived from an attack's per-profile `PROFILES` dict.

An attack keeps its hyper-parameters in one dict per profile beside its code. `declare(PROFILES)` turns that dict into
declared `HyperParam`s (one per key, its default taken per profile, so no value is typed twice), which `--attack-arg`
and grid items (`cfgan:lr=0.0005`) reach. `split_given` resolves what a user gave: validated and coerced before any
work, values equal to the profile default dropped, so that a run with defaults has exactly the configuration (and
run id) it had before hyper-parameters were declared. An attack reads `apply(PROFILES[profile], overrides)`.

Multi-stage attacks also declare `steps` (`stage_steps`): the number of steps of every stage, overriding the
per-stage counts (cfgan's `coarse_steps` and `fine_steps`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from bench.errors import BenchError
from bench.params import Param, format_value, resolve_params

LIST_SEP = "/"  # list values on the command line: `enc_widths=8/16/16/16` (commas and colons separate items)

# Keys that fix the geometry a profile runs at (the run profile's image size): never user parameters.
GEOMETRY = frozenset({"image_size", "map_size", "net_size", "sizes"})

# Upper bounds that the optimiser or the code needs (Adam's betas lie in [0, 1)).
HIGH: dict[str, float] = {"betas": 0.9999, "holdout": 0.9}
LOSS_NAMES = {"pix": "pixel L1", "per": "perceptual", "adv": "adversarial", "sift": "SIFT", "l1": "pixel L1",
              "style": "style"}

# Help lines of keys that several attacks share; an attack may add or replace lines through `declare(help=...)`.
COMMON_HELP: dict[str, str] = {
    "batch_size": "training batch size",
    "eval_batch": "batch size of reconstruction",
    "lr": "Adam learning rate",
    "betas": "Adam betas (b1/b2)",
    "lr_decay": "learning-rate schedule",
    "lr_gamma": "factor of each step decay of the learning rate",
    "decay_every": "epochs between learning-rate decays",
    "epochs": "training epochs",
    "steps": "training steps",
    "perceptual": "use the VGG19 perceptual loss (needs ImageNet VGG19 weights)",
    "adversarial": "train against a discriminator (adversarial loss)",
    "sift_loss": "use the SIFT loss",
    "sift_stride": "grid stride of the dense SIFT of the sift loss",
    "bn_batches": "batches that re-estimate batch-norm statistics after each stage (0: off)",
}


@dataclass(frozen=True)
class HyperParam(Param):
    """An attack hyper-parameter: its default depends on the run profile; a value may be a list of numbers.

    `defaults` holds (profile, default) for every profile that uses the parameter; `item` is the element type of a
    list value (None for a scalar); `stages` names the per-stage keys that a `steps` parameter sets.
    """

    defaults: tuple[tuple[str, Any], ...] = ()
    item: type | None = None
    stages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.item is None:
            super().__post_init__()
        elif self.type is not list or self.item not in (int, float):
            raise TypeError(f"a list HyperParam holds int or float items; got {self.type!r} of {self.item!r}")

    def default_for(self, profile: str) -> Any:
        """The default at `profile`, or a BenchError naming the profiles that use this parameter."""
        for name, value in self.defaults:
            if name == profile:
                return list(value) if self.item is not None else value
        raise KeyError(profile)

    def describe(self) -> str:
        """`int, per profile: smoke 4, cpu 400, paper 90000 - training steps` (for `bench list -v` and errors)."""
        kind = f"list of {self.item.__name__} ({LIST_SEP}-separated)" if self.item else self.type.__name__
        per = ", ".join(f"{p} {_show(v)}" for p, v in self.defaults)
        allowed = ""
        if self.choices is not None:
            allowed = " one of " + "|".join(str(c) for c in self.choices)
        elif self.low is not None:
            allowed = f" >= {self.low:g}"
        return f"{kind}{allowed}, per profile: {per}" + (f" - {self.help}" if self.help else "")

    def coerce(self, owner: str, key: str, value: Any) -> Any:
        if self.item is None:
            return super().coerce(owner, key, value)
        parts = value.split(LIST_SEP) if isinstance(value, str) else value
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:
            raise BenchError(f"{owner}: parameter {key}={value!r} is not a {LIST_SEP}-separated list of "
                             f"{self.item.__name__}")
        one = Param(self.item, 0, low=self.low, high=self.high)
        return [one.coerce(owner, key, p) for p in parts]


def _show(value: Any) -> str:
    if value is None:
        return "(per stage)"
    if isinstance(value, (list, tuple)):
        return LIST_SEP.join(format_value(v) for v in value)
    return format_value(value)


def _kind(key: str, values: list[Any]) -> tuple[type, type | None] | None:
    """(type, item type) of a key from its values in every profile; None when it cannot be a parameter."""
    if all(isinstance(v, bool) for v in values):
        return bool, None
    if all(isinstance(v, str) for v in values):
        return str, None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return (int if all(isinstance(v, int) for v in values) else float), None
    if all(isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
           for v in values):
        return list, (int if all(isinstance(x, int) for v in values for x in v) else float)
    return None  # nested lists (e.g. ivr's [[width, kernel], ...]) stay profile-only


def declare(profiles: Mapping[str, Mapping[str, Any]], help: Mapping[str, str] | None = None,
            prefix: str = "", skip: Sequence[str] = (), low: Mapping[str, float] | None = None,
            choices: Mapping[str, Sequence[Any]] | None = None) -> dict[str, HyperParam]:
    """Declared parameters for every key of a PROFILES dict (but geometry keys and `skip`), defaults per profile.

    A key's type is inferred from its values; counts (ints) and lists of widths are at least 1 and other numbers at
    least 0 unless `low` says otherwise; a text value chooses among the values the profiles use unless `choices`
    says otherwise. `prefix` names the keys of a second dict apart (sli-l's `classifier_steps`).
    """
    help = {**COMMON_HELP, **(help or {})}
    out: dict[str, HyperParam] = {}
    keys = dict.fromkeys(k for prof in profiles.values() for k in prof)
    for key in keys:
        if key in GEOMETRY or key in skip:
            continue
        values = [(p, prof[key]) for p, prof in profiles.items() if key in prof]
        kind = _kind(key, [v for _, v in values])
        if kind is None:
            continue
        typ, item = kind
        # Lists are kept as tuples, so that the Param stays hashable; `default_for` gives them back as lists.
        defaults = tuple((p, tuple(v) if item is not None else v) for p, v in values)
        numbers = [x for _, v in values for x in (v if item is not None else [v])] if typ not in (bool, str) else []
        # Counts and widths are at least 1 (0 where a profile uses 0, e.g. bn_batches: off); other numbers >= 0.
        count = typ is int or item is int
        bound = (low or {}).get(key, min(1 if count else 0, *numbers) if numbers else None)
        top = HIGH.get(key)
        allowed = (choices or {}).get(key, tuple(dict.fromkeys(v for _, v in defaults)) if typ is str else None)
        name = prefix + key
        text = help.get(name, help.get(key, _generic_help(key)))
        out[name] = HyperParam(typ, defaults[0][1], text, low=bound, high=top,
                               choices=tuple(allowed) if allowed is not None else None,
                               defaults=defaults, item=item)
    return out


def _generic_help(key: str) -> str:
    if key.startswith("lambda_"):
        loss = key[len("lambda_"):]
        return f"weight of the {LOSS_NAMES.get(loss, loss)} loss"
    if key.endswith("_steps"):
        return f"training steps of the {key[:-len('_steps')]} stage"
    if key.endswith("widths") or key in ("coarse", "refine", "disc", "fc", "dec", "blocks", "channels"):
        return "network widths"
    return ""


def stage_steps(profiles: Mapping[str, Mapping[str, Any]], stages: Sequence[str]) -> dict[str, HyperParam]:
    """`steps`: the number of steps of every stage at once (it sets each of `stages`, e.g. coarse_steps, fine_steps)."""
    defaults = tuple((p, prof[stages[0]] if len({prof[s] for s in stages}) == 1 else None)
                     for p, prof in profiles.items())
    first = next(iter(profiles.values()))[stages[0]]
    return {"steps": HyperParam(int, first, f"steps of every stage (sets {', '.join(stages)})", low=1,
                                defaults=defaults, stages=tuple(stages))}


def split_given(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any] | None,
                profile: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain parameter values, hyper-parameter overrides) of what a user gave, validated before any work.

    Plain parameters are resolved as always (defaults filled in). A hyper-parameter given at its profile default is
    dropped, and `steps` is expanded to the per-stage keys, so two ways of asking for one configuration give one
    override dict (and one run id); a conflicting stage count, or a parameter the profile does not use, is an error.
    """
    given = dict(given or {})
    plain = {k: p for k, p in declared.items() if not isinstance(p, HyperParam)}
    hyper = {k: p for k, p in declared.items() if isinstance(p, HyperParam)}
    unknown = sorted(set(given) - set(declared))
    if unknown and not hyper:
        resolve_params(owner, declared, {k: given[k] for k in unknown})  # raises the usual line naming the valid ones
    if unknown:  # an attack with hyper-parameters has many: name them, and the closest one, on one short line
        close = [m for k in unknown for m in difflib.get_close_matches(k, list(declared), n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise BenchError(f"{owner} has no parameter {', '.join(unknown)}{hint}; its parameters: "
                         f"{', '.join(sorted(declared))} (`bench list attacks -v` shows their types and defaults)")
    values = resolve_params(owner, plain, {k: v for k, v in given.items() if k in plain})
    overrides: dict[str, Any] = {}
    for key in sorted(k for k in given if k in hyper):
        p = hyper[key]
        value = p.coerce(owner, key, given[key])
        try:
            p.default_for(profile)
        except KeyError:
            used = ", ".join(n for n, _ in p.defaults)
            raise BenchError(f"{owner}: parameter {key} is not used by profile {profile!r} (only by: {used})") from None
        for target in p.stages or (key,):
            if target in given and p.stages and hyper[target].coerce(owner, target, given[target]) != value:
                raise BenchError(f"{owner}: steps={format_value(value)} sets {', '.join(p.stages)}, but {target}="
                                 f"{given[target]} was also given; give one of them")
            overrides[target] = value
    return values, {k: v for k, v in sorted(overrides.items()) if v != hyper[k].default_for(profile)}


def apply(profile_values: Mapping[str, Any], overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One profile's hyper-parameters with the overrides (keys `prefix`+key) put in."""
    return {k: overrides.get(prefix + k, v) for k, v in profile_values.items()}
