"""The shared trainer of learned attacks: one copy of the machinery every trained attack needs.

- `speedups`: exact training speed-ups on (the default) or off (`BENCH_TRAINING_SPEEDUPS=0`; benchmarks compare);
- `seeded_batches`: endless epochs of a seeded permutation, in batches (the last partial batch dropped);
- `adam`, `schedules`, `optimise`: the optimiser from a profile's `lr`/`betas`, its learning-rate schedule
  (`none`, `cosine` over the stage's steps, or a `step` decay) and one zero-grad/backward/step;
- `Adversary`: an optional adversarial step (a discriminator, its optimiser and a GAN loss: `RAGAN`, `BCE`);
- `run_steps`: the step loop with divergence guard, loss history and progress bar;
- `recalibrate_bn`: batch-norm running statistics re-estimated as plain averages with the final weights;
- `LearnedAttack`: the base of a learned attack: per-profile hyper-parameters (`PROFILES`), named networks kept in
  a weights_only-safe checkpoint (`state_dict` / `load_state_dict`), stages with timings and loss histories,
  batched reconstruction, and the FLOP figures of `describe`.

A subclass gives `build` (create its networks from the torch global RNG), `networks` (the trained ones, by
checkpoint key), `fit` (its stages, through `run_stage`) and `reconstruct_batch`. Every helper consumes random
numbers exactly where the copies it replaced did, so the built-in attacks' numbers are unchanged by it
(docs/plugins.md, "A learned attack").

Data-parallel training (several processes under torchrun, bench.nn.distributed): in a stage of an attack that
declares `shards_exactly`, every rank draws the same seeded global batch and steps on its own shard of it;
`optimise` averages the gradients over the ranks, the logged loss is the global batch's, batch norm layers of the
networks and discriminators use the global batch's statistics, and the weights are checked equal on every rank
after the stage. One process: all of it is a no-op.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench.errors import BenchError
from bench.features import FeatureSet
from bench.hyper import apply
from bench.nn import distributed
from bench.nn.losses import bce_with_target, ragan_d_loss, ragan_g_loss
from bench.nn.measure import flops_and_macs
from bench.plugins import Attack
from bench.record_cache import SparseRecordCache

Batches = Iterator[np.ndarray]

# ------------------------------------------------------------------------------------------------ speed-ups
# Exact speed-ups of training (docs/speed.md, "Training throughput"): Adam's multi-tensor (foreach) update, one
# discriminator forward shared by the generator's adversarial term and the discriminator's step, per-record inputs
# (SIFT maps, fixed targets' features) built once instead of every step. They change no number beyond float noise
# (the tests check the trained weights against the plain path); off, the trainer runs the plain per-step path.
_speedups = os.environ.get("BENCH_TRAINING_SPEEDUPS", "1").strip().lower() not in ("0", "off", "false", "no")


def speedups_enabled() -> bool:
    """Whether the exact training speed-ups are on (default; `BENCH_TRAINING_SPEEDUPS=0` turns them off)."""
    return _speedups


@contextlib.contextmanager
def speedups(enabled: bool) -> Iterator[None]:
    """Turn the training speed-ups on or off inside a `with` block (benchmarks time both paths in one process)."""
    global _speedups
    before, _speedups = _speedups, bool(enabled)
    try:
        yield
    finally:
        _speedups = before


class TrainingDiverged(RuntimeError):
    """A training loss that is not finite (NaN or infinite): the run stops instead of storing a broken attack."""


def record_inputs(build: Callable[[np.ndarray], torch.Tensor], n: int) -> Callable[[np.ndarray], torch.Tensor]:
    """`build(indices)` of per-record, mostly-zero training inputs (SIFT maps) of `n` records: with the speed-ups,
    each record's is built once and kept as its non-zero cells (`SparseRecordCache`, the same values); else `build`."""
    return SparseRecordCache(build, n) if _speedups else build


