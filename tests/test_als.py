"""Generic ALS: exact recovery for every topology, noisy fits vs tensorly, missing data, options, errors."""
import numpy as np
import pytest

import tnc
from tnc.engine import program
from tnc.fitting.als import (ALSOptions, Model, als_model, dimension_tree_groups, evaluate,
                     solve_rows)

QUIET = dict(progress=False)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def planted(name, seed=1, **sizes):
    net = tnc.library(name, **sizes)
    return net, net.contract(net.random(seed=seed))


@pytest.mark.parametrize("name, sizes", [
    ("cp", dict(I=7, J=6, K=5, R=3)),
    ("tucker", dict(I=7, J=6, K=5, R1=2, R2=3, R3=2)),
    ("tt", dict(N=5, d=3, r=2)),
    ("ring", dict(N=4, d=3, r=2)),
    ("ht", dict(N=4, d=3, r=2)),
])
def test_exact_recovery_from_random_starts(name, sizes):
    net, X = planted(name, **sizes)
    result = tnc.fit(net, X, method="als", seed=10, restarts=4, max_iter=2000, **QUIET)
    assert rel(result.reconstruct(), X) < 1e-8
    assert result.info["seed"] >= 10 and result.history[-1]["rel_error"] < 1e-8


def test_fit_reads_sizes_from_data_and_text_model():
    rng = np.random.default_rng(0)
    A, B, C = (rng.standard_normal((n, 2)) for n in (5, 4, 3))
    X = np.einsum("ir,jr,kr->ijk", A, B, C)
    text = "network cp(I, J, K, R = 2) { index i: I, j: J, k: K, r: R " \
           "tensor A(i, r), B(j, r), C(k, r) output i, j, k }"
    result = tnc.fit(text, X, method="als", restarts=3, **QUIET)
    assert result.network.sizes == {"I": 5, "J": 4, "K": 3, "R": 2}
    assert result.rel_error < 1e-8


def test_noisy_cp_matches_tensorly_within_one_percent():
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac
    net, X = planted("cp", I=12, J=11, K=10, R=3)
    X = X + 0.1 * np.std(X) * np.random.default_rng(5).standard_normal(X.shape)
    ours = tnc.fit(net, X, method="als", restarts=3, **QUIET)
    theirs = parafac(X, 3, n_iter_max=2000, tol=1e-12, init="svd")
    their_error = rel(tensorly.cp_to_tensor(theirs), X)
    assert rel(ours.reconstruct(), X) <= 1.01 * their_error
    assert abs(ours.rel_error - rel(ours.reconstruct(), X)) < 1e-9


@pytest.mark.parametrize("seed", [7, 8])
def test_default_start_is_screened_on_small_data_then_random_restarts(seed):
    """With default options a noisy CP fit of small data (3,375 entries) screens 10 starts
    (the SVD start first) and matches tensorly's from its SVD start."""
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac
    rng = np.random.default_rng(seed)
    X = np.einsum("ir,jr,kr->ijk", *(rng.standard_normal((15, 4)) for _ in range(3)))
    X += 0.1 * np.std(X) * rng.standard_normal(X.shape)
    net = tnc.library("cp", I=15, J=15, K=15, R=4)
    ours = tnc.fit(net, X, method="als", **QUIET)
    assert ours.info["init"] == "screened" and len(ours.info["screened"]) == 10
    assert "after the best of 10 screened starts" in repr(ours)   # iterations: the main fit's
    theirs = rel(tensorly.cp_to_tensor(parafac(X, 4, n_iter_max=1000, tol=1e-10)), X)
    assert ours.rel_error <= 1.01 * theirs
    kinds = []
    tnc.fit(net, X, method="als", restarts=3, max_iter=2, tol=0,
            callback=lambda state: kinds.append(state["iteration"]), **QUIET)
    assert kinds == [1, 2, 1, 2, 1, 2]


