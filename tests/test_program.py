"""The compiled-program cache: bounded, keyed by value; optimizer objects serve one search."""
import numpy as np
import opt_einsum as oe
import pytest

import tnc
from tnc.engine import program
from tnc.engine.program import optimizer_key, program_of

QUIET = dict(progress=False)


@pytest.fixture(autouse=True)
def empty_cache():
    program.clear_cache()
    yield
    program.clear_cache()


def _dense_tt(net, tensors):
    """<X, TT> contracted by numpy.einsum, independently of tnc's paths."""
    return np.einsum(net.equation, *net.operands(tensors))


def test_sixty_calls_with_three_paths_leave_three_programs():
    net = tnc.library("tt", N=4, d=2, r=3)
    tensors = net.random(seed=1)
    n = len(net.occurrences)
    lengths = range(n, 1, -1)            # tensors left before each pairwise step
    paths = [[(0, 1)] * (n - 1), [(m - 2, m - 1) for m in lengths], [(0, m - 1) for m in lengths]]
    reference = _dense_tt(net, tensors)
    for k in range(60):
        path = [tuple(step) for step in paths[k % 3]]          # a new list object each call
        if k % 2:
            assert np.allclose(net.contract(tensors, optimize=path), reference)
        else:
            net.grad(tensors, optimize=list(map(list, path)))
        assert net.plan(path).cost.path == tuple(path)
    assert program.cache_size() == 3


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(program, "CACHE_SIZE", 4)
    for r in range(1, 9):
        tnc.library("cp", I=3, J=3, K=3, R=r).cost()
    assert program.cache_size() == 4
    tnc.library("cp", I=3, J=3, K=3, R=8).cost()       # most recent: still there
    assert program.cache_size() == 4


def test_same_structure_shares_a_program_other_sizes_do_not():
    a, b = tnc.library("cp", I=3, J=4, K=5, R=2), tnc.library("cp", I=3, J=4, K=5, R=2)
    assert program_of(a) is program_of(b)
    assert program_of(a) is not program_of(tnc.library("cp", I=3, J=4, K=5, R=3))
    assert program_of(a) is not program_of(a, "greedy")


def test_optimizer_objects_are_never_cached_and_never_reused():
    net = tnc.library("tt", N=4, d=2, r=3)
    tensors = net.random(seed=0)
    opt = oe.RandomGreedy(max_repeats=8)
    assert optimizer_key(opt) is None
    first = net.contract(tensors, optimize=opt)
    second = net.contract(tensors, optimize=opt)       # reused object: opt_einsum would raise
    assert np.allclose(first, _dense_tt(net, tensors)) and np.allclose(second, first)
    assert program.cache_size() == 0


def test_random_greedy_gradients_match_finite_differences():
    net = tnc.library("tt", N=3, d=2, r=2)
    tensors = net.random(seed=2)
    upstream = np.random.default_rng(0).standard_normal(net.output_shape)
    grads = net.grad(tensors, upstream, optimize=oe.RandomGreedy(max_repeats=4))
    name, eps = "G[1]", 1e-6
    numeric = np.zeros_like(tensors[name])
    for idx in np.ndindex(numeric.shape):
        shifted = {**tensors, name: tensors[name].copy()}
        shifted[name][idx] += eps
        plus = np.sum(upstream * _dense_tt(net, shifted))
        shifted[name][idx] -= 2 * eps
        minus = np.sum(upstream * _dense_tt(net, shifted))
        numeric[idx] = (plus - minus) / (2 * eps)
    assert np.allclose(grads[name], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, sizes", [("cp", dict(I=6, J=5, K=4, R=2)),
                                         ("tucker", dict(I=6, J=5, K=4, R1=2, R2=2, R3=2))])
def test_random_greedy_works_for_als(name, sizes):
    net = tnc.library(name, **sizes)
    X = net.contract(net.random(seed=3))
    result = tnc.fit(net, X, method="als", optimize=oe.RandomGreedy(max_repeats=4), seed=0,
                     **QUIET)
    assert np.linalg.norm(result.reconstruct() - X) / np.linalg.norm(X) < 1e-6


def test_an_optimizer_that_cannot_be_copied_is_named():
    class Stubborn(oe.paths.PathOptimizer):
        def __deepcopy__(self, memo):
            raise TypeError("holds a lock")

        def __call__(self, inputs, output, size_dict, memory_limit=None):
            return [(0, 1)] * (len(inputs) - 1)

    net = tnc.library("cp", I=3, J=3, K=3, R=2)
    with pytest.raises(tnc.TncError, match="Stubborn cannot be copied .*holds a lock"):
        net.cost(Stubborn())


def test_a_program_planned_with_the_kernels_is_not_reused_without_them(monkeypatch):
    """Layouts are planned for the kernel or for BLAS: under kernels.disabled() the
    gradients are planned afresh (no kernel call), and agree with the kernel plan's."""
    from tnc.engine import kernels
    calls = []
    product = kernels.mode_product
    monkeypatch.setattr(kernels, "mode_product", lambda *a: calls.append(1) or product(*a))
    net = tnc.library("cp", I=64, J=64, K=32, R=3)             # X: 2^17 entries
    tensors = net.random(seed=2)
    X = np.random.default_rng(2).standard_normal((64, 64, 32))      # d<X, [[A, B, C]]>
    with_kernels = net.grad(tensors, upstream=X)
    assert bool(calls) == kernels.available()
    calls.clear()
    with kernels.disabled():
        without = net.grad(tensors, upstream=X)
        assert program.kernel_key() == "off"
    assert not calls
    assert program.cache_size() == 1            # one program, its plans per kernel state
    for name in with_kernels:
        np.testing.assert_allclose(with_kernels[name], without[name], rtol=1e-10)
    reference = np.einsum("ijk,ir,kr->jr", X, tensors["A"], tensors["C"])
    np.testing.assert_allclose(without["B"], reference, rtol=1e-10)
