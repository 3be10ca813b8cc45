"""Compiled kernels for thin products of a big dense tensor (tnc/kernels.c).

ALS on dense data spends nearly all its time in one kind of product: the data
tensor, viewed as ``X(P, S, Q)``, contracted over ``S`` with a thin matrix
``F(S, R)``::

    Y[p, r, q] = sum_s X[p, s, q] F[s, r]          # Y: (P, R, Q)

BLAS runs it far below the machine's speed when ``R`` is ~10. The C kernels
stream ``X`` once without packing it, with AVX-512 register tiles and POSIX
threads. They are compiled on first use with the system C compiler into a cache
directory (:func:`cache_dir`: private to the user, mode 0700) and loaded with
ctypes. A library is used only when its bytes hash to the record written beside
it when it was built, and only after every kernel variant agreed with numpy on
small random inputs (once per process). When that cannot happen (no compiler, no
AVX-512, not x86-64, a failed self-test, or ``TNC_KERNELS=0``) :func:`mode_product`
still works, through numpy's BLAS, and :func:`available` says False.

>>> import numpy as np
>>> X = np.arange(24.0).reshape(2, 3, 4); F = np.ones((3, 2))
>>> Y = mode_product(X, F)
>>> Y.shape, bool(np.allclose(Y, np.einsum("psq,sr->prq", X, F)))
((2, 2, 4), True)
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import os
import shutil
import stat
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
        count = threads() if big.size >= THREADED_ENTRIES else 1
        if _run_kernel(lib, big, small, out, count) == 0:
            return out
    return _blas_mode_product(big, small, out)


def _run_kernel(lib, big, small, out, count: int) -> int:
    """One call of the compiled product on ``count`` threads (float64, ``big`` and ``out``
    C-contiguous, shapes as in :func:`mode_product`); 0 when it ran."""
    P, S, Q = big.shape
    R = small.shape[1]
    factor = aligned_empty((R, S) if Q == 1 else (S, R))
    factor[...] = small.T if Q == 1 else small
    return lib.tnc_mode_product(big.ctypes.data, factor.ctypes.data, out.ctypes.data,
                                P, S, Q, R, count)


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
    """The compiled library, checked and self-tested; None (with one warning when
    something went wrong, none when the kernels are switched off or the CPU lacks
    AVX-512) to use BLAS."""
    if os.environ.get("TNC_KERNELS", "1").strip().lower() in ("0", "no", "off", "false"):
        return None
    try:
        lib = _bind(ctypes.CDLL(str(_compiled())))
    except (OSError, subprocess.SubprocessError, AttributeError) as error:
        _warn(f"compiled kernels unavailable ({error})")
        return None
    if not lib.tnc_kernels_supported():
        return None
    failure = _self_test(lib)
    if failure is not None:
        _warn(f"compiled kernels failed their self-test against numpy ({failure})")
        return None
    return lib


def _warn(message: str) -> None:
    warnings.warn(f"tnc: {message}; using BLAS", RuntimeWarning, stacklevel=5)


def _bind(lib):
    """``lib`` with the kernels' signatures declared (AttributeError: not our library)."""
    lib.tnc_kernels_supported.restype = ctypes.c_int
    ssize, pointer = ctypes.c_ssize_t, ctypes.c_void_p
    lib.tnc_mode_product.argtypes = [pointer, pointer, pointer, ssize, ssize, ssize, ssize, ctypes.c_int]
    lib.tnc_mode_product.restype = ctypes.c_int
    return lib


# every code path of tnc_mode_product: Q > 1 split along p, Q > 1 with P == 1 split along
# q, and Q == 1; ragged vector ends (Q, S not multiples of 8); every register-tile width
SELF_TEST_SHAPES = ((3, 11, 45), (1, 11, 83), (5, 19, 1))
SELF_TEST_RANKS = (1, 2, 3, 4, 5, 6, 7, 13)


def _self_test(lib) -> str | None:
    """None when every kernel variant, on one thread and on two, matches
    ``numpy.einsum`` on small random inputs; else what went wrong."""
    rng = np.random.default_rng(0)
    for shape in SELF_TEST_SHAPES:
        for rank in SELF_TEST_RANKS:
            big, small = rng.standard_normal(shape), rng.standard_normal((shape[1], rank))
            expected = np.einsum("psq,sr->prq", big, small)
            for count in (1, 2):
                out = np.full(expected.shape, np.nan)
                case = f"X {shape}, rank {rank}, {count} thread(s)"
                try:
                    status = _run_kernel(lib, big, small, out, count)
                except Exception as error:  # noqa: BLE001 - any failure means: do not use it
                    return f"{case}: {type(error).__name__}: {error}"
                if status != 0:
                    return f"{case}: returned {status}"
                if not np.allclose(out, expected, rtol=1e-10, atol=1e-10):
                    return f"{case}: wrong numbers"
    return None


