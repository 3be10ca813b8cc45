"""ALS on sparse data for networks other than CP (tnc/fitting/sparse_network.py): the
products against numpy.einsum on the dense tensor, whole fits against the dense ALS."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc.engine.sparse import SparseTensor
from tnc.fitting.sparse_network import SparseProducts

NETWORKS = {
    "tucker": lambda: tnc.library("tucker", I=7, J=6, K=5, R1=2, R2=3, R3=2),
    "tt": lambda: tnc.library("tt", N=4, d=4, r=3),
    "ring": lambda: tnc.library("ring", N=3, d=4, r=2),
    "ht": lambda: tnc.library("ht", N=4, d=3, r=2),
}

# an output leg on two tensors (i), a bond on three (s), a tensor without output legs (C)
# and a data tensor (W): the cases the generic products must get right beyond the library
ODD = """network odd(I=4, J=3, K=5, R=2, S=3) {
    index i: I, j: J, k: K, r: R, s: S
    tensor A(i, r), B(j, i, s), C(r, s), D(s, k)
    data W(k, r)
    output i, j, k
}"""


def masked(network, seed, density=0.35, noise=0.05):
    """A low-rank tensor of ``network`` with most entries zeroed, plus sparse noise."""
    rng = np.random.default_rng(seed)
    full = network.contract(network.random(seed=seed))
    keep = rng.random(full.shape) < density
    return full * keep + noise * rng.standard_normal(full.shape) * (rng.random(full.shape) < 0.1)


def occurrence_arrays(network, tensors):
    return {k: tensors[occ.name] for k, occ in enumerate(network.occurrences)}


@pytest.mark.parametrize("name", [*NETWORKS, "odd"])
def test_rhs_and_model_at_nonzeros_match_einsum_on_the_dense_tensor(name):
    net = tnc.compile(ODD) if name == "odd" else NETWORKS[name]()
    rng = np.random.default_rng(4)
    inputs = {n: rng.standard_normal(shape) for n, shape in net.data.items()}
    tensors = {**net.random(seed=5), **inputs}
    dense = rng.standard_normal(net.output_shape) * (rng.random(net.output_shape) < 0.4)
    x = SparseTensor.from_dense(dense)
    products = SparseProducts(net, x)
    arrays = occurrence_arrays(net, tensors)
    model = net.contract(tensors)
    np.testing.assert_allclose(products.model_at_nonzeros(arrays), model[tuple(x.coords.T)],
                               rtol=1e-12, atol=1e-12)
    letters = {ix: chr(ord("a") + n) for n, ix in enumerate(net.spec.index_sizes)}
    word = lambda legs: "".join(letters[ix] for ix in legs)    # noqa: E731
    out = word(net.output)
    for label, occ in enumerate(net.occurrences):
        others = [k for k in arrays if k != label]
        equation = ",".join([out] + [word(net.occurrences[k].indices) for k in others])
        got, legs = products.rhs(label, arrays)
        want = np.einsum(equation + "->" + word(legs), dense, *(arrays[k] for k in others))
        assert sorted(legs) == sorted(occ.indices)
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("init", ["svd", "given"])
def test_same_fit_as_dense_als(name, init):
    net = NETWORKS[name]()
    dense = masked(net, 3)
    start = net.random(seed=9) if init == "given" else init
    kwargs = dict(method="als", init=start, max_iter=12, tol=0.0, progress=False, seed=2)
    sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    full = tnc.fit(net, dense, **kwargs)
    assert sparse.iterations == full.iterations == 12 and sparse.info["sparse"]
    for a, b in zip(sparse.history, full.history):
        assert abs(a["rel_error"] - b["rel_error"]) < 1e-8
        assert abs(a["loss"] - b["loss"]) < 1e-8 * max(1.0, abs(b["loss"]))
    np.testing.assert_allclose(sparse.reconstruct(), full.reconstruct(), atol=1e-8)
    truth = np.linalg.norm(dense - sparse.reconstruct()) / np.linalg.norm(dense)
    assert abs(sparse.rel_error - truth) < 1e-10        # over every entry, zeros too
    assert 0.01 < sparse.rel_error < 1


def test_options_ridge_nonneg_and_order_as_in_the_dense_fit():
    net = NETWORKS["tucker"]()
    dense = np.abs(masked(net, 7))
    kwargs = dict(method="als", init=net.random(seed=1), max_iter=8, tol=0.0, progress=False,
                  l2={"G": 0.2}, nonneg=["U1"], order=["U2", "G", "U1", "U3"])
    sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    full = tnc.fit(net, dense, **kwargs)
    assert (sparse.tensors["U1"] >= 0).all()
    for a, b in zip(sparse.history, full.history):
        assert abs(a["loss"] - b["loss"]) < 1e-8 * max(1.0, abs(b["loss"]))


def test_exact_low_rank_data_converge_through_the_residual_on_the_nonzeros():
    net = tnc.library("tt", N=3, d=5, r=2)
    exact = net.contract(net.random(seed=3))          # every entry nonzero: an exact fit
    result = tnc.fit(net, SparseTensor.from_dense(exact), method="als", max_iter=300,
                     progress=False, seed=0)
    assert result.converged and result.rel_error < 1e-7
    np.testing.assert_allclose(result.reconstruct(), exact, atol=1e-6 * np.abs(exact).max())


def test_data_far_bigger_than_memory_as_dense_fit_on_their_nonzeros():
    """A 4000^3 tensor (512 GB dense) with 3,000 nonzeros: no dense array is made."""
    rng = np.random.default_rng(0)
    linear = np.unique(rng.integers(0, 4000 ** 3, size=3000))
    coords = np.stack(np.unravel_index(linear, (4000,) * 3), axis=1)
    x = SparseTensor.from_coo(coords, rng.random(len(linear)), (4000,) * 3)
    net = tnc.library("tucker", I=4000, J=4000, K=4000, R1=2, R2=2, R3=2)
    result = tnc.fit(net, x, method="als", max_iter=3, init="random", progress=False, seed=1)
    losses = [h["loss"] for h in result.history]
    assert result.iterations == 3 and all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))


def test_refusals_name_the_fault():
    net = NETWORKS["tt"]()
    x = SparseTensor.from_dense(masked(net, 1))
    with pytest.raises(tnc.TncError, match="holdout"):
        tnc.fit(net, x, method="als", holdout=0.2, progress=False)
    with pytest.raises(tnc.TncError, match="extrapolate"):
        tnc.fit(net, x, method="als", extrapolate=True, progress=False)
    with pytest.raises(tnc.TncError, match="mask"):
        tnc.fit(net, x, method="als", mask=np.ones(x.shape, bool), progress=False)


def test_data_tensors_shared_output_legs_and_hyperedges_fit_as_on_dense_data():
    net = tnc.compile(ODD)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(net.data["W"])
    dense = net.contract({**net.random(seed=1), "W": w}) * (rng.random(net.output_shape) < 0.5)
    kwargs = dict(method="als", max_iter=10, tol=0.0, progress=False, seed=2, inputs={"W": w})
    sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    full = tnc.fit(net, dense, **kwargs)
    for a, b in zip(sparse.history, full.history):
        assert abs(a["loss"] - b["loss"]) < 1e-8 * max(1.0, abs(b["loss"]))
    assert 0.01 < sparse.rel_error < 1


@pytest.mark.parametrize("method,name", [("als", "cp"), ("als", "tucker"), ("gcp", "cp")])
def test_sparse_data_with_nan_or_inf_values_is_refused_by_every_sparse_method(method, name):
    """A NaN or inf among the listed values is a TncError naming the count, for every
    method that takes sparse data (it was an eigh LinAlgError from the SVD start)."""
    net = (tnc.library("cp", I=6, J=5, K=4, R=2) if name == "cp"
           else tnc.library("tucker", I=6, J=5, K=4, R1=2, R2=2, R3=2))
    dense = masked(net, 2)
    x = SparseTensor.from_dense(dense)
    values = x.values.copy()
    values[0], values[1] = np.nan, np.inf
    bad = SparseTensor.from_coo(x.coords, values, x.shape)
    with pytest.raises(tnc.TncError, match="the sparse data has 2 NaN or infinite entries"):
        tnc.fit(net, bad, method=method, progress=False)
