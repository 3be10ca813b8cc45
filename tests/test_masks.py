"""Masks mean the same thing in every method: an unobserved entry never influences a fit.

Each fitting method and missing mode fits the same data twice with the same seed:
once with finite junk (a 1e6 outlier, inf, large values) under a False mask, once
with NaN there and ``mask="nan"``. The tensors must agree to 1e-10, and the reported
error must be the observed-entries error computed here with numpy.
"""
import numpy as np
import pytest

import tnc
from tnc.fitting.coupled import fit_model
from tnc.models.multifac import multifac

RTOL = 1e-10


def planted(network, seed=1, noise=0.05):
    """A tensor of ``network``'s form plus a little noise (so errors are not round-off)."""
    x = network.contract(network.random(seed=seed))
    rng = np.random.default_rng(seed + 100)
    return x + noise * np.std(x) * rng.standard_normal(x.shape)


def hide(x, seed=2, fraction=0.15):
    """``(junk, nan_data, observed)``: ``x`` with junk or NaN where ``observed`` is False."""
    rng = np.random.default_rng(seed)
    observed = rng.random(x.shape) > fraction
    observed.flat[0] = False
    junk, nans = x.copy(), x.copy()
    junk[~observed] = 1e3 * rng.standard_normal(int((~observed).sum()))
    junk.flat[0] = 1e6
    nans[~observed] = np.nan
    return junk, nans, observed


def observed_rel_error(x, model_value, observed):
    """The independent reference: ``||W (X - M)|| / ||W X||`` over observed entries."""
    residual = (x - model_value)[observed]
    return float(np.linalg.norm(residual) / np.linalg.norm(x[observed]))


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        scale = max(float(np.max(np.abs(b[name]))), 1e-300)
        np.testing.assert_allclose(a[name], b[name], rtol=RTOL, atol=RTOL * scale, err_msg=name)


CP = tnc.library("cp", I=5, J=6, K=7, R=2)
TT = tnc.library("tt", N=4, d=3, r=2)
RING = tnc.library("ring", N=3, d=4, r=2)

SINGLE = [
    pytest.param(CP, "als", {"missing": "em"}, id="als-em"),
    pytest.param(CP, "als", {"missing": "wls"}, id="als-wls"),
    pytest.param(CP, "als", {"missing": "auto"}, id="als-auto"),
    pytest.param(CP, "als", {"missing": "em", "holdout": 0.1, "init": "random"},
                 id="als-holdout"),
    pytest.param(CP, "gcp", {"max_iter": 60}, id="gcp-lbfgsb"),
    pytest.param(CP, "gcp", {"optimizer": "adam", "max_iter": 3, "epoch_iters": 20,
                             "batch_size": 50}, id="gcp-adam"),
    pytest.param(TT, "dmrg", {"max_rank": 2}, id="dmrg-chain-wls"),
    pytest.param(RING, "dmrg", {"max_rank": 2, "max_iter": 8}, id="dmrg-ring-em"),
]


@pytest.mark.parametrize("network, method, options", SINGLE)
def test_hidden_values_never_reach_tnc_fit(network, method, options):
    x = planted(network)
    junk, nans, observed = hide(x)
    kwargs = dict(method=method, progress=False, seed=0, **options)
    masked = tnc.fit(network, junk, mask=observed, **kwargs)
    reference = tnc.fit(network, nans, mask="nan", **kwargs)
    assert_same_tensors(masked.tensors, reference.tensors)
    assert masked.iterations == reference.iterations
    model_value = masked.reconstruct()
    if "holdout" in options:     # its rel_error is over the entries it fitted, not held out
        assert masked.history[-1]["holdout_rel_error"] > 0
    elif masked.rel_error is not None:
        assert masked.rel_error == pytest.approx(
            observed_rel_error(x, model_value, observed), rel=1e-8)
    elif options.get("optimizer") != "adam":          # GCP reports its loss: the observed SSE
        sse = float(np.sum((x - model_value)[observed] ** 2))
        assert masked.loss == pytest.approx(sse, rel=1e-8)


@pytest.mark.parametrize("method, options", [("als", {"missing": "em"}),
                                             ("als", {"missing": "wls"}), ("gcp", {}),
                                             ("dmrg", {"max_rank": 2})])
