"""The utility figure `fl-accuracy` of every gradient defense at one profile's training budget, on CIFAR-10.

    python benchmarks/gradinv_utility.py --profile cpu --n-train 1500 --n-test 200 --threads 1

Trains the untrained extractor's victim (`lenet-zhu`, seed 0) by fedSGD under each defense exactly as `bench run`
does for its utility stage (attacks/gradinv/utility.py) on `--n-train` images drawn (seed 0) from CIFAR-10's train split
and reports test accuracy on `--n-test` drawn test images, with the wall time of each training. The dataset
is `../shared/data/cifar10` beside the repository unless `--data-root` is given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench import registry
from bench.plugins import ImageSet, UtilityContext, UtilityTraining, Victim

SETTINGS = [("none", {}), ("gradient-pruning", {"fraction": 0.7}), ("gradient-noise", {"sigma": 1e-3}),
            ("ats-augment", {"policy": "none", "crop": True}), ("ats-augment", {"policy": "3-1-7"}),
            ("ats-augment", {"policy": "43-18-18"}), ("ats-augment", {"policy": "3-1-7+43-18-18"}),
            ("ats-augment", {"policy": "none", "crop": True, "prune": 0.7}),
            ("ats-augment", {"policy": "none", "crop": True, "noise": 1e-3}),
            ("dp-sgd", {"clip": 1.0, "noise_multiplier": 1.0})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = registry.datasets.get("cifar10").obj(root=args.data_root)
    split = ds.official_splits()
    pick = np.random.default_rng(0)  # a seeded sample (the official lists are sorted by class)
    train = ds.load(sorted(pick.choice(split["train"], args.n_train, replace=False).tolist()), 32)
    test = ds.load(sorted(pick.choice(split["test"], args.n_test, replace=False).tolist()), 32)
    ext = registry.extractors.get("fedsgd-lenet-zhu").obj()
    feats = ext.extract(ImageSet(test.ids[:1], test.images[:1], {k: np.asarray(v)[:1] for k, v in test.labels.items()}))
    victim = Victim(ext.victim().model, ext.victim().state)
    for name, params in SETTINGS:
        d = registry.defenses.get(name).obj(**params)
        ctx = UtilityContext(images=test, features=feats, extractor=ext, seed=0,
                             training=UtilityTraining(images=train, profile=args.profile, victim=victim),
                             evaluation=test)
        t0 = time.perf_counter()
        acc = d.utility(ctx)["fl-accuracy"]
        print(f"{name:17s} {str(params):55s} fl-accuracy {acc:.3f}  ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
