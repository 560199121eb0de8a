"""The contract test kit: the checks every attack, defense and metric must pass, built-in or submitted.

`bench plugin check NAME` and the test suite run the same functions, on tiny data at the smoke profile.
"""

from __future__ import annotations

import copy
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from bench import registry
from bench.compat import make_attack
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.images import resize
from bench.hyper import HyperParam
from bench.params import Param
from bench.plugins import (Attack, ClientData, Defense, EvalBatch, EvalContext, FitContext, ImageSet, Metric,
                           MetricUnavailable, UtilityContext, UtilityTraining, Victim, attacker_training_features,
                           seeded_rng)
from bench.profiles import get_profile

Result = tuple[str, bool, str]


def _run(name: str, fn: Callable[[], str | None]) -> Result:
    try:
        detail = fn()
        return name, True, detail or ""
    except Exception as exc:  # a contract failure is reported, not raised
        return name, False, f"{type(exc).__name__}: {exc}"


def find_plugin(name: str, kind: str | None = None) -> tuple[str, Any]:
    """(registry kind, class) of the attack, defense or metric `name`; `kind` picks one when a name is in several."""
    kinds = [kind] if kind else ["attacks", "defenses", "metrics"]
    found = [(k, registry.REGISTRIES[k].get(name).obj) for k in kinds if name in registry.REGISTRIES[k]]
    if not found:
        failed = [registry.REGISTRIES[k].failed[name] for k in kinds if name in registry.REGISTRIES[k].failed]
        if failed:  # installed, but its entry point did not import: say why rather than "unknown"
            raise BenchError(f"{name!r} is installed but failed to load ({failed[0]})")
        raise BenchError(registry.REGISTRIES[kinds[0]].unknown_message(name) if kind else
                         f"no attack, defense or metric is registered as {name!r}")
    if len(found) > 1:
        raise BenchError(f"{name!r} is registered as several kinds; pass --kind")
    return found[0]


def check_plugin(name: str, kind: str | None = None) -> list[Result]:
    """All contract checks for the plugin `name` as (check, passed, detail) triples."""
    k, cls = find_plugin(name, kind)
    return list({"attacks": attack_checks, "defenses": defense_checks, "metrics": metric_checks}[k](cls))


# ------------------------------------------------------------------------------------------------- test data
_EXTRACTED: dict[tuple[Any, ...], FeatureSet] = {}


def _extract_once(ext: Any, imgs: ImageSet, size: int) -> FeatureSet:
    """`ext.extract(imgs)`, computed once per process for a deterministic (not white-box) extractor and handed out as
    a deep copy: checking several plugins (`bench plugin check A B C`, the test suite) extracts the smoke images once
    (dlib-face takes seconds for them), and a plugin that changes its input cannot reach the next plugin's data."""
    if type(ext).white_box:
        return ext.extract(imgs, progress=False)
    key = (type(ext), ext.name, tuple(imgs.ids), size)
    if key not in _EXTRACTED:
        _EXTRACTED[key] = ext.extract(imgs, progress=False)
    return copy.deepcopy(_EXTRACTED[key])


