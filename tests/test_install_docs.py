"""The README's install section: the two commands kept as they are, and the CPU-only torch route documented beside them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_cpu_only_torch_is_documented_beside_the_two_unchanged_commands() -> None:
    text = README.read_text(encoding="utf-8")
    run = re.search(r"<!-- run-command -->\n```\n(.*?)\n```\n<!-- /run-command -->", text, re.S)
    tests = re.search(r"<!-- test-command -->\n```\n(.*?)\n```\n<!-- /test-command -->", text, re.S)
    assert run and tests
    assert run.group(1) == ("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && "
                            ".venv/bin/bench run --attack cfgan --defense none")
    assert tests.group(1) == ('python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ".[test]" && '
                              ".venv/bin/python -m pytest")
    section = text[tests.end(): text.index("## What is built in")]
    cpu = [line for line in section.splitlines() if "download.pytorch.org/whl/cpu" in line]
    assert cpu and all("--index-url https://download.pytorch.org/whl/cpu" in line for line in cpu)
    assert "-c constraints.txt torch torchvision" in cpu[0]  # the same pins as the two commands
