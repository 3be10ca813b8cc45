"""Fits are scale-equivariant: fitting ``c * X`` gives ``c`` times the fit of ``X``.

For c from 1e-200 to 1e200 every front (``tnc.fit`` with ALS in each missing mode,
GCP and DMRG; ``tnc.fit_model`` with ALS and GCP) must report the same
``converged``, iterations and ``rel_error`` and return tensors equal to those of
the fit of ``X`` scaled by ``c ** x_G`` (``x_G = 1 / D`` for a network with ``D``
parameter uses; DMRG's orthogonality centre takes all of ``c``).
"""
import numpy as np
import pytest

import tnc
from tnc.fitting.coupled import fit_model
from tnc.fitting.rescale import exponents, unit_scale

SCALES = [1e-200, 1e-100, 1e-4, 1.0, 1e4, 1e100, 1e200]
CP = tnc.library("cp", I=5, J=6, K=7, R=3)
TT = tnc.library("tt", N=4, d=3, r=2)


def noisy(network, seed=1, noise=0.01):
    x = network.contract(network.random(seed=seed))
    return x + noise * np.std(x) * np.random.default_rng(seed).standard_normal(x.shape)


def a_mask(shape, seed=3):
    observed = np.random.default_rng(seed).random(shape) > 0.2
    observed.flat[0] = False
    return observed


def expected_factor(result, name, c, uses):
    carrier = result.info.get("scale_carrier")
    if carrier is not None:
        return c if name == carrier else 1.0
    return c ** (1.0 / uses)


def assert_equivariant(scaled, base, c, uses, rtol=1e-8):
    assert scaled.converged == base.converged
    assert scaled.iterations == base.iterations
    if base.rel_error is not None:
        assert scaled.rel_error == pytest.approx(base.rel_error, rel=rtol)
    for name, tensor in base.tensors.items():
        want = tensor * expected_factor(scaled, name, c, uses)
        np.testing.assert_allclose(scaled.tensors[name], want, rtol=0,
                                   atol=rtol * np.max(np.abs(want)), err_msg=name)


def param_uses(network):
    return sum(o.kind == "param" for o in network.occurrences)


CASES = [
    pytest.param(CP, "als", {}, False, id="als-dense"),
    pytest.param(CP, "als", {"missing": "em", "max_iter": 200}, True, id="als-em"),
    pytest.param(CP, "als", {"missing": "wls"}, True, id="als-wls"),
    pytest.param(CP, "als", {"missing": "auto", "init": "random", "restarts": 2}, True,
                 id="als-auto-restarts"),
    pytest.param(TT, "dmrg", {"max_rank": 2}, False, id="dmrg"),
    pytest.param(TT, "dmrg", {"max_rank": 2}, True, id="dmrg-masked"),
    pytest.param(tnc.library("ring", N=3, d=4, r=2), "dmrg", {"max_rank": 2, "max_iter": 6},
                 False, id="dmrg-ring"),
]


@pytest.mark.parametrize("network, method, options, masked", CASES)
def test_fit_of_c_times_x_is_c_times_the_fit(network, method, options, masked):
    x = noisy(network)
    mask = a_mask(x.shape) if masked else None
    kwargs = dict(method=method, progress=False, mask=mask, **options)
    base = tnc.fit(network, x, **kwargs)
    for c in SCALES:
        scaled = tnc.fit(network, c * x, **kwargs)
        assert_equivariant(scaled, base, c, param_uses(network))


def test_gcp_of_c_times_x_is_c_times_the_fit():
    """GCP (L-BFGS-B, no gauge fixing) drifts along the model's gauge freedom by
    round-off: ``c * X`` is X rounded, so only ``c = 2**k`` gives the same steps bit for
    bit (tests/test_gcp.py); for other ``c`` the model and loss agree to the accuracy
    of the stopping tests (tight here), and so do the stopping and the iterations."""
    net = tnc.library("cp", I=4, J=5, K=6, R=2)
    x = noisy(net)
    kwargs = dict(method="gcp", progress=False, ftol=1e-15, gtol=1e-10)
    base = tnc.fit(net, x, **kwargs)
    assert base.converged
    for c in SCALES:
        scaled = tnc.fit(net, c * x, **kwargs)
        assert scaled.converged == base.converged
        assert abs(scaled.iterations - base.iterations) <= 0.2 * base.iterations
        model, want = scaled.reconstruct() / c, base.reconstruct()
        assert np.linalg.norm(model - want) < 1e-6 * np.linalg.norm(want)
        if 0 < scaled.loss < np.inf:                 # (c x)^2 under- or overflows at 1e+-200
            assert scaled.loss / c / c == pytest.approx(base.loss, rel=1e-8)


def test_the_issues_cases():
    """ALS at 1e-170 fitted an all-zero model 'exactly'; 1e160 raised LinAlgError."""
    x = noisy(CP)
    base = tnc.fit(CP, x, method="als", progress=False)
    assert base.rel_error > 1e-4                     # the noise: no exact fit to report
    for c in (1e-170, 1e160):
        result = tnc.fit(CP, c * x, method="als", progress=False)
        assert result.rel_error == pytest.approx(base.rel_error, rel=1e-8)
        error = np.linalg.norm(result.reconstruct() / c - x) / np.linalg.norm(x)
        assert error == pytest.approx(base.rel_error, rel=1e-6)
    assert result.info["data_scale"] == unit_scale([c * x])


