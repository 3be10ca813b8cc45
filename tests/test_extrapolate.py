"""ALS extrapolation (tnc.fitting.extrapolate): exact line polynomial, monotone sweeps, speed-up."""
import numpy as np
import pytest

import tnc
import tnc.fitting.identifiable
from tnc.fitting import extrapolate

NETWORKS = [("cp", dict(I=7, J=6, K=5, R=3)),
            ("tucker", dict(I=6, J=5, K=4, R1=3, R2=2, R3=2)),
            ("tt", dict(N=4, d=3, r=2))]


def planted(kind, sizes, seed=1):
    net = tnc.library(kind, **sizes)
    return net, net.contract(net.random(seed=seed))


def random_mask(shape, fraction=0.25, seed=5):
    return np.random.default_rng(seed).random(shape) >= fraction


def assert_monotone(result, observed):
    """Losses never rise by more than rounding: a float64 loss is known to a few machine
    epsilons of ||X||^2 (the sum over entries rounds at eps = 2.2e-16 each; 1e-16 was
    under one eps, and an EM Tucker fit at loss 5.6e-15 rose by 4.8e-15 = 0.55 eps ||X||^2)."""
    losses = np.array([h["loss"] for h in result.history])
    floor = 4 * np.finfo(np.float64).eps * float(np.sum(observed ** 2))
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1] + floor)


def complexified(tensors: dict, seed: int) -> dict:
    """``tensors`` plus ``1j`` times other random values of the same shapes."""
    rng = np.random.default_rng(seed)
    return {n: t + 1j * rng.standard_normal(t.shape) for n, t in tensors.items()}


def squared(array) -> float:
    return float(np.vdot(array, array).real)


@pytest.mark.parametrize("kind,sizes", NETWORKS)
@pytest.mark.parametrize("missing", [None, "em", "wls"])
def test_extrapolated_sweeps_never_raise_the_loss_and_reach_the_plant(kind, sizes, missing):
    net, X = planted(kind, sizes)
    mask = None if missing is None else random_mask(X.shape)
    options = {} if missing is None else {"missing": missing}
    result = tnc.fit(net, X, mask=mask, method="als", seed=0, init="random", progress=False,
                     max_iter=400, tol=1e-12, extrapolate=True, **options)
    observed = np.ones(X.shape, bool) if mask is None else mask
    assert_monotone(result, X[observed])
    assert result.info["extrapolated"] > 0 or result.iterations <= 2   # dense Tucker: one sweep
    model = net.contract(result.tensors)
    assert np.linalg.norm((model - X)[observed]) < 1e-6 * np.linalg.norm(X[observed])


