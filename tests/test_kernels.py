"""The compiled thin-product kernels (tnc/engine/kernels.c) against numpy.einsum, their
BLAS fallback, and ALS fits with and without them."""
import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tnc
from tnc.engine import kernels


def cpu_flags() -> set:
    """The CPU's feature flags, read independently of the kernels' own check."""
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return set()
    return set(flags)


def cpu_has_avx512() -> bool:
    return {"avx512f", "avx512vl", "fma"} <= cpu_flags()


def expected_variants() -> tuple:
    """The variants this CPU should run, from /proc/cpuinfo (x86-64 with a C compiler)."""
    flags = cpu_flags()
    return tuple(name for name, needs in (("avx512", {"avx512f", "avx512vl", "fma"}),
                                          ("avx2", {"avx2", "fma"}), ("portable", set()))
                 if needs <= flags)


VARIANTS_HERE = kernels.supported()


def expected_auto() -> str:
    """What ``auto`` picks: AVX-512, else AVX2 (on x86-64 the portable path is slower than
    BLAS, so it is used only when forced), else portable elsewhere."""
    if platform.machine() not in ("x86_64", "AMD64", "i686"):
        return "portable"
    return next((name for name in expected_variants() if name != "portable"), "blas")


@pytest.fixture
def forced():
    """``forced(name)`` runs the products on variant ``name``; the default comes back after."""
    before = kernels.variant()
    yield kernels.use
    kernels.use(before)


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
    """Every variant this CPU runs, in float64 and float32, on the same cases."""
    rng = np.random.default_rng(seed)
    big, small = rng.standard_normal((P, S, Q)), rng.standard_normal((S, R))
    expected = reference(big, small)
    scale = reference(abs(big), abs(small))
    before = kernels.variant()
    kernels.set_threads(threads)
    try:
        for name in VARIANTS_HERE + ("blas",):
            kernels.use(name)
            got = run_kernel_directly(name, big, small, threads)
            assert got.shape == (P, R, Q)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * S)
            got32 = run_kernel_directly(name, big.astype(np.float32), small.astype(np.float32),
                                        threads)
            assert got32.dtype == np.float32
            assert np.all(abs(got32 - expected) <= 1e-5 * scale + 1e-30), name
    finally:
        kernels.set_threads(None)
        kernels.use(before)


def run_kernel_directly(name, big, small, threads):
    """The product on variant ``name`` even when it is too small for mode_product to pick
    the kernels (BLAS for ``"blas"``)."""
    out = kernels.aligned_empty((big.shape[0], small.shape[1], big.shape[2]), big.dtype)
    if name == "blas":
        return kernels.mode_product(big, small, out)
    assert kernels._run_kernel(kernels._state["lib"], name, big, small, out, threads) == 0
    return out


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("Q", [7, 41, 79, 81, 85, 119, 161, 200])
@pytest.mark.parametrize("threads", [1, 3])
def test_ragged_q_ends_past_a_full_tile_match_einsum(P, Q, threads):
    """Q not a multiple of a tile (40 or 80 wide in float64/float32 on avx512, 12/24 on
    avx2): the end is an overlapping full tile (or the copied edge when Q is under one),
    and every variant, in both dtypes, on one or more threads, gives einsum's numbers."""
    rng = np.random.default_rng(Q + 10 * P)
    big, small = rng.standard_normal((P, 37, Q)), rng.standard_normal((37, 10))
    expected, scale = reference(big, small), reference(abs(big), abs(small))
    for name in VARIANTS_HERE:
        got = run_kernel_directly(name, big, small, threads)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * 37)
        got32 = run_kernel_directly(name, big.astype(np.float32), small.astype(np.float32),
                                    threads)
        assert np.all(abs(got32 - expected) <= 1e-5 * scale + 1e-30), (name, P, Q, threads)


@pytest.mark.parametrize("shape, rank", [((1, 200, 4000), 10), ((50, 60, 70), 7),
                                         ((3000, 97, 1), 13), ((1, 33, 1001), 1)])
@pytest.mark.parametrize("name", VARIANTS_HERE)
def test_large_products_split_over_threads(shape, rank, name, thread_count, forced):
    forced(name)
    rng = np.random.default_rng(1)
    big, small = rng.standard_normal(shape), rng.standard_normal((shape[1], rank))
    expected = reference(big, small)
    for count in (1, 2, 5):
        thread_count(count)
        np.testing.assert_allclose(kernels.mode_product(big, small), expected, rtol=1e-12,
                                   atol=1e-11)
        single = kernels.mode_product(big.astype(np.float32), small.astype(np.float32))
        assert single.dtype == np.float32
        assert np.all(abs(single - expected) <= 1e-5 * reference(abs(big), abs(small)))