def test_noisy_tucker_matches_tensorly_within_one_percent():
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import tucker
    net, X = planted("tucker", I=10, J=9, K=8, R1=3, R2=2, R3=3)
    X = X + 0.1 * np.std(X) * np.random.default_rng(6).standard_normal(X.shape)
    ours = tnc.fit(net, X, method="als", init="svd", **QUIET)
    theirs = tucker(X, [3, 2, 3], n_iter_max=500, tol=1e-12)
    assert rel(ours.reconstruct(), X) <= 1.01 * rel(tensorly.tucker_to_tensor(theirs), X)


def test_missing_entries_of_a_rank3_cp_tensor_are_completed():
    net, X = planted("cp", I=15, J=14, K=13, R=3, seed=2)
    mask = np.random.default_rng(3).random(X.shape) > 0.3
    result = tnc.fit(net, np.where(mask, X, np.nan), mask="nan", method="als", restarts=3,
                     **QUIET)
    assert result.info["missing"] == "wls"
    assert rel(result.reconstruct()[~mask], X[~mask]) < 1e-6


def test_em_imputation_also_completes():
    net, X = planted("cp", I=9, J=8, K=7, R=2, seed=2)
    mask = np.random.default_rng(4).random(X.shape) > 0.2
    result = tnc.fit(net, X, mask=mask, method="als", missing="em", restarts=3,
                     max_iter=3000, **QUIET)
    assert result.info["missing"] == "em"
    assert rel(result.reconstruct()[~mask], X[~mask]) < 1e-4


def test_holdout_error_is_reported():
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    result = tnc.fit(net, X, method="als", holdout=0.1, restarts=3, **QUIET)
    assert result.history[-1]["holdout_rel_error"] < 1e-6


def test_nonnegative_factors_stay_nonnegative():
    rng = np.random.default_rng(0)
    factors = [rng.random((n, 2)) for n in (8, 7, 6)]
    X = np.einsum("ir,jr,kr->ijk", *factors)
    net = tnc.library("cp", I=8, J=7, K=6, R=2)
    result = tnc.fit(net, X, method="als", nonneg=True, max_iter=3000, restarts=2, **QUIET)
    assert all((t >= 0).all() for t in result.tensors.values())
    assert result.rel_error < 1e-4
    some = tnc.fit(net, X - 0.5, method="als", nonneg=["A"], max_iter=20, **QUIET)
    assert (some.tensors["A"] >= 0).all() and (some.tensors["B"] < 0).any()


def test_l2_penalty_shrinks_the_solution():
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    free = tnc.fit(net, X, method="als", max_iter=50, normalize=False, **QUIET)
    ridge = tnc.fit(net, X, method="als", max_iter=50, l2=5.0, normalize=False, **QUIET)
    norm = lambda r: sum(float(np.sum(t ** 2)) for t in r.tensors.values())  # noqa: E731
    assert norm(ridge) < norm(free)
    assert ridge.rel_error > free.rel_error
    one = tnc.fit(net, X, method="als", max_iter=5, l2={"A": 1.0}, **QUIET)
    assert one.iterations == 5


def test_callback_stops_the_fit_and_sees_the_state():
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    seen = []

    def stop_after_three(state):
        seen.append((state["iteration"], state["rel_error"], set(state["tensors"])))
        return state["iteration"] == 3

    result = tnc.fit(net, X, method="als", callback=stop_after_three, init="svd", **QUIET)
    assert result.iterations == 3 and not result.converged
    assert [s[0] for s in seen] == [1, 2, 3] and seen[0][2] == {"A", "B", "C"}


def test_progress_bar_can_be_shown(capsys):
    net, X = planted("cp", I=5, J=4, K=3, R=2)
    tnc.fit(net, X, method="als", max_iter=3, progress=True, init="svd")
    drawn = capsys.readouterr().err
    assert "als:" in drawn and "/3 " in drawn          # a tqdm bar over the 3 sweeps
    tnc.fit(net, X, method="als", max_iter=3, progress=False)
    assert capsys.readouterr().err == ""


