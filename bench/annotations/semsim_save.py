"""Saving a trained SemSim checkpoint into a results folder, and binding one to another results folder.

Checkpoints are bound to a results folder: they live in `RESULTS/semsim/` beside `manifest.json`, which lists each
file with its sha256, the annotation set it was trained on (description, provenance and content hash), the
training settings and the final loss; the metric `semsim` of a run in RESULTS uses the newest checkpoint of
RESULTS/semsim only, never one of another results folder (reading them: bench/semsim_checkpoint.py). A checkpoint
holds tensors, numbers, strings, lists and dicts only and is loaded with torch.load(weights_only=True) after its
sha256 matches the manifest.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from bench import weights
from bench.annotations.semsim_sets import AnnotationSet, shortfalls
from bench.annotations.semsim_training import TrainResult, TrainSettings
from bench.errors import BenchError
from bench.locks import file_lock
from bench.semsim_checkpoint import (CHECKPOINT_FORMAT, FORMAT_VERSION, MANIFEST_NAME, load_checkpoint, manifest_path,
                                     model_config, read_manifest, semsim_dir)


def _write_manifest(results: Path, entries: list[dict[str, Any]]) -> None:
    """Replace RESULTS/semsim/manifest.json atomically (a reader never sees half a file)."""
    path = manifest_path(results)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_text(json.dumps({"format": "bench-semsim-manifest", "format_version": FORMAT_VERSION,
                               "checkpoints": entries}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_checkpoint(ann: AnnotationSet, settings: TrainSettings, result: TrainResult, results: Path,
                    demo: bool = False) -> dict[str, Any]:
    """Write the checkpoint atomically into RESULTS/semsim and register it in that folder's manifest; its entry.

    `demo` (from --allow-demo) is recorded in the checkpoint and the entry, and the file name starts `demo-`.
    """
    folder = semsim_dir(results)
    folder.mkdir(parents=True, exist_ok=True)
    training = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                "margin": settings.margin, "p": 2, "size": settings.size, "seed": settings.seed,
                "device": settings.device, "optimizer": "Adam", "loss": "TripletMarginLoss",
                "triplets_per_epoch": result.triplets_per_epoch, "torch": str(torch.__version__)}
    short = shortfalls(ann.description["provenance"])
    if short and not demo:
        raise BenchError("refusing to save a SemSim checkpoint below the minimum without demo=True: "
                         + "; ".join(short))
    ckpt = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "config": model_config(settings.size),
            "state_dict": result.state_dict, "annotations": ann.description, "training": training,
            "final_loss": float(result.final_loss), "losses": [float(v) for v in result.losses],
            "demo": bool(demo), "shortfalls": short}
    part = folder / f".semsim-{uuid.uuid4().hex}.part"
    try:
        buf = io.BytesIO()  # a buffer, not the file: the archive's inner folder name would carry the file name
        torch.save(ckpt, buf)
        part.write_bytes(buf.getvalue())
        del buf
        torch.load(part, map_location="cpu", weights_only=True)  # what the metric will do: fail here, not there
        sha = weights.sha256_of(part)
        name = f"{'demo-' if demo else ''}semsim-{ann.description['hash'][:12]}-{sha[:8]}.pt"
        dest = folder / name
        entry = {"file": name, "sha256": sha, "size": part.stat().st_size, "annotations": ann.description,
                 "training": training, "config": ckpt["config"], "final_loss": float(result.final_loss),
                 "wall_s": result.wall_s, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                 "created_ns": time.time_ns(), "demo": bool(demo), "shortfalls": short}
        with file_lock(folder / f"{MANIFEST_NAME}.lock"):
            os.replace(part, dest)
            entries = [e for e in read_manifest(results) if e.get("file") != name]
            _write_manifest(results, entries + [entry])
    finally:
        part.unlink(missing_ok=True)
    return {**entry, "path": str(dest)}


def bind_checkpoint(path: Path, results: Path) -> dict[str, Any]:
    """Bind a checkpoint of another results folder to RESULTS as well (`bench semsim bind`); its new entry.

    The file must be listed, with its sha256, in the manifest beside it (a RESULTS/semsim folder) and load with
    weights_only=True; it is copied into RESULTS/semsim with its manifest entry (provenance and DEMO mark
    unchanged, `bound_from` naming where it came from), so that RESULTS's runs use it from then on.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"{path}: no such checkpoint file")
    source = path.resolve().parent.parent
    listed = [e for e in read_manifest(source) if e.get("file") == path.name]
    if not listed:
        raise BenchError(f"{path} is not listed in {manifest_path(source)}: only a checkpoint that "
                         "`bench semsim train` registered (with its sha256 and provenance) can be bound")
    entry = listed[-1]
    ckpt = load_checkpoint(entry, source)  # size, sha256, weights_only, format, DEMO flag agree with the manifest
    folder = semsim_dir(results)
    if folder.resolve() == path.resolve().parent:
        raise BenchError(f"{path} is already bound to {results}")
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".semsim-{uuid.uuid4().hex}.part"
    try:
        part.write_bytes(path.read_bytes())
        if weights.sha256_of(part) != entry["sha256"]:
            raise BenchError(f"{path} changed while it was copied; try again")
        new = {**entry, "bound_from": str(path.resolve()), "demo": bool(ckpt.get("demo")),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), "created_ns": time.time_ns()}
        with file_lock(folder / f"{MANIFEST_NAME}.lock"):
            os.replace(part, folder / entry["file"])
            entries = [e for e in read_manifest(results) if e.get("file") != entry["file"]]
            _write_manifest(results, entries + [new])
    finally:
        part.unlink(missing_ok=True)
    return {**new, "path": str(folder / entry["file"])}