@pytest.mark.parametrize("dtype", [np.int64, np.complex128])
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
def test_the_variants_are_exactly_those_the_cpu_can_run():
    assert kernels.supported() == expected_variants()
    assert kernels.variant() == expected_auto()


def test_use_switches_variant_and_refuses_one_the_cpu_lacks(forced, monkeypatch):
    assert forced("blas") == "blas" and not kernels.available()
    for name in VARIANTS_HERE:
        assert forced(name) == name == kernels.variant() and kernels.available()
    with pytest.raises(tnc.TncError, match="kernel variant must be one of"):
        forced("sse9")
    monkeypatch.setattr(kernels, "supported", lambda: ("portable",))
    with pytest.raises(tnc.TncError, match=r"'avx512' cannot run here: it needs avx512f, "
                                           r"avx512vl, fma; this CPU \(.*\) has"):
        forced("avx512")
    assert kernels.variant() == VARIANTS_HERE[-1]      # unchanged by the refusal


# a fresh process with TNC_KERNELS set: the variant it picked, whether a product big
# enough for the kernels matched einsum in both dtypes, and its tnc warnings
FORCED_CHILD = """
import warnings, numpy as np
from tnc.engine import kernels
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rng = np.random.default_rng(0)
    big, small = rng.standard_normal((40, 50, 60)), rng.standard_normal((50, 7))
    expected = np.einsum("psq,sr->prq", big, small)
    right = np.allclose(kernels.mode_product(big, small), expected, rtol=1e-12, atol=1e-11)
    single = kernels.mode_product(big.astype(np.float32), small.astype(np.float32))
    right = right and np.allclose(single, expected, rtol=1e-3, atol=1e-3)
print(kernels.variant(), right, sum(str(w.message).startswith("tnc:") for w in caught))
"""


def run_forced(value: str, cache) -> list:
    env = {**os.environ, "TNC_KERNELS": value, "TNC_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", FORCED_CHILD], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@pytest.mark.skipif(not VARIANTS_HERE, reason="needs the compiled kernels")
def test_the_environment_forces_a_variant(built_cache):
    name = "avx2" if "avx2" in VARIANTS_HERE else VARIANTS_HERE[-1]   # not the default here
    assert run_forced(name, built_cache) == [name, "True", "0"]
    assert run_forced("off", built_cache) == ["blas", "True", "0"]
    assert run_forced("sse9", built_cache) == [expected_auto(), "True", "1"]


def test_a_broken_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    monkeypatch.setenv("TNC_CACHE_DIR", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="no C compiler found"):
        assert kernels._load() == (None, None)


def test_environment_switch_turns_kernels_off(monkeypatch):
    monkeypatch.setenv("TNC_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels._load() == (None, None)


@pytest.mark.skipif(not kernels.available(), reason="needs the compiled kernels")
def test_compiled_library_is_cached_by_source_hash(monkeypatch, tmp_path, copying_compiler):
    cache = tmp_path / "empty"
    monkeypatch.setenv("TNC_CACHE_DIR", str(cache))
    first = kernels._compiled()
    assert first.parent == cache and first.exists() and record_matches(first)
    assert kernels._compiled() == first           # second call reuses the file
    assert not list(cache.glob("tmp*"))            # no scratch left behind
    if copying_compiler is not None:
        assert len(copying_compiler.read_text().splitlines()) == 1   # built once


def blas_threads_inside(*data) -> list:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"), kernels.blas_serial(*data):
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]


def test_blas_runs_serially_in_small_fits_and_beside_threaded_kernels(thread_count):
    small, big = np.zeros((60, 60, 60)), np.zeros((1, 1, kernels.SERIAL_BLAS_ENTRIES))
    assert small.size < kernels.SERIAL_BLAS_ENTRIES <= big.size
    assert set(blas_threads_inside(small)) == {1}          # small fit: always serial
    with kernels.disabled():
        assert set(blas_threads_inside(small)) == {1}
        assert all(n == 2 for n in blas_threads_inside(big))   # big, BLAS does it all
    assert all(n == 2 for n in blas_threads_inside())          # nothing streamed: untouched
    thread_count(1)
    assert all(n == 2 for n in blas_threads_inside(big))   # one kernel thread: nothing to protect
    thread_count(2)
    if kernels.available():
        assert set(blas_threads_inside(big)) == {1}
        assert set(blas_threads_inside(small, big)) == {1}


