"""Compiled kernels for thin products of a big dense tensor (tnc/kernels.c).

ALS on dense data spends nearly all its time in one kind of product: the data
tensor, viewed as ``X(P, S, Q)``, contracted over ``S`` with a thin matrix
``F(S, R)``::

    Y[p, r, q] = sum_s X[p, s, q] F[s, r]          # Y: (P, R, Q)

BLAS runs it far below the machine's speed when ``R`` is ~10. The C kernels
stream ``X`` once without packing it, with AVX-512 register tiles and POSIX
threads. They are compiled on first use with the system C compiler into a cache
directory (``$TNC_CACHE_DIR``, else ``~/.cache/tnc``) and loaded with ctypes. When
that cannot happen (no compiler, no AVX-512, not x86-64, or ``TNC_KERNELS=0``)
:func:`mode_product` still works, through numpy's BLAS, and :func:`available`
says False.

>>> import numpy as np
>>> X = np.arange(24.0).reshape(2, 3, 4); F = np.ones((3, 2))
>>> Y = mode_product(X, F)
>>> Y.shape, bool(np.allclose(Y, np.einsum("psq,sr->prq", X, F)))
((2, 2, 4), True)
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L")
MIN_ENTRIES = 1 << 16   # smaller products stay with BLAS: the call overhead would dominate
THREADED_ENTRIES = 1 << 19  # smaller products run on one thread: starting threads costs more

_state = {"lib": None, "tried": False, "threads": None, "enabled": True}
_lock = threading.Lock()


def available() -> bool:
    """True when the compiled kernels are loaded and this CPU can run them.

    >>> isinstance(available(), bool)
    True
    """
    return _library() is not None


def threads() -> int:
    """Threads the kernels use: :func:`set_threads`, else ``$TNC_NUM_THREADS``,
    ``$OMP_NUM_THREADS``, ``$OPENBLAS_NUM_THREADS``, else the usable cores."""
    if _state["threads"] is not None:
        return _state["threads"]
    for name in ("TNC_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(count: int | None) -> None:
    """Fix the kernels' thread count (None: back to the environment's default)."""
    if count is not None and count < 1:
        raise ValueError(f"thread count must be at least 1, got {count}")
    _state["threads"] = count


@contextmanager
def disabled():
    """Within this block every product goes through BLAS (for comparisons and tests).

    >>> with disabled():
    ...     available()
    False
    """
    before = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = before


@contextmanager
def blas_serial(*data):
    """Within this block numpy's BLAS runs on one thread, when some of ``data`` (the
    arrays a fit streams) is big enough for the kernels and they run on several
    threads.

    A fit whose heavy products run on the kernels leaves BLAS only small ones
    (Grams, solves, products of intermediates). Threaded BLAS gains little on those,
    and its idle threads spin for a while after each call, taking the cores from the
    kernels' threads: 2-thread kernel passes measured 2.0-2.5 ms with serial BLAS
    against 2.4-4.2 ms with 2-thread BLAS (200^3 tensor, rank 10). Needs the
    threadpoolctl package; without it this block does nothing.

    >>> with blas_serial(np.zeros((2, 3))):    # too small to matter: BLAS left alone
    ...     pass
    """
    active = any(isinstance(array, np.ndarray) and worth_it(array.shape, array.dtype)
                 for array in data)
    controller = _blas_controller() if active and threads() > 1 and available() else None
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def _blas_controller():
    if "controller" not in _state:
        try:
            from threadpoolctl import ThreadpoolController
            _state["controller"] = ThreadpoolController()  # ~4 ms: found once, reused
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _state["controller"] = None
    return _state["controller"]


def worth_it(big_shape: tuple, dtype) -> bool:
    """Whether a product over a big operand of this shape and dtype should use the kernels."""
    return dtype == np.float64 and int(np.prod(big_shape)) >= MIN_ENTRIES and available()


def mode_product(big, small, out=None):
    """``Y[p, r, q] = sum_s big[p, s, q] small[s, r]``: ``big (P, S, Q)``, ``small (S, R)``,
    ``Y (P, R, Q)``; compiled kernel when available, else numpy (BLAS)."""
    P, S, Q = big.shape
    R = small.shape[1]
    if small.shape[0] != S:
        raise ValueError(f"cannot contract {big.shape} with {small.shape} over {S}")
    if out is None:
        out = aligned_empty((P, R, Q), np.result_type(big, small))
    lib = _library() if big.dtype == small.dtype == out.dtype == np.float64 else None
    if lib is not None and big.flags.c_contiguous and out.flags.c_contiguous:
        factor = aligned_empty((R, S) if Q == 1 else (S, R))
        factor[...] = small.T if Q == 1 else small
        if lib.tnc_mode_product(big.ctypes.data, factor.ctypes.data, out.ctypes.data,
                                P, S, Q, R, threads() if big.size >= THREADED_ENTRIES else 1) == 0:
            return out
    return _blas_mode_product(big, small, out)


def aligned_empty(shape: tuple, dtype=np.float64, alignment: int = 64):
    """An uninitialised C-ordered array whose data starts on an ``alignment``-byte
    boundary (numpy's own start 16 bytes past one; the kernels' vector loads of the
    factor run 1.5x slower when they straddle cache lines).

    >>> aligned_empty((3, 5)).ctypes.data % 64
    0
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = np.empty(count * dtype.itemsize + alignment, dtype=np.uint8)
    skip = -buffer.ctypes.data % alignment
    return buffer[skip:skip + count * dtype.itemsize].view(dtype).reshape(shape)


def _blas_mode_product(big, small, out):
    """The same product through numpy: one GEMM when a side is trivial, else batched."""
    P, S, Q = big.shape
    if Q == 1:
        np.matmul(big[:, :, 0], small, out=out[:, :, 0])
    elif P == 1:
        np.matmul(small.T, big[0], out=out[0])
    else:
        np.matmul(small.T, big, out=out)
    return out


def _library():
    if not _state["enabled"]:
        return None
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _state["lib"] = _load()
                _state["tried"] = True
    return _state["lib"]


def _load():
    if os.environ.get("TNC_KERNELS", "1").strip().lower() in ("0", "no", "off", "false"):
        return None
    try:
        path = _compiled()
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as error:
        warnings.warn(f"tnc: compiled kernels unavailable ({error}); using BLAS", RuntimeWarning,
                      stacklevel=3)
        return None
    lib.tnc_kernels_supported.restype = ctypes.c_int
    if not lib.tnc_kernels_supported():
        return None
    ssize, pointer = ctypes.c_ssize_t, ctypes.c_void_p
    lib.tnc_mode_product.argtypes = [pointer, pointer, pointer, ssize, ssize, ssize, ssize, ctypes.c_int]
    lib.tnc_mode_product.restype = ctypes.c_int
    return lib


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$TNC_CACHE_DIR``, else ``~/.cache/tnc``, else
    (a home that cannot be written) a ``tnc-<user id>`` folder in the temp directory."""
    explicit = os.environ.get("TNC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tnc"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"tnc-{user}"


def _compiled() -> Path:
    """The shared library for this source and these flags, compiled once per machine."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = compiler.split()[0]
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler found (tried {compiler!r})")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"tnc-kernels-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lpthread"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip()[:300]}")
        os.replace(built, target)  # atomic: a concurrent process sees the whole file or none
    return target
