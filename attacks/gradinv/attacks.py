"""Gradient-inversion attacks: DLG, iDLG and Inverting Gradients, each optimising many independent
reconstructions as ONE batched problem.

Problem n (of N) is a release `target[n]` (gradients of a batch of B images) and a dummy batch x[n] (B, C, H, W).
The objective is a sum of independent per-problem terms computed with torch.func (vmap over problems of a
double-differentiated gradient distance), and the optimisers act per problem (Adam is element-wise; the L-BFGS
below keeps per-problem curvature pairs and step sizes), so each problem's trajectory is the one it would have alone,
up to floating-point summation order. Written from the published methods' descriptions (REFERENCES.md).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from bench.attacks.gradinv.releases import soft_cross_entropy

# Declared hyper-parameters per profile. paper: published counts (DLG: 1,200 L-BFGS iterations as re-implemented;
# IG: 24,000 signed-Adam steps in its reference configuration; SemSim's CIFAR configuration used 8,000 and TV 1e-4).
# cpu: what fits minutes on 2 cores for a handful of CIFAR images. smoke: seconds, for tests.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "dlg": {
        "smoke": {"iterations": 5, "lr": 1.0, "history": 100},
        "cpu": {"iterations": 300, "lr": 1.0, "history": 100},
        "paper": {"iterations": 1200, "lr": 1.0, "history": 100},
    },
    "idlg": {
        "smoke": {"iterations": 5, "lr": 1.0, "history": 100},
        "cpu": {"iterations": 300, "lr": 1.0, "history": 100},
        "paper": {"iterations": 1200, "lr": 1.0, "history": 100},
    },
    "inverting-gradients": {
        # restarts in the paper profile are an assumption (REFERENCES.md says "several").
        "smoke": {"iterations": 10, "lr": 0.1, "tv": 1e-4, "restarts": 1, "labels": "idlg"},
        "cpu": {"iterations": 500, "lr": 0.1, "tv": 1e-4, "restarts": 1, "labels": "idlg"},
        "paper": {"iterations": 24000, "lr": 0.1, "tv": 1e-4, "restarts": 4, "labels": "idlg"},
    },
}

# Help lines of the declared hyper-parameters (`bench list attacks -v`, `--attack-arg KEY=VALUE`).
HELP: dict[str, str] = {
    "iterations": "optimiser iterations (L-BFGS for dlg/idlg, signed-Adam steps for inverting-gradients)",
    "lr": "optimiser step size (L-BFGS lr; Adam lr, decayed x0.1 at 3/8, 5/8, 7/8 of the iterations)",
    "history": "L-BFGS history size (curvature pairs kept)",
    "tv": "weight of the total-variation prior",
    "restarts": "independent initialisations; the one with the lowest final objective is kept",
    "labels": "label source: idlg (recovered from the release's last-layer weight gradient; batch > 1: the classes "
              "whose rows hold the most negative entries)",
}


def hyper_parameters(attack: str, profile: str = "cpu", **overrides: Any) -> dict[str, Any]:
    """The declared hyper-parameters of `attack` at `profile`, with explicit overrides (unknown keys refused)."""
    if attack not in PROFILES:
        raise ValueError(f"unknown gradient-inversion attack {attack!r}; known: {', '.join(PROFILES)}")
    hp = dict(PROFILES[attack][profile])
    unknown = set(overrides) - set(hp)
    if unknown:
        raise ValueError(f"{attack}: unknown hyper-parameter(s) {sorted(unknown)}; declared: {sorted(hp)}")
    hp.update(overrides)
    return hp


@dataclass
class Reconstruction:
    """Result of a batched attack: images (N, B, C, H, W) in the model's input space, recovered labels (N, B),
    the final gradient distance per problem (N,), and the label recovery accuracy when true labels were given."""

    images: torch.Tensor
    labels: torch.Tensor
    loss: torch.Tensor
    label_accuracy: float | None = None


def _param_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def last_linear_weight_index(model: nn.Module) -> int:
    """Index, in the release's parameter order, of the weight of the model's last nn.Linear (the logits layer)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    params = [p for p in model.parameters() if p.requires_grad]
    return next(i for i, p in enumerate(params) if p is last.weight)


def idlg_labels(target: Sequence[torch.Tensor], model: nn.Module) -> torch.Tensor:
    """iDLG's label recovery for batch-1 releases (leading dim N): with cross-entropy and non-negative features,
    the true class's row of the logits layer's weight gradient is the one of opposite (negative) sign; returns (N,).
    """
    w = target[last_linear_weight_index(model)]
    return w.sum(dim=-1).argmin(dim=-1)


