"""Rescaling sparse data: SparseTensor.scaled and the sparse-aware Rescale, checked
against the same data held dense."""
import numpy as np
import pytest

import tnc
from tnc.engine.sparse import SparseTensor
from tnc.fitting.rescale import Rescale, scale_exponent, unit_scale


def sparse_data(seed=0, shape=(6, 5, 4), density=0.3):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random(shape) < density, rng.standard_normal(shape), 0.0)
    return dense, SparseTensor.from_dense(dense)


def test_scaled_keeps_coordinates_and_scales_values():
    dense, x = sparse_data()
    x.linear                                                 # found before scaling
    y = x.scaled(-2.5)
    assert y is not x and y.shape == x.shape and y.coords is x.coords
    assert np.array_equal(y.to_dense(), -2.5 * dense)
    assert np.array_equal(y.linear, np.flatnonzero(dense.ravel()))
    assert np.array_equal(x.to_dense(), dense)               # the original is untouched
    fresh = SparseTensor.from_coo(x.coords, x.values, x.shape)
    fresh.__dict__.pop("linear")
    assert np.array_equal(fresh.scaled(3.0).linear, y.linear)   # found lazily when not cached


@pytest.mark.parametrize("c", [1e-200, 1e200])
def test_rescale_of_sparse_data_matches_the_dense_data(c):
    """The scale of sparse data is that of its dense form (zeros are observed entries)."""
    dense, x = sparse_data()
    net = tnc.library("cp", I=6, J=5, K=4, R=2)
    from_dense = Rescale.of([net], [c * dense], dense.size, exact=True)
    from_sparse = Rescale.of([net], [x.scaled(c)], x.size, exact=True)
    assert from_sparse.exponents == from_dense.exponents and not from_sparse.identity
    reference = 1 / (c * np.sqrt(np.mean(dense ** 2)))       # c * dense squared would not fit
    assert from_sparse.scale == pytest.approx(reference, rel=1e-13, abs=0)
    assert from_dense.scale == pytest.approx(reference, rel=1e-13, abs=0)
    assert np.allclose(from_sparse.data(x.scaled(c)).to_dense(), from_dense.data(c * dense),
                       rtol=1e-12, atol=0)
    assert unit_scale([c * dense]) == Rescale.of([net], [x.scaled(c)], x.size).scale


def test_identity_rescale_returns_the_same_sparse_tensor():
    _, x = sparse_data()
    assert Rescale().data(x) is x


def test_gcp_on_scaled_sparse_data_is_the_scaled_fit():
    """Gaussian GCP on sparse c * X (exactly rescaled by a power of two) takes the same
    steps as on X: the tensors agree to rounding."""
    net = tnc.library("cp", I=6, J=5, K=4, R=2)
    _, x = sparse_data(1)
    c = 2.0 ** 300
    options = dict(method="gcp", optimizer="lbfgsb", progress=False, max_iter=30)
    base = tnc.fit(net, x, **options)
    scaled = tnc.fit(net, x.scaled(c), **options)
    assert scaled.iterations == base.iterations
    for name, tensor in scaled.tensors.items():
        assert np.allclose(tensor / c ** (1 / 3), base.tensors[name], rtol=1e-9, atol=1e-12)


def test_scale_exponent_moved_with_its_old_import_working():
    from tnc.fitting.decompositions import scale_exponent as old
    assert old is scale_exponent
    for value in (3e-300, 0.75, 1.0, 5e250):
        e = scale_exponent(np.array([value, -value / 3]))
        assert 0.5 <= value / 2.0 ** e < 1.0
    assert scale_exponent(np.zeros(3)) == 0 and scale_exponent(np.zeros(0)) == 0
