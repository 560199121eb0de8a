"""The command that installs one of leakbench's extras, for the way this copy of leakbench was installed.

A hint such as `pip install leakbench[faces]` only works when leakbench comes from a package index: from an editable
checkout it would fetch (or fail to find) another copy. pip records how a distribution was installed in its
`direct_url.json` (PEP 610): absent for an index or wheel installed by name, `dir_info.editable` for `pip install -e`,
`vcs_info` for a git URL, `archive_info` for a local wheel or archive. The hint follows that record, and names the
environment's own interpreter when it is a virtual environment that is not the active one (so that `pip` is not the
wrong pip).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

DISTRIBUTION = "leakbench"


def _quote(text: str) -> str:
    """Shell-quote `text`: double quotes when that is safe (readable, and works in cmd.exe too), else shlex's."""
    return f'"{text}"' if not any(c in text for c in '"$`\\!') else shlex.quote(text)


def _file_path(url: str) -> str | None:
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else None


def _pip() -> str:
    """`pip`, or `<this interpreter> -m pip` inside a virtual environment that is not the activated one."""
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    active = os.environ.get("VIRTUAL_ENV")
    if in_venv and (not active or Path(active).resolve() != Path(sys.prefix).resolve()):
        return f"{shlex.quote(sys.executable)} -m pip"
    return "pip"


def _records(dist: str, path: list[str] | None) -> list[tuple[Path, dict[str, Any]]]:
    """(folder the distribution's metadata lies in, pip's direct_url record or {}) for each install of `dist`."""
    found = []
    for d in metadata.distributions(name=dist, **({"path": path} if path is not None else {})):
        try:
            record = json.loads(d.read_text("direct_url.json") or "{}")
        except ValueError:
            record = {}
        found.append((Path(str(d.locate_file(""))).resolve(), record if isinstance(record, dict) else {}))
    return found


def extra_install_command(extra: str, dist: str = DISTRIBUTION, *, here: Path | None = None,
                          path: list[str] | None = None) -> str:
    """`pip install ...` that adds `extra` (e.g. "faces") to the running copy of `dist` the way it was installed.

    `here` is the folder holding the running package (default: this module's package's parent: the checkout for
    an editable or source-tree copy, site-packages for a wheel); `path` the import path searched for metadata
    (default sys.path). The install that provides `here` decides: editable -> `pip install -e "<checkout>[extra]"`;
    a source tree that pip did not install -> the same; a git URL, local wheel or archive -> `"dist[extra] @ URL"`;
    installed by name from an index -> `"dist[extra]"`.
    """
    here = (Path(__file__).resolve().parents[1] if here is None else Path(here)).resolve()
    named = f"{dist}[{extra}]"
    records = _records(dist, path)
    for _, record in records:
        target = _file_path(str(record.get("url", "")))
        if record.get("dir_info", {}).get("editable") and target and Path(target).resolve() == here:
            return _line("-e", f"{target}[{extra}]")
    if (here / "setup.cfg").is_file() or (here / "pyproject.toml").is_file():
        return _line("-e", f"{here}[{extra}]")  # a source tree on the import path (or a stale egg-info)
    for location, record in records:
        if location != here:
            continue
        url = str(record.get("url", ""))
        vcs = record.get("vcs_info")
        if vcs and url:
            ref = "@" + str(vcs["commit_id"]) if vcs.get("commit_id") else ""
            return _line(f"{named} @ {vcs.get('vcs', 'git')}+{url}{ref}")
        if url:  # a local wheel, archive or folder (not editable)
            return _line(f"{named} @ {url}")
    return _line(named)


def _line(*args: str) -> str:
    """`pip install ARGS`, the last argument quoted."""
    return " ".join([_pip(), "install", *args[:-1], _quote(args[-1])])


__all__ = ["DISTRIBUTION", "extra_install_command"]
