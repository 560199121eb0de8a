"""Speed of the gradient-inversion attacks on the CPU: images per CPU-minute at the cpu profile, batched against
one-by-one, and where one objective evaluation spends its time (forward, first backward, double backward).

    python benchmarks/gradinv_speed.py                                  # lenet-zhu, 8 images, 1 and 2 threads
    python benchmarks/gradinv_speed.py --victims lenet-zhu,convnet:8,resnet20-4:1 --threads 1,2 --iterations 20 \\
        --profile

Images are random (speed does not depend on content). `--iterations` overrides every attack's iteration count:
the cost per iteration is constant, so images per CPU-minute at the cpu profile scale by iterations / cpu
iterations (both are printed). CPU time is process time (all threads), which is what a shared machine does not
distort much; wall time is printed beside it. Batched and one-by-one start from the same initialisation; the
largest difference between their reconstructions is printed beside the speed-up (float64, what `bench run` uses:
batched = one-by-one to about 1e-6). `opt` is the share of CPU time the optimiser spends outside the objective
(L-BFGS's two-loop recursion and bookkeeping, Adam's update). `--profile` adds the top operators of one batched
objective evaluation (torch.profiler, self CPU time).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from bench.attacks.gradinv import attacks, releases, victims


class _ObjectiveClock:
    """Counts CPU time spent inside the optimisers' objective calls, by wrapping attacks._lbfgs' `fun` and the
    batched objective of inverting_gradients (vmap of grad_and_value); the rest of an attack is optimiser time."""

    def __init__(self) -> None:
        self.inside = 0.0
        self._depth = 0  # dlg's `fun` calls a wrapped vmap: only the outermost call counts
        self._lbfgs = attacks._lbfgs
        self._vmap = attacks.vmap

    def __enter__(self) -> "_ObjectiveClock":
        def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*a: Any, **k: Any) -> Any:
                t = time.process_time()
                self._depth += 1
                try:
                    return fn(*a, **k)
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        self.inside += time.process_time() - t
            return call

        attacks._lbfgs = lambda fun, *a, **k: self._lbfgs(timed(fun), *a, **k)  # dlg, idlg
        attacks.vmap = lambda fn, *a, **k: timed(self._vmap(fn, *a, **k))  # inverting_gradients' objective
        return self

    def __exit__(self, *exc: Any) -> None:
        attacks._lbfgs, attacks.vmap = self._lbfgs, self._vmap


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    with _ObjectiveClock() as clock:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
    return out, wall, cpu, clock.inside


def _run(name: str, model: torch.nn.Module, target, init, iterations: int, side: int, classes: int):
    shape = (3, side, side)
    if name == "dlg":
        return attacks.dlg(model, target, shape, num_classes=classes, init=init, iterations=iterations)
    if name == "idlg":
        return attacks.idlg(model, target, shape, num_classes=classes, init=init[0], iterations=iterations)
    return attacks.inverting_gradients(model, target, shape, init=init[0][None], iterations=iterations)


def breakdown(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Seconds (CPU) per call for len(x) problems: forward only, forward + parameter gradient (the release), and the
    attack's objective gradient w.r.t. the images (forward, backward, and the backward of that backward)."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    target = tuple(releases.per_sample_gradients(model, x, y))

    def loss_p(p, xi, yi):
        return releases.soft_cross_entropy(functional_call(model, (p, buffers), (xi[None],)), yi[None])

    def dist(xi, yi, t):
        g = grad(loss_p)(params, xi, yi)
        return sum(((g[n] - tt) ** 2).sum() for n, tt in zip(names, t))

    fwd = lambda: vmap(lambda xi: functional_call(model, (params, buffers), (xi[None],)))(x)  # noqa: E731
    first = lambda: vmap(grad(loss_p), in_dims=(None, 0, 0))(params, x, y)  # noqa: E731
    double = lambda: vmap(grad_and_value(dist))(x, y, target)  # noqa: E731
    out = {}
    for key, fn in (("forward", fwd), ("forward+backward", first), ("objective gradient", double)):
        fn()
        t = time.process_time()
        for _ in range(repeats):
            fn()
        out[key] = (time.process_time() - t) / repeats
    return out


def profile_objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int = 10) -> str:
    """torch.profiler's table (self CPU time) of two batched evaluations of DLG's objective gradient."""
    from torch.profiler import ProfilerActivity, profile

    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    target = tuple(releases.per_sample_gradients(model, x, y))

    def dist(xi, yi, t):
        g = grad(lambda p: releases.soft_cross_entropy(functional_call(model, (p, buffers), (xi[None],)),
                                                       yi[None]))(params)
        return sum(((g[n] - tt) ** 2).sum() for n, tt in zip(names, t))

    fn = vmap(grad_and_value(dist))
    fn(x, y, target)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            fn(x, y, target)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def _victim(spec: str, classes: int, side: int) -> tuple[str, torch.nn.Module]:
    name, _, width = spec.partition(":")
    model = victims.build_victim(name, num_classes=classes, seed=0, width=int(width) if width else None,
                                 image_size=side)
    return (f"{name} width {width}" if width else name), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", default="lenet-zhu", help="comma-separated victim[:width] (e.g. convnet:8)")
    ap.add_argument("--n", type=int, default=8, help="images (batch-1 releases) attacked")
    ap.add_argument("--iterations", type=int, default=None, help="override every attack's iterations")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--attacks", default="dlg,idlg,inverting-gradients")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                    help="float64 (bench run's): batched = one-by-one to ~1e-6; in float32 L-BFGS and signed Adam "
                         "amplify the last-bit differences of batched convolutions over many iterations")
    ap.add_argument("--profile", action="store_true", help="also torch.profiler's top operators per victim")
    a = ap.parse_args()
    dt = getattr(torch, a.dtype)
    for spec in a.victims.split(","):
        label, model = _victim(spec, a.classes, a.side)
        model = model.eval().to(dt)
        g = torch.Generator().manual_seed(0)
        x = torch.rand(a.n, 3, a.side, a.side, generator=g, dtype=dt)
        y = torch.randint(0, a.classes, (a.n,), generator=g)
        target = releases.per_sample_gradients(model, x, y)
        init = (torch.randn(a.n, 1, 3, a.side, a.side, generator=g, dtype=dt),
                torch.randn(a.n, 1, a.classes, generator=g, dtype=dt))
        for threads in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(threads)
            print(f"victim {label} ({victims.n_parameters(model):,} parameters), {a.n} images of {a.side} px, "
                  f"{a.dtype}, torch threads {threads}")
            for name in a.attacks.split(","):
                cpu_its = attacks.hyper_parameters(name, "cpu")["iterations"]
                its = a.iterations or cpu_its
                batched, wb, cb, ob = _timed(lambda: _run(name, model, target, init, its, a.side, a.classes))
                singles: list[attacks.Reconstruction] = []
                _, ws, cs, os_ = _timed(lambda: singles.extend(
                    _run(name, model, [t[k:k + 1] for t in target], (init[0][k:k + 1], init[1][k:k + 1]), its,
                         a.side, a.classes) for k in range(a.n)))
                diffs = [(batched.images[k] - s.images[0]).abs().max().item() for k, s in enumerate(singles)]
                loss_b = batched.loss.median().item()
                loss_s = torch.cat([s.loss for s in singles]).median().item()
                scale = its / cpu_its
                print(f"  {name:>19}: {its} its; CPU batched {cb:.1f} s (opt {1 - ob / cb:.0%}), one-by-one "
                      f"{cs:.1f} s (opt {1 - os_ / cs:.0%}): {cs / cb:.2f}x CPU, {ws / wb:.2f}x wall "
                      f"({wb:.1f} / {ws:.1f} s); images per CPU-minute at cpu ({cpu_its} its): batched "
                      f"{a.n * 60 / cb * scale:.2f}, one-by-one {a.n * 60 / cs * scale:.2f}; "
                      f"|batched - one-by-one| per image: max {max(diffs):.1e}, median "
                      f"{sorted(diffs)[len(diffs) // 2]:.1e}; median final distance batched {loss_b:.3g}, "
                      f"one-by-one {loss_s:.3g}")
            for n in (a.n, 1):
                parts = breakdown(model, x[:n], y[:n])
                fwd, fb, obj = parts["forward"], parts["forward+backward"], parts["objective gradient"]
                print(f"  one objective evaluation, {n} problem(s), CPU ms per image: forward {fwd / n * 1e3:.2f}, "
                      f"first backward {(fb - fwd) / n * 1e3:.2f}, double backward {(obj - fb) / n * 1e3:.2f} "
                      f"(total {obj / n * 1e3:.2f}; double backward {(obj - fb) / obj:.0%})")
        if a.profile:
            torch.set_num_threads(1)
            print(f"  torch.profiler, 2 batched evaluations of DLG's objective gradient ({a.n} problems, 1 thread):")
            print(profile_objective(model, x, y))


if __name__ == "__main__":
    main()
