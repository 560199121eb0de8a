"""Check of DLG's finding on real CIFAR-10: batch 1, untrained lenet-zhu, near-exact recovery (published: about
23 dB PSNR after 1,200 L-BFGS iterations) and the label recovered.

    python benchmarks/gradinv_dlg_cifar.py --per-class 1 --iterations 1200 --threads 2

Takes the first `--per-class` test images of each class from ../shared/data/cifar10 (JPEG copies, close to but not
pixel-identical with the official arrays), images in [0, 1] without normalisation (DLG's setting), all attacked as one
batched problem. PSNR on the reconstruction clamped to [0, 1] (data range 1). Exits with a message when the data are
absent.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.attacks.gradinv import attacks, releases, victims

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def load(root: Path, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` test images of every class (sorted class folders = label order), in [0, 1]."""
    xs, ys = [], []
    for label, cls in enumerate(sorted(p.name for p in (root / "test").iterdir() if p.is_dir())):
        for f in sorted((root / "test" / cls).glob("*.jpg"))[:per_class]:
            arr = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255
            xs.append(torch.from_numpy(arr).permute(2, 0, 1))
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=CIFAR)
    ap.add_argument("--per-class", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=attacks.hyper_parameters("dlg", "paper")["iterations"])
    ap.add_argument("--attack", default="dlg", choices=["dlg", "idlg"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not (a.data_root / "test").is_dir():
        sys.exit(f"CIFAR-10 not found at {a.data_root} (the shared data folder)")
    torch.set_num_threads(a.threads)
    x, y = load(a.data_root, a.per_class)
    model = victims.build_victim("lenet-zhu", seed=a.seed).eval()
    target = releases.per_sample_gradients(model, x, y)
    t = time.perf_counter()
    fn = attacks.dlg if a.attack == "dlg" else attacks.idlg
    r = fn(model, target, (3, 32, 32), iterations=a.iterations, seed=a.seed, true_labels=y)
    wall = time.perf_counter() - t
    mse = ((r.images[:, 0].clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3))
    psnr = [10 * math.log10(1 / max(m, 1e-12)) for m in mse.tolist()]
    print(f"{a.attack} on untrained lenet-zhu (seed {a.seed}), batch 1, {len(x)} CIFAR-10 test images, "
          f"{a.iterations} L-BFGS iterations, {a.threads} threads: {wall:.0f} s wall (noisy, shared machine)")
    for i in range(len(x)):
        print(f"  image {i} label {int(y[i])} -> {int(r.labels[i, 0])}: MSE {mse[i]:.4f} PSNR {psnr[i]:.1f} dB "
              f"(final gradient distance {r.loss[i]:.2e})")
    print(f"median PSNR {float(np.median(psnr)):.1f} dB, mean {float(np.mean(psnr)):.1f} dB; "
          f"label accuracy {r.label_accuracy:.2f}")


if __name__ == "__main__":
    main()