def batch_labels(target: Sequence[torch.Tensor], model: nn.Module, batch: int) -> torch.Tensor:
    """Labels of releases of `batch` images each (leading dim N), (N, batch).

    batch 1: iDLG's rule (`idlg_labels`). batch > 1: with cross-entropy and non-negative features, the row of the
    logits layer's weight gradient of a class present in the batch holds negative entries (its images' (p - 1) f
    terms) and a class absent holds none; the `batch` classes whose rows have the most negative minimum entry are
    taken (the convention of later work on batch label recovery, e.g. Yin et al., GradInversion, CVPR 2021). It
    assumes distinct labels in a batch: a repeated class is recovered once and another class fills its place.
    """
    if batch == 1:
        return idlg_labels(target, model)[:, None]
    w = target[last_linear_weight_index(model)]
    if w.shape[1] < batch:
        raise ValueError(f"batch label recovery: {batch} images but only {w.shape[1]} classes (labels repeat)")
    return w.amin(dim=-1).argsort(dim=-1)[:, :batch]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of a batch (B, C, H, W): mean |vertical difference| + mean |horizontal difference|."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@dataclass(frozen=True)
class FedAvgSetting:
    """A FedAvg client's local training, as the server knows it: `local_steps` plain SGD steps at `lr`, mini-batches
    of `local_batch` images cycling through the client's images in order (None: all of them every step), exactly
    as `releases.fedavg_update` does it."""

    local_steps: int
    lr: float
    local_batch: int | None = None


