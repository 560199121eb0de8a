"""Plugin interface versions: the engine passes an attack only what its `__init__` accepts, so plugins written
against an older interface keep working (docs/plugins.md, "Interface versions").

- v1: `Attack.__init__(profile, image_size, device, seed)`; no declared parameters, no `default_extractor`.
- v2: `__init__(..., params=None)` passed on to `super().__init__`; declared `params` (and hyper-parameters,
  bench/hyper.py) reach it through `--attack-arg` and grid items; `default_extractor` names the victim extractor.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch

from bench.errors import BenchError
from bench.plugins import Attack

DOCS = "docs/plugins.md, 'Interface versions'"


def init_arguments(cls: type) -> tuple[set[str], bool, list[str]]:
    """(names `cls.__init__` takes by keyword, whether it takes **kwargs, its required names) besides `self`."""
    sig = inspect.signature(cls.__init__)
    names, var_kw, required = set(), False, []
    for i, (name, p) in enumerate(sig.parameters.items()):
        if i == 0 and name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(name)
            if p.default is p.empty:
                required.append(name)
    return names, var_kw, required


def make_attack(cls: type[Attack], profile: str, image_size: int, device: torch.device | str = "cpu",
                seed: int = 0, params: Mapping[str, Any] | None = None) -> Attack:
    """An instance of `cls`, given only the arguments its `__init__` declares.

    A v1 attack (no `params` argument) is built without one; a parameter given to it is refused with one line that
    names the interface change, since nothing could pass the value on.
    """
    offered: dict[str, Any] = {"profile": profile, "image_size": image_size, "device": device, "seed": seed,
                               "params": dict(params) if params else None}
    names, var_kw, required = init_arguments(cls)
    unknown = [n for n in required if n not in offered]
    if unknown:
        raise BenchError(f"attack {cls.name!r}: its __init__ requires {', '.join(unknown)}, which the engine does not "
                         f"pass (it passes {', '.join(offered)}; see {DOCS})")
    if not var_kw and "params" not in names:
        if params:
            raise BenchError(
                f"attack {cls.name!r} takes no parameters ({', '.join(sorted(params))} given): its __init__ has no "
                f"`params` argument (plugin interface v1); add `params=None` and pass it to super().__init__ "
                f"(interface v2, {DOCS})")
        offered.pop("params")
    kwargs = offered if var_kw else {k: v for k, v in offered.items() if k in names}
    return cls(**kwargs)
