"""Do reconstructions show dots at the SIFT keypoints, and are they right? Local contrast at keypoint cells.

For a finished run of a SIFT-inversion attack (its run folder: run.json and reconstructions/), the private images are
reloaded and their SIFT re-extracted with the run's extractor configuration; every keypoint is put on the scoring
grid (cell ceil(x·S/E) − 1, as the dense maps do). Local contrast is a pixel's luminance minus the mean of its 9×9
neighbourhood. Printed: (1) at keypoint cells, split by the original's contrast there (darker than its surround,
flat, brighter), the mean contrast of original and reconstruction and how often the reconstruction is dark (< −0.03);
(2) the correlation of original and reconstructed contrast at keypoint cells and elsewhere, and the contrast
spread (a blur measure); (3) for dark keypoints by keypoint size, the mean contrast on rings 0..3 cells around the
keypoint (how wide the original blob is against the reconstructed dot).

    python benchmarks/keypoint_dots.py RESULTS/runs/RUN_ID [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import registry
from bench.images import read_image, resize
from bench.attacks.sift_inversion.maps import cell_index


def luminance_contrast(images: torch.Tensor, k: int = 9) -> torch.Tensor:
    """N×H×W: Rec. 601 luminance minus its k×k box mean (replicated border)."""
    lum = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    return (lum - F.avg_pool2d(F.pad(lum, (k // 2,) * 4, mode="replicate"), k, 1))[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads((args.run_dir / "run.json").read_text())
    spec = record["spec"]
    files = sorted((args.run_dir / "reconstructions").glob("*.png"))
    ids = [f.name[6:-4] for f in files]  # NNNNN_<id>.png
    recon = torch.stack([read_image(f) for f in files])
    ds = registry.datasets.get(spec["dataset"]).obj(**({"root": spec["data_root"]} if spec["data_root"] else {}))
    extract, size = int(spec["extract_size"]), int(spec["image_size"])
    images = ds.load(ids, extract)
    keys = ("contrast_threshold", "n_features", "n_octave_layers", "edge_threshold", "sigma")
    extractor = registry.extractors.get(spec["extractor"]["name"]).obj(
        **{k: spec["extractor"][k] for k in keys if k in spec["extractor"]})
    feats = extractor.extract(images, progress=False)
    orig = resize(images.images, size)
    ho, hr = luminance_contrast(orig), luminance_contrast(recon)
    occ = torch.zeros(len(ids), size, size, dtype=torch.bool)
    kps = []  # (image, row, column, size in scoring pixels)
    for i in range(len(ids)):
        kp = feats.keypoints_of(i)
        r, c = cell_index(kp[:, 1], size, extract), cell_index(kp[:, 0], size, extract)
        occ[i, torch.from_numpy(r), torch.from_numpy(c)] = True
        kps += [(i, int(a), int(b), float(s) * size / extract) for a, b, s in zip(r, c, kp[:, 2])]
    print(f"{spec['attack']} vs {spec['defense']} on {spec['dataset']}: {len(ids)} images, {len(kps)} keypoints, "
          f"{occ.float().mean():.1%} of cells hold one")
    o, r = ho[occ], hr[occ]
    for lo, hi, name in ((-9, -0.03, "original darker than surround"), (-0.03, 0.03, "original flat"),
                         (0.03, 9, "original brighter than surround")):
        s = (o > lo) & (o <= hi)
        print(f"  keypoint cells, {name:31s} n={int(s.sum()):6d}: contrast original {o[s].mean():+.3f}, "
              f"reconstruction {r[s].mean():+.3f}; reconstruction dark (< -0.03) {(r[s] < -0.03).float().mean():.0%}")
    print(f"  correlation of contrast: at keypoint cells {np.corrcoef(o.numpy(), r.numpy())[0, 1]:.3f}, elsewhere "
          f"{np.corrcoef(ho[~occ].numpy(), hr[~occ].numpy())[0, 1]:.3f}; contrast spread (sd) original "
          f"{ho.std():.4f}, reconstruction {hr.std():.4f} (elsewhere {ho[~occ].std():.4f} / {hr[~occ].std():.4f})")
    arr = np.array(kps)
    inner = (arr[:, 1] >= 3) & (arr[:, 1] < size - 3) & (arr[:, 2] >= 3) & (arr[:, 2] < size - 3)
    dark = np.array([ho[int(i), int(a), int(b)].item() < -0.03 for i, a, b, _ in arr])
    for name, sel in (("< 1.5 px", arr[:, 3] < 1.5), ("1.5-4 px", (arr[:, 3] >= 1.5) & (arr[:, 3] < 4)),
                      (">= 4 px", arr[:, 3] >= 4)):
        rows = arr[sel & dark & inner].astype(np.int64)
        if not len(rows):
            continue
        rings = {}
        for label, h in (("original", ho), ("reconstruction", hr)):
            vals = []
            for d in range(4):
                offs = [(dy, dx) for dy in range(-d, d + 1) for dx in range(-d, d + 1) if max(abs(dy), abs(dx)) == d]
                vals.append(float(np.mean([h[rows[:, 0], rows[:, 1] + dy, rows[:, 2] + dx].mean().item()
                                           for dy, dx in offs])))
            rings[label] = " ".join(f"{v:+.3f}" for v in vals)
        print(f"  dark keypoints of size {name:8s} (n={len(rows)}): contrast on rings 0..3: original "
              f"[{rings['original']}], reconstruction [{rings['reconstruction']}]")


if __name__ == "__main__":
    main()
