"""The GCP loss family: derivatives by finite differences, in-place forms, domain errors, registry."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc import TncError
from tnc.fitting.losses import Loss, get_loss, register_loss

RNG = np.random.default_rng(0)
SHAPE = (4, 5)


def binary():
    return RNG.integers(0, 2, SHAPE).astype(float)


def counts():
    return RNG.poisson(2.0, SHAPE).astype(float)


def positive():
    return RNG.gamma(2.0, 1.0, SHAPE)


def real():
    return RNG.normal(0.0, 1.5, SHAPE)


# loss name -> (data generator, model generator inside the loss's domain)
CASES = {
    "gaussian": (real, real),
    "bernoulli_logit": (binary, real),
    "bernoulli_odds": (binary, positive),
    "poisson": (counts, positive),
    "poisson_log": (counts, real),
    "gamma": (positive, positive),
    "rayleigh": (positive, positive),
    "negative_binomial(r=3)": (counts, positive),
    "huber(0.5)": (real, real),
    "beta(0.5)": (positive, positive),
    "beta(b=2.5)": (positive, positive),
}


@pytest.mark.parametrize("name", CASES)
def test_derivative_matches_finite_differences(name):
    loss = get_loss(name)
    data, model = CASES[name]
    x, m = data(), model() + (0.3 if loss.model_lower_bound is not None else 0.0)
    h = 1e-6 * np.maximum(1.0, np.abs(m))
    numeric = (loss.value(m + h, x) - loss.value(m - h, x)) / (2 * h)
    np.testing.assert_allclose(loss.derivative(m, x), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in CASES if get_loss(n).fused is not None])
def test_in_place_form_matches(name):
    loss = get_loss(name)
    data, model = CASES[name]
    x, m = data(), model() + 0.3
    v, d = np.empty(SHAPE), np.empty(SHAPE)
    loss.fused(m, x, v, d)
    np.testing.assert_allclose(v, loss.value(m, x), rtol=1e-12)
    np.testing.assert_allclose(d, loss.derivative(m, x), rtol=1e-12, atol=1e-14)


def test_bernoulli_logit_is_stable_for_large_models():
    loss = get_loss("bernoulli_logit")
    m, x = np.array([-800.0, 800.0]), np.array([1.0, 0.0])
    np.testing.assert_allclose(loss.value(m, x), [800.0, 800.0])
    np.testing.assert_allclose(loss.derivative(m, x), [-1.0, 1.0])


def test_every_gcp_loss_is_registered():
    for name in ("gaussian", "bernoulli_logit", "bernoulli_odds", "poisson", "poisson_log",
                 "gamma", "rayleigh"):
        assert get_loss(name).name == name
    assert get_loss("negative_binomial(5)").name == "negative_binomial(5)"
    assert get_loss(tnc.fitting.losses.huber(0.25)).name == "huber(0.25)"
    assert get_loss("poisson").model_lower_bound == 0.0
    assert get_loss("bernoulli_logit").model_lower_bound is None


@pytest.mark.parametrize("name, data, phrase", [
    ("poisson", [[1.0, -2.0], [3.0, 0.0]], "(0, 1)=-2.0"),
    ("poisson", [[1.0, 2.5], [3.0, 0.0]], "(0, 1)=2.5"),
    ("poisson_log", [[1.0, 1.0], [-1.0, 0.0]], "(1, 0)=-1.0"),
    ("bernoulli_logit", [[0.0, 1.0], [2.0, 0.0]], "(1, 0)=2.0"),
    ("bernoulli_odds", [[0.5, 1.0], [1.0, 0.0]], "(0, 0)=0.5"),
    ("gamma", [[1.0, 0.0], [1.0, 2.0]], "(0, 1)=0.0"),
    ("rayleigh", [[1.0, 1.0], [-3.0, 2.0]], "(1, 0)=-3.0"),
    ("negative_binomial(2)", [[1.0, 1.0], [3.0, -2.0]], "(1, 1)=-2.0"),
    ("beta(0.5)", [[1.0, -1.0], [3.0, 2.0]], "(0, 1)=-1.0"),
])
def test_data_outside_the_domain_names_loss_and_entries(name, data, phrase):
    loss = get_loss(name)
    with pytest.raises(TncError) as info:
        loss.check_data(np.array(data))
    assert repr(loss.name) in str(info.value) and phrase in str(info.value)


def test_fit_reports_invalid_counts_with_their_coordinates():
    data = np.ones((3, 4, 5))
    data[1, 2, 3] = -4.0
    data[2, 0, 1] = 0.5
    with pytest.raises(TncError) as info:
        tnc.fit(tnc.library("cp", R=2), data, method="gcp", loss="poisson", progress=False)
    text = str(info.value)
    assert "'poisson'" in text and "(1, 2, 3)=-4.0" in text and "(2, 0, 1)=0.5" in text


def test_masked_entries_are_not_checked():
    data = np.ones((3, 4, 5))
    data[0, 0, 0] = -7.0
    mask = np.ones(data.shape, bool)
    mask[0, 0, 0] = False
    result = tnc.fit(tnc.library("cp", R=2), data, method="gcp", loss="poisson", mask=mask,
                     progress=False, max_iter=5)
    assert np.isfinite(result.loss)


@pytest.mark.parametrize("text, phrase", [
    ("huber", "needs its parameter"),
    ("huber(-1)", "delta > 0"),
    ("huber(d=1)", "huber(delta)"),
    ("beta(1)", "other than 0 and 1"),
    ("negative_binomial(r=abc)", "negative_binomial(r)"),
    ("poisson2", "registered losses"),
])
def test_bad_loss_names_and_parameters(text, phrase):
    with pytest.raises(TncError, match=None) as info:
        get_loss(text)
    assert phrase in str(info.value)


def test_user_loss_is_used_by_fit():
    quartic = Loss("test_quartic", value=lambda m, x: (m - x) ** 4,
                   derivative=lambda m, x: 4 * (m - x) ** 3)
    register_loss(quartic, overwrite=True)
    net = tnc.library("cp", I=6, J=5, K=4, R=2)
    truth = net.contract(net.random(seed=3))
    result = tnc.fit(net, truth, method="gcp", loss="test_quartic", progress=False,
                     init={k: v + 0.05 for k, v in net.random(seed=3).items()})
    assert result.info["loss"] == "test_quartic"
    assert np.abs(result.reconstruct() - truth).max() < 0.05
