"""ShuffleBits one-time-pad: the numpy bit-plane path and the optional numba kernel, bit for bit against a reference."""

from __future__ import annotations

import numpy as np
import pytest

import bench.defenses.shufflebits as sb


def _reference(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Output bit j of row r = input bit perms[r, j], one output bit at a time (independent of both paths)."""
    out = np.zeros_like(u)
    for j in range(32):
        bit = (u >> perms[:, j : j + 1].astype(np.uint32)) & np.uint32(1)
        out |= bit << np.uint32(j)
    return out


def _case(rows: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 2**32, (rows, dim), dtype=np.uint32)
    u[0, : min(dim, 3)] = [0, 2**32 - 1, 0x80000001][: min(dim, 3)]
    return u, sb.shufflebits_keys(rng, rows, "one-time-pad")


# widths below, at and above 32 values (padding of the last bit matrix), odd and even rows (64-bit word pairs)
SHAPES = [(1, 1), (1, 5), (2, 31), (3, 32), (5, 33), (7, 64), (64, 6), (65, 6), (9, 100), (300, 128), (4, 513)]


@pytest.mark.parametrize("rows,dim", SHAPES)
def test_numpy_planes_match_the_reference(rows: int, dim: int) -> None:
    u, perms = _case(rows, dim, rows * 1000 + dim)
    assert np.array_equal(sb._permute_per_row(u, perms), _reference(u, perms))


@pytest.mark.parametrize("rows,dim", [(17, 70), (33, 64), (10, 32), (11, 31)])
def test_numpy_planes_over_several_blocks(monkeypatch: pytest.MonkeyPatch, rows: int, dim: int) -> None:
    """Small blocks: several full blocks and a last, shorter one (padding rows that are dropped)."""
    monkeypatch.setattr(sb, "_PLANE_BLOCK_VALUES", 32 * 3 * 5)
    u, perms = _case(rows, dim, rows + dim)
    assert np.array_equal(sb._permute_per_row(u, perms), _reference(u, perms))


def test_env_forces_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SHUFFLEBITS_KERNEL", "numpy")
    assert sb.shufflebits_kernel() == "numpy"
    u, perms = _case(20, 40, 1)
    assert np.array_equal(sb.permute_bits(u, perms), _reference(u, perms))


@pytest.mark.parametrize("rows,dim", SHAPES)
def test_numba_kernel_matches_numpy_bit_for_bit(rows: int, dim: int) -> None:
    pytest.importorskip("numba")
    from bench.defenses.shufflebits_numba import permute_rows

    u, perms = _case(rows, dim, rows * 7 + dim)
    fast = permute_rows(u, perms)
    assert fast.dtype == np.uint32
    assert np.array_equal(fast, sb._permute_per_row(u, perms))
    assert np.array_equal(fast, _reference(u, perms))


def test_permute_bits_uses_numba_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    monkeypatch.delenv("BENCH_SHUFFLEBITS_KERNEL", raising=False)
    assert sb.shufflebits_kernel() == "numba"
    u, perms = _case(50, 128, 3)
    enc = sb.permute_bits(u, perms)
    assert np.array_equal(enc, _reference(u, perms))
    assert np.array_equal(sb.permute_bits(enc, sb.inverse_permutations(perms)), u)  # decryption round trip
