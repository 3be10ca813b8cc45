"""CP-ALS on sparse data (tnc/fitting/sparse_als.py) and FROSTT .tns files (tnc/engine/tns.py),
checked against the dense ALS, numpy.einsum and files written here."""
from __future__ import annotations

import io

import numpy as np
import pytest

import tnc
from tnc.cli import main
from tnc.engine.sparse import SparseTensor
from tnc.engine.tns import read_tns, write_tns
from tnc.fitting import sparse_als
from tnc.fitting.sparse_als import cp_layout, mttkrp


def sparse_data(shape, density, seed, noise=0.0):
    """A rank-2 tensor with most entries zeroed (not low rank any more), plus noise."""
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, 2)) for n in shape]
    letters = "ijkl"[:len(shape)]
    dense = np.einsum(",".join(f"{c}r" for c in letters) + "->" + letters, *factors)
    dense = dense * (rng.random(shape) < density) + noise * rng.standard_normal(shape) * (
        rng.random(shape) < density / 2)
    return dense


# -- the products ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 4, 3), (3, 4, 2, 3)])
@pytest.mark.parametrize("numpy_only", [False, True])
def test_mttkrp_matches_einsum(shape, numpy_only, monkeypatch):
    if numpy_only:
        monkeypatch.setattr(sparse_als, "_library", lambda: None)
    rng = np.random.default_rng(1)
    dense = sparse_data(shape, 0.4, 2)
    factors = [rng.random((n, 3)) for n in shape]
    letters = "ijkl"[:len(shape)]
    for mode in range(len(shape)):
        others = [f"{c}r" for m, c in enumerate(letters) if m != mode]
        want = np.einsum(letters + "," + ",".join(others) + f"->{letters[mode]}r", dense,
                         *[f for m, f in enumerate(factors) if m != mode])
        got = mttkrp(SparseTensor.from_dense(dense), factors, mode)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 3, 10, 70])
def test_fibers_product_matches_einsum(rank):
    """The mode-grouped product (sparse_kernels.c's fibers), on unsorted coordinates with
    empty slices and rows holding fewer than four nonzeros, every mode; a rank past
    FIBER_RANK goes to the unsorted loop."""
    if sparse_als._library() is None:
        pytest.skip("no compiled sparse kernels here")
    rng = np.random.default_rng(4)
    shape = (9, 7, 6)
    dense = sparse_data(shape, 0.3, 5)
    dense[3] = 0.0                                     # an empty slice along each mode
    dense[:, 2] = 0.0
    dense[:, :, 4] = 0.0
    x = SparseTensor.from_dense(dense)
    order = rng.permutation(x.nnz)
    x = SparseTensor.from_coo(x.coords[order], x.values[order], shape)
    fibers = sparse_als.Fibers.of(x, memory_limit=None)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    for mode, want in enumerate(["ijk,jr,kr->ir", "ijk,ir,kr->jr", "ijk,ir,jr->kr"]):
        others = [f for m, f in enumerate(factors) if m != mode]
        np.testing.assert_allclose(fibers.mttkrp(factors, mode),
                                   np.einsum(want, dense, *others), rtol=1e-12, atol=1e-12)


def test_fibers_stay_within_the_memory_limit():
    x = SparseTensor.from_dense(sparse_data((6, 5, 4), 0.5, 1))
    assert sparse_als.Fibers.of(x, memory_limit=48 * x.nnz * 2 - 1) is None
    assert sparse_als.Fibers.of(SparseTensor.from_dense(np.ones((2, 2))), None) is None
    if sparse_als._library() is not None:
        assert sparse_als.Fibers.of(x, memory_limit=48 * x.nnz * 2) is not None


def test_cp_layout_reads_transposed_factors_and_refuses_others():
    net = tnc.compile("network t(I=3, J=4, R=2) { index i: I, j: J, r: R\n"
                      " tensor A(r, i), B(j, r)\n output i, j }")
    assert cp_layout(net) == {"A": (0, True), "B": (1, False)}
    assert cp_layout(tnc.library("tt", N=3, d=3, r=2)) is None


# -- the fit against the dense ALS -----------------------------------------------------------
@pytest.mark.parametrize("init", ["given", "svd", "random"])
def test_same_fit_as_dense_als(init):
    net = tnc.library("cp", I=7, J=6, K=5, R=3)
    dense = sparse_data((7, 6, 5), 0.35, 3, noise=0.1)
    start = net.random(seed=9) if init == "given" else init
    kwargs = dict(method="als", init=start, max_iter=15, tol=0.0, progress=False, seed=2)
    sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    full = tnc.fit(net, dense, **kwargs)
    assert sparse.iterations == full.iterations == 15
    for a, b in zip(sparse.history, full.history):
        assert abs(a["rel_error"] - b["rel_error"]) < 1e-8
        assert list(a)[:4] == ["iteration", "loss", "rel_error", "time"]
    np.testing.assert_allclose(sparse.reconstruct(), full.reconstruct(), atol=1e-8)
    truth = np.linalg.norm(dense - sparse.reconstruct()) / np.linalg.norm(dense)
    assert abs(sparse.rel_error - truth) < 1e-10       # error over every entry, zeros too
    assert sparse.info["sparse"] and 0.05 < sparse.rel_error < 1