def cache_dir() -> Path:
    """Where compiled kernels are kept, a directory private to this user (owned by
    them, writable by nobody else; created with mode 0700):

    ``$TNC_CACHE_DIR`` when set (an OSError when it is not private), else
    ``$XDG_CACHE_HOME/tnc`` or ``~/.cache/tnc``, else (a home that cannot be
    written, or a cache there that is not private) ``tnc-<user id>`` in the temp
    directory, else (that one taken by someone else) a fresh ``mkdtemp`` folder
    for this process, removed at exit."""
    explicit = os.environ.get("TNC_CACHE_DIR")
    if explicit:
        return _private_dir(Path(explicit))
    for candidate in (_home_cache, lambda: Path(tempfile.gettempdir()) / f"tnc-{_uid()}"):
        try:
            return _private_dir(candidate())
        except (OSError, RuntimeError):   # RuntimeError: no home directory
            continue
    return _process_dir()


def _home_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tnc"


def _uid():
    return os.getuid() if hasattr(os, "getuid") else None


def _private_dir(path: Path) -> Path:
    """``path`` resolved, created with mode 0700 when missing, tightened to 0700 when it
    is this user's and merely readable by others; an OSError when it is not a directory,
    is owned by another user, or can be written by others, or when this user cannot."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    link = path.lstat()
    if stat.S_ISLNK(link.st_mode) and not _owned(link):
        raise OSError(f"kernel cache {path} is a link owned by user {link.st_uid}, not by "
                      f"this user ({_uid()})")
    path = path.resolve()
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"kernel cache {path} is not a directory")
    if not _owned(info):
        raise OSError(f"kernel cache {path} is owned by user {info.st_uid}, not by this "
                      f"user ({_uid()})")
    if _uid() is not None and info.st_mode & 0o022:
        raise OSError(f"kernel cache {path} is writable by other users "
                      f"(mode {stat.S_IMODE(info.st_mode):o}, needs 700)")
    if _uid() is not None and info.st_mode & 0o077:
        path.chmod(0o700)
    if not os.access(path, os.W_OK | os.X_OK):
        raise OSError(f"kernel cache {path} is not writable")
    return path


def _owned(info: os.stat_result) -> bool:
    return _uid() is None or info.st_uid == _uid()


def _process_dir() -> Path:
    """A private folder of this process's own (``mkdtemp``: mode 0700, a name nobody
    can guess), removed when the process exits."""
    if "scratch" not in _state:
        _state["scratch"] = Path(tempfile.mkdtemp(prefix="tnc-kernels-"))
        atexit.register(shutil.rmtree, _state["scratch"], True)
    return _state["scratch"]


def _compiled() -> Path:
    """The shared library for this source and these flags, compiled once per machine:
    reused while its bytes hash to the record beside it, else built again (to a
    temporary name, then renamed over the old one: atomic)."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = compiler.split()[0]
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler found (tried {compiler!r})")
    build = hashlib.sha256(SOURCE.read_bytes() + " ".join((compiler, *FLAGS)).encode()).hexdigest()
    target = cache_dir() / f"tnc-kernels-{build[:16]}.so"
    if _intact(target, build):
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built, record = Path(scratch) / target.name, Path(scratch) / "record"
        result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lpthread"],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip()[:300]}")
        record.write_text(json.dumps({"build": build, "sha256": _sha256(built)}))
        os.replace(built, target)
        os.replace(record, record_path(target))
    return target


def record_path(library: Path) -> Path:
    """The record beside a cached library: the sha256 of its bytes and of what built it."""
    return library.with_suffix(".sha256")


def _intact(library: Path, build: str) -> bool:
    """Whether ``library`` is a regular file of this user's whose bytes hash to what its
    record says, and the record says it was built by ``build``."""
    try:
        info = library.lstat()
        record = json.loads(record_path(library).read_text())
        return (stat.S_ISREG(info.st_mode) and _owned(info) and isinstance(record, dict)
                and record.get("build") == build and record.get("sha256") == _sha256(library))
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
