"""DMRG: chain detection, adaptive-rank fitting, ground states, the MPS classifier."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import tnc
from tnc.mps.chain import find_chain, truncation_rank
from tnc.mps.mpo import dense_hamiltonian

HEISENBERG_L10 = -4.258035207283     # published open-chain value


def tt_with_ranks(ranks, d=3, seed=0):
    """A dense TT tensor with the given bond ranks."""
    rng = np.random.default_rng(seed)
    shapes = [(1, d, ranks[0])] + [(a, d, b) for a, b in zip(ranks, ranks[1:])] + [
        (ranks[-1], d, 1)]
    x = np.ones((1, 1))
    for shape in shapes:
        x = np.tensordot(x, rng.standard_normal(shape), axes=(-1, 0))
    return x.reshape(x.shape[1:-1])


def sparse_heisenberg(L):
    sz = sp.csr_matrix([[0.5, 0], [0, -0.5]])
    splus = sp.csr_matrix([[0.0, 1], [0, 0]])
    h = sp.csr_matrix((2 ** L, 2 ** L))
    for i in range(L - 1):
        left, right = sp.identity(2 ** i), sp.identity(2 ** (L - i - 2))
        bond = sp.kron(sz, sz) + 0.5 * (sp.kron(splus, splus.T) + sp.kron(splus.T, splus))
        h = h + sp.kron(sp.kron(left, bond), right)
    return h


# -- chains -----------------------------------------------------------------------------
def test_chain_found_for_tt_ring_ttm_energy():
    assert not find_chain(tnc.library("tt", N=4)).closed
    assert find_chain(tnc.library("ring", N=4)).closed
    assert find_chain(tnc.library("ttm", N=3)).cores[0].physical == ("row[1]", "col[1]")
    assert [c.name for c in find_chain(tnc.library("energy", N=3)).cores] == [
        "G[1]", "G[2]", "G[3]"]


@pytest.mark.parametrize("name, words", [("tucker", "not a chain"), ("cp", "one chain"),
                                          ("peps", "not a chain")])
def test_non_chain_networks_get_clear_errors(name, words):
    net = tnc.library(name)
    with pytest.raises(tnc.TncError, match=words):
        tnc.fit(net, np.zeros(net.output_shape), method="dmrg", progress=False)


def test_truncation_rank_respects_cutoff_and_max_rank():
    s = np.array([1.0, 0.5, 1e-3, 1e-9])
    assert truncation_rank(s, 10, 1e-20) == 4
    assert truncation_rank(s, 10, 1e-12) == 3
    assert truncation_rank(s, 2, 1e-20) == 2


# -- fitting ------------------------------------------------------------------------------
def test_tt_recovered_with_adaptive_ranks():
    true_ranks = [2, 4, 5, 3, 2]
    x = tt_with_ranks(true_ranks, d=3)
    net = tnc.library("tt", N=6, d=3, r=8)
    result = tnc.fit(net, x, method="dmrg", cutoff=1e-12, progress=False)
    assert result.converged
    assert result.info["ranks"] == true_ranks
    assert result.rel_error < 1e-10
    assert np.allclose(result.reconstruct(), x, atol=1e-9 * np.abs(x).max())
    assert {"loss", "truncation_error", "max_rank", "ranks", "time"} <= set(result.history[0])


def test_ranks_capped_by_max_rank_and_cutoff_drops_noise():
    x = tt_with_ranks([3, 3, 3], d=4, seed=1)
    noisy = x + 1e-6 * np.random.default_rng(0).standard_normal(x.shape)
    result = tnc.fit(tnc.library("tt", N=4, d=4, r=8), noisy, method="dmrg", cutoff=1e-8,
                     progress=False)
    assert result.info["ranks"] == [3, 3, 3]
    capped = tnc.fit(tnc.library("tt", N=4, d=4, r=8), x, method="dmrg", max_rank=2,
                     progress=False)
    assert max(capped.info["ranks"]) == 2 and not capped.rel_error < 1e-6


def test_missing_entries_by_weighted_local_solves():
    x = tt_with_ranks([4, 5, 5, 5, 4], d=4, seed=2)
    mask = np.random.default_rng(0).random(x.shape) < 0.3
    result = tnc.fit(tnc.library("tt", N=6, d=4, r=8), np.where(mask, x, np.nan), mask="nan",
                     method="dmrg", max_rank=5, max_iter=150, progress=False)
    error = np.linalg.norm(result.reconstruct() - x) / np.linalg.norm(x)
    assert error < 1e-6 and result.converged
    assert result.info["ranks"] == [4, 5, 5, 5, 4]


def test_ring_and_tt_matrix_fits():
    ttm = tnc.library("ttm", N=3, m=3, k=2, r=4)
    x = ttm.contract(ttm.random(seed=3))
    assert tnc.fit(ttm, x, method="dmrg", progress=False).rel_error < 1e-10
    ring = tnc.library("ring", N=4, d=3, r=2)
    x = ring.contract(ring.random(seed=4))
    result = tnc.fit(ring, x, method="dmrg", init_rank=2, seed=2, max_iter=60,
                     progress=False)
    assert result.rel_error < 1e-6


# -- ground states ------------------------------------------------------------------------
def test_heisenberg_l10_published_energy():
    net = tnc.library("energy", N=10, D=32)
    result = tnc.ground_state(net, tnc.heisenberg_mpo(10), progress=False)
    assert result.converged
    assert abs(result.info["energy"] - HEISENBERG_L10) < 1e-9
    assert abs(float(result.reconstruct()) - HEISENBERG_L10) < 1e-9   # padded cores
    record = result.history[-1]
    assert {"energy", "truncation_error", "max_rank", "ranks", "time"} <= set(record)


@pytest.mark.parametrize("L", [12, 14, 16])
def test_heisenberg_matches_exact_diagonalization(L):
    exact = sla.eigsh(sparse_heisenberg(L), k=1, which="SA")[0][0]
    result = tnc.ground_state(tnc.library("energy", N=L, D=64), tnc.heisenberg_mpo(L),
                              progress=False)
    assert abs(result.info["energy"] - exact) < 1e-8


def test_mpo_matches_sparse_hamiltonian():
    dense = dense_hamiltonian(tnc.heisenberg_mpo(6))
    assert np.allclose(dense, sparse_heisenberg(6).toarray())


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_transverse_field_ising_matches_exact_diagonalization(h):
    L = 10
    exact = np.linalg.eigvalsh(dense_hamiltonian(tnc.ising_mpo(L, h=h)))[0]
    net = tnc.library("energy", N=L, D=32, W=3)
    result = tnc.ground_state(net, tnc.ising_mpo(L, h=h), progress=False)
    assert abs(result.info["energy"] - exact) < 1e-8


def test_ground_state_callback_can_stop_and_schedule():
    seen = []
    result = tnc.ground_state(tnc.library("energy", N=8, D=16), tnc.heisenberg_mpo(8),
                              max_rank=[4, 8, 16], progress=False,
                              callback=lambda state: seen.append(state) or len(seen) == 2)
    assert len(seen) == 2 and result.iterations == 2 and not result.converged
    assert seen[0]["max_rank"] <= 4


def test_ground_state_errors():
    tt = tnc.library("tt", N=4)
    with pytest.raises(tnc.TncError, match="scalar network"):
        tnc.ground_state(tt, {})
    net = tnc.library("energy", N=4, D=4)
    with pytest.raises(tnc.TncError, match="missing"):
        tnc.ground_state(net, {})
    with pytest.raises(tnc.TncError, match="unknown option"):
        tnc.ground_state(net, tnc.heisenberg_mpo(4), bond_dim=3)
    with pytest.raises(tnc.TncError, match="tnc.ground_state"):
        tnc.fit(net, np.zeros(()), method="dmrg", inputs=tnc.heisenberg_mpo(4), progress=False)


# -- MPS classifier -------------------------------------------------------------------------
def test_classifier_learns_a_simple_rule():
    from tnc.mps.mps_classifier import feature_map, train_classifier
    rng = np.random.default_rng(0)
    x = rng.random((300, 6))
    y = (x[:, 0] + x[:, 5] > 1).astype(int)
    phi = feature_map(x, "linear")
    model = train_classifier(phi[:200], y[:200], max_rank=4, max_iter=2, progress=False)
    assert np.mean(model.predict(phi[200:]) == y[200:]) > 0.85
    assert {"loss", "train_accuracy", "truncation_error", "max_rank", "ranks", "time"} <= set(
        model.history[0])


def test_digits_example_smoke():
    pytest.importorskip("sklearn")
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "mps_digits.py"
    spec = importlib.util.spec_from_file_location("mps_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.run(max_rank=6, sweeps=1, limit=200, progress=False)
    assert 0.0 <= out["test_accuracy"] <= 1.0 and out["max_rank"] <= 6