def test_line_polynomial_matches_direct_contraction():
    """The Chebyshev interpolant of M(s) agrees with contracting T_old + s D at other steps."""
    net, X = planted("cp", dict(I=5, J=4, K=3, R=2))
    old, new = net.random(seed=2), net.random(seed=3)
    direction = {n: new[n] - old[n] for n in old}
    cap = 5.0

    class FakeFit:
        problem = type("P", (), {"network": net, "inputs": {}})()

    search = object.__new__(extrapolate.LineSearch)
    search.fit = FakeFit()
    search.stack = np.empty((len(old) + 1, X.size))
    nodes = search._nodes(old, direction, cap, net.contract(old), net.contract(new))
    for s in (0.3, 1.7, 4.2):
        x = 2 * s / cap - 1
        direct = net.contract({n: old[n] + s * direction[n] for n in old})
        np.testing.assert_allclose(search.interpolate(nodes, x).reshape(direct.shape), direct,
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_line_minimum_matches_a_dense_grid_with_mask_and_ridge(dtype):
    net, X = planted("cp", dict(I=5, J=4, K=3, R=2))
    mask = random_mask(X.shape, 0.3, seed=8)
    result = tnc.fit(net, X + 0.1 * np.random.default_rng(0).standard_normal(X.shape),
                     mask=mask, method="als", l2=0.01, max_iter=3, progress=False,
                     extrapolate=False)
    from tnc.fitting.als import Fit, als_model, resolve_settings, ALSOptions
    from tnc.fitting.front import FitProblem
    old, new = result.tensors, net.random(seed=4)
    if dtype == "complex128":
        X = X + 1j * net.contract(complexified(net.random(seed=8), 9))
        old, new = complexified(old, 6), complexified(new, 7)
    target = np.where(mask, X, 0.0)
    problem = FitProblem(net, target, mask, {})
    settings = resolve_settings(problem, ALSOptions(l2=0.01))
    fit = Fit(problem, als_model(net, settings.order, "auto"), settings, dict(new), mask)
    search = extrapolate.LineSearch(fit)
    direction = {n: new[n] - old[n] for n in old}
    cap = 3.0
    nodes = search._nodes(old, direction, cap, net.contract(old), net.contract(new))
    x, value, _ = search._minimum(nodes, old, direction, cap)

    def loss(s):
        tensors = {n: old[n] + s * direction[n] for n in old}
        residual = np.where(mask, target - net.contract(tensors), 0.0)
        return squared(residual) + 0.01 * sum(squared(t) for t in tensors.values())

    grid = np.linspace(1.0, cap, 2001)
    best = min(loss(s) for s in grid)
    assert value == pytest.approx(loss(cap * (x + 1) / 2), rel=1e-9)
    assert value <= best * (1 + 1e-9)


def collinear_cp(congruence=0.9, size=12, rank=3, seed=0):
    """A planted CP whose factors' columns have pairwise cosines ``congruence`` (a swamp)."""
    rng = np.random.default_rng(seed)
    correlation = np.full((rank, rank), congruence) + (1 - congruence) * np.eye(rank)
    root = np.linalg.cholesky(correlation)
    factors = {}
    for name in ("A", "B", "C"):
        q, _ = np.linalg.qr(rng.standard_normal((size, rank)))
        factors[name] = q @ root.T
    return factors


def test_extrapolation_crosses_a_swamp_in_fewer_sweeps():
    net = tnc.library("cp", I=12, J=12, K=12, R=3)
    X = net.contract(collinear_cp())
    runs = {flag: tnc.fit(net, X, method="als", init="random", seed=3, tol=1e-10,
                          max_iter=3000, progress=False, extrapolate=flag)
            for flag in (False, True)}
    assert runs[True].converged and runs[True].rel_error < 1e-6
    assert runs[True].iterations <= 0.5 * runs[False].iterations


def test_nonnegative_tensors_stay_nonnegative():
    net, _ = planted("cp", dict(I=6, J=5, K=4, R=2))
    X = net.contract({n: np.abs(t) for n, t in net.random(seed=6).items()})
    result = tnc.fit(net, X, method="als", nonneg=True, max_iter=100, progress=False,
                     extrapolate=True)
    assert all(np.all(t >= 0) for t in result.tensors.values())
    assert_monotone(result, X)


def test_extrapolate_is_validated():
    net, X = planted("cp", dict(I=4, J=3, K=2, R=1))
    with pytest.raises(tnc.TncError, match="extrapolate"):
        tnc.fit(net, X, method="als", extrapolate="yes", progress=False)


def test_a_rank_beyond_the_data_warns_and_still_fits():
    net = tnc.library("cp", I=2, J=3, K=4, R=7)      # C(k, r) meets 2 x 3 = 6 entries
    X = np.random.default_rng(0).standard_normal((2, 3, 4))
    with pytest.warns(tnc.fitting.identifiable.UnidentifiableWarning, match="rank 7 of index `r`"):
        result = tnc.fit(net, X, method="als", max_iter=50, progress=False)
    assert np.isfinite(result.loss)


def test_an_all_missing_slice_is_named():
    net = tnc.library("cp", I=4, J=3, K=5, R=2)
    X = net.contract(net.random(seed=0))
    mask = np.ones(X.shape, bool)
    mask[:, 2, :] = False
    with pytest.raises(tnc.TncError, match=r"slice 2 of axis 1 \(index `j`\)"):
        tnc.fit(net, X, mask=mask, method="als", progress=False)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("kind,sizes", NETWORKS)
def test_complete_data_line_matches_brute_force_losses(kind, sizes, dtype):
    """CompleteLine (model-norm network + split data term, no dense model) finds the same
    loss along the line as contracting the model at each step: at its minimum, at s = 1,
    and no grid point of [1, cap] is lower; complex tensors and data too."""
    from tnc.fitting.als import Fit, als_model, resolve_settings, ALSOptions
    from tnc.fitting.front import FitProblem
    net, X = planted(kind, sizes)
    X = X + 0.05 * np.random.default_rng(0).standard_normal(X.shape)
    old, new = net.random(seed=2), net.random(seed=3)
    if dtype == "complex128":
        old, new = complexified(old, 6), complexified(new, 7)
        X = X + 1j * net.contract(complexified(net.random(seed=8), 9))
    problem = FitProblem(net, X, None, {})
    settings = resolve_settings(problem, ALSOptions(l2=0.01))
    fit = Fit(problem, als_model(net, settings.order, "auto"), settings, dict(new), None)
    search = extrapolate.LineSearch(fit)
    assert search.line is not None                      # the complete-data path
    direction = {n: new[n] - old[n] for n in old}
    cap = 3.0

    def loss(s):
        tensors = {n: old[n] + s * direction[n] for n in old}
        return squared(X - net.contract(tensors)) + 0.01 * sum(
            squared(t) for t in tensors.values())

    for sweep in (1, 2):
        x, value, at_one = search.line.minimum(old, direction, cap, sweep)
        assert value == pytest.approx(loss(cap * (x + 1) / 2), rel=1e-10)
        assert at_one == pytest.approx(loss(1.0), rel=1e-10)
        assert value <= min(loss(s) for s in np.linspace(1.0, cap, 401)) * (1 + 1e-10)


WITH_DATA = """network side(I=6, J=5, K=4, R=2, S=3) {
    index i: I, j: J, k: K, r: R, s: S
    tensor A(i, r), B(j, s), C(k, r)
    data D(r, s)
    output i, j, k
}"""


@pytest.mark.parametrize("kind,sizes", [*NETWORKS, ("side", {})])
def test_batched_line_networks_equal_the_tree_walks(kind, sizes, monkeypatch):
    """The line's norms and data products contracted at every point at once (one batched
    einsum) give the losses of the per-point tree walks they replace (BATCH_ENTRIES 0)."""
    from tnc.fitting.als import Fit, als_model, resolve_settings, ALSOptions
    from tnc.fitting.front import FitProblem
    rng = np.random.default_rng(1)
    if kind == "side":
        net = tnc.compile(WITH_DATA)
        inputs = {"D": rng.standard_normal((2, 3))}
        X = net.contract({**net.random(seed=1), **inputs})
    else:
        (net, X), inputs = planted(kind, sizes), {}
    X = X + 0.05 * rng.standard_normal(X.shape)
    problem = FitProblem(net, X, None, inputs)
    settings = resolve_settings(problem, ALSOptions())
    old, new = net.random(seed=2), net.random(seed=3)
    direction = {n: new[n] - old[n] for n in old}

    def line_minimum():
        fit = Fit(problem, als_model(net, settings.order, "auto"), settings, dict(new), None)
        return extrapolate.LineSearch(fit).line.minimum(old, direction, 3.0, 1)

    batched = line_minimum()
    monkeypatch.setattr(extrapolate, "BATCH_ENTRIES", -1)
    extrapolate._batched_expression.cache_clear()
    walked = line_minimum()
    extrapolate._batched_expression.cache_clear()
    assert batched[0] == pytest.approx(walked[0], abs=1e-9)
    assert batched[1:] == pytest.approx(walked[1:], rel=1e-11)


def test_line_search_loss_of_float32_data_is_summed_in_float64():
    """The exact-fit branch compares two data losses: on 2^22 float32 residuals a float32
    sum is off by ~1e-5 relative (np.vdot), enough to flip a close comparison."""
    from types import SimpleNamespace
    from tnc.fitting.extrapolate import LineSearch
    rng = np.random.default_rng(3)
    target = rng.random(2 ** 22).astype(np.float32)
    model = np.zeros_like(target)
    search = LineSearch.__new__(LineSearch)
    search.fit = SimpleNamespace(problem=SimpleNamespace(target=target), mask=None)
    exact = float(np.dot(target.astype(np.float64), target.astype(np.float64)))
    assert abs(search._loss(model) / exact - 1) < 1e-7
