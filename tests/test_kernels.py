"""The compiled thin-product kernels (tnc/kernels.c) against numpy.einsum, their
BLAS fallback, and ALS fits with and without them."""
import platform
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tnc
from tnc import kernels


def cpu_has_avx512() -> bool:
    """The CPU flags the kernels need, read independently of the kernels' own check."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return {"avx512f", "avx512vl", "fma"} <= set(flags)


@pytest.fixture
def thread_count():
    yield kernels.set_threads
    kernels.set_threads(None)


def reference(big, small):
    return np.einsum("psq,sr->prq", big, small)


@settings(max_examples=60, deadline=None)
@given(P=st.integers(1, 9), S=st.integers(1, 21), Q=st.integers(1, 70), R=st.integers(1, 23),
       threads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mode_product_matches_einsum(P, S, Q, R, threads, seed):
    rng = np.random.default_rng(seed)
    big, small = rng.standard_normal((P, S, Q)), rng.standard_normal((S, R))
    kernels.set_threads(threads)
    try:
        got = kernels.mode_product(big, small)
    finally:
        kernels.set_threads(None)
    assert got.shape == (P, R, Q)
    np.testing.assert_allclose(got, reference(big, small), rtol=1e-12, atol=1e-12 * S)


@pytest.mark.parametrize("shape, rank", [((1, 200, 4000), 10), ((50, 60, 70), 7),
                                         ((3000, 97, 1), 13), ((1, 33, 1001), 1)])
def test_large_products_split_over_threads(shape, rank, thread_count):
    rng = np.random.default_rng(1)
    big, small = rng.standard_normal(shape), rng.standard_normal((shape[1], rank))
    expected = reference(big, small)
    for count in (1, 2, 5):
        thread_count(count)
        np.testing.assert_allclose(kernels.mode_product(big, small), expected, rtol=1e-12,
                                   atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_other_dtypes_go_through_blas(dtype):
    rng = np.random.default_rng(2)
    big = rng.standard_normal((4, 5, 6)).astype(dtype)
    small = rng.standard_normal((5, 3)).astype(dtype)
    got = kernels.mode_product(big, small)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, reference(big, small), rtol=1e-5)


def test_non_contiguous_operands():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((6, 40, 30)).transpose(0, 2, 1)   # (6, 30, 40), not contiguous
    small = rng.standard_normal((9, 30)).T                        # (30, 9), Fortran order
    np.testing.assert_allclose(kernels.mode_product(big, small), reference(big, small),
                               rtol=1e-12, atol=1e-12)


def test_disabled_block_uses_blas_and_agrees():
    rng = np.random.default_rng(4)
    big, small = rng.standard_normal((1, 64, 2048)), rng.standard_normal((64, 10))
    fast = kernels.mode_product(big, small)
    with kernels.disabled():
        assert not kernels.available()
        slow = kernels.mode_product(big, small)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_mismatched_operands_are_refused():
    with pytest.raises(ValueError, match="cannot contract"):
        kernels.mode_product(np.ones((2, 3, 4)), np.ones((4, 2)))


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("cc") is None,
                    reason="kernels are built for x86-64 with a C compiler")
def test_kernels_load_exactly_when_the_cpu_has_avx512():
    assert kernels.available() == cpu_has_avx512()


def test_a_broken_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    monkeypatch.setenv("TNC_CACHE_DIR", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="no C compiler found"):
        assert kernels._load() is None


def test_environment_switch_turns_kernels_off(monkeypatch):
    monkeypatch.setenv("TNC_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels._load() is None


@pytest.mark.skipif(not kernels.available(), reason="needs the compiled kernels")
def test_compiled_library_is_cached_by_source_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("TNC_CACHE_DIR", str(tmp_path))
    first = kernels._compiled()
    assert first.parent == tmp_path and first.exists()
    assert kernels._compiled() == first           # second call reuses the file
    assert not list(tmp_path.glob("tmp*"))         # no scratch left behind


def blas_threads_inside(*data) -> list:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"), kernels.blas_serial(*data):
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]


def test_blas_runs_serially_while_kernels_stream_big_data(thread_count):
    thread_count(2)
    if not kernels.available():
        pytest.skip("blas_serial only acts when the kernels run")
    big, small = np.zeros((64, 64, 64)), np.zeros((4, 5, 6))
    inside = blas_threads_inside(big)
    assert inside and set(inside) == {1}
    assert set(blas_threads_inside(small, big)) == {1}
    assert all(n == 2 for n in blas_threads_inside(small))   # small data: BLAS untouched
    thread_count(1)
    assert all(n == 2 for n in blas_threads_inside(big))     # one kernel thread: nothing to protect


CP4 = """network cp4(I = 30, J = 20, K = 12, L = 11, R = 3) {
    index i: I, j: J, k: K, l: L, r: R
    tensor A(i, r), B(j, r), C(k, r), D(l, r)
    output i, j, k, l
}"""


@pytest.mark.parametrize("make", [lambda: tnc.library("cp", I=60, J=50, K=40, R=4),
                                  lambda: tnc.library("tucker", I=50, J=45, K=40),
                                  lambda: tnc.compile(CP4)], ids=["cp3", "tucker", "cp4"])
def test_als_iterates_do_not_depend_on_the_kernels(make, monkeypatch):
    """Big enough to run on the kernels (>= 2^16 entries): the same sweeps to rounding,
    whether the fit was planned with the kernels or without them."""
    calls = []
    product = kernels.mode_product
    monkeypatch.setattr(kernels, "mode_product", lambda *a: calls.append(1) or product(*a))
    shape = tuple(make().output_shape)
    assert np.prod(shape) >= kernels.MIN_ENTRIES
    data = np.random.default_rng(5).standard_normal(shape)
    fit = lambda: tnc.fit(make(), data, method="als", init="random", seed=3,  # noqa: E731
                          max_sweeps=6, tol=0, progress=False)
    with_kernels = fit()
    assert bool(calls) == kernels.available()   # the fit ran its big products there
    calls.clear()
    with kernels.disabled():
        without = fit()
    assert not calls                             # planned without: BLAS layouts only
    np.testing.assert_allclose([h["rel_error"] for h in with_kernels.history],
                               [h["rel_error"] for h in without.history], rtol=1e-10)