def test_history_loss_and_rel_error_per_sweep_and_save_load(tmp_path):
    net, X = planted("tt", N=4, d=3, r=2)
    X = X + 0.1 * np.random.default_rng(0).standard_normal(X.shape)
    result = tnc.fit(net, X, method="als", max_iter=4, tol=0, **QUIET)
    assert [h["iteration"] for h in result.history] == [1, 2, 3, 4]
    assert all({"loss", "rel_error", "time"} <= set(h) for h in result.history)
    losses = [h["loss"] for h in result.history]
    assert all(b <= a * (1 + 1e-9) + 1e-12 for a, b in zip(losses, losses[1:]))
    path = tmp_path / "fit.npz"
    result.save(path)
    loaded = tnc.load_result(path)
    assert loaded.network.source == net.source and loaded.iterations == 4
    assert np.allclose(loaded.reconstruct(), result.reconstruct())


def test_init_from_arrays_svd_and_order():
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    truth = net.random(seed=1)
    given = tnc.fit(net, X, method="als", init=truth, max_iter=2, **QUIET)
    assert given.rel_error < 1e-10
    svd = tnc.fit(net, X, method="als", init="svd", order=["C", "A", "B"], **QUIET)
    assert svd.info["order"] == ["C", "A", "B"]
    assert svd.rel_error < 1e-3


def test_fixed_data_tensors_are_inputs():
    text = """network coupled(I = 6, J = 5, R = 3) {
        index i: I, j: J, r: R, s: R
        tensor A(i, r), B(j, s)
        data D(r, s)
        output i, j }"""
    net = tnc.compile(text)
    rng = np.random.default_rng(0)
    D = rng.random((3, 3))
    X = net.contract({**net.random(seed=4), "D": D})
    result = tnc.fit(net, X, method="als", inputs={"D": D}, **QUIET)
    assert result.rel_error < 1e-10 and set(result.tensors) == {"A", "B"}


def test_cp_sweep_streams_the_data_twice():
    """The dimension tree shares X x (A) between the B and C updates of a 3-way CP sweep."""
    assert dimension_tree_groups(["A", "B", "C"], 1) == [["A"], ["C"]]
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    model = Model(net, ["A", "B", "C"], "auto")
    values = model.values(net.random(seed=0), {}, X)
    cache, passes = {}, 0

    for name in ["A", "B", "C"]:
        fresh = [n for n in _products_with_x(model.updates[name].rhs) if n.key not in cache]
        passes += len(fresh)
        evaluate(model.updates[name].rhs, values, cache)
        model.invalidate(cache, name)
    assert passes == 2


def test_windowed_schedule_streams_the_data_one_and_a_half_times_per_cp_sweep():
    """Windows (A B) (C A) (B C) start from X x C, X x B, X x A: 3 passes per 2 sweeps."""
    net, X = planted("cp", I=8, J=7, K=6, R=2)
    model = Model(net, ["A", "B", "C"], "auto")
    assert model.windows is not None
    values = model.values(net.random(seed=0), {}, X)
    cache, passes = {}, 0
    for step in range(12):                       # four sweeps
        tree = model.rhs_at(step)
        passes += sum(1 for n in _products_with_x(tree) if n.key not in cache)
        evaluate(tree, values, cache)
        model.invalidate(cache, "ABC"[step % 3])
    assert passes == 6


def _products_with_x(node):
    found = [node] if any(c.leaves == frozenset(["X"]) for c in node.children) else []
    return found + [n for c in node.children for n in _products_with_x(c)]