@pytest.fixture
def clean_thread_environment(monkeypatch):
    """No thread variables, no fixed count, and BLAS at the usable cores (no limit)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    for name in ("OMP_NUM_THREADS", "TNC_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    kernels.set_threads(None)
    cores = kernels._cores()
    with threadpoolctl.threadpool_limits(cores):
        yield threadpoolctl, cores


def test_kernel_threads_follow_threadpoolctl_then_omp_then_tnc(clean_thread_environment,
                                                               monkeypatch):
    threadpoolctl, cores = clean_thread_environment
    assert kernels.threads() == cores
    monkeypatch.setenv("TNC_NUM_THREADS", "5")
    assert kernels.threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert kernels.threads() == 3                     # OMP before TNC
    if cores > 1:
        with threadpoolctl.threadpool_limits(1):
            assert kernels.threads() == 1             # the caller's limit before both
            with kernels.blas_serial(np.zeros((4, 5))):
                assert kernels.threads() == 1         # still the caller's, not the fit's
        with kernels.blas_serial(np.zeros((4, 5))):   # the fit's own serial BLAS ...
            assert kernels.threads() == 3             # ... does not limit the kernels
    kernels.set_threads(2)
    with threadpoolctl.threadpool_limits(1):
        assert kernels.threads() == 2                 # set_threads before everything
    kernels.set_threads(None)


def cpu_seconds_of_a_threaded_product(limit) -> float:
    """CPU time per wall second of big kernel products (on the default variant) under a
    threadpoolctl ``limit`` (None: no limit)."""
    import resource
    import time
    from contextlib import nullcontext
    threadpoolctl = pytest.importorskip("threadpoolctl")
    big, small = np.ones((1, 64, 1 << 15)), np.ones((64, 10))
    used = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731
    with threadpoolctl.threadpool_limits(limit) if limit else nullcontext():
        cpu, wall = used(), time.perf_counter()
        for _ in range(40):
            kernels.mode_product(big, small)
        return (used() - cpu) / (time.perf_counter() - wall)


@pytest.mark.skipif(not kernels.available() or kernels._cores() < 2, reason="needs threads")
def test_a_threadpoolctl_limit_of_one_keeps_the_kernels_on_one_core(clean_thread_environment):
    assert kernels.threads() > 1
    assert cpu_seconds_of_a_threaded_product(1) < 1.15  # one thread: at most one core busy


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
                          max_iter=6, tol=0, progress=False)
    with_kernels = fit()
    assert bool(calls) == kernels.available()   # the fit ran its big products there
    calls.clear()
    with kernels.disabled():
        without = fit()
    assert not calls                             # planned without: BLAS layouts only
    np.testing.assert_allclose([h["rel_error"] for h in with_kernels.history],
                               [h["rel_error"] for h in without.history], rtol=1e-10)


# -- the cache cannot hurt: damaged, foreign or wrong libraries, unsafe directories ------

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")

# a fresh process: the kernels on a product big enough for them, checked against einsum;
# prints "<available> <correct> <tnc warnings>" and then each warning
CHILD = """
import warnings, numpy as np
from tnc.engine import kernels
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    rng = np.random.default_rng(0)
    big, small = rng.standard_normal((40, 50, 60)), rng.standard_normal((50, 7))
    first = kernels.mode_product(big, small)
    again = kernels.mode_product(big, small)
    expected = np.einsum("psq,sr->prq", big, small)
    correct = np.allclose(first, expected, rtol=1e-12, atol=1e-11) and np.allclose(again, expected)
mine = [w for w in caught if str(w.message).startswith("tnc:")]
print(kernels.available(), correct, len(mine))
for w in mine:
    print(w.message)
