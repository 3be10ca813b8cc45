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
    assert result.loss == pytest.approx(result.history[0]["loss"], rel=1e-12)
    assert np.isfinite(result.loss)
    epochs = [h["loss"] for h in result.history if h["epoch"] > 0 and not h.get("restored")]
    assert all(not loss <= result.loss for loss in epochs)    # every epoch was worse
    assert result.history[-1].get("restored")


def test_a_good_adam_run_still_converges_without_warning():
    net, x = cp_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = tnc.fit(net, x, method="gcp", optimizer="adam", lr=1e-2, max_iter=200,
                         max_fails=0, epoch_iters=50, batch_size=200, progress=False)
    assert result.converged and result.loss < result.history[0]["loss"]
    assert result.iterations == result.history[-1]["epoch"]


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
