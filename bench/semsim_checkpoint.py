"""A SemSim checkpoint bound to a results folder: where it lies (RESULTS/semsim with manifest.json), how it is
verified and loaded (sha256, torch.load(weights_only=True)), the embedding network it holds and its provenance line.

What the `semsim` metric needs to score, apart from training (bench/annotations/semsim_sets.py, semsim_training.py
and semsim_save.py read annotations from the store and the run folders and write these checkpoints): so the metric
imports no training, store or runner code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench import weights
from bench.errors import BenchError
from bench.images import resize

CHECKPOINT_FORMAT = "bench-semsim-checkpoint"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARCH = "resnet18-cifar"
# CIFAR-100 training-set channel statistics: SemSim's annotated images are CIFAR-100 reconstructions.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
TRAIN_FIX = "bench semsim train --annotations SOURCE"
SEMSIM_FOLDER = "semsim"  # RESULTS/semsim holds the checkpoints bound to that results folder
# Under these an annotation set trains only with --allow-demo, and its checkpoint and values are marked DEMO.
MINIMUM = {"human_annotators": 2, "reconstructions": 100, "originals": 10}
DEMO_MARK = ("DEMO SemSim checkpoint (trained with --allow-demo on annotations below the minimum of "
             f"{MINIMUM['human_annotators']} human annotators, {MINIMUM['reconstructions']} reconstructions and "
             f"{MINIMUM['originals']} originals): NOT FOR PUBLICATION")


def provenance_text(prov: dict[str, Any]) -> str:
    """One line: who labelled the set and how much (`human: 3 annotators, 240 answers, 120 reconstructions, ...`)."""
    parts = []
    if prov.get("annotators") is not None:
        who = f"{prov['annotators']} annotators"
        if prov.get("constructed_annotators"):
            who += f" ({prov['human_annotators']} human, {prov['constructed_annotators']} constructed)"
        parts.append(who)
    if prov.get("answers") is not None:
        parts.append(f"{prov['answers']} answers")
    parts += [f"{prov.get('reconstructions')} reconstructions", f"{prov.get('originals')} originals",
              f"{prov.get('triplets')} triplets per epoch"]
    return f"labels {prov.get('labels')}: " + ", ".join(parts)


def model_config(size: int) -> dict[str, Any]:
    """The embedding network's configuration, stored in the checkpoint (the metric follows it)."""
    return {"arch": ARCH, "embed_dim": 512, "input_size": int(size), "resize": "bilinear, antialiased",
            "mean": list(CIFAR100_MEAN), "std": list(CIFAR100_STD), "normalisation": "CIFAR-100 channel statistics"}


def normalise(x: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """[0, 1] images resized to the configured size and standardised with the configured mean and std."""
    s = int(config["input_size"])
    x = resize(x, s)
    mean = torch.tensor(config["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def build_model(config: dict[str, Any]) -> nn.Module:
    from bench.nn.resnet_cifar import resnet18_cifar

    if config.get("arch") != ARCH:
        raise BenchError(f"SemSim checkpoint names architecture {config.get('arch')!r}; this bench knows {ARCH!r}")
    return resnet18_cifar(num_classes=0)


def semsim_dir(results: Path) -> Path:
    """Where the SemSim checkpoints bound to a results folder live: RESULTS/semsim."""
    return Path(results).expanduser() / SEMSIM_FOLDER


def legacy_dir() -> Path:
    """Where earlier releases kept checkpoints for every results folder at once ($BENCH_HOME/weights/semsim);
    never read for scoring, only named in the hint when a results folder has no checkpoint of its own."""
    return weights.weights_dir() / "semsim"


def manifest_path(results: Path) -> Path:
    return semsim_dir(results) / MANIFEST_NAME


def read_manifest(results: Path) -> list[dict[str, Any]]:
    """The checkpoint entries of RESULTS/semsim, oldest first ([] when there is none); a damaged manifest is an
    error."""
    path = manifest_path(results)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        entries = list(data["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"the SemSim manifest {path} is damaged ({exc}); delete it and run {TRAIN_FIX} "
                         f"--results {results}") from None
    return sorted(entries, key=lambda e: (e.get("created_ns", 0), e.get("file", "")))


def newest(results: Path) -> dict[str, Any] | None:
    entries = read_manifest(results)
    return entries[-1] if entries else None


def load_checkpoint(entry: dict[str, Any], results: Path) -> dict[str, Any]:
    """A manifest entry's checkpoint in RESULTS/semsim, verified by size and sha256 and loaded with
    torch.load(weights_only=True)."""
    path = semsim_dir(results) / str(entry["file"])
    wf = weights.WeightFile(name=f"semsim:{entry['file']}", filename=str(entry["file"]), url="", size=entry.get("size"),
                            sha256=str(entry["sha256"]), licence="trained locally by `bench semsim train`",
                            used_by="metric semsim")
    if not path.is_file():
        raise BenchError(f"SemSim checkpoint {path} (listed in {manifest_path(results)}) is missing")
    if not weights.verify(path, wf, full=True):
        raise BenchError(f"SemSim checkpoint {path} fails verification: {weights.diagnose(path, wf)}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        why = f"it references {found.group(1)}" if found else (str(exc).splitlines() or [""])[0]
        raise BenchError(f"refusing to load SemSim checkpoint {path} with weights_only=True: {why}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path} is not a SemSim checkpoint written by `bench semsim train`")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise BenchError(f"{path} was written by a newer bench (format {ckpt.get('format_version')}); upgrade bench")
    if bool(ckpt.get("demo")) != bool(entry.get("demo")):
        raise BenchError(f"{path}: the manifest and the checkpoint disagree on whether it is a DEMO checkpoint")
    return ckpt


def embedder(ckpt: dict[str, Any], device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
    """images in [0, 1] -> embeddings, with the checkpoint's network, size and normalisation (eval mode)."""
    config = ckpt["config"]
    model = build_model(config)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model = model.to(device=device, dtype=dtype).eval()

    def embed(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(normalise(images.to(device=device, dtype=dtype), config))

    return embed