def test_masked_entry_is_recovered_not_copied(method, options):
    """The issue's reproducer: a 1e6 outlier under a False mask; the fit of noiseless
    low-rank data must predict the true value there."""
    network = TT if method == "dmrg" else tnc.library("cp", I=4, J=5, K=6, R=2)
    x = network.contract(network.random(seed=1))
    y = x.copy()
    y[0, 0, 0] = 1e6
    observed = np.ones(x.shape, bool)
    observed[0, 0, 0] = False
    result = tnc.fit(network, y, mask=observed, method=method, progress=False, **options)
    assert result.reconstruct()[0, 0, 0] == pytest.approx(x[0, 0, 0], abs=1e-4)


def test_numpy_masked_arrays_are_honoured_and_anded_with_a_mask():
    x = planted(CP)
    junk, nans, observed = hide(x)
    reference = tnc.fit(CP, nans, mask="nan", method="als", progress=False)
    as_ma = tnc.fit(CP, np.ma.MaskedArray(junk, mask=~observed), method="als", progress=False)
    assert_same_tensors(as_ma.tensors, reference.tensors)
    # half the hidden entries hidden by the masked array, half by the explicit mask
    hidden = np.flatnonzero(~observed)
    by_ma = np.zeros(x.shape, bool)
    by_ma.flat[hidden[::2]] = True
    explicit = np.ones(x.shape, bool)
    explicit.flat[hidden[1::2]] = False
    both = tnc.fit(CP, np.ma.MaskedArray(junk, mask=by_ma), mask=explicit, method="als",
                   progress=False)
    assert_same_tensors(both.tensors, reference.tensors)
    with_nan = tnc.fit(CP, np.ma.MaskedArray(np.where(by_ma, junk, nans), mask=by_ma),
                       mask="nan", method="als", progress=False)
    assert_same_tensors(with_nan.tensors, reference.tensors)


def test_functions_without_masks_refuse_masked_arrays():
    x = np.ma.MaskedArray(np.ones((3, 4, 5)), mask=np.zeros((3, 4, 5), bool))
    x.mask[0, 0, 0] = True
    with pytest.raises(tnc.TncError, match="masked array hiding 1 entries"):
        tnc.decompose(x, "tucker", ranks=(2, 2, 2))
    with pytest.raises(tnc.TncError, match="stratum 0 is a numpy masked array"):
        tnc.stratified_ntf([x], rank_specific=1, n_topics=1, progress=False)
    unmasked = np.ma.MaskedArray(np.ones((3, 4, 5)))          # nothing hidden: plain data
    assert tnc.stratified_ntf([unmasked], rank_specific=1, n_topics=1, max_iter=2,
                              progress=False).iterations >= 1


def test_checks_apply_to_observed_entries_only():
    x = planted(CP)
    junk, nans, observed = hide(x)
    junk.flat[np.flatnonzero(~observed)[1]] = np.inf         # inf where unobserved is fine
    a = tnc.fit(CP, junk, mask=observed, method="als", progress=False)
    b = tnc.fit(CP, nans, mask="nan", method="als", progress=False)
    assert_same_tensors(a.tensors, b.tensors)
    junk.flat[np.flatnonzero(observed)[0]] = np.inf
    with pytest.raises(tnc.TncError, match="1 infinite entries where the mask says observed"):
        tnc.fit(CP, junk, mask=observed, method="als", progress=False)
    with pytest.raises(tnc.TncError, match="NaN entries where the mask says observed"):
        tnc.fit(CP, nans, mask=np.ones(x.shape, bool), method="als", progress=False)


COUPLED = """
network X1(I = 5, J = 4) { index i: I, j: J, r: 2  tensor A(i, r), B(j, r)  output i, j }
network X2(I = 5, K = 6) { index i: I, k: K, r: 2  tensor A(i, r), C(k, r)  output i, k }
model m { fit X1 to T1  fit X2 to T2 weight 0.5 }
"""


@pytest.mark.parametrize("method, options", [
    ("als", {"missing": "em"}), ("als", {"missing": "wls"}), ("als", {"missing": "auto"}),
    ("als", {"missing": "em", "restarts": 2}), ("gcp", {"max_iter": 60})])
