"""HOSVD, st-HOSVD, HOOI, TT-SVD and TT rounding; results usable as ALS starts; the CLI."""
import numpy as np
import pytest

import tnc
from tnc.cli import main
from tnc.fitting.decompositions import decompose, hooi, st_hosvd, tt_round, tt_svd


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def tucker_tensor(shape=(9, 8, 7), ranks=(3, 2, 4), seed=0):
    rng = np.random.default_rng(seed)
    core = rng.standard_normal(ranks)
    return np.einsum("abc,ia,jb,kc->ijk", core,
                     *(rng.standard_normal((n, r)) for n, r in zip(shape, ranks)))


def tt_tensor(dims=(3, 4, 3, 5), ranks=(2, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    bonds = (1, *ranks, 1)
    cores = [rng.standard_normal((bonds[k], d, bonds[k + 1])) for k, d in enumerate(dims)]
    return full(cores)


def full(cores):
    result = cores[0]
    for core in cores[1:]:
        result = np.tensordot(result, core, axes=([-1], [0]))
    return result.reshape(result.shape[1:-1])


@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_tucker_methods_recover_exact_tucker_tensors(method):
    X = tucker_tensor()
    result = decompose(X, "tucker", ranks=(3, 2, 4), method=method)
    assert result.rel_error < 1e-12 and rel(result.reconstruct(), X) < 1e-12
    assert result.tensors["G"].shape == (3, 2, 4)
    assert all(np.allclose(U.T @ U, np.eye(U.shape[1])) for k, U in result.tensors.items()
               if k != "G")


def test_tucker_rel_error_picks_ranks_and_hooi_improves_on_sthosvd():
    X = tucker_tensor()
    assert decompose(X, "tucker", rel_error=1e-9).tensors["G"].shape == (3, 2, 4)
    noisy = X + 0.3 * np.random.default_rng(1).standard_normal(X.shape)
    st = decompose(noisy, "tucker", ranks=(3, 2, 3))
    ho = decompose(noisy, "tucker", ranks=(3, 2, 3), method="hooi")
    assert ho.rel_error <= st.rel_error + 1e-12
    assert ho.method == "hooi" and ho.history[-1]["loss"] == pytest.approx(
        np.linalg.norm(noisy - ho.reconstruct()) ** 2)


def test_hooi_matches_tensorly_tucker_within_one_percent():
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import tucker
    X = tucker_tensor() + 0.2 * np.random.default_rng(2).standard_normal((9, 8, 7))
    ours = decompose(X, "tucker", ranks=(3, 2, 3), method="hooi")
    theirs = tensorly.tucker_to_tensor(tucker(X, [3, 2, 3], n_iter_max=200, tol=1e-12))
    assert rel(ours.reconstruct(), X) <= 1.01 * rel(theirs, X)


def test_st_hosvd_and_hooi_functions():
    X = tucker_tensor()
    core, factors = st_hosvd(X, [3, 2, 4])
    core2, factors2, history = hooi(X, factors, max_sweeps=3)
    assert core.shape == core2.shape == (3, 2, 4) and len(history) <= 3


def test_tt_svd_exact_with_ranks_or_error():
    X = tt_tensor()
    by_rank = decompose(X, "tt", ranks=[2, 3, 2])
    by_error = decompose(X, "tt", rel_error=1e-10)
    for result in (by_rank, by_error):
        assert result.rel_error < 1e-12
        assert [t.shape for t in result.tensors.values()] == [(3, 2), (2, 4, 3), (3, 3, 2),
                                                              (2, 5)]


def test_tt_svd_error_budget_is_respected():
    X = np.random.default_rng(3).standard_normal((4, 5, 4, 5))
    for eps in (0.5, 0.2, 0.05):
        result = decompose(X, "tt", rel_error=eps)
        assert result.rel_error <= eps


def test_tt_svd_matches_tensorly():
    pytest.importorskip("tensorly")
    from tensorly.decomposition import tensor_train
    from tensorly.tt_tensor import tt_to_tensor
    X = np.random.default_rng(4).standard_normal((4, 4, 4, 4, 4))
    ours = full(tt_svd(X, 6))
    theirs = tt_to_tensor(tensor_train(X, 6))
    assert rel(ours, X) == pytest.approx(rel(theirs, X), rel=1e-6)


def test_tt_round_recompresses_a_sum():
    X = tt_tensor()
    cores = tt_svd(X, [2, 3, 2])
    doubled = [np.concatenate([cores[0], cores[0]], axis=2)]
    for core in cores[1:-1]:
        r0, d, r1 = core.shape
        block = np.zeros((2 * r0, d, 2 * r1))
        block[:r0, :, :r1] = block[r0:, :, r1:] = core
        doubled.append(block)
    doubled.append(np.concatenate([cores[-1], cores[-1]], axis=0))
    rounded = tt_round(doubled, rel_error=1e-10)
    assert [c.shape[2] for c in rounded[:-1]] == [2, 3, 2]
    assert rel(full(rounded), 2 * X) < 1e-10
    assert [c.shape[2] for c in tt_round(doubled, ranks=1)[:-1]] == [1, 1, 1]


def test_decomposition_starts_als_and_saves(tmp_path):
    X = tt_tensor(dims=(3, 3, 3, 3), ranks=(2, 2, 2))
    start = decompose(X + 0.01 * np.random.default_rng(0).standard_normal(X.shape), "tt",
                      ranks=2)
    net = tnc.library("tt", N=4, d=3, r=2)
    result = tnc.fit(net, X, method="als", init=start, progress=False)
    assert result.rel_error < 1e-10
    path = tmp_path / "tt.npz"
    start.save(path)
    assert np.allclose(tnc.load_result(path).reconstruct(), start.reconstruct())


@pytest.mark.parametrize("call, message", [
    (lambda X: decompose(X, "tucker", ranks=(10, 2, 2)), "larger than the data allows"),
    (lambda X: decompose(X, "tt", ranks=[2, 40]), "larger than the data allows"),
    (lambda X: decompose(X, "tt", ranks=10 ** 6), "larger than the data allows"),
    (lambda X: decompose(np.where(X > 0, np.nan, X), "tt", ranks=2), "NaN"),
    (lambda X: decompose(X, "cp", ranks=2), "tucker"),
    (lambda X: decompose(X, "tucker"), "ranks"),
    (lambda X: decompose(X, "tucker", ranks=2, method="svd"), "hooi"),
    (lambda X: decompose(X, "tucker", ranks=(2, 2)), "3 ints"),
    (lambda X: decompose(X[0, 0], "tt", ranks=2), "at least 2"),
    (lambda X: decompose(np.zeros((0, 3, 3)), "tucker", ranks=1), r"shape \(0, 3, 3\)"),
    (lambda X: decompose(np.zeros((0, 3, 3)), "tt", rel_error=0.1), "at least 1"),
    (lambda X: decompose(X, "tucker", ranks=2, method="hooi", max_sweeps=0), "max_sweeps"),
    (lambda X: decompose(X, "tucker", ranks=2, method="hooi", tol=float("nan")), "tol"),
])
def test_bad_input_gives_a_clear_error(call, message):
    X = tucker_tensor()
    with pytest.raises(tnc.TncError, match=message):
        call(X)


def test_cli_fit_and_show(tmp_path, capsys):
    X = tucker_tensor(shape=(6, 5, 4), ranks=(2, 2, 2))
    np.save(tmp_path / "x.npy", X)
    model = tmp_path / "tucker.tn"
    model.write_text("network tucker(I, J, K, R = 2) {\n index i: I, j: J, k: K, a: R, b: R, c: R\n"
                     " tensor G(a, b, c), U1(i, a), U2(j, b), U3(k, c)\n output i, j, k\n}\n")
    out = tmp_path / "fit.npz"
    code = main(["fit", str(model), str(tmp_path / "x.npy"), "--method", "als", "--size", "R=2",
                 "--option", "init='svd'", "-q", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "final relative error" in printed and out.exists()
    assert tnc.load_result(out).rel_error < 1e-10
    assert main(["show", str(out)]) == 0
    assert "als fit of network `tucker`" in capsys.readouterr().out
    assert main(["fit", str(model), str(tmp_path / "x.npy"), "--size", "R=9", "-q"]) == 2
    assert "larger than the data allows" in capsys.readouterr().err
    assert main(["fit", str(model), str(tmp_path / "missing.npy"), "-q"]) == 2


def test_tnc_exports_decompose_and_tt_round():
    X = tucker_tensor()
    assert tnc.decompose(X, "tucker", ranks=(3, 2, 4)).rel_error < 1e-12
    assert tnc.decompose is decompose and tnc.tt_round is tt_round


SCALES = [2.0 ** -660, 1e-200, 3e-150, 1e-9, 7.0, 1e160, 2.0 ** 600, 1e200]
SCALE_CASES = [("tucker", dict(ranks=(3, 2, 4), method="hosvd")),
               ("tucker", dict(rel_error=0.3)),
               ("tucker", dict(ranks=2, method="hooi", max_sweeps=40, tol=1e-12)),
               ("tt", dict(rel_error=0.3)),
               ("tt", dict(ranks=2))]


@pytest.mark.parametrize("kind, options", SCALE_CASES)
def test_decompose_is_scale_equivariant_from_1e_minus_200_to_1e200(kind, options):
    """decompose(c X) = c decompose(X): same ranks, sweeps, converged and rel_error."""
    X = tucker_tensor(shape=(7, 6, 5), ranks=(3, 3, 3)) + 0.3 * np.random.default_rng(
        4).standard_normal((7, 6, 5))
    base = decompose(X, kind, **options)
    for c in SCALES:
        scaled = decompose(c * X, kind, **options)
        assert [t.shape for t in scaled.tensors.values()] == \
            [t.shape for t in base.tensors.values()], c
        assert (scaled.iterations, scaled.converged) == (base.iterations, base.converged), c
        assert abs(scaled.rel_error - base.rel_error) < 1e-12, c
        # compare in X's units: c * model would overflow or underflow for the extreme c
        for name, tensor in scaled.tensors.items():
            last = name in ("G", f"G[{X.ndim}]")
            expected = base.tensors[name]
            got = tensor / c if last else tensor
            assert np.allclose(np.abs(got), np.abs(expected), rtol=1e-9, atol=1e-12), (c, name)


def test_hooi_reports_whether_its_stopping_rule_was_met():
    """converged is HOOI's relative core-norm test, not a constant."""
    X = np.random.default_rng(1).standard_normal((9, 8, 7))       # no Tucker structure
    one = decompose(X, "tucker", ranks=3, method="hooi", max_sweeps=1)
    assert not one.converged and one.iterations == 1
    few = decompose(X, "tucker", ranks=3, method="hooi", max_sweeps=3, tol=1e-14)
    assert not few.converged and few.iterations == 3
    done = decompose(X, "tucker", ranks=3, method="hooi", max_sweeps=500, tol=1e-8)
    norms = [X.size and np.sqrt(np.vdot(X, X) - h["loss"]) for h in done.history[-2:]]
    assert done.converged and done.iterations < 500
    assert abs(norms[1] - norms[0]) <= 1e-8 * norms[1] * (1 + 1e-6)
    exact = decompose(tucker_tensor(), "tucker", ranks=(3, 2, 4), method="hooi")
    assert exact.converged and exact.iterations <= 3


@pytest.mark.parametrize("kind, options", SCALE_CASES)
def test_all_zero_data_decomposes_exactly(kind, options):
    result = decompose(np.zeros((4, 3, 5)), kind, **options)
    assert result.converged and result.rel_error == 0.0 and result.loss == 0.0
    assert not np.any(result.reconstruct())


def test_tt_round_is_scale_equivariant():
    cores = tt_svd(tt_tensor(), ranks=(2, 3, 2))
    base = tt_round(cores, rel_error=1e-8)
    for c in (1e-200, 1e200):
        scaled = tt_round([c ** 0.25 * core for core in cores], rel_error=1e-8)
        assert [a.shape for a in scaled] == [a.shape for a in base]
        assert rel(full(scaled) / c, full(base)) < 1e-10