def test_given_starts_and_the_callback_are_in_the_datas_units():
    x = noisy(CP)
    start = {k: v + 0.3 for k, v in tnc.fit(CP, x, method="als", max_iter=2,
                                           progress=False).tensors.items()}
    seen = []
    base = tnc.fit(CP, x, method="als", init=start, progress=False)
    for c in (1e-150, 1e150):
        scaled_start = {k: v * c ** (1 / 3) for k, v in start.items()}
        callback = lambda state: seen.append((state["loss"], state["tensors"]))  # noqa: E731
        scaled = tnc.fit(CP, c * x, method="als", init=scaled_start, callback=callback,
                         progress=False)
        assert_equivariant(scaled, base, c, 3)
        loss, tensors = seen[-1]
        model = CP.contract(tensors)
        assert loss == pytest.approx(float(np.sum((c * x - model) ** 2)), rel=1e-8)


def test_l2_penalised_fits_keep_their_problem():
    """With l2 a fit is not equivariant (the penalty scales as ``c**(2/3)``, the data term
    as ``c**2``), but rescaling must not change the problem: fitting ``c * X`` with
    ``l2 * c**(4/3)`` is the same problem as ``X`` with ``l2`` in other units, so it must
    give ``c**(1/3)`` times the tensors; the loss is the penalised objective in the
    data's own units (checked with numpy)."""
    x = noisy(CP)
    base = tnc.fit(CP, x, method="als", l2=0.01, max_iter=40, progress=False)
    for c in (1e-150, 1e-4, 1e6, 1e150):
        scaled = tnc.fit(CP, c * x, method="als", l2=0.01 * c ** (4 / 3), max_iter=40,
                         progress=False)
        assert_equivariant(scaled, base, c, 3)
    y, l2 = 1e30 * x, 1e38
    result = tnc.fit(CP, y, method="als", l2=l2, max_iter=40, progress=False)
    assert result.info["data_scale"] != 1.0
    model = CP.contract(result.tensors)
    penalty = l2 * sum(float(np.sum(t ** 2)) for t in result.tensors.values())
    assert result.loss == pytest.approx(float(np.sum((y - model) ** 2)) + penalty, rel=1e-8)


COUPLED = """
network X1(I = 5, J = 4) { index i: I, j: J, r: 2  tensor A(i, r), B(j, r)  output i, j }
network X2(I = 5, K = 6, L = 3) {
    index i: I, k: K, l: L, r: 2  tensor A(i, r), C(k, r), D(l, r)  output i, k, l }
model m { fit X1 to T1  fit X2 to T2 weight 0.5 }
"""


@pytest.mark.parametrize("method, options, masked", [
    ("als", {}, False), ("als", {"missing": "em"}, True), ("als", {"missing": "wls"}, True),
    ("gcp", {"max_iter": 80}, False)])
def test_coupled_fit_of_c_times_the_data(method, options, masked):
    model = tnc.compile_model(COUPLED)
    data = {k: v + 0.01 * np.random.default_rng(5).standard_normal(v.shape)
            for k, v in model.contract(model.random(seed=2)).items()}
    masks = {k: a_mask(v.shape, seed=7) for k, v in data.items()} if masked else None
    kwargs = dict(method=method, progress=False, mask=masks, **options)
    base = fit_model(model, data, **kwargs)
    split = exponents([t.network for t in model.terms])
    for c in SCALES:
        scaled = fit_model(model, {k: c * v for k, v in data.items()}, **kwargs)
        assert scaled.converged == base.converged
        assert scaled.iterations == base.iterations
        assert scaled.rel_error == pytest.approx(base.rel_error, rel=1e-8)
        assert scaled.model is model
        for name, tensor in base.tensors.items():
            want = tensor * c ** split[name]
            np.testing.assert_allclose(scaled.tensors[name], want, rtol=0,
                                       atol=1e-8 * np.max(np.abs(want)), err_msg=name)


def test_one_common_factor_per_coupled_model():
    """One factor for all data sets (per-set factors would change their weighting):
    the factor is that of the data sets' joint RMS."""
    model = tnc.compile_model(COUPLED)
    data = model.contract(model.random(seed=2))
    data = {"T1": 1e-90 * data["T1"], "T2": 1e-80 * data["T2"]}
    result = fit_model(model, data, progress=False)
    assert result.info["data_scale"] == unit_scale(list(data.values()))
    assert result.info["data_scale"] != unit_scale([data["T1"]])


def test_split_exponents_sum_to_one_in_every_network():
    split = exponents([t.network for t in tnc.compile_model(COUPLED).terms])
    assert split["A"] + split["B"] == pytest.approx(1.0)
    assert split["A"] + split["C"] + split["D"] == pytest.approx(1.0)
    assert exponents([tnc.library("cp", I=3, J=4, K=5, R=2)]) == pytest.approx(
        {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})


def test_unit_scale_is_a_power_of_two_and_skips_moderate_data():
    for value in (3e-300, 1e-170, 1e-25, 1e25, 1e160, 1e300):
        s = unit_scale([np.full(5, value)])
        assert np.frexp(s)[0] == 0.5                 # an exact power of two
        assert 2 ** -0.5 <= value * s <= 2 ** 0.5
    for value in (1e-15, 0.3, 1.0, 7.0, 1e15):      # no copy, the fit as before
        assert unit_scale([np.full(5, value)]) == 1.0
    assert unit_scale([np.zeros(4)]) == 1.0
    assert unit_scale([np.full(3, 7.0)], exact=True) == pytest.approx(1 / 7)
