"""`converged` means the stopping rule was met and nothing diverged (GCP Adam, HOOI, DMRG)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

import tnc
from tnc.errors import ConvergenceWarning


def cp_data():
    net = tnc.library("cp", I=10, J=11, K=12, R=3)
    return net, net.contract(net.random(seed=1))


@pytest.mark.parametrize("lr, nonfinite", [(1e3, False), (1e300, True)])
def test_divergent_adam_is_not_converged_and_reports_the_returned_tensors_loss(lr, nonfinite):
    """lr=1e3 blows the loss up, lr=1e300 makes it inf/NaN: both return their start."""
    net, x = cp_data()
    start = {k: v * 0.5 for k, v in net.random(seed=7).items()}
    with np.errstate(all="ignore"), pytest.warns(ConvergenceWarning, match="lr="):
        result = tnc.fit(net, x, method="gcp", optimizer="adam", lr=lr, max_iter=5,
                         epoch_iters=30, batch_size=200, init=start, progress=False)
    assert not result.converged and "diverged" in result.info
    assert ("non-finite" in result.info["diverged"]) == nonfinite
    for name, tensor in result.tensors.items():              # the start came back
        assert np.allclose(tensor, start[name], rtol=1e-13, atol=0)
    assert result.loss == pytest.approx(result.info["initial_loss"], rel=1e-12)
    assert np.isfinite(result.loss)
    epochs = [h["loss"] for h in result.history if h["iteration"] > 0 and not h.get("restored")]
    assert all(not loss <= result.loss for loss in epochs)    # every epoch was worse
    assert result.history[-1].get("restored")


def test_a_good_adam_run_still_converges_without_warning():
    net, x = cp_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = tnc.fit(net, x, method="gcp", optimizer="adam", lr=1e-2, max_iter=200,
                         max_fails=0, epoch_iters=50, batch_size=200, progress=False)
    assert result.converged and result.loss < result.info["initial_loss"]
    assert result.iterations == result.history[-1]["iteration"]


@pytest.mark.parametrize("lr", [float("nan"), 0.0, -1e-3, float("inf")])
def test_adam_learning_rate_must_be_finite_and_positive(lr):
    net, x = cp_data()
    with pytest.raises(tnc.TncError, match="lr"):
        tnc.fit(net, x, method="gcp", optimizer="adam", lr=lr, progress=False)


def test_hooi_with_one_sweep_on_a_hard_case_is_not_converged():
    x = np.random.default_rng(3).standard_normal((10, 9, 8))
    result = tnc.decompose(x, "tucker", ranks=4, method="hooi", max_sweeps=1)
    assert not result.converged and result.iterations == 1
    full = tnc.decompose(x, "tucker", ranks=4, method="hooi", max_sweeps=200)
    assert full.converged and 1 < full.iterations < 200
    assert full.rel_error <= result.rel_error


# -- DMRG ground states -------------------------------------------------------------------
def exact_heisenberg(L: int) -> float:
    """Lowest eigenvalue of the open spin-1/2 Heisenberg chain, built from Kronecker products."""
    sz = sp.csr_matrix([[0.5, 0], [0, -0.5]])
    splus = sp.csr_matrix([[0.0, 1], [0, 0]])
    bond = sp.kron(sz, sz) + 0.5 * (sp.kron(splus, splus.T) + sp.kron(splus.T, splus))
    h = sp.csr_matrix((2 ** L, 2 ** L))
    for i in range(L - 1):
        h = h + sp.kron(sp.kron(sp.identity(2 ** i), bond), sp.identity(2 ** (L - i - 2)))
    return float(sla.eigsh(h, k=1, which="SA")[0][0])


def test_bond_limited_ground_state_warns_and_reports_its_truncation():
    """N=10, max_rank=2: -4.042 against the exact -4.258; the bond limit decided it."""
    exact = exact_heisenberg(10)
    assert exact == pytest.approx(-4.258035207, abs=1e-8)
    net = tnc.library("energy", N=10, D=8)
    with pytest.warns(ConvergenceWarning, match="bond limit 2"):
        result = tnc.ground_state(net, tnc.heisenberg_mpo(10), max_rank=2, progress=False)
    assert not result.converged and result.info["bond_limited"]
    assert result.info["energy_converged"]                 # the energy did stop changing
    assert result.info["energy"] - exact > 0.2            # far above the ground state
    worst = result.info["max_truncation_error"]
    assert worst == max(h["truncation_error"] for h in result.history if h["bond_limit"] == 2)
    assert worst > 0.01
    assert "truncation error" in result.summary() and "bond-limited" in result.summary()


def test_ground_state_decided_by_the_tolerance_converges_without_warning():
    exact = exact_heisenberg(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = tnc.ground_state(tnc.library("energy", N=10, D=32), tnc.heisenberg_mpo(10),
                                  progress=False)
    assert result.converged and not result.info["bond_limited"]
    assert result.info["max_truncation_error"] <= 1e-12
    assert abs(result.info["energy"] - exact) < 1e-9
    assert "bond-limited" not in result.summary()


@pytest.mark.parametrize("c", [1e-200, 1e-9, 3.0, 1e200])
def test_ground_state_of_a_scaled_hamiltonian_is_the_scaled_energy(c):
    mpo = tnc.heisenberg_mpo(8)
    net = tnc.library("energy", N=8, D=16)
    base = tnc.ground_state(net, mpo, progress=False)
    scaled = tnc.ground_state(net, {k: c * v if k == "H[4]" else v for k, v in mpo.items()},
                              progress=False)
    assert scaled.converged == base.converged
    assert abs(scaled.iterations - base.iterations) <= 1
    assert scaled.info["energy"] / c == pytest.approx(base.info["energy"], rel=1e-10)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ground_state_with_a_non_finite_mpo_names_the_tensor(bad):
    mpo = tnc.heisenberg_mpo(6)
    mpo["H[3]"] = mpo["H[3]"].copy()
    mpo["H[3]"][0, 0, 0, 0] = bad
    with pytest.raises(tnc.TncError, match=r"`H\[3\]`"):
        tnc.ground_state(tnc.library("energy", N=6, D=4), mpo, progress=False)


@pytest.mark.parametrize("max_rank", [1.5, 0, -1, [4, 0], "4"])
def test_ground_state_max_rank_must_be_positive_integers(max_rank):
    with pytest.raises(tnc.TncError, match="max_rank"):
        tnc.ground_state(tnc.library("energy", N=6, D=4), tnc.heisenberg_mpo(6),
                         max_rank=max_rank, progress=False)
