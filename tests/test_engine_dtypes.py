"""float32, float64, complex64 and complex128 through contract, grad and value_and_grad, on
numpy and torch; the dtype rules of tnc.engine.backend.

References are independent: numpy.einsum in float64/complex128 for values, central
differences (complex: along real and imaginary directions) for gradients. Tolerances by
dtype, relative to the largest entry: 1e-10 for float64/complex128, 1e-4 for
float32/complex64 (about 1000 float32 epsilons: sums of a few hundred products)."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc.engine import backend as bk
from tnc.errors import TncError

TOLERANCE = {"float32": 1e-4, "complex64": 1e-4, "float64": 1e-10, "complex128": 1e-10}
DTYPES = list(TOLERANCE)
SIZES = {"ring": dict(N=3, d=3, r=3), "peps": dict(Lx=2, Ly=2, D=2),
         "sym_cp": dict(n=3, R=2), "tucker": dict(I=3, J=4, K=2, R1=2, R2=3, R3=2)}


def random_tensors(net, dtype, seed=0, include_data=False):
    rng = np.random.default_rng(seed)
    shapes = {**net.params, **(net.data if include_data else {})}

    def draw(shape):
        x = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            x = x + 1j * rng.standard_normal(shape)
        return np.asarray(x / 2).astype(dtype)
    return {n: draw(s) for n, s in shapes.items()}


def exact(net, tensors):
    """numpy.einsum in complex128 (or float64): the reference value."""
    wide = {n: np.asarray(a).astype(np.complex128 if np.iscomplexobj(a) else np.float64)
            for n, a in tensors.items()}
    return np.einsum(net.equation, *[wide[o.name] for o in net.occurrences])


def close(got, expected, rtol, what=""):
    got = bk.to_numpy(got)
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale, err_msg=what)


def holomorphic_fd(net, tensors, name, upstream, eps=1e-6):
    """d/dz of sum(upstream * contract) entry by entry, by central differences along the
    real axis (equal to the holomorphic derivative for a holomorphic map)."""
    wide = {n: np.asarray(a, np.complex128) for n, a in tensors.items()}
    result = np.zeros(wide[name].shape, np.complex128)
    for idx in np.ndindex(result.shape):
        values = []
        for sign in (1, -1):
            shifted = {n: a.copy() for n, a in wide.items()}
            shifted[name][idx] += sign * eps
            values.append(np.sum(upstream * exact(net, shifted)))
        result[idx] = (values[0] - values[1]) / (2 * eps)
    return result


def libraries():
    yield "numpy", (lambda a: a)
    torch = pytest.importorskip("torch")
    yield "torch", (lambda a: torch.as_tensor(np.asarray(a)))


# -- contract and grad in every dtype ----------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(SIZES))
def test_contract_and_grad_keep_the_dtype_and_match_references(name, dtype):
    net = tnc.library(name, **SIZES[name])
    tensors = random_tensors(net, dtype, include_data=True)
    upstream = np.random.default_rng(1).standard_normal(net.output_shape).astype(dtype)
    expected_value = exact(net, tensors)
    expected_grads = {n: holomorphic_fd(net, tensors, n, upstream.astype(np.complex128))
                      for n in net.params}
    for library, convert in libraries():
        arrays = {n: convert(a) for n, a in tensors.items()}
        value = net.contract(arrays)
        grads = net.grad(arrays, upstream=convert(upstream))
        for out in (value, *grads.values()):
            assert bk.dtype_name(out) == dtype, (library, bk.dtype_name(out))
            assert bk.backend_name(out) == library
        close(value, expected_value, TOLERANCE[dtype], f"{library} {name} {dtype}")
        for n in net.params:
            close(grads[n], expected_grads[n], max(TOLERANCE[dtype], 1e-6),
                  f"{library} {name} {dtype}: gradient of {n}")


@pytest.mark.parametrize("first, second", [("float32", "float64"), ("float32", "complex64"),
                                           ("float32", "complex128"), ("float64", "complex64")])
def test_mixed_dtypes_promote_by_numpys_rules(first, second):
    net = tnc.library("tucker", **SIZES["tucker"])
    tensors = random_tensors(net, first, include_data=True)
    core = next(iter(net.params))
    tensors[core] = random_tensors(net, second, seed=3)[core]
    promoted = np.result_type(np.dtype(first), np.dtype(second)).name
    expected = exact(net, tensors)
    for library, convert in libraries():
        arrays = {n: convert(a) for n, a in tensors.items()}
        value = net.contract(arrays)
        grads = net.grad(arrays)
        assert bk.dtype_name(value) == promoted, library
        assert {bk.dtype_name(g) for g in grads.values()} == {promoted}, library
        close(value, expected, TOLERANCE[promoted], library)


# -- complex least squares: the descent direction --------------------------------------------------
def test_complex_gaussian_value_and_grad_match_finite_differences_on_real_and_imag_parts():
    """For L = sum |contract(T) - X|^2, value_and_grad returns dL/dRe T + i dL/dIm T."""
    net = tnc.library("ring", **SIZES["ring"])
    tensors = random_tensors(net, "complex128", seed=2)
    rng = np.random.default_rng(5)
    target = rng.standard_normal(net.output_shape) + 1j * rng.standard_normal(net.output_shape)

    def loss(ts):
        return float(np.sum(np.abs(exact(net, ts) - target) ** 2))
    for library, convert in libraries():
        value, grads = net.value_and_grad({n: convert(a) for n, a in tensors.items()},
                                          "gaussian", convert(target))
        assert value == pytest.approx(loss(tensors), rel=1e-12)
        eps = 1e-6
        for n in net.params:
            numeric = np.zeros(tensors[n].shape, np.complex128)
            for idx in np.ndindex(numeric.shape):
                for unit in (1, 1j):
                    shifted = [{k: a.copy() for k, a in tensors.items()} for _ in (0, 1)]
                    shifted[0][n][idx] += unit * eps
                    shifted[1][n][idx] -= unit * eps
                    numeric[idx] += unit * (loss(shifted[0]) - loss(shifted[1])) / (2 * eps)
            close(grads[n], numeric, 1e-6, f"{library}: {n}")


def test_complex_gaussian_descent_reduces_the_loss():
    net = tnc.library("ring", **SIZES["ring"])
    tensors = random_tensors(net, "complex128", seed=2)
    target = exact(net, random_tensors(net, "complex128", seed=9))
    before, grads = net.value_and_grad(tensors, "gaussian", target)
    step = {n: tensors[n] - 1e-3 * grads[n] for n in tensors}
    after, _ = net.value_and_grad(step, "gaussian", target)
    assert after < before


def test_gaussian_loss_on_complex_data_is_the_squared_modulus():
    from tnc.fitting.losses import get_loss
    m, x = np.array([1 + 2j, 3j]), np.array([0j, 1 + 1j])
    value = get_loss("gaussian").value(m, x)
    assert value.dtype == np.float64 and value.tolist() == [5.0, 5.0]
    with pytest.raises(TncError, match="loss 'poisson'.*complex data of dtype complex128"):
        get_loss("poisson").check_data(x)


# -- memory: the real itemsize -------------------------------------------------------------------
def test_memory_check_counts_the_dtypes_itemsize(monkeypatch):
    from tnc.engine import slicing
    calls = []
    original = slicing.contract_sliced
    monkeypatch.setattr(slicing, "contract_sliced", lambda *a: calls.append(a) or original(*a))
    net = tnc.library("tt", N=4, d=3, r=8)
    assert net.cost(dtype=np.complex128).peak_bytes == 2 * net.cost().peak_bytes
    assert net.cost(dtype=np.float32).peak_bytes * 2 == net.cost().peak_bytes
    limit = net.cost().peak_bytes              # float64 fits exactly, complex128 does not
    real = net.random(seed=0)
    complex_ = {n: a.astype(np.complex128) for n, a in real.items()}
    mixed = {**real, "G[2]": complex_["G[2]"]}  # one complex operand: the promoted itemsize
    net.contract(real, memory_limit=limit)
    assert not calls
    for tensors in (complex_, mixed):
        value = net.contract(tensors, memory_limit=limit)
        assert calls and value.dtype == np.complex128
        close(value, exact(net, tensors), 1e-10)
        calls.clear()


def traced_peak(call) -> int:
    import tracemalloc
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_peak_counts_the_copies_of_operands():
    """X(i, j, k) contracted with M(i, k) needs X transposed (a copy as big as X): the
    cost counts it, and the measured peak (tracemalloc sees numpy's allocations) stays
    within it; under a limit below it the contraction slices and keeps the limit."""
    from tnc.engine.grad import grad_plan
    from tnc.engine.program import program_of
    net = tnc.compile("network c(I = 60, J = 50, K = 70) { index i: I, j: J, k: K  "
                      "data X(i, j, k)  tensor M(i, k)  output j }")
    tensors = net.random(seed=0, include_data=True)
    x_bytes = tensors["X"].nbytes
    slack = 16 * 1024                           # Python objects, the kernel's aligned factor
    cost = net.cost()
    assert program_of(net).plan.cost.peak_bytes < x_bytes <= cost.peak_bytes
    expected = exact(net, tensors)
    net.contract(tensors, memory_limit=None), net.grad(tensors, memory_limit=None)  # plans
    assert traced_peak(lambda: net.contract(tensors, memory_limit=None)) <= cost.peak_bytes + slack
    limit = cost.peak_bytes // 3
    sliced = net.cost(memory_limit=limit)
    net.contract(tensors, memory_limit=limit)                                 # plans
    assert sliced.slices > 1 and sliced.peak_bytes <= limit
    assert traced_peak(lambda: close(net.contract(tensors, memory_limit=limit), expected,
                                     1e-10)) <= limit + slack
    gcost = grad_plan(net).cost
    assert gcost.peak_bytes >= x_bytes
    assert traced_peak(lambda: net.grad(tensors, memory_limit=None)) <= gcost.peak_bytes + slack


# -- the dtype rules ------------------------------------------------------------------------------
def test_fit_dtype_and_param_dtype_rules():
    assert bk.fit_dtype(np.arange(3), "data", "als") == np.float64
    assert bk.fit_dtype(np.ones(2, bool), "data", "als") == np.float64
    for name in DTYPES:
        assert bk.fit_dtype(np.ones(2, name), "data", "als") == np.dtype(name)
    with pytest.raises(TncError, match="gcp cannot compute data of dtype float16"):
        bk.fit_dtype(np.ones(2, np.float16), "data", "gcp")
    with pytest.raises(TncError, match="longdouble|float128"):
        bk.fit_dtype(np.ones(2, np.longdouble), "data", "als")
    with pytest.raises(TncError, match="tensor `A` of gcp has integer dtype int32"):
        bk.check_param_dtype(np.ones(2, np.int32), "A", "gcp")
    assert bk.check_param_dtype(np.ones(2, np.complex64), "A", "gcp") == np.complex64


def test_result_dtype_is_numpys_promotion():
    cases = [(np.float32, np.float64), (np.float32, np.complex64), (np.int64, np.float32),
             (np.complex64, np.float64), (np.bool_, np.float32)]
    for a, b in cases:
        assert bk.result_dtype(np.ones(1, a), np.ones(1, b)) == np.result_type(a, b)
    assert bk.result_dtype(np.ones(1, np.float32), 2.0) == np.float32     # weak scalar
    assert bk.result_dtype(np.ones(1, np.float32), 1j) == np.complex64


def test_torch_dtypes_translate():
    torch = pytest.importorskip("torch")
    assert bk.result_dtype(torch.ones(1), torch.ones(1, dtype=torch.complex128)) == np.complex128
    assert bk.fit_dtype(torch.ones(1, dtype=torch.int16), "data", "als") == np.float64
    with pytest.raises(TncError, match="als cannot compute data of dtype bfloat16"):
        bk.fit_dtype(torch.ones(1, dtype=torch.bfloat16), "data", "als")
    assert bk.astype(torch.ones(1), np.complex64).dtype == torch.complex64
