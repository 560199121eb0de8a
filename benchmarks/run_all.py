"""All speed figures of the project in one run: SIFT extraction, map building, SSIM, CFGAN training, default run.

    python benchmarks/run_all.py            # everything (the default run takes about 5 minutes)
    python benchmarks/run_all.py --quick    # skip the full default run

Prints figures only; speed targets are checked here, never by timed unit tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sift_bench  # noqa: E402
import ssim_bench  # noqa: E402


def training_rate(steps: int = 40) -> dict[str, float]:
    """CFGAN cpu-profile training steps per second (coarse and fine stages) on synthetic faces."""
    from bench import registry
    from bench.attacks.sift_inversion.cfgan import CFGAN
    from bench.images import resize
    from bench.plugins import FitContext
    from bench.profiles import get_profile

    prof = get_profile("cpu")
    ds = registry.datasets.get("synthetic-faces").obj()
    imgs = ds.load(ds.item_ids()[:64], prof.extract_size)
    feats = registry.extractors.get("sift").obj().extract(imgs, progress=False)
    targets = resize(imgs.images, prof.image_size)
    attack = CFGAN(profile="cpu", image_size=prof.image_size)
    attack.hp = {**attack.hp, "coarse_steps": steps, "fine_steps": steps}
    ctx = FitContext(defense=registry.defenses.get("none").obj(), seed=0, device=torch.device("cpu"), progress=False)
    attack.fit(feats, targets, ctx)
    secs = attack.stage_seconds
    return {"coarse_steps_per_s": steps / secs["coarse"], "fine_steps_per_s": steps / secs["fine"],
            "batch": attack.hp["batch_size"]}


def default_run() -> float:
    """Wall time of `bench run --attack cfgan --defense none` (the README's main job) in a fresh results folder."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench.cli", "run", "--attack", "cfgan", "--defense", "none",
                        "--results", tmp, "--quiet"], check=True)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the full default run")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n== SIFT extraction and dense maps ==")
    sift_bench.main()
    print("\n== SSIM: batched torch vs scikit-image loop ==")
    r = ssim_bench.measure(1000, 64)
    print(f"1000 pairs 64x64: torch {r['torch_s'] * 1e3:.1f} ms, skimage {r['skimage_s'] * 1e3:.1f} ms, "
          f"speed-up {r['speedup']:.1f}x (target >= 10x), max |diff| {r['max_abs_diff']:.2e} (<= 1e-4)")
    print("\n== CFGAN training (cpu profile) ==")
    t = training_rate()
    print(f"coarse net: {t['coarse_steps_per_s']:.2f} steps/s, fine net: {t['fine_steps_per_s']:.2f} steps/s "
          f"(batch {t['batch']})")
    if not args.quick:
        print("\n== default run: bench run --attack cfgan --defense none ==")
        print(f"wall time: {default_run():.1f} s")


if __name__ == "__main__":
    main()