def smoke_data(n_train: int = 12, n_test: int = 4, extractor: str = "sift", defense: str = "none",
               seed: int = 0) -> dict[str, Any]:
    """Tiny auxiliary and private splits of the synthetic set at the smoke profile, with released features.

    Holds the loaded `image_set` (all n_train + n_test images at the extraction size) and its `features`, and
    per split the released features, the images at the attack's size, ids and labels.
    """
    prof = get_profile("smoke")
    ds = registry.datasets.get("synthetic-faces").obj()
    ids = ds.item_ids()[: n_train + n_test]
    imgs = ds.load(ids, prof.extract_size)
    ext = registry.extractors.get(extractor).obj()
    feats = _extract_once(ext, imgs, prof.extract_size)
    dfn = registry.defenses.get(defense).obj()
    tr, te = list(range(n_train)), list(range(n_train, n_train + n_test))
    targets = resize(imgs.images, prof.image_size)
    def part(idx: list[int]) -> ImageSet:
        return ImageSet([ids[i] for i in idx], imgs.images[idx], {k: np.asarray(v)[idx]
                                                                  for k, v in imgs.labels.items()})

    if feats.granularity == "sample" and not dfn.client_side:
        aux_feats, private_feats = feats.subset(tr), feats.subset(te)
    else:  # per-batch records cover several images: each split is released on its own, as in a run
        aux_feats, private_feats = ext.extract(part(tr), progress=False), ext.extract(part(te), progress=False)
    if dfn.client_side:  # acts on each split's images with the victim, before the release (bench.run.defend)
        victim = ext.victim()
        aux_out = dfn.protect_client(aux_feats, ClientData(part(tr), victim, prof.name, n_train),
                                     seeded_rng(seed, "attacker-keys"))
        private_out = dfn.protect_client(private_feats, ClientData(part(te), victim, prof.name, n_train),
                                         seeded_rng(seed, "victim-keys"))
    else:
        aux_out = attacker_training_features(dfn, aux_feats, seed)
        private_out = dfn.protect(private_feats, seeded_rng(seed, "victim-keys"))
    return {
        "profile": prof,
        "extractor": ext,
        "defense": dfn,
        "victim": ext.victim() if type(ext).white_box else None,
        "aux": aux_out,
        "private": private_out,
        "aux_images": targets[tr],
        "private_images": targets[te],
        "aux_ids": ids[:n_train],
        "private_ids": ids[n_train:],
        "aux_labels": {k: np.asarray(v)[tr] for k, v in imgs.labels.items()},
        "private_labels": {k: np.asarray(v)[te] for k, v in imgs.labels.items()},
        "image_set": imgs,
        "features": feats,
    }


def _pairing(cls: type[Attack]) -> tuple[str, str]:
    """An (extractor, defense) pair whose released features the attack consumes (its default extractor first)."""
    extractors = list(registry.extractors)
    extractors.sort(key=lambda e: e.name != cls.default_extractor)  # stable: the default first, then by name
    for ext in extractors:
        if not cls.consumes.admits_kind(ext.obj.produces.kind) or (cls.needs_victim and not ext.obj.white_box):
            continue
        for dfn in [registry.defenses.get("none")] + list(registry.defenses):
            d = dfn.obj()
            if d.can_protect(ext.obj.produces) and cls.consumes.accepts(d.released_spec(ext.obj.produces)):
                return ext.name, dfn.name
    raise AssertionError(f"no registered extractor + defense releases what {cls.name!r} consumes "
                         f"({cls.consumes.describe()})")