@pytest.mark.parametrize("name, sizes", [
    ("cp", dict(I=7, J=6, K=5, R=3)),
    ("cp4", dict(I=5, J=4, K=3, L=4, R=2)),
    ("tucker", dict(I=6, J=5, K=4, R1=2, R2=3, R3=2)),
])
def test_windowed_schedule_makes_the_same_updates_as_plain_cyclic_als(monkeypatch, name, sizes):
    """Only the contraction trees differ: the iterates agree to rounding."""
    build = lambda: tnc.compile(CP4, **sizes) if name == "cp4" else tnc.library(name, **sizes)  # noqa: E731
    net, fresh = build(), build()       # fresh: its own cache of planned models
    X = np.random.default_rng(3).standard_normal(net.output_shape)
    options = dict(init="random", seed=1, max_iter=7, tol=0, normalize=False, **QUIET)
    windowed = tnc.fit(net, X, method="als", **options)
    assert als_model(net, list(net.params)).windows is not None
    monkeypatch.setattr(tnc.fitting.als, "MAX_WINDOWED", 0)
    program.clear_cache()               # planned models are shared by structure: plan anew
    plain = tnc.fit(fresh, X, method="als", **options)
    assert als_model(fresh, list(fresh.params)).windows is None
    for key in plain.tensors:
        assert np.allclose(windowed.tensors[key], plain.tensors[key], rtol=1e-8, atol=1e-10)
    assert windowed.rel_error == pytest.approx(plain.rel_error, rel=1e-10)


CP4 = """network cp4(I, J, K, L, R) {
    index i: I, j: J, k: K, l: L, r: R
    tensor A(i, r), B(j, r), C(k, r), D(l, r)
    output i, j, k, l }"""


def test_solve_rows_falls_back_on_singular_gram():
    gram = np.array([[[1.0, 1.0], [1.0, 1.0]]])
    rows = solve_rows(np.array([[[2.0, 2.0]]]), gram)
    assert np.allclose(rows @ gram[0], [[2.0, 2.0]])


@pytest.mark.parametrize("call, message", [
    (lambda X: tnc.fit("network cp(I, J, K, R = 2) { index i: I, j: J, k: K, r: R "
                       "tensor A(i, r), B(j, q), C(k, r) output i, j, k }", X), "`q`"),
    (lambda X: tnc.fit(tnc.library("cp", I=5, J=4, K=4, R=2), X[0]), "2 dimensions"),
    (lambda X: tnc.fit("network sq(I) { index i: I, j: I tensor A(i), B(j) output i, j }",
                       X[:, :3, 0]), "both 4 and 3"),
    (lambda X: tnc.fit(tnc.library("tucker", R1=5, R2=2, R3=2), X), "larger than the data"),
    (lambda X: tnc.fit(tnc.library("tt", N=3, d=4, r=5), X), "larger than the data"),
    (lambda X: tnc.fit(tnc.library("cp", I=4, J=4, K=4, R=2), np.where(X > 0.5, np.nan, X)),
     "NaN"),
    (lambda X: tnc.fit(tnc.library("sym_cp", n=4, R=2), X), "gcp"),
    (lambda X: tnc.fit(tnc.library("cp", I=4, J=4, K=4, R=2), X, order=["A", "Z"]), "`Z`"),
    (lambda X: tnc.fit(tnc.library("cp", I=4, J=4, K=4, R=2), X, sweeps=3), "no option"),
    (lambda X: tnc.fit(tnc.library("cp", I=4, J=4, K=4, R=2), X, missing="x"), "missing"),
    (lambda X: tnc.fit(tnc.library("cp", I=4, J=4, K=4, R=2), X,
                       init={"A": np.ones(3)}), "shape"),
])
def test_bad_input_gives_a_clear_error(call, message):
    X = np.random.default_rng(0).random((4, 4, 4))
    with pytest.raises(tnc.TncError, match=message):
        call(X)


def test_options_dataclass_is_registered():
    assert tnc.fit_options("als") is ALSOptions


def test_long_trains_and_trees_plan_quickly_and_fit_exactly():
    import time
    for name, sizes in [("tt", dict(N=12, d=2, r=2)), ("ht", dict(N=8, d=2, r=2))]:
        net, X = planted(name, seed=11, **sizes)
        start = time.perf_counter()
        Model(net, list(net.params), "auto")
        assert time.perf_counter() - start < 5.0
        result = tnc.fit(net, X, method="als", restarts=3, max_iter=300, **QUIET)
        assert result.rel_error < 1e-8


