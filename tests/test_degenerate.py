"""Degenerate CP fits (tnc.fitting.degenerate): cancelling terms are found and named.

The textbook case is the rank-3 tensor ``a a b + a b a + b a a`` (de Silva and Lim
2008): it has no best rank-2 approximation, rank-2 fits approach it with two terms
that grow in opposite directions. The reference for every finding is the congruence
and the term norms recomputed here with numpy from the returned tensors.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tnc
from tnc.fitting.degenerate import CONGRUENCE, DegenerateWarning, diagnose, rank_index


def border_rank_tensor(n: int = 4, seed: int = 0) -> np.ndarray:
    a, b = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, 2)))[0].T
    outer = lambda x, y, z: np.einsum("i,j,k->ijk", x, y, z)   # noqa: E731
    return outer(a, a, b) + outer(a, b, a) + outer(b, a, a)


def reference_pair(tensors: dict, names="ABC"):
    """``(congruence, smaller term norm / model norm)`` of the most opposed pair."""
    factors = [tensors[n] for n in names]
    unit = [f / np.linalg.norm(f, axis=0) for f in factors]
    cosines = np.prod([u.T @ u for u in unit], axis=0)
    np.fill_diagonal(cosines, np.inf)
    r, s = np.unravel_index(np.argmin(cosines), cosines.shape)
    terms = np.prod([np.linalg.norm(f, axis=0) for f in factors], axis=0)
    model = np.linalg.norm(np.einsum("ir,jr,kr->ijk", *factors))
    return cosines[r, s], min(terms[r], terms[s]) / model


def fit_quietly(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tnc.fit(*args, progress=False, **kwargs)
    return result, [w for w in caught if issubclass(w.category, DegenerateWarning)]


def test_rank_two_fit_of_a_border_rank_tensor_is_named_degenerate():
    data = border_rank_tensor()
    net = tnc.library("cp", I=4, J=4, K=4, R=2)
    result, warned = fit_quietly(net, data, method="als", init="random", max_iter=300)
    congruence, ratio = reference_pair(result.tensors)
    assert not result.converged
    assert result.rel_error < 0.05                 # approaching the unattainable infimum 0
    assert congruence < CONGRUENCE and ratio > 1   # the reference sees two cancelling terms
    found = result.info["degenerate"]
    assert found["terms"] == [0, 1]
    assert found["congruence"] == pytest.approx(congruence, abs=1e-12)
    assert found["norm_ratio"] == pytest.approx(ratio, rel=1e-10)
    assert len(warned) == 1 and "cancel" in str(warned[0].message)
    assert "degenerate: terms 0 and 1 cancel" in result.summary()


@pytest.mark.parametrize("method", ["als", "nls", "gcp"])
def test_every_method_reports_what_the_reference_sees(method):
    """The finding is made by tnc.fit for every method alike: flagged exactly when the
    numpy reference sees a pair below the congruence threshold, larger than the model."""
    net = tnc.library("cp", I=4, J=4, K=4, R=2)
    result, warned = fit_quietly(net, border_rank_tensor(), method=method, init="random",
                                 max_iter=200)
    congruence, ratio = reference_pair(result.tensors)
    expected = congruence < CONGRUENCE and ratio > 1
    assert ("degenerate" in result.info) == expected == bool(warned)


def test_a_planted_fit_is_not_degenerate():
    net = tnc.library("cp", I=6, J=5, K=4, R=3)
    planted = net.random(seed=3)
    data = net.contract(planted)
    data = data + 0.01 * np.std(data) * np.random.default_rng(1).standard_normal(data.shape)
    result, warned = fit_quietly(net, data, method="als")
    assert result.converged and "degenerate" not in result.info and not warned


def test_the_finding_survives_save_and_load(tmp_path):
    net = tnc.compile("network cp(I = 4, J = 4, K = 4, R = 2) { index i: I, j: J, k: K, r: R "
                      "tensor A(i, r), B(j, r), C(k, r)  output i, j, k }")
    result, _ = fit_quietly(net, border_rank_tensor(), method="als", init="random",
                            max_iter=300)
    result.save(tmp_path / "fit.npz")
    assert tnc.load(tmp_path / "fit.npz").info["degenerate"] == result.info["degenerate"]


def test_only_cp_models_are_diagnosed():
    assert rank_index(tnc.library("cp", I=3, J=3, K=3, R=2)) == "r"
    for name, sizes in {"tucker": {}, "tt": {"N": 3}, "ring": {"N": 3}}.items():
        net = tnc.library(name, **sizes)
        assert rank_index(net) is None
        assert diagnose(net, net.random(seed=0)) is None
    matrix = tnc.compile("network mf() { index i: 3, j: 4, r: 2  tensor A(i, r), B(j, r) "
                         "output i, j }")
    assert rank_index(matrix) is None        # two factors: a best fit always exists (SVD)


def test_the_finding_does_not_depend_on_the_data_scale():
    """Scale-equivariant fits of c X have tensors c^(1/3) times X's: the same finding,
    without overflow at c = 1e300 (the term norms are compared in log space)."""
    net = tnc.library("cp", I=4, J=4, K=4, R=2)
    result, _ = fit_quietly(net, border_rank_tensor(), method="als", init="random",
                            max_iter=300)
    found = diagnose(net, result.tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = diagnose(net, {n: t * 1e100 for n, t in result.tensors.items()})
    assert huge["terms"] == found["terms"]
    assert huge["congruence"] == pytest.approx(found["congruence"], abs=1e-12)
    assert huge["norm_ratio"] == pytest.approx(found["norm_ratio"], rel=1e-10)
