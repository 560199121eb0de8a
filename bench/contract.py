"""The contract test kit: the checks every attack, defense and metric must pass, built-in or submitted.

`bench plugin check NAME` and the test suite run the same functions, on tiny data at the smoke profile.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Iterator

import numpy as np
import torch

from bench import registry
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.images import resize
from bench.plugins import Attack, Defense, EvalBatch, FitContext, Metric, seeded_rng
from bench.profiles import get_profile

Result = tuple[str, bool, str]


def _run(name: str, fn: Callable[[], str | None]) -> Result:
    try:
        detail = fn()
        return name, True, detail or ""
    except Exception as exc:  # a contract failure is reported, not raised
        return name, False, f"{type(exc).__name__}: {exc}"


def _find(name: str, kind: str | None) -> tuple[str, Any]:
    kinds = [kind] if kind else ["attacks", "defenses", "metrics"]
    found = [(k, registry.REGISTRIES[k].get(name).obj) for k in kinds if name in registry.REGISTRIES[k]]
    if not found:
        raise BenchError(registry.REGISTRIES[kinds[0]].unknown_message(name) if kind else
                         f"no attack, defense or metric is registered as {name!r}")
    if len(found) > 1:
        raise BenchError(f"{name!r} is registered as several kinds; pass --kind")
    return found[0]


def check_plugin(name: str, kind: str | None = None) -> list[Result]:
    """All contract checks for the plugin `name` as (check, passed, detail) triples."""
    k, cls = _find(name, kind)
    return list({"attacks": attack_checks, "defenses": defense_checks, "metrics": metric_checks}[k](cls))


# ------------------------------------------------------------------------------------------------- test data
def smoke_data(n_train: int = 12, n_test: int = 4, extractor: str = "sift", defense: str = "none",
               seed: int = 0) -> dict[str, Any]:
    """Tiny auxiliary and private splits of the synthetic set at the smoke profile, with released features."""
    prof = get_profile("smoke")
    ds = registry.datasets.get("synthetic-faces").obj()
    ids = ds.item_ids()[: n_train + n_test]
    imgs = ds.load(ids, prof.extract_size)
    ext = registry.extractors.get(extractor).obj()
    feats = ext.extract(imgs, progress=False)
    dfn = registry.defenses.get(defense).obj()
    tr, te = list(range(n_train)), list(range(n_train, n_train + n_test))
    targets = resize(imgs.images, prof.image_size)
    return {
        "profile": prof,
        "extractor": ext,
        "defense": dfn,
        "aux": dfn.protect(feats.subset(tr), seeded_rng(seed, "attacker-keys")),
        "private": dfn.protect(feats.subset(te), seeded_rng(seed, "victim-keys")),
        "aux_images": targets[tr],
        "private_images": targets[te],
        "features": feats,
    }


def _pairing(cls: type[Attack]) -> tuple[str, str]:
    """An (extractor, defense) pair whose released features the attack consumes."""
    for ext in registry.extractors:
        if cls.consumes.kind not in ("*", ext.obj.produces.kind):
            continue
        for dfn in [registry.defenses.get("none")] + list(registry.defenses):
            d = dfn.obj()
            if d.can_protect(ext.obj.produces) and cls.consumes.accepts(d.released_spec(ext.obj.produces)):
                return ext.name, dfn.name
    raise AssertionError(f"no registered extractor + defense releases what {cls.name!r} consumes "
                         f"({cls.consumes.describe()})")


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ---------------------------------------------------------------------------------------------------- attacks
def attack_checks(cls: type[Attack]) -> Iterator[Result]:
    """Metadata, smoke fit/reconstruct, output range, batch independence, checkpoint round trip, determinism."""

    def meta() -> str:
        assert cls.name and registry.attacks.get(cls.name).obj is cls, "name must match its registry entry"
        assert "smoke" in cls.profiles, "every attack needs a smoke profile"
        assert cls.paper, "say which paper the attack implements (or that it is a baseline)"
        return f"consumes {cls.consumes.describe()}"

    yield _run("metadata", meta)
    try:
        ext, dfn = _pairing(cls)
        data = smoke_data(extractor=ext, defense=dfn)
    except Exception as exc:
        yield "smoke data", False, f"{type(exc).__name__}: {exc}"
        return
    prof = data["profile"]

    def make() -> Attack:
        return cls(profile="smoke", image_size=prof.image_size, device="cpu", seed=0)

    def fitted() -> Attack:
        a = make()
        a.fit(data["aux"], data["aux_images"], FitContext(defense=data["defense"], seed=0,
                                                          device=torch.device("cpu"), progress=False))
        return a

    state: dict[str, Any] = {}

    def config() -> None:
        json.dumps(make().config())

    def fit_reconstruct() -> str:
        a = fitted()
        out = a.reconstruct(data["private"], progress=False)
        n = len(data["private"])
        assert tuple(out.shape) == (n, 3, prof.image_size, prof.image_size), f"shape {tuple(out.shape)}"
        assert out.dtype == torch.float32 and out.device.type == "cpu", f"{out.dtype} on {out.device}"
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, "values outside [0, 1]"
        state["attack"], state["out"] = a, out
        return f"{n} images {prof.image_size}px"

    yield _run("config is JSON", config)
    yield _run("fit + reconstruct (smoke)", fit_reconstruct)
    if "attack" not in state:
        return

    def batch_independent() -> None:
        a, out = state["attack"], state["out"]
        for i in range(len(out)):
            one = a.reconstruct(data["private"].subset([i]), progress=False)
            assert torch.allclose(one[0], out[i], atol=1e-5), f"sample {i} changes with the batch around it"

    def checkpoint() -> None:
        sd = _roundtrip(state["attack"].state_dict())
        b = make()
        b.load_state_dict(sd)
        again = b.reconstruct(data["private"], progress=False)
        assert torch.allclose(again, state["out"], atol=1e-6), "reloaded attack reconstructs differently"

    def deterministic() -> None:
        again = fitted().reconstruct(data["private"], progress=False)
        assert torch.allclose(again, state["out"], atol=1e-5), "two fits with one seed differ"

    yield _run("reconstruction independent of batch", batch_independent)
    yield _run("checkpoint round trip (weights_only)", checkpoint)
    yield _run("same seed, same result", deterministic)


# --------------------------------------------------------------------------------------------------- defenses
def _arrays(fs: FeatureSet) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in fs._save_arrays().items()}


def defense_checks(cls: type[Defense]) -> Iterator[Result]:
    """Declared spec matches output, input untouched, keys from the rng, length and save/load preserved."""
    candidates = [e for e in registry.extractors if cls().can_protect(e.obj.produces)]
    if not candidates:
        yield "can protect a registered feature kind", False, f"accepts {cls.accepts}"
        return
    data = smoke_data(extractor=candidates[0].name)
    feats: FeatureSet = data["features"]

    def spec() -> str:
        d = cls()
        out = d.protect(feats, seeded_rng(1, "k"))
        assert out.spec == d.released_spec(feats.spec), f"released {out.spec} but declared {d.released_spec(feats.spec)}"
        assert len(out) == len(feats), "length changed"
        return out.spec.describe()

    def untouched() -> None:
        before = _arrays(feats)
        cls().protect(feats, seeded_rng(1, "k"))
        after = _arrays(feats)
        assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before), "input was modified"

    def reproducible() -> None:
        a = _arrays(cls().protect(feats, seeded_rng(7, "k")))
        b = _arrays(cls().protect(feats, seeded_rng(7, "k")))
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a), "same key, different output"

    def config() -> None:
        json.dumps(cls().config())

    yield _run("released spec as declared", spec)
    yield _run("input features untouched", untouched)
    yield _run("same rng, same output", reproducible)
    yield _run("config is JSON", config)


# ---------------------------------------------------------------------------------------------------- metrics
def _set_value(m: Metric, recon: torch.Tensor, ref: torch.Tensor) -> float:
    """A set value through the streaming path (embed each batch, aggregate), as the runner computes it."""
    batch = EvalBatch(list(range(len(ref))), [str(i) for i in range(len(ref))])
    return m.aggregate({k: np.asarray(v) for k, v in m.embed(recon, ref, batch).items()})


def metric_checks(cls: type[Metric]) -> Iterator[Result]:
    """Shape, range, identity is best, batch consistency, metadata."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    m = cls()

    def meta() -> str:
        assert cls.name and registry.metrics.get(cls.name).obj is cls, "name must match its registry entry"
        assert cls.convention, "pin the convention (recorded with every value)"
        return f"{'higher' if cls.higher_is_better else 'lower'} is better; {cls.convention}"

    def sample_values() -> None:
        if cls.level != "sample" or cls.inputs != "images":
            return
        v = m.per_sample(b, a)
        assert tuple(v.shape) == (4,), f"shape {tuple(v.shape)}"
        lo, hi = cls.value_range
        assert ((v >= lo) & (v <= hi)).all(), f"values {v.tolist()} outside {cls.value_range}"
        one = torch.stack([m.per_sample(b[i:i + 1], a[i:i + 1])[0] for i in range(4)])
        assert torch.allclose(one.double(), v.double(), atol=1e-6), "per-sample values depend on the batch"

    def identity_best() -> None:
        if cls.inputs != "images":
            return
        same, diff = _set_value(m, a, a), _set_value(m, b, a)
        better = same >= diff if cls.higher_is_better else same <= diff
        assert better, f"identical images score {same}, noisy ones {diff}"

    yield _run("metadata", meta)
    yield _run("per-sample values", sample_values)
    yield _run("identical images score best", identity_best)