def _stand_in_labels(data: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """Give the smoke splits seeded 0/1 labels for attributes the synthetic set lacks (e.g. gender); returns them.

    The contract checks an attribute attack's mechanics (fit, output shapes, batch independence, checkpoint,
    determinism), not its accuracy, so balanced coin flips are enough; both classes occur in every split.
    """
    added = []
    for name in names:
        if name in data["aux_labels"]:
            continue
        rng = seeded_rng(0, f"stand-in-{name}")
        for split in ("aux_labels", "private_labels"):
            n = len(data[split.replace("_labels", "_ids")])
            data[split][name] = rng.permutation(np.arange(n) % 2).astype(np.int64)
        added.append(name)
    return added


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# ----------------------------------------------------------------------------------------- declared parameters
def _declared_params(cls: type, make_unknown: Callable[[], Any]) -> str:
    """Every declared Param is a Param whose default passes its own validation; an unknown parameter is refused."""
    declared: Mapping[str, Any] = cls.params
    for key, p in declared.items():
        assert isinstance(key, str) and key.isidentifier(), f"parameter name {key!r} is not an identifier"
        assert isinstance(p, Param), f"parameter {key!r} is declared as {type(p).__name__}, not bench.params.Param"
        # A hyper-parameter (bench.hyper) has one default per profile; each must pass (a `steps` parameter's None
        # means "the per-stage counts differ" and is no value).
        defaults = [(f" at profile {n}", v) for n, v in p.defaults if v is not None or not p.stages] \
            if isinstance(p, HyperParam) else [("", p.default)]
        for where, value in defaults:
            try:
                p.coerce(f"{cls.name}", key, value)
            except BenchError as exc:
                raise AssertionError(f"default of {key!r}{where} fails its own validation: {exc}") from None
    try:
        make_unknown()
    except BenchError as exc:
        assert "no-such-param" in str(exc) or "no_such_param" in str(exc), f"error does not name the key: {exc}"
    else:
        raise AssertionError("an unknown parameter was accepted silently")
    return ", ".join(sorted(declared)) or "no parameters"


def _json_config(config: Any) -> str:
    json.dumps(config, sort_keys=True)  # raises for anything that is not JSON
    assert isinstance(config, dict) and "version" in config, "config() must hold the plugin's code version"
    return f"version {config['version']}"


def _bad_value(p: Param) -> Any | None:
    """A value the parameter must refuse (outside its choices or bounds, or of the wrong type); None if every value
    of its type is valid (a free-text string)."""
    if p.choices is not None:
        if p.type is str:
            return "__not-a-choice__"
        if p.type is bool:
            return None if set(p.choices) >= {True, False} else next(v for v in (True, False) if v not in p.choices)
        return max(float(c) for c in p.choices) + 1
    if p.type in (int, float):
        if p.high is not None:
            return p.high + 1
        if p.low is not None:
            return p.low - 1
        return "not-a-number"
    if p.type is bool:
        return "maybe"
    return None


def _bad_params(cls: type, make: Callable[[dict[str, Any]], Any]) -> str:
    """Each declared parameter given a value it must refuse: a BenchError (one clear line) that names the key."""
    tried = []
    for key, p in cls.params.items():
        bad = _bad_value(p)
        if bad is None:
            continue
        try:
            make({key: bad})
        except BenchError as exc:
            assert key in str(exc), f"{key}={bad!r} refused, but the error does not name {key!r}: {exc}"
        except Exception as exc:
            raise AssertionError(f"{key}={bad!r} raised {type(exc).__name__} ({exc}), not a clear BenchError") from None
        else:
            raise AssertionError(f"{key}={bad!r} was accepted (declared {p.describe()})")
        tried.append(f"{key}={bad!r}")
    return "refused " + ", ".join(tried) if tried else "no parameter with invalid values"


def _consumption(cls: type[Attack]) -> str:
    """`consumes` is a Requirement on a registered feature kind with that kind's flags; the default extractor is
    registered and produces that kind; some registered extractor + defense releases what it consumes."""
    from bench.features import Requirement, feature_kinds

    req = cls.consumes
    assert isinstance(req, Requirement), f"consumes is {type(req).__name__}, not bench.features.Requirement"
    kinds = [k for k in req.kinds if k != "*"]
    for kind in kinds:
        assert kind in feature_kinds, f"consumes unknown feature kind {kind!r} ({', '.join(feature_kinds.names())})"
    if kinds:
        # A flag is meaningful when some consumed kind has it (e.g. `float` on embeddings, not on bit patterns).
        known = set().union(*(feature_kinds.get(k).obj.default_flags for k in kinds))
        unknown = sorted(set(req.flags) - known)
        assert not unknown, f"consumes flags {unknown} that {req.describe()} features do not have ({sorted(known)})"
    if cls.default_extractor is not None:
        assert cls.default_extractor in registry.extractors, f"default_extractor {cls.default_extractor!r} is not registered"
        produced = registry.extractors.get(cls.default_extractor).obj.produces.kind
        assert req.admits_kind(produced), f"default_extractor {cls.default_extractor!r} produces {produced!r}, " \
                                          f"the attack consumes {req.describe()}"
    ext, dfn = _pairing(cls)
    return f"{req.describe()}: e.g. {ext} + {dfn}"


def _blank(fs: FeatureSet) -> FeatureSet | None:
    """One degenerate record of `fs`'s kind: no features at all (variable-length kinds: a blank image's), or all
    zeros (fixed-length kinds); None when the kind cannot be built that way."""
    arrays = fs.subset([0])._save_arrays()
    if "offsets" in arrays:  # CSR layout: every per-feature array cut to zero rows
        arrays = {k: (np.zeros(2, dtype=v.dtype) if k == "offsets" else np.asarray(v)[:0]) for k, v in arrays.items()}
    else:
        arrays = {k: np.zeros_like(np.asarray(v)) for k, v in arrays.items()}
    try:
        return type(fs)._from_arrays(arrays, dict(fs.flags), dict(fs.meta))
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------- attacks
def attack_checks(cls: type[Attack]) -> Iterator[Result]:
    """Metadata, declared parameters, smoke fit + outputs, batch independence, checkpoint round trip, determinism.

    Image attacks must reconstruct N×3×S×S float32 images in [0, 1]; attribute attacks (`outputs =
    "attributes"`) must predict an (N,) array for every name in `attributes`.
    """
    images = cls.outputs == "images"

    def meta() -> str:
        assert cls.name and registry.attacks.get(cls.name).obj is cls, "name must match its registry entry"
        assert "smoke" in cls.profiles, "every attack needs a smoke profile"
        assert cls.paper, "say which paper the attack implements (or that it is a baseline)"
        assert cls.outputs in ("images", "attributes"), f"outputs must be 'images' or 'attributes', not {cls.outputs!r}"
        assert images or cls.attributes, "an attribute attack lists the attributes it predicts"
        return f"consumes {cls.consumes.describe()}; outputs {cls.outputs}"

    yield _run("metadata", meta)
    yield _run("declared consumption", lambda: _consumption(cls))
    try:
        ext, dfn = _pairing(cls)
        data = smoke_data(extractor=ext, defense=dfn)
    except Exception as exc:
        yield "smoke data", False, f"{type(exc).__name__}: {exc}"
        return
    stand_ins = [] if images else _stand_in_labels(data, cls.attributes)
    prof = data["profile"]
    private: FeatureSet = data["private"]
    covers = private.covers()  # one image per record, or several for per-batch releases
    n = sum(len(c) for c in covers)
    first = np.cumsum([0] + [len(c) for c in covers]).tolist()  # record r's images are rows first[r]:first[r + 1]

    def victim() -> Victim | None:
        """A fresh copy of the victim for an attack that declares needs_victim (as the runner gives it)."""
        v = data["victim"]
        return copy.deepcopy(v) if cls.needs_victim and v is not None else None

    def make(params: Mapping[str, Any] | None = None) -> Attack:
        a = make_attack(cls, "smoke", prof.image_size, "cpu", 0, params)
        v = victim()
        if v is not None:
            a.attach_victim(v)
        return a

    def fitted() -> Attack:
        a = make()
        a.fit(data["aux"], data["aux_images"], FitContext(defense=data["defense"], seed=0, device=torch.device("cpu"),
                                                          progress=False, labels=dict(data["aux_labels"]),
                                                          ids=list(data["aux_ids"]), victim=a.victim))
        return a

    def outputs(a: Attack, feats: FeatureSet) -> Any:
        return a.reconstruct(feats, progress=False) if images else a.predict(feats, progress=False)

    def row(out: Any, i: int) -> Any:
        return out[i] if images else {k: np.asarray(v)[i] for k, v in out.items()}

    def same(x: Any, y: Any, atol: float) -> bool:
        if images:
            return bool(torch.allclose(x, y, atol=atol))
        return set(x) == set(y) and all(np.allclose(np.asarray(x[k], dtype=np.float64),
                                                    np.asarray(y[k], dtype=np.float64), atol=atol, equal_nan=True)
                                        for k in x)

    state: dict[str, Any] = {}

    def fit_reconstruct() -> str:
        a = fitted()
        out = a.reconstruct(private, progress=False)
        assert tuple(out.shape) == (n, 3, prof.image_size, prof.image_size), f"shape {tuple(out.shape)}"
        assert out.dtype == torch.float32 and out.device.type == "cpu", f"{out.dtype} on {out.device}"
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, "values outside [0, 1]"
        state["attack"], state["out"] = a, out
        if cls.matching is not None:
            from bench.matching import SIMILARITIES
            assert cls.matching in SIMILARITIES, f"matching {cls.matching!r} is not one of {sorted(SIMILARITIES)}"
        if cls.attributes:  # an image attack that also predicts attributes: one numeric value per image each
            images_too, attrs = a.reconstruct_with_attributes(private, progress=False)
            assert torch.allclose(images_too, out, atol=1e-5), "reconstruct_with_attributes changes the images"
            for k in cls.attributes:
                arr = np.asarray(attrs.get(k, []))
                assert arr.shape == (n,) and arr.dtype.kind in "biuf", f"{k}: shape {arr.shape}, dtype {arr.dtype}"
            return f"{n} images {prof.image_size}px, with {', '.join(cls.attributes)}"
        return f"{n} images {prof.image_size}px"

    def fit_predict() -> str:
        a = fitted()
        out = a.predict(private, progress=False)
        assert isinstance(out, dict), f"predict returned {type(out).__name__}, not a dict"
        missing = [k for k in cls.attributes if k not in out]
        assert not missing, f"no prediction for {', '.join(missing)}"
        for k, v in out.items():
            arr = np.asarray(v)
            assert arr.shape == (n,), f"{k}: shape {arr.shape}, expected ({n},)"
            assert arr.dtype.kind in "biuf", f"{k}: dtype {arr.dtype} is not numeric"
        state["attack"], state["out"] = a, out
        note = f" (seeded stand-in labels for {', '.join(stand_ins)}: the synthetic set has none)" if stand_ins else ""
        return f"{n} samples: {', '.join(cls.attributes)}{note}"

    yield _run("declared parameters", lambda: _declared_params(cls, lambda: make({"no-such-param": 1})))
    yield _run("bad parameter values refused", lambda: _bad_params(cls, make))
    yield _run("config is JSON", lambda: _json_config(make().config()))
    if images:
        yield _run("fit + reconstruct (smoke)", fit_reconstruct)
    else:
        yield _run("fit + predict (smoke)", fit_predict)
    if "attack" not in state:
        return

    def batch_independent() -> None:
        a, out = state["attack"], state["out"]
        for r in range(len(private)):
            one = outputs(a, private.subset([r]))
            for j, i in enumerate(range(first[r], first[r + 1])):
                assert same(row(one, j), row(out, i), 1e-5), f"sample {i} changes with the batch around it"

    def checkpoint() -> None:
        sd = _roundtrip(state["attack"].state_dict())
        b = make()
        b.load_state_dict(sd)
        assert same(outputs(b, private), state["out"], 1e-6), "reloaded attack gives different outputs"

    def deterministic() -> None:
        assert same(outputs(fitted(), private), state["out"], 1e-5), "two fits with one seed differ"

    def well_formed(out: Any, rows: int) -> None:
        if images:
            assert isinstance(out, torch.Tensor), f"returned {type(out).__name__}, not a tensor"
            assert tuple(out.shape) == (rows, 3, prof.image_size, prof.image_size), f"shape {tuple(out.shape)}"
            assert out.dtype == torch.float32, f"dtype {out.dtype}"
            assert rows == 0 or (torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1), \
                "values outside [0, 1]"
        else:
            assert isinstance(out, dict) and set(cls.attributes) <= set(out), "a prediction is missing"
            for k, v in out.items():
                assert np.asarray(v).shape == (rows,), f"{k}: shape {np.asarray(v).shape}, expected ({rows},)"

    def empty_input() -> str:
        try:
            out = outputs(state["attack"], private.subset([]))
        except BenchError as exc:
            return f"refused with a clear error: {exc}"
        well_formed(out, 0)
        return "empty output"

    def blank_record() -> str:
        blank = _blank(private)
        if blank is None:
            return f"not applicable to {private.kind!r} features"
        try:
            out = outputs(state["attack"], blank)
        except BenchError as exc:
            return f"refused with a clear error: {exc}"
        well_formed(out, sum(len(c) for c in blank.covers()))
        return "a valid output"

    yield _run("empty input", empty_input)
    yield _run("record without features", blank_record)
    yield _run(f"{'reconstruction' if images else 'prediction'} independent of batch", batch_independent)
    yield _run("checkpoint round trip (weights_only)", checkpoint)
    yield _run("same seed, same result", deterministic)

    def featureless() -> str:
        if cls.uses_features:
            return "uses the released features"
        if private.granularity != "sample":
            return "not checked for per-batch releases"
        a, out = state["attack"], state["out"]
        swapped = outputs(a, private.subset(list(range(n))[::-1]))
        for i in range(n):
            assert same(row(swapped, i), row(out, i), 1e-6), \
                "declares uses_features = False, but its output follows the released features"
        return "output independent of the released features (uses_features = False)"

    yield _run("declared use of features", featureless)


# --------------------------------------------------------------------------------------------------- defenses
def _arrays(fs: FeatureSet) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in fs._save_arrays().items()}


