"""Naming the device a computation runs on (`--device cpu|cuda|cuda:N`), checked against what torch sees."""

from __future__ import annotations

import re

import torch

from bench.errors import BenchError


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda` or `cuda:N` as a torch device, checked against what torch sees; else a BenchError."""
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise BenchError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {name} was asked for but torch sees no CUDA device; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise BenchError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device(name)