def _objective(model: nn.Module, distance: str, tv: float, soft: bool, fedavg: FedAvgSetting | None = None):
    """Per-problem objective f(x, y, target) -> scalar: distance between the dummy's release and the target
    (+ tv * TV(x)); y is label logits (soft=True, softmaxed: DLG) or integer labels. The release is the gradient
    (fedSGD), or with `fedavg` the weight change w0 - wT of the simulated local steps (Inverting Gradients' FedAvg
    attack: the local steps are unrolled and differentiated through). The Euclidean distance between updates is
    taken in units of the local lr ((w0 - wT) / lr, a constant factor 1 / lr^2 on the objective): gradient units,
    so that L-BFGS's curvature threshold acts as on fedSGD releases (updates of lr 1e-4 would fall below it)."""
    names = _param_names(model)
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def f(x: torch.Tensor, y: torch.Tensor, target: tuple[torch.Tensor, ...]) -> torch.Tensor:
        lab = torch.softmax(y, dim=-1) if soft else y

        def loss_p(p: dict[str, torch.Tensor], xb: torch.Tensor = x, yb: torch.Tensor = lab) -> torch.Tensor:
            return soft_cross_entropy(functional_call(model, (p, buffers), (xb,)), yb)

        if fedavg is None:
            g = grad(loss_p)(params)
            gl = [g[n] for n in names]
        else:
            b = fedavg.local_batch or x.shape[0]
            n_batches = max(1, (x.shape[0] + b - 1) // b)
            cur = dict(params)
            for step in range(fedavg.local_steps):
                i = (step % n_batches) * b
                gs = grad(loss_p)(cur, x[i:i + b], lab[i:i + b])
                cur = {n: cur[n] - fedavg.lr * gs[n] for n in names}
            gl = [params[n] - cur[n] for n in names]
        if distance == "euclidean":
            d = sum(((a - b) ** 2).sum() for a, b in zip(gl, target))
            if fedavg is not None and fedavg.lr > 0:
                d = d / fedavg.lr ** 2
        else:
            dot = sum((a * b).sum() for a, b in zip(gl, target))
            na = sum(a.pow(2).sum() for a in gl)
            nb = sum(b.pow(2).sum() for b in target)
            d = 1 - dot / (na.sqrt() * nb.sqrt() + 1e-12)
        return d + tv * total_variation(x) if tv else d

    return f


def _check_targets(target: Sequence[torch.Tensor], model: nn.Module) -> tuple[torch.Tensor, ...]:
    shapes = [p.shape for p in model.parameters() if p.requires_grad]
    if len(target) != len(shapes) or any(t.shape[1:] != s for t, s in zip(target, shapes)):
        raise ValueError("target release must hold one tensor per parameter with a leading problem dimension")
    return tuple(t.detach() for t in target)


def _lbfgs(fun, z0: torch.Tensor, iterations: int, lr: float, history: int,
           keep_best: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched L-BFGS without line search (torch.optim.LBFGS's update rule, applied per row of z (N, D)).

    A curvature pair with y.s <= 1e-10 is kept in the window but weighted 0 for that row (skipped). Returns the
    iterate with the lowest objective seen per row and that objective (non-finite values never count as best);
    keep_best=False returns the last iterate and its objective instead.
    """
    z = z0.clone()
    n = z.shape[0]
    best_z, best_f = z.clone(), torch.full((n,), math.inf, dtype=z.dtype)
    ss: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    rhos: list[torch.Tensor] = []
    h_diag = torch.ones(n, dtype=z.dtype)
    prev_g = d = t = None
    for it in range(iterations + 1):
        f, g = fun(z)
        better = torch.isfinite(f) & (f < best_f)
        best_f = torch.where(better, f, best_f)
        best_z[better] = z[better]
        if it == iterations:
            if not keep_best:
                return z, f
            break
        if prev_g is None:
            d = -g
            t = (1.0 / g.abs().sum(1)).clamp(max=1.0) * lr
        else:
            y = g - prev_g
            s = d * t[:, None]
            ydots = (y * s).sum(1)
            ok = ydots > 1e-10
            if len(ss) == history:
                ss.pop(0), ys.pop(0), rhos.pop(0)
            ss.append(s), ys.append(y), rhos.append(torch.where(ok, 1.0 / ydots.where(ok, torch.ones_like(ydots)),
                                                               torch.zeros_like(ydots)))
            h_diag = torch.where(ok, ydots / (y * y).sum(1).where(ok, torch.ones_like(ydots)), h_diag)
            q = -g
            al = []
            for si, yi, ri in zip(reversed(ss), reversed(ys), reversed(rhos)):
                a = (si * q).sum(1) * ri
                q = q - a[:, None] * yi
                al.append(a)
            r = q * h_diag[:, None]
            for (si, yi, ri), a in zip(zip(ss, ys, rhos), reversed(al)):
                b = (yi * r).sum(1) * ri
                r = r + si * (a - b)[:, None]
            d = r
            t = torch.full((n,), lr, dtype=z.dtype)
        prev_g = g
        z = z + t[:, None] * d
        z = torch.where(torch.isfinite(z), z, best_z)  # a diverged row restarts from its best iterate
    return best_z, best_f


def _problem_seeds(target: Sequence[torch.Tensor], seed: int) -> list[int]:
    """One seed per problem from `seed` and the sha256 of that problem's release: different starts for different
    problems, and a problem's start never depends on which or how many problems are attacked beside it."""
    out = []
    for n in range(target[0].shape[0]):
        h = hashlib.sha256(str(int(seed)).encode())
        for t in target:
            h.update(t[n].detach().contiguous().cpu().numpy().tobytes())
        out.append(int.from_bytes(h.digest()[:8], "little"))
    return out


def _init(shape: tuple[int, ...], seeds: Sequence[int], dtype: torch.dtype, problem_dim: int = 0) -> torch.Tensor:
    """N(0, 1) starting points, problem i's drawn from its own generator seeded with seeds[i] (along `problem_dim`)."""
    one = list(shape)
    one[problem_dim] = 1
    draws = [torch.randn(one, generator=torch.Generator().manual_seed(s), dtype=dtype) for s in seeds]
    return torch.cat(draws, dim=problem_dim)


def dlg(model: nn.Module, target: Sequence[torch.Tensor], image_shape: tuple[int, int, int], batch: int = 1,
        num_classes: int = 10, iterations: int = 300, lr: float = 1.0, history: int = 100, seed: int = 0,
        init: tuple[torch.Tensor, torch.Tensor] | None = None, true_labels: torch.Tensor | None = None,
        fixed_labels: torch.Tensor | None = None, fedavg: FedAvgSetting | None = None) -> Reconstruction:
    """DLG: L-BFGS on the squared Euclidean gradient distance over dummy images and soft labels jointly.

    `target`: release tensors with leading dim N (N independent problems of `batch` images each). `init`: optional
    (images (N, B, C, H, W), label logits (N, B, K)); default N(0, 1) from `seed`. With `fixed_labels` (N, B)
    the labels are not optimised (iDLG). `fedavg`: the target is a FedAvg update made with these local steps; the
    dummy's update is simulated as Inverting Gradients does it (an extension of DLG, which its paper states for
    gradients; with one local step on the whole batch the update is lr x the gradient and the attack is DLG's).
    """
    tgt = _check_targets(target, model)
    n = tgt[0].shape[0]
    dtype = tgt[0].dtype
    seeds = _problem_seeds(tgt, seed)
    x0, y0 = init if init is not None else (_init((n, batch, *image_shape), seeds, dtype),
                                            _init((n, batch, num_classes), [s + 1 for s in seeds], dtype))
    soft = fixed_labels is None
    f = _objective(model, "euclidean", 0.0, soft, fedavg)
    nx = x0[0].numel()
    if soft:
        gv = vmap(grad_and_value(f, argnums=(0, 1)))

        def fun(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            (gx, gy), val = gv(z[:, :nx].view_as(x0), z[:, nx:].view_as(y0), tgt)
            return val.detach(), torch.cat([gx.reshape(n, -1), gy.reshape(n, -1)], 1).detach()
        z0 = torch.cat([x0.reshape(n, -1), y0.reshape(n, -1)], 1)
    else:
        gv = vmap(grad_and_value(f, argnums=0))

        def fun(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            gx, val = gv(z.view_as(x0), fixed_labels, tgt)
            return val.detach(), gx.reshape(n, -1).detach()
        z0 = x0.reshape(n, -1).clone()
    z, best = _lbfgs(fun, z0, iterations, lr, history)
    images = z[:, :nx].view_as(x0)
    labels = z[:, nx:].view_as(y0).argmax(-1) if soft else fixed_labels
    return Reconstruction(images, labels, best, _label_acc(labels, true_labels))


def idlg(model: nn.Module, target: Sequence[torch.Tensor], image_shape: tuple[int, int, int], num_classes: int = 10,
         iterations: int = 300, lr: float = 1.0, history: int = 100, seed: int = 0,
         init: torch.Tensor | None = None, true_labels: torch.Tensor | None = None, batch: int = 1,
         fedavg: FedAvgSetting | None = None) -> Reconstruction:
    """iDLG: the labels from the logits layer's weight gradient (`batch_labels`: the sign rule at batch 1), then
    DLG's L-BFGS on the images only. `fedavg`: as in `dlg` (the labels then come from the update's last layer, whose
    rows carry the summed local gradients' signs)."""
    labels = batch_labels(target, model, batch)
    tgt = _check_targets(target, model)
    n = tgt[0].shape[0]
    x0 = init if init is not None else _init((n, batch, *image_shape), _problem_seeds(tgt, seed), tgt[0].dtype)
    return dlg(model, target, image_shape, batch, num_classes, iterations, lr, history, seed,
               init=(x0, torch.zeros(n, batch, num_classes, dtype=x0.dtype)), true_labels=true_labels,
               fixed_labels=labels, fedavg=fedavg)


def inverting_gradients(model: nn.Module, target: Sequence[torch.Tensor], image_shape: tuple[int, int, int],
                        batch: int = 1, iterations: int = 500, lr: float = 0.1, tv: float = 1e-4, restarts: int = 1,
                        labels: str | torch.Tensor = "idlg", box: tuple[Any, Any] = (0.0, 1.0), seed: int = 0,
                        init: torch.Tensor | None = None, true_labels: torch.Tensor | None = None,
                        fedavg: FedAvgSetting | None = None) -> Reconstruction:
    """Inverting Gradients: cosine gradient distance + tv * TV, Adam on the sign of the input gradient (lr decayed
    x0.1 at 3/8, 5/8 and 7/8 of the iterations), images clamped into `box` (bounds of [0, 1] in the model's
    normalised input space, scalars or per-channel (C, 1, 1) tensors) after every step; `restarts` independent
    initialisations, the one with the lowest final objective kept per problem.

    `labels`: "idlg" (recovered from the release: `batch_labels`) or a (N, B) tensor of known labels. `init`:
    optional (restarts, N, B, C, H, W) starting images. `fedavg`: the target is a FedAvg update (w0 - wT) made with
    these local steps, which the attack simulates on its dummy images (labels from the update's last layer, whose
    rows carry the summed local gradients' signs).
    """
    tgt = _check_targets(target, model)
    n = tgt[0].shape[0]
    dtype = tgt[0].dtype
    if isinstance(labels, str):
        if labels != "idlg":
            raise ValueError(f"inverting-gradients: unknown label source {labels!r}; use 'idlg' or known labels")
        lab = batch_labels(target, model, batch)
    else:
        lab = labels
    lo, hi = (torch.as_tensor(b, dtype=dtype) for b in box)
    f = _objective(model, "cosine", tv, soft=False, fedavg=fedavg)
    gv = vmap(grad_and_value(f, argnums=0))
    starts = init if init is not None else torch.stack(
        [_init((n, batch, *image_shape), [s + r for s in _problem_seeds(tgt, seed)], dtype) for r in range(restarts)])
    best_x, best_f = starts[0].clone(), torch.full((n,), math.inf, dtype=dtype)
    milestones = [int(iterations * q) for q in (3 / 8, 5 / 8, 7 / 8)]
    for r in range(starts.shape[0]):
        x = starts[r].clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
        for _ in range(iterations):
            gx, _val = gv(x.detach(), lab, tgt)
            x.grad = gx.sign()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
        with torch.no_grad():
            final = vmap(f)(x.detach(), lab, tgt)
        better = final < best_f
        best_f = torch.where(better, final, best_f)
        best_x[better] = x.detach()[better]
    return Reconstruction(best_x, lab, best_f, _label_acc(lab, true_labels))


def _label_acc(labels: torch.Tensor, true_labels: torch.Tensor | None) -> float | None:
    if true_labels is None:
        return None
    return float((labels.reshape(-1) == true_labels.reshape(-1)).double().mean())


ATTACKS = {"dlg": dlg, "idlg": idlg, "inverting-gradients": inverting_gradients}