def defense_checks(cls: type[Defense]) -> Iterator[Result]:
    """Declared parameters, spec matches output, input untouched, keys from the rng, JSON config, utility."""
    yield _run("declared parameters", lambda: _declared_params(cls, lambda: cls(**{"no_such_param": 1})))
    yield _run("bad parameter values refused", lambda: _bad_params(cls, lambda kw: cls(**kw)))
    try:
        candidates = [e for e in registry.extractors if cls().can_protect(e.obj.produces)]
    except Exception as exc:
        yield "construct with default parameters", False, f"{type(exc).__name__}: {exc}"
        return
    if not candidates:
        yield "can protect a registered feature kind", False, f"accepts {cls.accepts}"
        return
    # The project's default victim first (cheapest), then the others, kinds in the order the defense lists them in
    # `accepts` (its main release first); an extractor whose optional library is missing (e.g. dlib) is passed
    # over, and if none can run the check says what to install.
    rank = {kind: i for i, kind in enumerate(cls.accepts)}
    candidates.sort(key=lambda e: (e.name != "sift", rank.get(e.obj.produces.kind, len(rank)), e.name))
    data, missing = None, []
    for cand in candidates:
        try:
            data = smoke_data(extractor=cand.name)
            break
        except BenchError as exc:
            missing.append(f"{cand.name}: {exc}")
    if data is None:
        yield "smoke data from an extractor it protects", False, "; ".join(missing)
        return
    feats: FeatureSet = data["features"]

    def protect(d: Defense, fs: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        """`protect`, or for a client-side defense `protect_client` on the smoke images and victim."""
        if d.client_side:
            client = ClientData(data["image_set"], data["victim"], "smoke", len(data["image_set"]))
            return d.protect_client(fs, client, rng)
        return d.protect(fs, rng)

    def spec() -> str:
        d = cls()
        out = protect(d, feats, seeded_rng(1, "k"))
        assert out.spec == d.released_spec(feats.spec), f"released {out.spec} but declared {d.released_spec(feats.spec)}"
        assert len(out) == len(feats), "length changed"
        return out.spec.describe()

    def untouched() -> None:
        before = _arrays(feats)
        protect(cls(), feats, seeded_rng(1, "k"))
        after = _arrays(feats)
        assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before), "input was modified"

    def reproducible() -> None:
        a = _arrays(protect(cls(), feats, seeded_rng(7, "k")))
        b = _arrays(protect(cls(), feats, seeded_rng(7, "k")))
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a), "same key, different output"

    def utility() -> str:
        source = cls().utility_source(feats.spec)
        if source is None:  # no figure for this release (the runner skips it too)
            return "not offered"
        training = None
        if source == "training":  # mechanics only: trains at the smoke budget on the smoke images
            training = UtilityTraining(images=data["image_set"], profile="smoke", victim=data["victim"])
        ctx = UtilityContext(images=data["image_set"], features=feats, extractor=data["extractor"], seed=0,
                             training=training, evaluation=data["image_set"] if training is not None else None)
        figures = cls().utility(ctx)
        assert isinstance(figures, dict), f"utility returned {type(figures).__name__}, not a dict"
        for k, v in figures.items():
            assert isinstance(k, str) and k, f"utility name {k!r} is not a non-empty string"
            assert isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool), \
                f"utility {k!r} is {type(v).__name__}, not a number"
            assert math.isfinite(float(v)), f"utility {k!r} is {v}"
        again = cls().utility(ctx)
        assert again == figures, "utility differs between two calls with one seed"
        return ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(figures.items())) or "no figures"

    def empty_input() -> str:
        d = cls()
        try:
            out = protect(d, feats.subset([]), seeded_rng(1, "k"))
        except BenchError as exc:
            return f"refused with a clear error: {exc}"
        assert len(out) == 0, f"{len(out)} records released for none"
        assert out.spec == d.released_spec(feats.spec), "empty input released another spec"
        return "empty output"

    def blank_record() -> str:
        blank = _blank(feats)
        if blank is None:
            return f"not applicable to {feats.kind!r} features"
        d = cls()
        try:
            out = protect(d, blank, seeded_rng(1, "k"))
        except BenchError as exc:
            return f"refused with a clear error: {exc}"
        assert len(out) == 1, f"{len(out)} records released for one"
        assert out.spec == d.released_spec(feats.spec), "a record without features released another spec"
        return "one record released"

    yield _run("released spec as declared", spec)
    yield _run("empty input", empty_input)
    yield _run("record without features", blank_record)
    yield _run("input features untouched", untouched)
    yield _run("same rng, same output", reproducible)
    yield _run("config is JSON", lambda: _json_config(cls().config()))
    yield _run("utility figures are finite numbers", utility)