def test_options_ridge_nonneg_order_and_transposed_factor():
    net = tnc.compile("network t(I=6, J=5, K=4, R=2) { index i: I, j: J, k: K, r: R\n"
                      " tensor A(i, r), B(r, j), C(k, r)\n output i, j, k }")
    dense = np.abs(sparse_data((6, 5, 4), 0.5, 4))
    kwargs = dict(method="als", init=net.random(seed=1), max_iter=8, tol=0.0, progress=False,
                  l2={"A": 0.3}, nonneg=["C"], order=["C", "A", "B"])
    sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    full = tnc.fit(net, dense, **kwargs)
    assert sparse.tensors["B"].shape == (2, 5) and (sparse.tensors["C"] >= 0).all()
    for a, b in zip(sparse.history, full.history):
        assert abs(a["rel_error"] - b["rel_error"]) < 1e-8
        assert abs(a["loss"] - b["loss"]) < 1e-8 * max(1.0, abs(b["loss"]))


def test_exact_low_rank_converges_and_callback_stops():
    net = tnc.library("cp", I=8, J=7, K=6, R=2)
    x = SparseTensor.from_dense(net.contract(net.random(seed=5)))
    result = tnc.fit(net, x, method="als", max_iter=500, progress=False, init="svd")
    assert result.converged and result.rel_error < 1e-6
    seen = []
    stopped = tnc.fit(net, x, method="als", max_iter=50, progress=False, init="random",
                      callback=lambda state: seen.append(state["iteration"]) or len(seen) == 3)
    assert stopped.iterations == 3 and not stopped.converged and seen == [1, 2, 3]


def test_refusals_name_the_fault():
    x = SparseTensor.from_dense(sparse_data((4, 3, 2), 0.5, 6))
    tucker = tnc.library("tucker", I=4, J=3, K=2, R1=2, R2=2, R3=2)
    with pytest.raises(tnc.TncError, match="needs a CP network"):   # the CP path itself
        sparse_als.run_sparse_cp(tnc.fitting.front.FitProblem(tucker, x, None, {}),
                                 tnc.fitting.als.ALSOptions())
    cp = tnc.library("cp", I=4, J=3, K=2, R=2)
    with pytest.raises(tnc.TncError, match="holdout"):
        tnc.fit(cp, x, method="als", holdout=0.2, progress=False)
    with pytest.raises(tnc.TncError, match="init"):
        tnc.fit(cp, x, method="als", init="bogus", progress=False)


# -- .tns files ------------------------------------------------------------------------------
def test_tns_round_trip_on_a_generated_file(tmp_path):
    dense = sparse_data((5, 4, 6), 0.3, 7)
    x = SparseTensor.from_dense(dense)
    path = tmp_path / "x.tns"
    write_tns(path, x)
    lines = path.read_text().splitlines()
    assert len(lines) == x.nnz
    first = lines[0].split()
    assert [int(c) for c in first[:3]] == [int(c) + 1 for c in x.coords[0]]
    back = read_tns(path, shape=dense.shape)
    np.testing.assert_array_equal(back.to_dense(), dense)   # repr: values read back exactly


def test_tns_reader_comments_shape_and_bad_lines():
    x = read_tns(io.StringIO("# FROSTT\n\n2 1 4.0\n1 3 -2.5   # note\n"))
    assert x.shape == (2, 3) and x.lookup(np.array([[1, 0], [0, 2]])).tolist() == [4.0, -2.5]
    with pytest.raises(tnc.TncError, match="line 3: 3 fields, but line 1 of the data has 4"):
        read_tns(io.StringIO("1 1 1 1.0\n2 2 2 2.0\n1 2 3\n"))
    with pytest.raises(tnc.TncError, match="line 2: not integer coordinates"):
        read_tns(io.StringIO("1 1 1.0\n1 x 2.0\n"))
    with pytest.raises(tnc.TncError, match="line 1: coordinates are 1-based"):
        read_tns(io.StringIO("0 1 1.0\n"))
    with pytest.raises(tnc.TncError, match="cannot read"):
        read_tns("/nonexistent/x.tns")


def test_cli_fits_a_tns_file(tmp_path, capsys):
    net = tnc.library("cp", I=6, J=5, K=4, R=2)
    dense = net.contract(net.random(seed=3))
    write_tns(tmp_path / "x.tns", SparseTensor.from_dense(dense))
    out = tmp_path / "fit.npz"
    code = main(["fit", "cp", str(tmp_path / "x.tns"), "--size", "R=2", "--option",
                 "max_iter=300", "--option", "init='svd'", "-o", str(out), "-q"])
    text, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in text + err and out.exists()
    result = tnc.load(str(out))
    assert np.linalg.norm(result.reconstruct() - dense) / np.linalg.norm(dense) < 1e-6