"""


def run_child(cache) -> list[str]:
    """CHILD's output lines in a fresh interpreter with the kernel cache at ``cache``; a
    crash (SIGBUS, segfault) fails the test instead of killing pytest."""
    env = {**os.environ, "TNC_CACHE_DIR": str(cache)}
    env.pop("TNC_KERNELS", None)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"child died ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """A cache directory holding a freshly built library and its record."""
    cache = tmp_path_factory.mktemp("built") / "cache"
    assert run_child(cache)[0].split()[1:] == ["True", "0"]
    return cache


COPYING_COMPILER = """#!/bin/sh
# stands in for the C compiler: logs the call, copies the pristine library to -o's path
echo "$@" >> "$TNC_TEST_COMPILER_LOG"
while [ $# -gt 0 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
cp "$TNC_TEST_PRISTINE" "$out"
"""


@pytest.fixture
def copying_compiler(built_cache, tmp_path, monkeypatch):
    """Every rebuild in this test (here and in children) copies ``built_cache``'s library
    instead of compiling (4-6 s each): a script of the compiler's name first on PATH, so the
    build hash and the library's name stay those of the real compiler. Yields the log of
    its calls. The real compiler builds ``built_cache`` itself."""
    name = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if os.sep in name or os.name != "posix":
        yield None                                # an explicit path: real rebuilds
        return
    (library,) = built_cache.glob("tnc-kernels-*.so")
    folder, log = tmp_path / "bin", tmp_path / "compiler.log"
    folder.mkdir()
    (folder / name).write_text(COPYING_COMPILER)
    (folder / name).chmod(0o700)
    log.touch()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("TNC_TEST_PRISTINE", str(library))
    monkeypatch.setenv("TNC_TEST_COMPILER_LOG", str(log))
    yield log


@pytest.fixture
def cache_copy(built_cache, tmp_path, copying_compiler):
    """A private copy of ``built_cache`` and its library's path (rebuilds copy it)."""
    cache = tmp_path / "cache"
    shutil.copytree(built_cache, cache)
    cache.chmod(0o700)
    (library,) = cache.glob("tnc-kernels-*.so")
    return cache, library


def healthy(lines: list[str], warnings_expected: int = 0) -> bool:
    """The child used the kernels exactly when the CPU can, got the right numbers, and
    warned ``warnings_expected`` times."""
    available, correct, warned = lines[0].split()
    runs = expected_auto() != "blas"
    return (available == str(runs and not warnings_expected) and correct == "True"
            and int(warned) == warnings_expected)


def record_matches(library) -> bool:
    record = json.loads(kernels.record_path(library).read_text())
    return record["sha256"] == hashlib.sha256(library.read_bytes()).hexdigest()


@needs_compiler
@pytest.mark.parametrize("kept", [0.1, 0.5, 0.9])
def test_a_truncated_library_is_rebuilt_not_loaded(cache_copy, kept):
    cache, library = cache_copy
    whole = library.read_bytes()
    library.write_bytes(whole[:int(len(whole) * kept)])
    lines = run_child(cache)
    assert healthy(lines), lines
    assert library.stat().st_size == len(whole) and record_matches(library)


@needs_compiler
def test_a_bit_flip_or_a_missing_record_means_a_rebuild(cache_copy):
    cache, library = cache_copy
    flipped = bytearray(library.read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    library.write_bytes(bytes(flipped))
    os.environ["TNC_CACHE_DIR"], before = str(cache), os.environ.get("TNC_CACHE_DIR")
    try:
        assert kernels._compiled() == library and library.read_bytes() != bytes(flipped)
        assert record_matches(library)
        kernels.record_path(library).unlink()       # a library cached by an older tnc
        assert kernels._compiled() == library and record_matches(library)
    finally:
        os.environ.pop("TNC_CACHE_DIR")
        if before is not None:
            os.environ["TNC_CACHE_DIR"] = before


def foreign_library() -> Path:
    """Some other shared library of this machine (Python's own ctypes extension)."""
    import _ctypes
    return Path(_ctypes.__file__)


@needs_compiler
def test_a_foreign_library_in_place_is_rebuilt(cache_copy):
    cache, library = cache_copy
    shutil.copyfile(foreign_library(), library)
    lines = run_child(cache)
    assert healthy(lines), lines
    assert record_matches(library) and library.read_bytes() != foreign_library().read_bytes()


@needs_compiler
def test_a_foreign_library_with_a_matching_record_falls_back_with_one_warning(cache_copy):
    cache, library = cache_copy
    shutil.copyfile(foreign_library(), library)
    record = json.loads(kernels.record_path(library).read_text())
    record["sha256"] = hashlib.sha256(library.read_bytes()).hexdigest()
    kernels.record_path(library).write_text(json.dumps(record))
    lines = run_child(cache)
    assert healthy(lines, warnings_expected=1), lines
    assert "compiled kernels unavailable" in lines[1] and "using BLAS" in lines[1]


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """Kernels loaded afresh in this process from a cache in ``tmp_path``; the process's
    own kernels (and state) come back afterwards."""
    saved = dict(kernels._state)
    monkeypatch.setenv("TNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TNC_KERNELS", raising=False)
    kernels._state.update(lib=None, tried=False, variant=None)
    kernels._state.pop("scratch", None)
    kernels._state.pop("tested", None)
    yield tmp_path / "cache"
    kernels._state.clear()
    kernels._state.update(saved)


WRONG_KERNELS = """#include <stddef.h>
int tnc_variant_supported(int variant) { return 1; }
ptrdiff_t tnc_q_tile(int variant, int single) { return 8; }
int tnc_mode_product(int variant, int single, const double *x, const double *f, double *y,
                     ptrdiff_t P, ptrdiff_t S, ptrdiff_t Q, ptrdiff_t R, int threads) {
    if (single) return -1;
    for (ptrdiff_t i = 0; i < P * R * Q; i++) y[i] = x[i % (P * S * Q)] + f[0];
    return 0;
}
"""


def one_tnc_warning(action) -> list:
    """Run ``action`` (twice) and return the tnc warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
        action()
    return [w for w in caught if str(w.message).startswith("tnc:")]


def blas_answers_right():
    rng = np.random.default_rng(6)
    big, small = rng.standard_normal((30, 40, 70)), rng.standard_normal((40, 5))
    assert big.size >= kernels.MIN_ENTRIES and not kernels.available()
    np.testing.assert_allclose(kernels.mode_product(big, small), reference(big, small),
                               rtol=1e-12, atol=1e-11)


@needs_compiler
def test_a_library_computing_wrong_numbers_is_never_used(fresh_kernels, monkeypatch, tmp_path):
    source = tmp_path / "wrong.c"
    source.write_text(WRONG_KERNELS)
    monkeypatch.setattr(kernels, "SOURCE", source)
    caught = one_tnc_warning(blas_answers_right)
    assert len(caught) == 1 and "self-test" in str(caught[0].message)
    assert "wrong numbers" in str(caught[0].message)
    assert list(fresh_kernels.glob("tnc-kernels-*.so"))   # it was built and loaded, then refused
    net = tnc.library("cp", I=60, J=50, K=40, R=3)
    data = net.contract(net.random(seed=2))
    fitted = tnc.fit(net, data, method="als", seed=1, max_iter=30, progress=False)
    with kernels.disabled():
        reference_fit = tnc.fit(net, data, method="als", seed=1, max_iter=30, progress=False)
    assert fitted.rel_error == pytest.approx(reference_fit.rel_error, rel=1e-8, abs=1e-14)
    assert fitted.rel_error < 1e-3


@pytest.mark.skipif(not cpu_has_avx512() or shutil.which("cc") is None,
                    reason="needs kernels this CPU can run")
@pytest.mark.parametrize("failure", ["garbage", "status", "raises"])
def test_a_failing_kernel_call_fails_the_self_test(fresh_kernels, built_cache, monkeypatch,
                                                   failure):
    shutil.copytree(built_cache, fresh_kernels)        # the real library, not built again
    fresh_kernels.chmod(0o700)
    def broken(lib, name, big, small, out, count):
        if failure == "raises":
            raise ctypes.ArgumentError("bad argument")
        out[...] = np.random.default_rng(count).standard_normal(out.shape)
        return -1 if failure == "status" else 0
    monkeypatch.setattr(kernels, "_run_kernel", broken)
    caught = one_tnc_warning(blas_answers_right)
    assert len(caught) == 1 and "failed their self-test" in str(caught[0].message)


def not_mine(monkeypatch, path: Path) -> None:
    """Make ``path`` belong to another user: really (as root), else by lying about our uid."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    else:
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_cache_directory_others_can_write_is_refused(fresh_kernels, mode):
    fresh_kernels.mkdir()
    fresh_kernels.chmod(mode)
    with pytest.raises(OSError, match=r"writable by other users \(mode 7"):
        kernels.cache_dir()
    caught = one_tnc_warning(lambda: kernels.available())
    assert len(caught) == 1 and "writable by other users" in str(caught[0].message)
    assert not list(fresh_kernels.iterdir())       # nothing built or loaded there


def test_a_cache_directory_of_another_user_is_refused(fresh_kernels, monkeypatch):
    fresh_kernels.mkdir(mode=0o700)
    not_mine(monkeypatch, fresh_kernels)
    with pytest.raises(OSError, match="owned by user"):
        kernels.cache_dir()
    caught = one_tnc_warning(lambda: kernels.available())
    assert len(caught) == 1 and "owned by user" in str(caught[0].message)
    assert not list(fresh_kernels.iterdir())


def test_an_own_cache_readable_by_others_is_made_private(fresh_kernels):
    fresh_kernels.mkdir(mode=0o755)
    fresh_kernels.chmod(0o755)
    assert kernels.cache_dir() == fresh_kernels.resolve()
    assert stat.S_IMODE(fresh_kernels.stat().st_mode) == 0o700


def test_a_new_cache_directory_is_private(fresh_kernels):
    assert kernels.cache_dir() == fresh_kernels.resolve()
    assert stat.S_IMODE(fresh_kernels.stat().st_mode) == 0o700


@pytest.fixture
def home_and_temp(monkeypatch, tmp_path, fresh_kernels):
    """No ``$TNC_CACHE_DIR``; the home cache at ``tmp_path/xdg/tnc``, the temp directory
    ``tmp_path/tmp``; returns ``(home cache, temp fallback)``."""
    monkeypatch.delenv("TNC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "xdg" / "tnc", tmp_path / "tmp" / f"tnc-{os.getuid()}"


def assert_private(path: Path) -> None:
    info = path.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700


def test_the_home_cache_is_used_when_it_can_be(home_and_temp):
    home, _ = home_and_temp
    assert kernels.cache_dir() == home.resolve()
    assert_private(home)


@pytest.mark.parametrize("how", ["a file where home should be", "a read-only home"])
def test_a_read_only_home_falls_back_to_a_private_temp_directory(home_and_temp, monkeypatch,
                                                                  tmp_path, how):
    _, temp = home_and_temp
    if how == "a read-only home":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        home = tmp_path / "home"
        home.mkdir(mode=0o500)
    else:
        home = tmp_path / "home-file"
        home.write_text("")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(home))
    assert kernels.cache_dir() == temp.resolve()
    assert_private(temp)


def test_a_home_cache_others_can_write_is_skipped(home_and_temp):
    home, temp = home_and_temp
    home.mkdir(parents=True)
    home.chmod(0o777)
    assert kernels.cache_dir() == temp.resolve()
    assert_private(temp)


@pytest.mark.parametrize("plant", ["directory", "link"])
def test_a_temp_directory_planted_by_another_user_is_not_used(home_and_temp, monkeypatch,
                                                              tmp_path, plant):
    home, temp = home_and_temp
    home.parent.mkdir()
    home.write_text("")                     # the home cache cannot be made
    elsewhere = tmp_path / "planted"
    elsewhere.mkdir(mode=0o700)
    if plant == "link":
        temp.symlink_to(elsewhere)
        if os.geteuid() == 0:
            os.chown(temp, 65534, 65534, follow_symlinks=False)
            os.chown(elsewhere, 65534, 65534)
        else:
            not_mine(monkeypatch, temp)
    else:
        temp.mkdir(mode=0o700)
        not_mine(monkeypatch, temp)
    chosen = kernels.cache_dir()
    assert chosen not in (temp, temp.resolve(), elsewhere)
    assert chosen.parent == Path(tempfile.tempdir) and chosen.name.startswith("tnc-kernels-")
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o700 and not list(chosen.iterdir())
    assert kernels.cache_dir() == chosen    # one folder for the whole process


def test_small_contractions_and_gradients_run_serial_blas(monkeypatch):
    """Network.contract and Network.grad on small operands (and a small output) run BLAS
    on one thread; a big output leaves BLAS's threads alone."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import tnc.engine.grad
    seen = []
    real_grad_plan = tnc.engine.grad.grad_plan

    def spying_plan(*args, **kw):
        seen.append({p["num_threads"] for p in threadpoolctl.threadpool_info()
                     if p["user_api"] == "blas"})
        return real_grad_plan(*args, **kw)
    monkeypatch.setattr(tnc.engine.grad, "grad_plan", spying_plan)
    small = tnc.library("cp", I=20, J=20, K=20, R=3)
    tensors = small.random(seed=0)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        np.testing.assert_allclose(small.contract(tensors),
                                   np.einsum("ir,jr,kr->ijk", *(tensors[k] for k in "ABC")))
        small.grad(tensors)
        big = tnc.library("cp", I=2, J=2, K=kernels.SERIAL_BLAS_ENTRIES // 4, R=1)
        big.contract(big.random(seed=0))
    # seen: small contract, the slicing check's plan lookup (outside any BLAS limit: it only
    # plans), small grad, big contract
    assert seen[0] == seen[-2] == {1} and seen[-1] == {2}


def test_blas_serial_counts_plain_sizes():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with kernels.blas_serial(kernels.SERIAL_BLAS_ENTRIES - 1, np.zeros(3)):
            inside = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                      if p["user_api"] == "blas"}
        with kernels.disabled(), kernels.blas_serial(kernels.SERIAL_BLAS_ENTRIES, np.zeros(3)):
            big = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas"}
        after = {p["num_threads"] for p in threadpoolctl.threadpool_info()
                 if p["user_api"] == "blas"}
    assert inside == {1} and big == {2} and after == {2}


# -- the streamed products of tnc.engine.streams (GCP, TT-SVD, DMRG fitting) ----------------
from contextlib import contextmanager  # noqa: E402

from tnc.engine import streams  # noqa: E402


@contextmanager
def kernels_on_any_size(name):
    """Variant ``name`` (or BLAS) for every product, however small (MIN_ENTRIES 0)."""
    before, floor = kernels.variant(), kernels.MIN_ENTRIES
    kernels.use(name)
    kernels.MIN_ENTRIES = 0
    try:
        yield
    finally:
        kernels.MIN_ENTRIES = floor
        kernels.use(before)


def mttkrp_reference(Y, factors, n):
    letters = "abcdefgh"[:Y.ndim]
    others = [f"{letters[m]}z" for m in range(Y.ndim) if m != n]
    return np.einsum(f"{letters},{','.join(others)}->{letters[n]}z", Y,
                     *(f for m, f in enumerate(factors) if m != n))


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), R=st.integers(1, 13),
       seed=st.integers(0, 2**16))
def test_cp_gradients_and_model_match_einsum(shape, R, seed):
    """Every variant and BLAS, float64 and float32, N = 2..4 modes, every rank-tile width."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal(shape)
    factors = [rng.standard_normal((n, R)) for n in shape]
    expected = [mttkrp_reference(Y, factors, n) for n in range(len(shape))]
    scale = [mttkrp_reference(abs(Y), [abs(f) for f in factors], n) for n in range(len(shape))]
    model = np.einsum(*[x for n, f in enumerate(factors) for x in (f, [n, 9])], list(range(len(shape))))
    for name in VARIANTS_HERE + ("blas",):
        with kernels_on_any_size(name):
            for dtype, tolerance in ((np.float64, 1e-12), (np.float32, 1e-5)):
                got = streams.cp_gradients(Y.astype(dtype), [f.astype(dtype) for f in factors])
                for g, e, w in zip(got, expected, scale):
                    assert g.shape == e.shape and g.dtype == dtype, name
                    assert np.all(abs(g - e) <= tolerance * (w + 1)), name
            np.testing.assert_allclose(streams.cp_model(factors), model, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(P=st.integers(1, 12), M=st.integers(1, 5), Q=st.integers(1, 40), A=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_project_matches_numpy(P, M, Q, A, seed):
    """``basis.T @ matrix`` on every variant and BLAS."""
    rng = np.random.default_rng(seed)
    matrix, basis = rng.standard_normal((P, M * Q)), rng.standard_normal((P, A))
    for name in VARIANTS_HERE + ("blas",):
        with kernels_on_any_size(name):
            np.testing.assert_allclose(streams.project(basis, matrix), basis.T @ matrix,
                                       rtol=1e-10, atol=1e-10 * P)


def test_project_keeps_complex_data_on_numpy():
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((6, 3)) + 1j * rng.standard_normal((6, 3)))[0]
    matrix = rng.standard_normal((6, 50)) + 1j * rng.standard_normal((6, 50))
    np.testing.assert_allclose(streams.project(basis, matrix), basis.conj().T @ matrix)


CP_LIKE = {
    "cp": "network cp(I = 4, J = 5, K = 6, R = 3) {\n index i: I, j: J, k: K, r: R\n"
          " tensor A(i, r), B(j, r), C(k, r)\n output i, j, k\n}",
    "legs swapped, output reordered": "network s(I = 4, J = 5, K = 6, R = 3) {\n"
          " index i: I, j: J, k: K, r: R\n tensor A(r, i), B(j, r), C(r, k)\n output k, i, j\n}",
    "tied": "network t(n = 5, R = 2) {\n index i: n, j: n, k: n, r: R\n"
            " tensor A(i, r), A(j, r), A(k, r)\n output i, j, k\n}",
}
NOT_CP = {
    "tucker": "network u(I = 4, J = 5, R = 2) {\n index i: I, j: J, a: R, b: R\n"
              " tensor G(a, b), U(i, a), V(j, b)\n output i, j\n}",
    "two rank legs": "network v(I = 4, J = 5, R = 2) {\n index i: I, j: J, r: R, s: R\n"
                     " tensor A(i, r), B(j, s)\n output i, j\n}",
}


@pytest.mark.parametrize("text", CP_LIKE.values(), ids=CP_LIKE.keys())
def test_cp_layout_gradients_match_the_grad_engine(text):
    net = tnc.compile(text)
    layout = streams.CPLayout.of(net)
    assert layout is not None
    tensors = net.random(seed=5)
    upstream = np.random.default_rng(6).standard_normal(net.output_shape)
    np.testing.assert_allclose(layout.model(tensors), net.contract(tensors), rtol=1e-12)
    expected = net.grad(tensors, upstream=upstream)
    got = layout.gradients(tensors, upstream)
    assert got.keys() == expected.keys()
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("text", NOT_CP.values(), ids=NOT_CP.keys())
def test_other_networks_have_no_cp_layout(text):
    assert streams.CPLayout.of(tnc.compile(text)) is None


def test_gcp_objective_on_the_kernels_matches_the_grad_engine(monkeypatch):
    from tnc.fitting.gcp import DenseObjective
    from tnc.fitting.losses import get_loss
    net = tnc.library("cp", I=30, J=20, K=25, R=4)
    rng = np.random.default_rng(7)
    target = rng.poisson(2.0, net.output_shape).astype(float)
    mask = rng.random(net.output_shape) > 0.2
    tensors = {k: abs(v) + 0.1 for k, v in net.random(seed=8).items()}
    loss = get_loss("poisson")
    engine = DenseObjective(net, {}, target * mask, mask, loss, "auto")
    assert engine.cp is None                      # small data: the grad engine
    monkeypatch.setattr(streams, "CP_GRADIENT_ENTRIES", 0)
    monkeypatch.setattr(kernels, "MIN_ENTRIES", 0)
    fast = DenseObjective(net, {}, target * mask, mask, loss, "auto")
    assert (fast.cp is not None) == kernels.available()
    (value, grads), (value_fast, grads_fast) = engine(tensors), fast(tensors)
    assert value_fast == pytest.approx(value, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads_fast[name], grads[name], rtol=1e-10, atol=1e-10)


def test_tt_svd_on_the_kernels_matches_blas():
    from tnc.fitting.decompositions import tt_svd
    X = np.random.default_rng(9).standard_normal((4,) * 9)     # 2^18 entries: kernel-sized
    fast = tt_svd(X, 8)
    with kernels.disabled():
        slow = tt_svd(X, 8)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(abs(a), abs(b), rtol=1e-8, atol=1e-10)  # signs may differ


def test_products_the_kernel_runs_slowly_go_to_blas():
    """kernels.suits: a q extent narrower than the register tile (padded) and, where q
    spans several tiles, a factor F (S x R) beyond F_CACHE_BYTES go to BLAS; Q == 1
    never does."""
    if not kernels.available():
        pytest.skip("no compiled kernels here")
    name, lib = kernels.variant(), kernels._state["lib"]
    for dtype in kernels.DTYPES:
        tile = lib.tnc_q_tile(kernels.VARIANTS.index(name), kernels.DTYPES.index(dtype))
        assert tile >= 2
        for q in (2, 4, 8, 16, 50, 200):
            assert kernels.suits(name, (50, 300, q), 10, dtype) == (q >= tile)
        long_s = kernels.F_CACHE_BYTES // (10 * dtype.itemsize) + 1
        assert not kernels.suits(name, (1, long_s, 2 * tile), 10, dtype)
        assert not kernels.suits(name, (3, long_s, 2 * tile), 10, dtype)
        assert kernels.suits(name, (3, long_s, tile), 10, dtype)
        assert kernels.suits(name, (3, long_s - 1, 2 * tile), 10, dtype)
        assert kernels.suits(name, (40000, long_s, 1), 10, dtype)
    big, small = np.random.default_rng(2).standard_normal((20, 300, 4)), np.ones((300, 3))
    np.testing.assert_allclose(kernels.mode_product(big, small), reference(big, small),
                               rtol=1e-12, atol=1e-11)
