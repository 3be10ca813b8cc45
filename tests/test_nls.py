"""Levenberg-Marquardt (method="nls"): the Jacobian against finite differences and dense
numpy, planted networks recovered, masks, options and honest convergence."""
import numpy as np
import pytest

import tnc
from tnc.errors import TncError
from tnc.fitting.nls import Jacobian, pcg

PLANTED = [("cp", dict(I=7, J=6, K=5, R=3)),
           ("tucker", dict(I=6, J=5, K=4, R1=2, R2=3, R3=2)),
           ("tt", dict(N=4, d=3, r=2))]


def _direction(net, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in net.params.items()}


@pytest.mark.parametrize("name, sizes", PLANTED + [("sym_cp", dict(n=4, R=2))])
def test_jacobian_matches_finite_differences_and_its_transpose(name, sizes):
    net = tnc.library(name, **sizes)
    t, p = net.random(seed=1), _direction(net, 2)
    jac = Jacobian(net, {})
    eps = 1e-5
    plus = net.contract({k: t[k] + eps * p[k] for k in t})
    minus = net.contract({k: t[k] - eps * p[k] for k in t})
    jp = jac.apply(t, p)
    assert np.allclose(jp, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)
    # J^T v: gradient of <v, M>, checked entry by entry against dense differences
    v = np.random.default_rng(3).standard_normal(net.output_shape)
    jtv = jac.transpose(t, v)
    assert np.isclose(sum(np.vdot(jtv[k], p[k]) for k in p), np.vdot(v, jp))
    name0 = next(iter(net.params))
    for index in [(0,) * len(net.params[name0]), tuple(s - 1 for s in net.params[name0])]:
        bumped = {k: a.copy() for k, a in t.items()}
        bumped[name0][index] += eps
        up = np.vdot(v, net.contract(bumped))
        bumped[name0][index] -= 2 * eps
        down = np.vdot(v, net.contract(bumped))
        assert np.isclose(jtv[name0][index], (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, sizes", PLANTED)
def test_planted_networks_are_recovered(name, sizes):
    net = tnc.library(name, **sizes)
    truth = net.contract(net.random(seed=1))
    result = tnc.fit(net, truth, method="nls", seed=5, progress=False)
    error = np.linalg.norm(result.reconstruct() - truth) / np.linalg.norm(truth)
    assert error < 1e-8 and result.converged
    assert result.info["preconditioner"] == "block-jacobi"
    assert [e["iteration"] for e in result.history] == list(range(1, result.iterations + 1))
    assert result.history[-1]["rel_error"] < 1e-8


def test_masked_planted_cp_recovers_the_hidden_entries():
    net = tnc.library("cp", I=8, J=7, K=6, R=3)
    truth = net.contract(net.random(seed=4))
    mask = np.random.default_rng(0).random(truth.shape) > 0.4
    data = np.where(mask, truth, np.nan)
    result = tnc.fit(net, data, method="nls", mask="nan", seed=1, progress=False)
    assert result.converged
    hidden = ~mask
    assert np.linalg.norm((result.reconstruct() - truth)[hidden]) < 1e-8 * np.linalg.norm(
        truth[hidden])


def test_tied_tensor_runs_unpreconditioned_and_fits():
    net = tnc.library("sym_cp", n=5, R=2)
    truth = net.contract(net.random(seed=2))
    result = tnc.fit(net, truth, method="nls", seed=0, progress=False)
    assert result.info["preconditioner"] == "none"
    assert result.rel_error < 1e-8
    with pytest.raises(TncError, match="used 3 times"):
        tnc.fit(net, truth, method="nls", preconditioner="block-jacobi", progress=False)


def test_noisy_fit_is_a_least_squares_stationary_point():
    net = tnc.library("cp", I=6, J=5, K=4, R=2)
    rng = np.random.default_rng(1)
    data = net.contract(net.random(seed=1)) + 0.05 * rng.standard_normal((6, 5, 4))
    result = tnc.fit(net, data, method="nls", seed=0, progress=False)
    assert result.converged
    residual = result.reconstruct() - data
    grads = net.grad(result.tensors, upstream=residual)
    scale = np.linalg.norm(data) * max(np.linalg.norm(a) for a in result.tensors.values())
    assert max(np.linalg.norm(g) for g in grads.values()) < 1e-5 * scale
    als = tnc.fit(net, data, method="als", seed=0, progress=False)
    assert result.rel_error <= als.rel_error * (1 + 1e-6)
    losses = [e["loss"] for e in result.history]
    assert all(b <= a for a, b in zip(losses, losses[1:]))      # rejected steps keep the loss


def test_budget_spent_is_not_converged_and_options_are_checked():
    net = tnc.library("cp", I=6, J=5, K=4, R=3)
    data = net.contract(net.random(seed=1))
    result = tnc.fit(net, data, method="nls", max_iter=2, progress=False)
    assert not result.converged and result.iterations == 2
    with pytest.raises(TncError, match="cg_iter"):
        tnc.fit(net, data, method="nls", cg_iter=0, progress=False)
    with pytest.raises(TncError, match="preconditioner"):
        tnc.fit(net, data, method="nls", preconditioner="diag", progress=False)
    with pytest.raises(TncError, match="damping"):
        tnc.fit(net, data, method="nls", damping=0.0, progress=False)


def test_pcg_solves_a_preconditioned_system():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    a = a @ a.T + 0.1 * np.eye(6)
    b = rng.standard_normal(6)
    inverse_diag = 1 / np.diag(a)
    x, r, steps = pcg(lambda v: a @ v, b, lambda v: inverse_diag * v, 20, 1e-12)
    assert np.allclose(x, np.linalg.solve(a, b)) and np.allclose(r, b - a @ x)