# ------------------------------------------------------------------------------------------------ batches
def seeded_batches(n: int, batch: int, seed: int | torch.Generator) -> Batches:
    """Endless epochs of a seeded permutation of range(n) in batches of min(batch, n) (last partial one dropped).

    `seed` is an int (a generator of its own) or a torch.Generator that the caller shares between stages: each call
    then starts a fresh permutation from where the generator stands.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    b = min(int(batch), n)
    while True:
        perm = torch.randperm(n, generator=gen).numpy()
        for i in range(0, n - b + 1, b):
            yield perm[i:i + b]


# ------------------------------------------------------------------------------------- optimiser, schedule
def adam(params: Iterable[nn.Parameter], hp: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam at the profile's `lr` and `betas` (torch's default (0.9, 0.999) when the profile gives none); with the
    speed-ups, torch's multi-tensor (foreach) update: the same arithmetic, bit for bit, in fewer Python calls."""
    foreach = True if _speedups else None  # None: torch's own choice (the per-tensor loop on the CPU)
    return torch.optim.Adam(params, lr=hp["lr"], betas=tuple(hp.get("betas", (0.9, 0.999))),  # type: ignore[arg-type]
                            foreach=foreach)


def schedules(optimisers: Sequence[torch.optim.Optimizer], kind: str, steps: int, *, step_size: int = 1,
              gamma: float = 1.0) -> list[Any]:
    """One learning-rate schedule per optimiser, stepped once per training step: `none`, `cosine` (annealed to 0
    over `steps`) or `step` (× `gamma` every `step_size` steps)."""
    if kind == "none":
        return []
    if kind == "cosine":
        return [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(int(steps), 1)) for o in optimisers]
    if kind == "step":
        return [torch.optim.lr_scheduler.StepLR(o, step_size=max(int(step_size), 1), gamma=float(gamma))
                for o in optimisers]
    raise BenchError(f"unknown learning-rate schedule {kind!r}; schedules: none, cosine, step")


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, *, keep_graph: bool = False) -> None:
    """One optimisation step on `loss`: gradients cleared (set to None), back-propagated, applied. `keep_graph`:
    only the optimiser's parameters get gradients and the graph is kept for a second backward pass (the
    discriminator's, through the same forward: `Adversary.train_step`)."""
    opt.zero_grad(set_to_none=True)
    if keep_graph:
        loss.backward(inputs=_trainable(opt), retain_graph=True)
    else:
        loss.backward()
    if distributed.sharding():  # data-parallel: the gradient of the global batch's mean loss
        distributed.average_gradients(p for group in opt.param_groups for p in group["params"])
    opt.step()


