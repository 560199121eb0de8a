"""Speed of the gradient-inversion attacks on the CPU: images per CPU-minute at the cpu profile, batched against
one-by-one, and where one objective evaluation spends its time (forward, first backward, double backward).

    python benchmarks/gradinv_speed.py                           # lenet-zhu, 8 images, cpu-profile iterations
    python benchmarks/gradinv_speed.py --n 8 --iterations 50 --threads 2 --attacks dlg,inverting-gradients

Images are random (speed does not depend on content). --iterations overrides every attack's iteration count (the
per-iteration cost is constant, so images per CPU-minute at the cpu profile scale by cpu_iterations / iterations:
both figures are printed). CPU time is process time (all threads). Batched and one-by-one start from the same
initialisation; the largest difference between their reconstructions is printed beside the speed-up.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.func import grad, grad_and_value, vmap

from bench.attacks.gradinv import attacks, releases, victims


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def _run(name: str, model, target, init, iterations: int):
    shape = (3, 32, 32)
    if name == "dlg":
        return attacks.dlg(model, target, shape, init=init, iterations=iterations)
    if name == "idlg":
        return attacks.idlg(model, target, shape, init=init[0], iterations=iterations)
    return attacks.inverting_gradients(model, target, shape, init=init[0][None], iterations=iterations)


def _pick(init, k):
    return (init[0][k:k + 1], init[1][k:k + 1])


def breakdown(model, x, y, repeats: int = 5) -> dict[str, float]:
    """Seconds per call for N problems: forward only, forward + parameter gradient (the release), and the attack's
    objective gradient w.r.t. the images (forward, backward, and the backward of that backward)."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    target = tuple(releases.per_sample_gradients(model, x, y))

    def loss_p(p, xi, yi):
        return releases.soft_cross_entropy(torch.func.functional_call(model, p, (xi[None],)), yi[None])

    def dist(xi, yi, t):
        g = grad(loss_p)(params, xi, yi)
        return sum(((g[n] - tt) ** 2).sum() for n, tt in zip(names, t))

    fwd = lambda: vmap(lambda xi: torch.func.functional_call(model, params, (xi[None],)))(x)  # noqa: E731
    first = lambda: vmap(grad(loss_p), in_dims=(None, 0, 0))(params, x, y)  # noqa: E731
    double = lambda: vmap(grad_and_value(dist))(x, y, target)  # noqa: E731
    out = {}
    for key, fn in (("forward", fwd), ("forward+backward (release)", first), ("objective gradient (double backward)",
                                                                               double)):
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[key] = (time.perf_counter() - t) / repeats
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", default="lenet-zhu")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=None, help="override every attack's iterations")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attacks", default="dlg,idlg,inverting-gradients")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="float64 shows batched = one-by-one to ~1e-6; in float32 L-BFGS and signed Adam amplify the "
                         "last-bit differences of batched convolutions over many iterations")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = getattr(torch, a.dtype)
    model = victims.build_victim(a.victim, seed=0).eval().to(dt)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(a.n, 3, 32, 32, generator=g, dtype=dt), torch.randint(0, 10, (a.n,), generator=g)
    target = releases.per_sample_gradients(model, x, y)
    init = (torch.randn(a.n, 1, 3, 32, 32, generator=g, dtype=dt), torch.randn(a.n, 1, 10, generator=g, dtype=dt))
    print(f"victim {a.victim}, {a.n} images of 32 px, {a.dtype}, torch threads {a.threads}"
          " (timings on a shared machine are noisy)")
    for name in a.attacks.split(","):
        cpu_its = attacks.hyper_parameters(name, "cpu")["iterations"]
        its = a.iterations or cpu_its
        batched, wb, cb = _timed(lambda: _run(name, model, target, init, its))
        singles = []
        _, ws, cs = _timed(lambda: singles.extend(
            _run(name, model, [t[k:k + 1] for t in target], _pick(init, k), its) for k in range(a.n)))
        diff = max((batched.images[k] - s.images[0]).abs().max().item() for k, s in enumerate(singles))
        loss_b = batched.loss.median().item()
        loss_s = torch.cat([s.loss for s in singles]).median().item()
        scale = its / cpu_its
        print(f"{name:>20}: {its} its; batched {wb:.1f} s wall / {cb:.1f} s CPU, one-by-one {ws:.1f} s / {cs:.1f} s;"
              f" speed-up {ws / wb:.2f}x wall, {cs / cb:.2f}x CPU; images per CPU-minute at the cpu profile "
              f"({cpu_its} its): batched {a.n * 60 / cb * scale:.2f}, one-by-one {a.n * 60 / cs * scale:.2f};"
              f" max |batched - one-by-one| {diff:.2e} ({a.dtype}); median final distance batched {loss_b:.3g},"
              f" one-by-one {loss_s:.3g}")
    print("one objective evaluation for all", a.n, "images (s):")
    for k, v in breakdown(model, x, y).items():
        print(f"  {k:>38}: {v * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
