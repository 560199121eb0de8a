"""Held-out accuracy of a SemSim-grid victim and of its fl-accuracy model on the run's utility evaluation split.

    python benchmarks/gradinv_utility_heldout.py --victim convnet --width 8 --lrs 0.01,0.05 --threads 1

Plans the grid's run (inverting-gradients, defense none, cpu profile, 512 train / 4 private CIFAR-10 images, fedsgd
trained 100 steps) for `--seed`, then reports on its utility evaluation split (bench/run/utility_split.py; 1,000 test
images at the cpu profile, disjoint from the private ones): (a) the victim trained as the extractor trains it, and
(b) the fl-accuracy model trained undefended at the cpu budget (utility.train_under_defense) at each `--lrs`, each
with its accuracy and prediction histogram (a near-constant histogram means the model predicts one class).
Writes only under `--results` (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.attacks.gradinv import utility as gu
from bench.attacks.gradinv import victims
from bench.run.plan import RunRequest, plan
from bench.run.stages import load_split
from bench.run.utility_split import evaluation_split


def _hist(pred: torch.Tensor) -> str:
    return " ".join(str(int(c)) for c in np.bincount(pred.numpy(), minlength=10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", default="convnet")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--lrs", default="0.01")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = args.results or Path(tempfile.mkdtemp(prefix="heldout-"))
    p = plan(RunRequest(attack="inverting-gradients", defense="none", dataset="cifar10", data_root=args.data_root,
                        profile="cpu", seed=args.seed, n_train=512, n_test=4, results=results, extractor="fedsgd",
                        metrics=("mse",), progress=False, attack_params={"iterations": 250}, threads=args.threads,
                        extractor_params={"trained": True, "train_steps": 100, "victim": args.victim,
                                          "width": args.width}))
    size = p.spec.extract_size
    ev = evaluation_split(p)
    train = load_split(p.aux_dataset, p.train_ids, size, "train")
    held = load_split(p.dataset, ev.ids, size, "utility evaluation")
    y_train = torch.as_tensor(np.asarray(train.labels["label"]), dtype=torch.long)
    y_held = torch.as_tensor(np.asarray(held.labels["label"]), dtype=torch.long)
    print(f"evaluation split: {ev.convention}")
    t0 = time.perf_counter()
    state = p.extractor.train_victim(train, progress=False)
    with torch.no_grad():
        pred = p.extractor._model(size)(held.images.float()).argmax(1)
    print(f"(a) victim {args.victim}-{args.width}, {state['info']['steps']} steps: train "
          f"{state['info']['train_accuracy']:.3f}, held-out {(pred == y_held).float().mean():.3f}, "
          f"predictions per class {_hist(pred)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for lr in (float(v) for v in args.lrs.split(",")):
        model = victims.build_victim(args.victim, num_classes=10, seed=0, width=args.width, image_size=size)
        t0 = time.perf_counter()
        gu.train_under_defense(model, train.images.float(), y_train, gu.plain_step, args.steps, 32, lr, args.seed)
        with torch.no_grad():
            pred = model.eval()(held.images.float()).argmax(1)
            train_acc = (model(train.images.float()).argmax(1) == y_train).float().mean()
        print(f"(b) fl-accuracy model, {args.steps} steps of 32, lr {lr}: train {train_acc:.3f}, held-out "
              f"{(pred == y_held).float().mean():.3f}, predictions per class {_hist(pred)} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