def _trainable(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"] if p.requires_grad]


# ------------------------------------------------------------------------------------------- adversarial
Logits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GANLoss:
    """A GAN objective on the discriminator's logits of a real and a fake batch: `g_logits(real, fake)` the
    generator's term (real logits carry no gradient), `d_logits(real, fake)` the discriminator's loss.
    `uses_real_in_g`: whether the generator's term reads the real logits at all."""

    name: str
    g_logits: Logits
    d_logits: Logits
    uses_real_in_g: bool = True

    def g(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The generator's term, the discriminator run on both batches (real first, without gradients)."""
        real_logits = None
        if self.uses_real_in_g:
            with torch.no_grad():
                real_logits = disc(real)
        return self.g_logits(real_logits, disc(fake))  # type: ignore[arg-type]

    def d(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss (`fake` already detached)."""
        return self.d_logits(disc(real), disc(fake))


# Relativistic-average GAN (ESRGAN's; CFGAN, SLI) and the standard non-saturating GAN with logits (INV).
RAGAN = GANLoss("ragan", ragan_g_loss, ragan_d_loss)
BCE = GANLoss("bce", lambda real, fake: bce_with_target(fake, 1.0),
              lambda real, fake: bce_with_target(real, 1.0) + bce_with_target(fake, 0.0), uses_real_in_g=False)


class Adversary:
    """A discriminator with its optimiser and GAN loss: the generator's adversarial term, then its own step."""

    def __init__(self, disc: nn.Module, loss: GANLoss, opt: torch.optim.Optimizer) -> None:
        self.disc, self.loss, self.opt = distributed.sync_batch_norm(disc), loss, opt

    def generator_term(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial loss on `fake` (gradients reach the generator, never the discriminator)."""
        self.disc.requires_grad_(False)
        try:
            return self.loss.g(self.disc, real, fake)
        finally:
            self.disc.requires_grad_(True)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One discriminator step on a real and a (detached) fake batch; returns its loss."""
        d_loss = self.loss.d(self.disc, real, fake.detach())
        optimise(self.opt, d_loss)
        return float(d_loss.detach())

    def train_step(self, opt_g: torch.optim.Optimizer, loss: torch.Tensor, weight: float, real: torch.Tensor,
                   fake: torch.Tensor) -> torch.Tensor:
        """The generator's step on `loss + weight · adversarial term`, then the discriminator's step; returns the
        generator's total loss.

        Plain path: `generator_term`, `optimise`, `step` (four discriminator forwards). With the speed-ups, the
        discriminator runs once on each batch and both steps back-propagate through those forwards: the values
        are the same (its weights do not change between the two steps and batch norm in training mode normalises
        each call by its own batch), only its running statistics are updated twice per step instead of four times
        (a discriminator's are never used)."""
        if not _speedups:
            total = loss + weight * self.generator_term(real, fake)
            optimise(opt_g, total)
            self.step(real, fake)
            return total
        real_logits = self.disc(real)
        fake_logits = self.disc(fake)
        total = loss + weight * self.loss.g_logits(real_logits.detach(), fake_logits)
        optimise(opt_g, total, keep_graph=True)  # gradients into the generator only; the graph stays
        optimise(self.opt, self.loss.d_logits(real_logits, fake_logits), keep_graph=True)  # into the disc only
        return total


# ---------------------------------------------------------------------------------------------- the loop
def run_steps(who: str, steps: int, batches: Batches, step: Callable[[np.ndarray], float], *,
              history: list[float] | None = None, schedulers: Sequence[Any] = (), progress: bool = False,
              desc: str | None = None, stage: str | None = None) -> None:
    """`steps` calls of `step(batch indices) -> loss`, each followed by one step of every schedule; a loss that is
    not finite raises TrainingDiverged naming `who`, the stage and the step; losses are appended to `history`."""
    what = f"{stage} training" if stage else "training"
    bar = tqdm(range(int(steps)), desc=desc or f"{who} {stage or ''}".strip(), disable=not progress, unit="step")
    for i in bar:
        value = step(next(batches))
        for sch in schedulers:
            sch.step()
        if not math.isfinite(value):
            raise TrainingDiverged(f"{who}: {what} diverged at step {i} (loss {value})")
        if history is not None:
            history.append(value)
        if progress and (i % 10 == 0 or i == steps - 1):
            bar.set_postfix(loss=f"{value:.4f}")
    bar.close()


def recalibrate_bn(net: nn.Module, forward: Callable[[np.ndarray], Any], n: int, batch: int, n_batches: int,
                   seed: int) -> None:
    """Re-estimate the batch-norm running statistics of the trained `net` as plain averages over `n_batches`
    batches of a permutation of range(n) seeded by `seed` (`forward(indices)` runs the net on them; weights are
    not touched), then put it in eval mode. After a short run the moving averages still carry statistics of early
    weights, so eval-mode outputs lag behind train-mode ones; this fixes that. `n_batches` 0: nothing happens."""
    if n_batches <= 0:
        return
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    b = min(int(batch), n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).numpy()
    with torch.no_grad():
        for k in range(min(int(n_batches), max(n // b, 1))):
            forward(order[k * b:(k + 1) * b])
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.eval()


def flop_figures(fn: Callable[[torch.Tensor], Any], example: torch.Tensor, digits: int = 2) -> dict[str, float]:
    """{'gflops', 'gmacs'} of one call of `fn` on `example` (build both on the meta device: nothing is computed)."""
    return {k: round(v, digits) for k, v in flops_and_macs(fn, example).items()}


def cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A network's state_dict as detached CPU tensors (what a checkpoint keeps)."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def parallel_refusal(attack: str) -> str:
    """The one line that refuses data-parallel training of an attack that does not declare it exact."""
    return (f"attack {attack!r} cannot train on several processes: its training step is not declared to split "
            "exactly over shards of a batch (LearnedAttack.shards_exactly); run it with one process")


# ------------------------------------------------------------------------------------------ the base class
class LearnedAttack(Attack):
    """Base of attacks trained on the auxiliary split: hyper-parameters, named networks, stages, checkpoint,
    batched reconstruction. See the module docstring for what a subclass provides."""

    # Per-profile hyper-parameters (declare them with `params = declare(PROFILES)`); read as `self.hp`.
    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # True when a step on shards of a batch, with averaged gradients, equals the step on the whole batch: no
    # sample-coupling other than batch norm and `distributed.batch_mean`, no random numbers drawn per step, every
    # update through `optimise`. Only such an attack trains on several processes (docs/speed.md).
    shards_exactly: ClassVar[bool] = False

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.hp: dict[str, Any] = apply(self.PROFILES[profile], self.overrides)
        if "image_size" in self.hp and self.image_size != self.hp["image_size"]:
            raise BenchError(f"{self.name} profile {profile!r} reconstructs at {self.hp['image_size']}px, but "
                             f"image_size {self.image_size} was asked for (use the run profile of the same name)")
        self.history: dict[str, list[float]] = {}  # loss per step, by stage
        self.stage_seconds: dict[str, float] = {}  # wall time of each stage's steps (benchmarks)

    # ------------------------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def build(self) -> None:
        """Create the networks with fresh weights (drawn from the torch global RNG) on `self.device`."""

    @abstractmethod
    def networks(self) -> dict[str, nn.Module | None]:
        """The trained networks by checkpoint key, in order (None before `fit` or `load_state_dict`)."""

    def network_shapes(self) -> Any:
        """The networks' shapes as plain data: recorded in `config()['nets']`, and a checkpoint must match them
        (None: not recorded, not checked)."""
        return None

    def reconstruct_batch(self, inputs: Any, indices: np.ndarray) -> torch.Tensor:
        """Images (B×3×S×S, [0, 1] up to clamping) of the records `indices` of `inputs` (see reconstruction_inputs)."""
        raise NotImplementedError(f"attack {self.name!r} outputs {self.outputs}, not images")

    def reconstruction_inputs(self, features: FeatureSet) -> Any:
        """What `reconstruct_batch` reads, prepared once for all batches (default: the features themselves)."""
        return features

    # ---------------------------------------------------------------------------------------- training
    def config(self) -> dict[str, Any]:
        """Profile hyper-parameters and network shapes: what changes what `fit` learns (the seed is keyed apart)."""
        out = {**super().config(), "hyper": dict(self.hp)}
        shapes = self.network_shapes()
        if shapes is not None:
            out["nets"] = shapes
        return out

    def check_training_inputs(self, features: FeatureSet, images: torch.Tensor, minimum: int = 1) -> None:
        """Images N×3×S×S (S = image_size), one feature record per image, at least `minimum` of them."""
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BenchError(f"{self.name}: training images must be N×3×{s}×{s}, got {tuple(images.shape)}")
        if len(features) != images.shape[0]:
            raise BenchError(f"{self.name}: {len(features)} feature records for {images.shape[0]} training images")
        if images.shape[0] < minimum:
            raise BenchError(f"{self.name}: needs at least {minimum} training image{'s' if minimum > 1 else ''}"
                             + (" (batch norm)" if minimum > 1 else ""))

    def start_training(self) -> None:
        """Seed the torch global RNG with the run seed, build fresh networks, clear histories and timings."""
        if distributed.active() and not type(self).shards_exactly:
            raise BenchError(parallel_refusal(self.name))
        torch.manual_seed(self.seed)
        self.build()
        for net in self.networks().values():
            if net is not None:
                distributed.sync_batch_norm(net)
        self.history, self.stage_seconds = {}, {}

    def run_stage(self, stage: str, steps: int, batches: Batches, step: Callable[[np.ndarray], float], *,
                  schedulers: Sequence[Any] = (), progress: bool = False, desc: str | None = None) -> None:
        """One training stage: `run_steps` with the stage's loss history and wall time recorded."""
        self.history[stage] = []
        t0 = time.perf_counter()
        with distributed.sharded() as parallel:
            if parallel:  # this rank's shard of each global batch; the global batch's mean loss
                batches, step = self._shard_batches(batches), self._global_loss(step)
            run_steps(self.name, steps, batches, step, history=self.history[stage], schedulers=schedulers,
                      progress=progress and distributed.is_main(), desc=desc or f"{self.name.upper()} {stage}",
                      stage=stage)
        if parallel:
            distributed.check_in_sync([n for n in self.networks().values() if n is not None],
                                      f"{self.name} {stage} training")
        self.stage_seconds[stage] = time.perf_counter() - t0

    def _shard_batches(self, batches: Batches) -> Batches:
        for batch in batches:
            try:
                mine = distributed.shard(batch)
            except ValueError as exc:
                raise BenchError(f"{self.name}: {exc} (choose a process count that divides the batch size "
                                 f"{len(batch)})") from None
            yield mine

    @staticmethod
    def _global_loss(step: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
        return lambda idx: distributed.mean_over_ranks(step(idx))

    # ----------------------------------------------------------------------------------- reconstruction
    def _trained(self, what: str) -> dict[str, nn.Module]:
        nets = self.networks()
        if not nets or any(v is None for v in nets.values()):
            raise RuntimeError(f"{self.name}: {what}() before fit() or load_state_dict()")
        return {k: v for k, v in nets.items() if v is not None}

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """Images (N×3×S×S float32 in [0, 1], CPU), `eval_batch` records at a time, every network in eval mode
        (so a record's image never depends on the batch around it)."""
        for net in self._trained("reconstruct").values():
            net.eval()
        inputs = self.reconstruction_inputs(features)
        n, b, s = len(features), int(self.hp["eval_batch"]), self.image_size
        out = torch.empty((n, 3, s, s), dtype=torch.float32)
        bar = tqdm(range(0, n, b), desc=f"{self.name.upper()} reconstruct", disable=not progress, unit="batch")
        with torch.no_grad():
            for start in bar:
                idx = np.arange(start, min(start + b, n))
                out[start:start + len(idx)] = self.reconstruct_batch(inputs, idx).float().cpu().clamp_(0.0, 1.0)
        return out

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """{'config': plain dict, <network key>: weights, ...}: tensors, numbers and strings only (weights_only)."""
        nets = self._trained("state_dict")
        return {"config": self.config(), **{k: cpu_state(v) for k, v in nets.items()}}

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Refuse a checkpoint whose networks differ in shape from this profile's."""
        want = self.network_shapes()
        if want is None:
            return
        have = state.get("config", {}).get("nets", {})
        if have != want:
            raise BenchError(f"{self.name}: saved state has networks {dict(have)}, profile {self.profile!r} needs "
                             f"{want}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the networks and load the weights saved by `state_dict`; all in eval mode, frozen."""
        self.check_state(state)
        self.build()
        for key, net in self.networks().items():
            if net is None:
                raise RuntimeError(f"{self.name}: build() did not create network {key!r}")
            net.load_state_dict(state[key])
            net.eval().requires_grad_(False)