# ---------------------------------------------------------------------------------------------------- metrics
def _set_value(m: Metric, recon: torch.Tensor, ref: torch.Tensor, batch: EvalBatch) -> float:
    """A set value through the streaming path (embed each batch, aggregate), as the runner computes it."""
    return m.aggregate({k: np.asarray(v) for k, v in m.embed(recon, ref, batch).items()})


def metric_checks(cls: type[Metric]) -> Iterator[Result]:
    """Metadata, prepare, per-sample shape and range, batch consistency, identical images score best.

    Image checks run on synthetic faces and noisy copies of them; attribute metrics (`inputs = "attributes"`)
    are scored on perfect predictions (the true labels); a metric whose `prepare` reports MetricUnavailable
    passes with the fix it names, since the values cannot be checked without its weights.
    """

    def meta() -> str:
        assert cls.name and registry.metrics.get(cls.name).obj is cls, "name must match its registry entry"
        assert cls.convention, "pin the convention (recorded with every value)"
        assert cls.level in ("sample", "set"), f"level must be 'sample' or 'set', not {cls.level!r}"
        assert cls.inputs in ("images", "attributes"), f"inputs must be 'images' or 'attributes', not {cls.inputs!r}"
        return f"{'higher' if cls.higher_is_better else 'lower'} is better; {cls.convention}"

    yield _run("metadata", meta)
    n, size = 4, 32
    ds = registry.datasets.get("synthetic-faces").obj()
    faces = ds.load(ds.item_ids()[: 2 * n], size)
    a = faces.images[n:]
    aux = faces.images[:n]
    g = torch.Generator().manual_seed(0)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    labels = {k: np.asarray(v)[n:] for k, v in faces.labels.items()}
    ids = faces.ids[n:]

    def batch_of(idx: list[int], attributes: bool = False) -> EvalBatch:
        lab = {k: v[idx] for k, v in labels.items()}
        return EvalBatch(list(idx), [ids[i] for i in idx], labels=lab, attributes=dict(lab) if attributes else {})

    m = cls()
    with tempfile.TemporaryDirectory(prefix="bench-contract-") as tmp:
        ctx = EvalContext(labels=dict(labels), ids=list(ids), aux_images=aux,
                          aux_labels={k: np.asarray(v)[:n] for k, v in faces.labels.items()},
                          device=torch.device("cpu"), seed=0, image_size=size, cache_dir=Path(tmp),
                          reference_key="contract-smoke")
        unavailable: list[str] = []

        def prepare() -> str:
            try:
                m.prepare(ctx)
            except MetricUnavailable as exc:
                unavailable.append(exc.fix)
                return f"unavailable: {exc.fix}"
            return ""

        yield _run("prepare", prepare)
        if unavailable:
            return
        everyone = list(range(n))

        def in_range(v: np.ndarray, what: str) -> None:
            lo, hi = cls.value_range
            ok = np.isnan(v) | ((v >= lo) & (v <= hi))
            assert ok.all(), f"{what} {v.tolist()} outside {cls.value_range}"

        def sample_values() -> str:
            if cls.level != "sample":
                return "set metric: no per-sample values"
            if cls.inputs == "attributes":
                return "attribute metric: see 'attribute values'"
            v = np.asarray(m.score_batch(b, a, batch_of(everyone)), dtype=np.float64)
            assert v.shape == (n,), f"shape {v.shape}"
            in_range(v, "values")
            one = np.array([m.score_batch(b[i:i + 1], a[i:i + 1], batch_of([i]))[0] for i in everyone])
            assert np.allclose(one, v, atol=1e-6, equal_nan=True), "per-sample values depend on the batch"
            return ""

        def identity_best() -> str:
            if cls.inputs != "images":
                return "attribute metric: not applicable"
            same, diff = _set_value(m, a, a, batch_of(everyone)), _set_value(m, b, a, batch_of(everyone))
            better = same >= diff if cls.higher_is_better else same <= diff
            assert better, f"identical images score {same}, noisy ones {diff}"
            return ""

        def attribute_values() -> str:
            try:
                parts = m.embed(None, a, batch_of(everyone, attributes=True))
                value = m.aggregate({k: np.asarray(v) for k, v in parts.items()})
                per = m.score_batch(None, a, batch_of(everyone, attributes=True)) if cls.level == "sample" else None
            except KeyError as exc:
                return f"not checked: needs label {exc} that the synthetic set lacks"
            in_range(np.array([value], dtype=np.float64), "set value")
            if per is not None:
                per = np.asarray(per, dtype=np.float64)
                assert per.shape == (n,), f"shape {per.shape}"
                in_range(per, "values")
            return f"perfect predictions score {value:.4g}"

        def repeatable() -> str:
            if cls.inputs != "images":
                return "attribute metric: see 'attribute values'"
            first = _set_value(m, b, a, batch_of(everyone))
            second = _set_value(m, b, a, batch_of(everyone))
            assert first == second or (math.isnan(first) and math.isnan(second)), \
                f"one input scored {first} then {second}"
            return f"{first:.6g}"

        def constant_images() -> str:
            if cls.inputs != "images":
                return "attribute metric: not applicable"
            grey = torch.full_like(a, 0.5)
            got = []
            for recon, ref, what in ((grey, grey, "constant vs the same"), (grey, a, "constant vs faces")):
                value = np.array([_set_value(m, recon, ref, batch_of(everyone))], dtype=np.float64)
                in_range(value, f"{what}: set value")
                if cls.level == "sample":
                    in_range(np.asarray(m.score_batch(recon, ref, batch_of(everyone)), dtype=np.float64),
                             f"{what}: values")
                got.append(f"{what} {value[0]:.4g}")
            return "; ".join(got) + " (NaN = undefined is allowed)"

        yield _run("per-sample values", sample_values)
        yield _run("same input, same value", repeatable)
        yield _run("constant images", constant_images)
        if cls.inputs == "images":
            yield _run("identical images score best", identity_best)
        else:
            yield _run("attribute values", attribute_values)
