"""The `bench run` command line that reproduces a run, rebuilt from its request (never from sys.argv).

Only options that differ from `bench run`'s defaults appear, each value shell-quoted, so that the line recorded in
run.json (and shown for grid runs, which have no command line of their own) can be pasted into a shell as is. Data
roots are written as absolute paths, so the line works from any folder.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from bench.run.plan import RunRequest

_DEFAULT_RESULTS = Path("bench-results")


def param_text(value: Any) -> str:
    """A parameter value as `--attack-arg`/`--defense-arg` text that coerces back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to exactly this float
    return str(value)


def _assignments(option: str, params: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in sorted(params):
        # (`bench run` splits KEY=VALUE lists on commas, so a text value holding a comma has no exact spelling.)
        out += [option, f"{key}={param_text(params[key])}"]
    return out


def _absolute(path: Path | str) -> str:
    return str(Path(path).expanduser().resolve())


def request_args(req: RunRequest) -> list[str]:
    """The `bench run` arguments (after `bench run`) that reproduce `req`, defaults left out."""
    from bench.profiles import DEFAULT_PROFILE

    args = ["--attack", req.attack]
    if req.defense != "none":
        args += ["--defense", req.defense]
    args += _assignments("--attack-arg", req.attack_params or {})
    args += _assignments("--defense-arg", req.defense_params or {})
    args += _assignments("--extractor-arg", req.extractor_params or {})
    if req.dataset != "synthetic-faces":
        args += ["--dataset", req.dataset]
    if req.data_root is not None:
        args += ["--data-root", _absolute(req.data_root)]
    if req.aux_dataset:
        args += ["--aux-dataset", req.aux_dataset]
    if req.aux_data_root is not None:
        args += ["--aux-data-root", _absolute(req.aux_data_root)]
    if req.profile != DEFAULT_PROFILE:
        args += ["--profile", req.profile]
    if req.seed != 0:
        args += ["--seed", str(req.seed)]
    if req.n_train is not None:
        args += ["--n-train", str(req.n_train)]
    if req.n_test is not None:
        args += ["--n-test", str(req.n_test)]
    if Path(req.results) != _DEFAULT_RESULTS:
        args += ["--results", str(req.results)]
    if req.device != "cpu":
        args += ["--device", req.device]
    if req.threads is not None:
        args += ["--threads", str(req.threads)]
    if req.extractor:
        args += ["--extractor", req.extractor]
    if req.image_size is not None:
        args += ["--image-size", str(req.image_size)]
    if req.extract_size is not None:
        args += ["--extract-size", str(req.extract_size)]
    if req.metrics is not None:
        args += ["--metrics", ",".join(req.metrics)]
    return args


def request_command(req: RunRequest) -> str:
    """`bench run --attack cfgan --defense drop-coordinates ...`: the shell line that reproduces `req`."""
    return "bench run " + " ".join(shlex.quote(a) for a in request_args(req))


__all__ = ["param_text", "request_args", "request_command"]