@pytest.mark.parametrize("text, weights", [
    ("network reg(I = 9, J = 4) { index i: I, j: J  data H(i, j)  tensor a(j)  output i }",
     "a"),
    ("network reg(I = 9, J = 4, K = 2) { index i: I, j: J, k: K  data H(i, j)  tensor W(j, k)"
     "  output i, k }", "W"),
])
def test_regression_on_a_data_tensor_is_least_squares(text, weights):
    """A bond whose one side is data only counts features, not a rank the data bound:
    ALS fits the regression and gives numpy's least-squares solution."""
    net = tnc.compile(text)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((9, 4))
    y = rng.standard_normal(net.output_shape)
    result = tnc.fit(net, y, method="als", inputs={"H": h}, progress=False)
    expected = np.linalg.lstsq(h, y, rcond=None)[0]
    np.testing.assert_allclose(result.tensors[weights], expected, rtol=1e-10, atol=1e-12)
    assert result.converged
    residual = np.linalg.norm(y - h @ expected) / np.linalg.norm(y)
    assert result.rel_error == pytest.approx(residual, rel=1e-8)


def test_auto_start_screens_more_and_longer_starts_on_small_masked_data():
    """init='auto': 10 starts of 100 sweeps up to SCREEN_SMALL entries (complete data
    too), 5 of 25 above on masked data; the fit goes on from the best screened start
    (never above its loss); bigger complete data and given starts are not screened."""
    from tnc.fitting import als as als_module
    from tnc.fitting import screening as screen_module
    rng = np.random.default_rng(3)
    for shape, starts, sweeps in [((9, 8, 7), 10, 100), ((45, 40, 40), 5, 25)]:
        net = tnc.library("cp", I=shape[0], J=shape[1], K=shape[2], R=3)
        X = net.contract(net.random(seed=1)) + 0.1 * rng.standard_normal(shape)
        mask = rng.random(shape) > 0.2
        assert (X.size <= screen_module.SCREEN_SMALL) == (starts == 10)
        result = tnc.fit(net, X, mask=mask, method="als", max_iter=120, seed=0, progress=False)
        assert result.info["init"] == "screened" and len(result.info["screened"]) == starts
        assert result.rel_error <= min(result.info["screened"]) + 1e-6     # rounded to 6 places
        options = als_module.ALSOptions(max_iter=120)
        problem = tnc.fitting.front.FitProblem(net, X, mask, {})
        assert screen_module.screening(problem, options) == (starts, sweeps)
    assert screen_module.screening(tnc.fitting.front.FitProblem(net, X, None, {}), options) is None
    small = tnc.fitting.front.FitProblem(tnc.library("cp", I=9, J=8, K=7, R=3),
                                         np.ones((9, 8, 7)), None, {})
    assert screen_module.screening(small, options) == (10, 100)      # complete but small
    assert screen_module.screening(problem, als_module.ALSOptions(init="svd")) is None


@pytest.mark.parametrize("path", ["dense", "streamed", "sparse-cp", "sparse-tucker"])
def test_restarts_after_an_svd_start_start_at_random(path, tmp_path):
    """restarts=3 with init='svd' fits three different starts on every ALS path (the SVD
    start, then random ones), not one SVD start three times."""
    net = (tnc.library("tucker", I=9, J=8, K=7, R1=2, R2=2, R3=2) if path == "sparse-tucker"
           else tnc.library("cp", I=9, J=8, K=7, R=2))
    x = net.contract(net.random(seed=1))
    x = x + 0.3 * np.std(x) * np.random.default_rng(2).standard_normal(x.shape)
    data, factor = x, "U1" if path == "sparse-tucker" else "A"
    if path == "streamed":
        np.save(tmp_path / "x.npy", x)
        data = np.load(tmp_path / "x.npy", mmap_mode="r")
    elif path.startswith("sparse"):
        data = tnc.SparseTensor.from_dense(np.where(np.abs(x) > np.std(x), x, 0.0))
    firsts = []
    tnc.fit(net, data, init="svd", restarts=3, max_iter=1, progress=False,
            callback=lambda state: firsts.append(state["tensors"][factor].copy()) and False)
    assert len(firsts) == 3
    assert not np.allclose(firsts[0], firsts[1]) and not np.allclose(firsts[1], firsts[2])