def test_hidden_values_never_reach_a_coupled_fit(method, options):
    model = tnc.compile_model(COUPLED)
    clean = {k: v + 0.05 * np.random.default_rng(3).standard_normal(v.shape)
             for k, v in model.contract(model.random(seed=4)).items()}
    junk, nans, masks = {}, {}, {}
    for k, (name, x) in enumerate(clean.items()):
        junk[name], nans[name], masks[name] = hide(x, seed=10 + k, fraction=0.2)
    kwargs = dict(method=method, progress=False, **{"max_iter": 200, **options})
    masked = fit_model(model, junk, mask=masks, **kwargs)
    reference = fit_model(model, nans, mask={name: "nan" for name in nans}, **kwargs)
    assert_same_tensors(masked.tensors, reference.tensors)
    assert masked.iterations == reference.iterations
    values = masked.reconstruct()
    for name, x in clean.items():
        assert masked.history[-1]["rel_errors"][name] == pytest.approx(
            observed_rel_error(x, values[name], masks[name]), rel=1e-8)
    errors = sum(float(np.sum((clean[n] - values[n])[masks[n]] ** 2)) for n in clean)
    norms = sum(float(np.sum(clean[n][masks[n]] ** 2)) for n in clean)
    assert masked.rel_error == pytest.approx(np.sqrt(errors / norms), rel=1e-8)
    as_ma = fit_model(model, {n: np.ma.MaskedArray(junk[n], mask=~masks[n]) for n in junk},
                      **kwargs)
    assert_same_tensors(as_ma.tensors, reference.tensors)


def test_hidden_values_never_reach_multifac():
    rng = np.random.default_rng(5)
    u = rng.standard_normal((6, 1))
    data = [np.einsum("ir,jr,kr->ijk", u, rng.standard_normal((4, 1)), rng.standard_normal((3, 1))),
            np.einsum("ir,jr->ij", u, rng.standard_normal((5, 1)))]
    hidden = [hide(x, seed=20 + k) for k, x in enumerate(data)]
    options = dict(rank=3, sigma=0.1, max_iter=60, threshold="noise")
    masked = multifac([h[0] for h in hidden], masks=[h[2] for h in hidden], **options)
    reference = multifac([h[1] for h in hidden], masks=[h[2] for h in hidden], **options)
    assert_same_tensors(masked.fit.tensors, reference.fit.tensors)
    np.testing.assert_allclose(masked.floors, reference.floors, rtol=RTOL)


@pytest.mark.parametrize("method, options", [
    ("als", {"missing": "em"}), ("als", {"missing": "wls"}), ("als", {"missing": "auto"}),
    ("gcp", {}),
], ids=["als-em", "als-wls", "als-auto", "gcp"])
def test_float32_masked_fits_report_the_observed_error(method, options):
    """float32 data with 20 % hidden, 100^3 rank 10: the reported error is the observed
    entries' error computed here in float64, to 1e-7 (float32 WLS took it from the loss
    formula, whose weighted Grams' float32 sums cancel: 3e-6 off here, 1 % at 600^3)."""
    rng = np.random.default_rng(0)
    network = tnc.library("cp", I=100, J=100, K=100, R=10)
    x = network.contract(network.random(seed=3))
    x = (x + 0.1 * np.std(x) * rng.standard_normal(x.shape)).astype(np.float32)
    observed = rng.random(x.shape) >= 0.2
    result = tnc.fit(network, x, mask=observed, method=method, init="random", max_iter=3,
                     tol=0.0, progress=False, **options)
    model_value = result.reconstruct().astype(np.float64)
    if method == "gcp":                                   # GCP reports the observed SSE
        sse = float(np.sum((x - model_value)[observed] ** 2))
        assert result.loss == pytest.approx(sse, rel=1e-6)
    else:
        assert result.rel_error == pytest.approx(
            observed_rel_error(x.astype(np.float64), model_value, observed), rel=1e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_bad_entry_of_complete_data_is_refused(bad):
    """Complete data are checked by their sum of squares (front.checked_target): one NaN or
    infinity anywhere makes it non-finite and the fit is refused by name; finite data
    whose squares overflow are not refused (the long check finds nothing)."""
    data = np.ones((3, 4, 5))
    data[-1, -1, -1] = bad
    net = tnc.library("cp", I=3, J=4, K=5, R=1)
    with pytest.raises(tnc.TncError, match="NaN|infinite"):
        tnc.fit(net, data, max_iter=1, progress=False)
    huge = np.full((3, 4, 5), 1e200)
    result = tnc.fit(net, huge, max_iter=5, progress=False)
    assert result.rel_error < 1e-8
