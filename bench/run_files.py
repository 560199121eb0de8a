"""Where a run's files lie in its run folder (RESULTS/runs/<run id>/): shared by the runner that writes them and by
the annotation page and SemSim training that read them, without either importing the runner."""

from __future__ import annotations

from pathlib import Path


def recon_path(run_dir: Path, index: int, sample_id: str) -> Path:
    """The lossless PNG of reconstruction `index` (of original `sample_id`) in `run_dir`."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[-60:]
    return run_dir / "reconstructions" / f"{index:05d}_{safe}.png"
