"""Compiled kernels for thin products of a big dense tensor (tnc/engine/kernels.c).

ALS on dense data spends nearly all its time in one kind of product: the data
tensor, viewed as ``X(P, S, Q)``, contracted over ``S`` with a thin matrix
``F(S, R)``::

    Y[p, r, q] = sum_s X[p, s, q] F[s, r]          # Y: (P, R, Q)

BLAS runs it far below the machine's speed when ``R`` is ~10. The C kernels
stream ``X`` once without packing it, in register tiles of vector types and on
POSIX threads, in float64 and float32, in three variants (:data:`VARIANTS`)
chosen at run time from the CPU's features: ``avx512`` (AVX-512F/VL + FMA),
``avx2`` (AVX2 + FMA) and ``portable`` (the compiler's baseline vectors: SSE2 on
x86-64, NEON on aarch64). ``TNC_KERNELS`` (``auto``, a variant, or ``0``/``off``)
or :func:`use` picks one; the default (:data:`AUTO`) is AVX-512, else AVX2 on
x86-64 (the portable path is slower than BLAS there) and the portable path
elsewhere.

They are compiled on first use with the system C compiler into a cache
directory (:func:`cache_dir`: private to the user, mode 0700) and loaded with
ctypes. A library is used only when its bytes hash to the record written beside
it when it was built, and a variant only after it agreed with numpy on small
random inputs in both dtypes (once per process). When that cannot happen (no
compiler, a failed self-test, or ``TNC_KERNELS=0``) :func:`mode_product` still
works, through numpy's BLAS, and :func:`available` says False.

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
import platform
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tnc.errors import TncError

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-ffp-contract=fast")
VARIANTS = ("avx512", "avx2", "portable")   # fastest first; the position is the C variant number
NEEDS = {"avx512": ("avx512f", "avx512vl", "fma"), "avx2": ("avx2", "fma"), "portable": ()}
# what "auto" tries, in order: on x86-64 the portable path (SSE2, no FMA) measured slower
# than BLAS (CP-ALS 200^3 rank 10: 0.90x pyttb against BLAS's 0.36x), so it runs there
# only when asked for; elsewhere (NEON) it is the kernels' only path
AUTO = ("avx512", "avx2") if platform.machine() in ("x86_64", "AMD64", "i686") else ("portable",)
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))   # the position is the C dtype number
MIN_ENTRIES = 1 << 16   # smaller products stay with BLAS: the call overhead would dominate
THREADED_ENTRIES = 1 << 19  # smaller products run on one thread: starting threads costs more
# data below this many entries (each array a fit streams) get serial BLAS inside fits:
# measured (bench/bench_busy.py's notes) threaded BLAS gains little there on an idle
# machine and collapses when another process holds a core (GCP 60^3: 43x slower)
SERIAL_BLAS_ENTRIES = 1 << 22
# a Q > 1 product re-reads F (S x R) for every register tile along q: beyond this it
# leaves the core's cache and BLAS is faster (suits)
F_CACHE_BYTES = 1 << 20

_state = {"lib": None, "tried": False, "threads": None, "enabled": True, "variant": None,
          "inner": None}
_lock = threading.Lock()


def available() -> bool:
    """True when a compiled kernel variant is loaded, self-tested and in use.

    >>> isinstance(available(), bool)
    True
    """
    return _active() is not None


def variant() -> str:
    """The variant the products run on: one of :data:`VARIANTS`, or ``"blas"``.

    >>> variant() in VARIANTS + ("blas",)
    True
    """
    active = _active()
    return "blas" if active is None else active


def planning_state():
    """What a layout planned now depends on: ``"off"`` inside :func:`disabled`, else the
    variant in use (``"blas"`` when none is), or ``None`` while the library has not been
    loaded yet (loading it only to answer would compile it for networks too small to use
    it). :func:`tnc.engine.program.kernel_key` keys plans by it.

        >>> with disabled():
        ...     planning_state()
        'off'
    """
    if not _state["enabled"]:
        return "off"
    return variant() if _state["tried"] else None


def supported() -> tuple:
    """The variants this CPU can run (fastest first); empty without compiled kernels.

    >>> set(supported()) <= set(VARIANTS)
    True
    """
    lib = _state["lib"] if _state["tried"] else _library()
    return tuple(name for at, name in enumerate(VARIANTS)
                 if lib is not None and lib.tnc_variant_supported(at))


def use(name: str = "auto") -> str:
    """Run the products on kernel variant ``name`` (one of :data:`VARIANTS`), on the
    default for this CPU (``"auto"``, :data:`AUTO`) or on BLAS (``"blas"``); returns the variant
    now in use. A variant this CPU lacks is a :class:`~tnc.TncError` naming the CPU's
    features; one that fails its self-test gives one warning and BLAS.

    >>> previous = variant()
    >>> use("blas"), available()
    ('blas', False)
    >>> use(previous) == previous
    True
    """
    if name not in VARIANTS + ("auto", "blas"):
        raise TncError(f"kernel variant must be one of {', '.join(VARIANTS + ('auto', 'blas'))}, "
                       f"got {name!r}")
    _library()
    if name in VARIANTS and name not in supported():
        reason = ("the compiled kernels could not be loaded" if _state["lib"] is None
                  else f"it needs {', '.join(NEEDS[name])}")
        raise TncError(f"kernel variant {name!r} cannot run here: {reason}; this CPU "
                       f"({platform.machine() or 'unknown'}) has {cpu_features()}")
    with _lock:
        _state["variant"] = _pick(_state["lib"], name)
    return variant()


def cpu_features() -> str:
    """The vector features of this CPU that the variants care about, as the OS lists them.

    >>> isinstance(cpu_features(), str)
    True
    """
    wanted = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512vl", "asimd", "neon", "sve"}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    found = sorted(wanted & set(value.split()))
                    return ", ".join(found) or "none of " + ", ".join(sorted(wanted))
    except OSError:
        pass
    return "unknown features (no /proc/cpuinfo)"


def threads() -> int:
    """Threads the kernels use, the first that applies of:

    1. :func:`set_threads`;
    2. a ``threadpoolctl`` limit: the smallest thread count of the BLAS and OpenMP
       pools when it is below the usable cores (``threadpool_limits(1)``, or
       ``OPENBLAS_NUM_THREADS=1``, which sets BLAS's own count); the serial BLAS a
       fit sets for itself (:func:`blas_serial`) does not count;
    3. ``$OMP_NUM_THREADS``;
    4. ``$TNC_NUM_THREADS``;
    5. the usable cores.

    >>> threads() >= 1
    True
    """
    if _state["threads"] is not None:
        return _state["threads"]
    if _state["inner"] is not None:
        return _state["inner"]
    cores = _cores()
    limit = _pool_threads()
    if limit is not None and limit < cores:
        return max(1, limit)
    for name in ("OMP_NUM_THREADS", "TNC_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return cores


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool_threads() -> int | None:
    """The smallest current thread count of the thread pools threadpoolctl sees."""
    controller = _blas_controller()
    if controller is None or not controller.lib_controllers:
        return None
    return min(pool.num_threads for pool in controller.lib_controllers)


def set_threads(count: int | None) -> None:
    """Fix the kernels' thread count (None: back to the default of :func:`threads`)."""
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
def blas_serial(*data, on_kernels: bool = True):
    """Within this block (a fit or a contraction over ``data``: the arrays it streams,
    or plain entry counts of arrays it makes; ``on_kernels``: whether its big products
    may run on the kernels) numpy's BLAS runs on one thread when either

    * every item of ``data`` has fewer than :data:`SERIAL_BLAS_ENTRIES` entries: the
      products are then small, threaded BLAS gains little on them and its spinning
      threads collapse when another process holds a core (a Poisson GCP fit of 60^3
      took 43x its idle time at two threads; all gradients of a 60^3 CP network 74x);
      ``bench/bench_busy.py --threshold`` measures the gain of a second thread; or
    * some array is big enough for the kernels and they run on several threads: BLAS
      is left with small products (Grams, solves) and its idle threads spin for a
      while after each call, taking the cores from the kernels' threads (2-thread
      kernel passes measured 2.0-2.5 ms with serial BLAS against 2.4-4.2 ms with
      2-thread BLAS; 200^3 tensor, rank 10).

    The kernels keep the thread count they had outside the block (:func:`threads`).
    The limit is set on the BLAS libraries threadpoolctl finds (a few microseconds; none
    when BLAS already runs on one thread); without threadpoolctl this does nothing.

    >>> with blas_serial(np.zeros((2, 3))):    # a small fit: BLAS on one thread
    ...     pass
    """
    arrays = [item for item in data if isinstance(item, np.ndarray)]
    sizes = [item.size if isinstance(item, np.ndarray) else int(item) for item in data
             if isinstance(item, (np.ndarray, int, np.integer))]
    count = threads()
    small = bool(sizes) and max(sizes) < SERIAL_BLAS_ENTRIES
    streamed = on_kernels and count > 1 and any(worth_it(a.shape, a.dtype) for a in arrays)
    controller = _blas_controller() if small or streamed else None
    pools = [pool for pool in getattr(controller, "lib_controllers", ())
             if pool.user_api == "blas" and pool.num_threads > 1]
    if not pools:
        yield
        return
    saved = [(pool, pool.num_threads) for pool in pools]
    before = _state["inner"]
    _state["inner"] = count
    try:
        for pool, _ in saved:
            pool.set_num_threads(1)
        yield
    finally:
        for pool, number in saved:
            pool.set_num_threads(number)
        _state["inner"] = before


# modules that load a BLAS of their own (scipy's wheels bundle an OpenBLAS apart from
# numpy's; L-BFGS-B and scipy.linalg run on it): the pools are looked for again once one
# of them has been imported since the last look
BLAS_MODULES = ("scipy.linalg", "torch", "sklearn")


def _blas_controller():
    loaded = tuple(name in sys.modules for name in BLAS_MODULES)
    if _state.get("controller_for") != loaded:
        try:
            from threadpoolctl import ThreadpoolController
            _state["controller"] = ThreadpoolController()  # ~4 ms: found once per set, reused
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _state["controller"] = None
        _state["controller_for"] = loaded
    return _state["controller"]


def worth_it(big_shape: tuple, dtype) -> bool:
    """Whether a product over a big operand of this shape and dtype should use the kernels."""
    return (np.dtype(dtype) in DTYPES and int(np.prod(big_shape)) >= MIN_ENTRIES
            and available())


def mode_product(big, small, out=None):
    """``Y[p, r, q] = sum_s big[p, s, q] small[s, r]``: ``big (P, S, Q)``, ``small (S, R)``,
    ``Y (P, R, Q)``; compiled kernel when available (float64 or float32, all three of
    one dtype), else numpy (BLAS)."""
    P, S, Q = big.shape
    R = small.shape[1]
    if small.shape[0] != S:
        raise ValueError(f"cannot contract {big.shape} with {small.shape} over {S}")
    if out is None:
        out = aligned_empty((P, R, Q), np.result_type(big, small))
    active = _active() if big.dtype == small.dtype == out.dtype in DTYPES else None
    if active is not None and big.flags.c_contiguous and out.flags.c_contiguous and suits(
            active, big.shape, R, big.dtype):
        count = threads() if big.size >= THREADED_ENTRIES else 1
        if _run_kernel(_state["lib"], active, big, small, out, count) == 0:
            return out
    return _blas_mode_product(big, small, out)


def suits(name: str, shape: tuple, rank: int, dtype) -> bool:
    """Whether variant ``name``'s product beats BLAS on ``X (P, S, Q)`` with ``rank``
    columns (measured on AVX-512 in both dtypes, one thread): always when ``Q == 1``;
    when ``Q > 1`` only if ``Q`` fills the register tile along q (a narrower one is
    copied into a padded scratch per slab: ``X (200, 200, 10)`` ran 3.4x slower than
    BLAS in float64, 5.4x in float32) and, where ``Q`` spans more than one tile, ``F
    (S, R)`` fits :data:`F_CACHE_BYTES` (it is re-read for every tile: ``X (1, 40000,
    200)`` ran 2x slower, ``X (4, 40000, 200)`` 2.1x).

        >>> suits("avx2", (200, 200, 1), 10, np.float64)
        True
    """
    P, S, Q = shape
    if Q == 1:
        return True
    lib, dtype = _state["lib"], np.dtype(dtype)
    tiles = _state.setdefault("q_tiles", {})
    key = (id(lib), name, dtype)
    if key not in tiles:
        tiles[key] = int(lib.tnc_q_tile(VARIANTS.index(name), DTYPES.index(dtype)))
    if Q < tiles[key]:
        return False
    return Q == tiles[key] or S * rank * dtype.itemsize <= F_CACHE_BYTES


def _run_kernel(lib, name: str, big, small, out, count: int) -> int:
    """One call of variant ``name`` of the compiled product on ``count`` threads (``big``,
    ``small`` and ``out`` of one dtype of :data:`DTYPES`, ``big`` and ``out``
    C-contiguous, shapes as in :func:`mode_product`); 0 when it ran."""
    P, S, Q = big.shape
    R = small.shape[1]
    factor = aligned_empty((R, S) if Q == 1 else (S, R), big.dtype)
    factor[...] = small.T if Q == 1 else small
    return lib.tnc_mode_product(VARIANTS.index(name), DTYPES.index(big.dtype), big.ctypes.data,
                                factor.ctypes.data, out.ctypes.data, P, S, Q, R, count)


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


def _active() -> str | None:
    """The variant in use, or None (BLAS); loads and self-tests on first call."""
    if not _state["enabled"]:
        return None
    _library()
    return _state["variant"]


def _library():
    """The bound library (None when it cannot be had), loaded once per process, with
    the variant of ``$TNC_KERNELS`` picked and self-tested."""
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _state["lib"], _state["variant"] = _load()
                _state["tried"] = True
    return _state["lib"]


def _load() -> tuple:
    """``(library, variant)``: the compiled library (None when it cannot be loaded, with
    one warning, or when ``$TNC_KERNELS`` is 0/off) and the variant ``$TNC_KERNELS`` asks
    for (``auto`` by default), self-tested, or None to use BLAS."""
    wanted = os.environ.get("TNC_KERNELS", "auto").strip().lower() or "auto"
    if wanted in ("0", "no", "off", "false", "blas"):
        return None, None
    if wanted in ("1", "yes", "on", "true"):
        wanted = "auto"
    try:
        lib = _bind(ctypes.CDLL(str(_compiled())))
    except (OSError, subprocess.SubprocessError, AttributeError) as error:
        _warn(f"compiled kernels unavailable ({error})")
        return None, None
    if wanted not in VARIANTS + ("auto",):
        _warn(f"TNC_KERNELS={wanted!r} is not one of {', '.join(VARIANTS)}, auto, 0; "
              "using the default variant (auto)", tail="")
        wanted = "auto"
    elif wanted != "auto" and not lib.tnc_variant_supported(VARIANTS.index(wanted)):
        _warn(f"TNC_KERNELS={wanted}: this CPU lacks {', '.join(NEEDS[wanted])} (it has "
              f"{cpu_features()}); using the default variant (auto)", tail="")
        wanted = "auto"
    return lib, _pick(lib, wanted)


def _pick(lib, wanted: str) -> str | None:
    """The variant to use for ``wanted`` (a supported variant, ``auto`` or ``blas``),
    self-tested once per process; None (one warning when it failed) for BLAS."""
    if lib is None or wanted == "blas":
        return None
    if wanted == "auto":
        wanted = next((name for name in AUTO if lib.tnc_variant_supported(VARIANTS.index(name))),
                      None)
        if wanted is None:
            return None
    tested = _state.setdefault("tested", {})
    if wanted not in tested:
        tested[wanted] = _self_test(lib, wanted)
        if tested[wanted] is not None:
            _warn(f"compiled kernels ({wanted}) failed their self-test against numpy "
                  f"({tested[wanted]})")
    return wanted if tested[wanted] is None else None


def _warn(message: str, tail: str = "; using BLAS") -> None:
    warnings.warn(f"tnc: {message}{tail}", RuntimeWarning, stacklevel=5)


def _bind(lib):
    """``lib`` with the kernels' signatures declared (AttributeError: not our library)."""
    lib.tnc_variant_supported.argtypes = [ctypes.c_int]
    lib.tnc_variant_supported.restype = ctypes.c_int
    ssize, pointer, integer = ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_int
    lib.tnc_mode_product.argtypes = [integer, integer, pointer, pointer, pointer,
                                     ssize, ssize, ssize, ssize, integer]
    lib.tnc_mode_product.restype = ctypes.c_int
    lib.tnc_q_tile.argtypes = [integer, integer]
    lib.tnc_q_tile.restype = ssize
    return lib


# every code path of tnc_mode_product: Q > 1 split along p, Q > 1 with P == 1 split along
# q, and Q == 1; ragged vector ends (Q, S not multiples of any vector width); every
# register-tile width of every variant; more chunks than threads
SELF_TEST_SHAPES = ((3, 11, 45), (1, 11, 83), (5, 19, 1), (37, 5, 3))
SELF_TEST_RANKS = (1, 2, 3, 4, 5, 6, 7, 13)
# float32 is checked against float64 einsum: |error| <= this times sum_s |X| |F|
SELF_TEST_TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def _self_test(lib, name: str) -> str | None:
    """None when variant ``name``, in both dtypes, on one thread and on two, matches
    ``numpy.einsum`` on small random inputs; else what went wrong."""
    rng = np.random.default_rng(0)
    for shape in SELF_TEST_SHAPES:
        for rank in SELF_TEST_RANKS:
            big, small = rng.standard_normal(shape), rng.standard_normal((shape[1], rank))
            expected = np.einsum("psq,sr->prq", big, small)
            scale = np.einsum("psq,sr->prq", abs(big), abs(small)) + 1e-300
            for dtype in DTYPES:
                for count in (1, 2):
                    out = np.full(expected.shape, np.nan, dtype)
                    case = f"X {shape}, rank {rank}, {dtype}, {count} thread(s)"
                    try:
                        status = _run_kernel(lib, name, big.astype(dtype), small.astype(dtype),
                                             out, count)
                    except Exception as error:  # noqa: BLE001 - any failure means: do not use it
                        return f"{case}: {type(error).__name__}: {error}"
                    if status != 0:
                        return f"{case}: returned {status}"
                    if not np.all(abs(out - expected) <= SELF_TEST_TOLERANCE[dtype] * scale):
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


def _compiled(source: Path | None = None, stem: str = "tnc-kernels") -> Path:
    """The shared library of ``source`` (default: kernels.c) with these flags, compiled
    once per machine as ``<stem>-<hash>.so``: reused while its bytes hash to the record
    beside it, else built again (to a temporary name, then renamed over the old one:
    atomic). tnc/engine/sparse_kernels.c is built the same way."""
    source = SOURCE if source is None else source     # read now: tests replace SOURCE
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = compiler.split()[0]
    if shutil.which(compiler) is None:
        raise OSError(f"no C compiler found (tried {compiler!r})")
    build = hashlib.sha256(source.read_bytes() + " ".join((compiler, *FLAGS)).encode()).hexdigest()
    target = cache_dir() / f"{stem}-{build[:16]}.so"
    if _intact(target, build):
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built, record = Path(scratch) / target.name, Path(scratch) / "record"
        result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(source), "-lpthread"],
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
