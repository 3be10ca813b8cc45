"""CP-ALS on sparse data: every product computed from the nonzeros alone.

``tnc.fit(cp_network, sparse_tensor, method="als")`` lands here (:func:`run_sparse_cp`).
The loss is least squares over ALL entries, the zeros included (as pyttb's
``cp_als`` on an ``sptensor``). For the update of factor ``A_n(i, r)``:

* the right-hand side is the MTTKRP ``sum_{nonzeros} x * prod_{m != n} A_m[c_m, r]``
  added into row ``c_n`` (:func:`mttkrp`: a compiled C loop, tnc/engine/sparse_kernels.c,
  one pass over the nonzeros, built like tnc/engine/kernels.c; a blocked numpy
  ``bincount`` when there is no compiler or ``TNC_KERNELS=0``); three-mode data is
  first grouped by each mode's coordinate (:class:`Fibers`, 1.5x the nonzeros' storage,
  when it fits half of ``memory_limit``), which makes the loop about 1.5x faster;
* the Gram matrix is the Hadamard product of the other factors' Grams ``A_mᵀA_m``;
* the loss ``||X||² - 2<X,M> + ||M||²`` after the update comes from that
  update's RHS and Gram (``<X,M> = <RHS, A_n>``), so M is never formed.

Why C and not numpy: on 1000^3 with 10^6 nonzeros, rank 10, one mode's MTTKRP in
numpy (gathering the factor rows at the coordinates, then ``np.add.reduceat``
over mode-sorted nonzeros, blocked) took ~100 ms and ``bincount`` per rank
column ~250 ms (loaded machine); gathering the rows alone costs ~24 ms per
factor, so numpy cannot reach 75 ms per sweep; the C loop took ~5 ms per mode.
Starts: ``"svd"`` (and ``"auto"``) from the sparse Gram of each unfolding, the
same vectors as the dense ALS's SVD start; ``holdout`` and ``extrapolate`` are refused.

    >>> import numpy as np, tnc
    >>> from tnc.engine.sparse import SparseTensor
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> x = SparseTensor.from_dense(net.contract(net.random(seed=1)))
    >>> result = tnc.fit(net, x, method="als", max_iter=30, progress=False)
    >>> dense = tnc.fit(net, x.to_dense(), method="als", max_iter=30, progress=False)
    >>> abs(result.rel_error - dense.rel_error) < 1e-10, result.info["sparse"]
    (True, True)
"""
from __future__ import annotations

import ctypes
import functools
import math
import threading
import time
from pathlib import Path

import numpy as np

from tnc.errors import TncError
from tnc.engine.sparse import SparseTensor

SOURCE = Path(__file__).resolve().parent.parent / "engine" / "sparse_kernels.c"
BLOCK = 1 << 15          # nonzeros per block of the numpy MTTKRP (bounds its scratch)
EIGH_BELOW = 4096        # SVD starts: the dense Gram of the unfolding up to this many rows
FIBER_RANK = 64          # the fibers' product keeps a row's sums on the stack (sparse_kernels.c)
_state = {"tried": False, "lib": None}
_lock = threading.Lock()


# -- the network: which factor holds which mode ---------------------------------------------
def cp_layout(network) -> dict | None:
    """``name -> (mode, transposed)`` when ``network`` is a CP model (every parameter a
    matrix of one output index and one rank index shared by all, each output index held
    by one parameter, no data tensors), else None.

    >>> import tnc
    >>> cp_layout(tnc.library("cp", I=3, J=4, K=5, R=2))
    {'A': (0, False), 'B': (1, False), 'C': (2, False)}
    >>> cp_layout(tnc.library("tucker", I=3, J=4, K=5, R1=2, R2=2, R3=2)) is None
    True
    """
    from tnc.engine.streams import CPLayout      # the one CP recogniser, untied here
    layout = CPLayout.of(network)
    if layout is None or len({name for name, _, _ in layout.uses}) != len(layout.uses):
        return None
    return {name: (mode, first) for name, mode, first in layout.uses}


# -- the products ----------------------------------------------------------------------------
def mttkrp(data: SparseTensor, factors: list, mode: int) -> np.ndarray:
    """``(shape[mode], R)``: data times the Khatri-Rao product of the other factors
    (``factors[m]``: ``(shape[m], R)`` float64), over the nonzeros alone.

    >>> x = SparseTensor.from_coo([[0, 1], [1, 0]], [2.0, 3.0], shape=(2, 2))
    >>> mttkrp(x, [np.ones((2, 1)), np.array([[1.0], [10.0]])], 0)
    array([[20.],
           [ 3.]])
    """
    factors = [np.ascontiguousarray(f, dtype=np.float64) for f in factors]
    rank = factors[0].shape[1]
    out = np.zeros((data.shape[mode], rank))
    lib = _library()
    if lib is None:
        return _numpy_mttkrp(data, factors, mode, out)
    pointers = (ctypes.c_void_p * len(factors))(*(f.ctypes.data for f in factors))
    if lib.tnc_sparse_mttkrp(data.nnz, data.ndim, mode, rank, data.coords.ctypes.data,
                             data.values.ctypes.data, pointers, out.ctypes.data):
        raise MemoryError(f"sparse MTTKRP: no memory for a row of {rank} ranks")
    return out


class Fibers:
    """The nonzeros of a three-mode :class:`SparseTensor` grouped by their coordinate along
    each mode (a counting sort in C, built on a mode's first product: 16 bytes a nonzero a
    mode), so :meth:`mttkrp` keeps each output row's sum in registers (4.7 ms a mode
    against 6.7-7.5 for the unsorted loop on 1000^3 with 10^6 nonzeros, rank 10).

        >>> x = SparseTensor.from_coo([[0, 1, 0], [1, 0, 0]], [2.0, 3.0], shape=(2, 2, 1))
        >>> fibers = Fibers.of(x, memory_limit=None)
        >>> factors = [np.ones((2, 1)), np.array([[1.0], [10.0]]), np.ones((1, 1))]
        >>> bool(fibers is None or np.array_equal(fibers.mttkrp(factors, 0), mttkrp(x, factors, 0)))
        True
    """

    def __init__(self, data: SparseTensor, lib):
        self.data, self.lib, self.modes = data, lib, {}

    @classmethod
    def of(cls, data: SparseTensor, memory_limit="auto") -> "Fibers | None":
        """The fibers of ``data``, or None where they do not apply (not three modes, a
        mode of 2^31 or more, no compiled kernel) or their ``48 * nnz`` bytes would take
        more than half of ``memory_limit`` (the unsorted loop then runs)."""
        from tnc.engine.plan import limit_bytes
        lib = _library()
        limit = limit_bytes(memory_limit)
        if lib is None or data.ndim != 3 or max(data.shape) >= 2 ** 31 or (
                limit is not None and 48 * data.nnz > limit / 2):
            return None
        return cls(data, lib)

    def _of_mode(self, mode: int) -> tuple:
        if mode not in self.modes:
            data, rows = self.data, self.data.shape[mode]
            ptr, idx = np.empty(rows + 1, np.int64), np.empty((data.nnz, 2), np.int32)
            values = np.empty(data.nnz)
            coords = np.ascontiguousarray(data.coords, dtype=np.int64)
            if self.lib.tnc_sparse_fibers(data.nnz, mode, rows, coords.ctypes.data,
                                          np.ascontiguousarray(data.values, np.float64)
                                          .ctypes.data, ptr.ctypes.data, idx.ctypes.data,
                                          values.ctypes.data):
                raise TncError(f"a sparse coordinate along mode {mode} lies outside 0..{rows - 1}")
            self.modes[mode] = (ptr, idx, values)
        return self.modes[mode]

    def mttkrp(self, factors: list, mode: int) -> np.ndarray:
        """:func:`mttkrp` of the data, from its fibers along ``mode``."""
        factors = [np.ascontiguousarray(f, dtype=np.float64) for f in factors]
        rank = factors[0].shape[1]
        if rank > FIBER_RANK:
            return mttkrp(self.data, factors, mode)
        ptr, idx, values = self._of_mode(mode)
        a, b = (m for m in range(3) if m != mode)
        out = np.zeros((self.data.shape[mode], rank))
        self.lib.tnc_sparse_mttkrp_fibers(len(ptr) - 1, ptr.ctypes.data, idx.ctypes.data,
                                          values.ctypes.data, rank, factors[a].ctypes.data,
                                          factors[b].ctypes.data, out.ctypes.data)
        return out


def _numpy_mttkrp(data: SparseTensor, factors: list, mode: int, out) -> np.ndarray:
    """:func:`mttkrp` in numpy, ``BLOCK`` nonzeros at a time (one ``bincount`` per block)."""
    rank = out.shape[1]
    columns = np.arange(rank)
    for start in range(0, data.nnz, BLOCK):
        coords = data.coords[start:start + BLOCK]
        rows = data.values[start:start + BLOCK, None] * np.ones(rank)
        for m, factor in enumerate(factors):
            if m != mode:
                rows *= factor[coords[:, m]]
        flat = (coords[:, mode, None] * rank + columns).ravel()
        out += np.bincount(flat, rows.ravel(), minlength=out.size).reshape(out.shape)
    return out


def _library():
    """The compiled sparse kernel (None when it cannot be built or loaded, or when
    ``$TNC_KERNELS`` is 0/off), self-tested against numpy once per process."""
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                _state["lib"] = _load()
                _state["tried"] = True
    return _state["lib"]


def _load():
    import os
    import subprocess
    from tnc.engine import kernels
    if os.environ.get("TNC_KERNELS", "auto").strip().lower() in ("0", "no", "off", "false",
                                                                 "blas"):
        return None
    try:
        lib = ctypes.CDLL(str(kernels._compiled(SOURCE, "tnc-sparse")))
    except (OSError, subprocess.SubprocessError) as error:
        kernels._warn(f"compiled sparse kernels unavailable ({error})", "; using numpy")
        return None
    lib.tnc_sparse_mttkrp.argtypes = [ctypes.c_int64, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_void_p]
    lib.tnc_sparse_mttkrp.restype = ctypes.c_int
    lib.tnc_sparse_fibers.argtypes = [ctypes.c_int64, ctypes.c_int, ctypes.c_int64,
                                      *[ctypes.c_void_p] * 5]
    lib.tnc_sparse_fibers.restype = ctypes.c_int
    lib.tnc_sparse_mttkrp_fibers.argtypes = [ctypes.c_int64, *[ctypes.c_void_p] * 3,
                                             ctypes.c_int64, *[ctypes.c_void_p] * 3]
    lib.tnc_sparse_mttkrp_fibers.restype = ctypes.c_int
    return lib if _self_test(lib) else None


def _self_test(lib) -> bool:
    """Whether the kernel agrees with numpy on 3 and 4 modes, every mode."""
    rng = np.random.default_rng(5)
    for shape in ((5, 4, 3), (3, 4, 2, 3)):
        if not all(_agrees(lib, _random_sparse(rng, shape), rng, mode)
                   for mode in range(len(shape))):
            from tnc.engine import kernels
            kernels._warn("compiled sparse kernels failed their self-test against numpy",
                          "; using numpy")
            return False
    return True


def _random_sparse(rng, shape) -> SparseTensor:
    return SparseTensor.from_dense(rng.random(shape) * (rng.random(shape) < 0.5))


def _agrees(lib, data: SparseTensor, rng, mode: int) -> bool:
    """Whether the unsorted loop (and, for three modes, the fibers' product) agrees with
    numpy on ``mode``."""
    factors = [rng.random((n, 7)) for n in data.shape]
    out = np.zeros((data.shape[mode], 7))
    pointers = (ctypes.c_void_p * data.ndim)(*(f.ctypes.data for f in factors))
    status = lib.tnc_sparse_mttkrp(data.nnz, data.ndim, mode, 7, data.coords.ctypes.data,
                                   data.values.ctypes.data, pointers, out.ctypes.data)
    expected = _numpy_mttkrp(data, factors, mode, np.zeros_like(out))
    outs = [out] + ([Fibers(data, lib).mttkrp(factors, mode)] if data.ndim == 3 else [])
    return status == 0 and all(np.allclose(o, expected, rtol=1e-12, atol=1e-12) for o in outs)


# -- the fit ---------------------------------------------------------------------------------
def run_sparse_cp(problem, options):
    """CP-ALS of ``problem.network`` (a CP model, :func:`cp_layout`) on the
    :class:`SparseTensor` ``problem.target``; the best of ``options.restarts`` as a
    :class:`~tnc.fitting.result.FitResult` with the dense ALS's history records."""
    from tnc.fitting.als import EXACT_FIT, resolve_settings
    from tnc.fitting.progress import Progress
    from tnc.fitting.screening import restart_start, screened_fit, screening
    layout = cp_layout(problem.network)
    if layout is None:
        raise TncError(f"ALS on sparse data needs a CP network (each parameter a matrix of "
                       f"one output index and one shared rank index); `{problem.network.name}` "
                       "is not one: use method='gcp' or pass data.to_dense()")
    if options.holdout or options.extrapolate:
        raise TncError("ALS on sparse data takes no holdout= or extrapolate=")
    settings = resolve_settings(problem, options)
    start, best = time.perf_counter(), None
    seeds = [None if options.seed is None else options.seed + k for k in range(options.restarts)]
    plan = screening(problem, options)          # the dense ALS's init="auto" rule
    starts, sweeps = plan or (0, 0)
    fibers = Fibers.of(problem.target, problem.memory_limit)   # built once for every start
    with Progress(options.max_iter * options.restarts + starts * sweeps, desc="als",
                  enabled=options.progress) as bar:
        def run(run_options, run_seed, init):
            return _fit_once(problem, layout, settings, run_options, run_seed, bar, init,
                             fibers)
        for k, seed in enumerate(seeds):
            if k == 0 and plan is not None:
                result = screened_fit(run, options, seed, plan)
            else:
                result = run(options, seed, restart_start(options.init, k))
            if best is None or result.loss < best.loss:
                best = result
            if best.rel_error < EXACT_FIT:
                break
    best.wall_time = time.perf_counter() - start
    best.info["restarts"] = len(seeds)
    return best


def _fit_once(problem, layout, settings, options, seed, bar, init, fibers=None):
    """One CP-ALS run from ``init`` and ``seed`` (the dense ALS's sweep and stopping rule);
    its products from ``fibers`` (:class:`Fibers`) when given."""
    from tnc.fitting.als import EXACT_FIT, solve_rows
    from tnc.fitting.progress import wants_stop
    from tnc.fitting.records import record
    from tnc.fitting.result import FitResult
    data, begin = problem.target, time.perf_counter()
    factors = _start(problem, layout, init, seed, settings.nonneg)   # name -> (I_m, R)
    grams = {name: f.T @ f for name, f in factors.items()}
    xx = float(data.values @ data.values)
    product = functools.partial(mttkrp, data) if fibers is None else fibers.mttkrp
    history, converged, previous = [], False, math.inf
    for sweep in range(1, options.max_iter + 1):
        for name in settings.order:
            mode = layout[name][0]
            ordered = [None] * data.ndim
            for other, (m, _) in layout.items():
                ordered[m] = factors[other]
            rhs = product(ordered, mode)
            gram = np.prod([g for other, g in grams.items() if other != name], axis=0)
            new = solve_rows(rhs[None], gram[None], settings.l2[name],
                             name in settings.nonneg, factors[name][None])[0]
            factors[name], grams[name] = new, new.T @ new
            loss = xx - 2 * float(np.vdot(rhs, new)) + float(np.vdot(gram, grams[name]))
        if options.normalize:
            _balance(factors, grams)
        rel = math.sqrt(max(loss, 0.0) / xx) if xx > 0 else math.sqrt(max(loss, 0.0))
        penalty = sum(w * float(np.trace(grams[n])) for n, w in settings.l2.items() if w)
        entry = record(sweep, loss + penalty, rel, time.perf_counter() - begin)
        history.append(entry)
        bar.update(rel_error=rel)
        converged = abs(previous - rel) < options.tol * max(rel, 1e-3) or rel < EXACT_FIT
        previous = rel
        tensors = _tensors(factors, layout)
        if wants_stop(options.callback, {**entry, "tensors": tensors}) or converged:
            break
    info = {"seed": seed, "order": settings.order, "missing": None, "sparse": True,
            "init": init if isinstance(init, str) else "given", "kernel":
            "compiled" if _library() is not None else "numpy", "fibers": fibers is not None}
    return FitResult(problem.network, _tensors(factors, layout), "als", history, converged,
                     len(history), time.perf_counter() - begin, dict(problem.inputs), info)


def _tensors(factors: dict, layout: dict) -> dict:
    return {name: np.ascontiguousarray(f.T) if layout[name][1] else f.copy()
            for name, f in factors.items()}


def _balance(factors: dict, grams: dict) -> None:
    """The dense ALS's gauge rule (:meth:`tnc.fitting.als.Fit.normalize`): once the
    factors' column norms differ by ``NORMALIZE_RATIO``, set each to their geometric mean."""
    from tnc.fitting.als import NORMALIZE_RATIO
    norms = np.sqrt(np.array([np.diag(g) for g in grams.values()]))
    if np.any(norms <= 1e-300) or np.max(norms.max(0) / norms.min(0)) < NORMALIZE_RATIO:
        return
    target = np.exp(np.mean(np.log(norms), axis=0))
    for name, norm in zip(list(factors), norms):
        scale = target / norm
        factors[name] = factors[name] * scale
        grams[name] = grams[name] * np.outer(scale, scale)


# -- starting factors ------------------------------------------------------------------------
def _start(problem, layout: dict, init, seed, nonneg) -> dict:
    """``name -> (I_m, R)`` starting factors: given (``init`` a dict or FitResult, through
    the dense ALS's checks), or random or SVD-based (``"auto"`` is ``"svd"``, as on complete
    dense data) scaled so that ``||M|| = ||X||``."""
    from tnc.fitting.als import initial_tensors
    from tnc.fitting.result import FitResult
    if isinstance(init, (dict, FitResult)):
        tensors = initial_tensors(problem, None, init, seed, nonneg)
        return {n: np.ascontiguousarray(t.T if layout[n][1] else t, dtype=np.float64)
                for n, t in tensors.items()}
    if init not in ("auto", "random", "svd"):
        raise TncError(f"init must be 'auto', 'random', 'svd' or a dict of arrays, got {init!r}")
    tensors = problem.network.random(seed=seed)
    tensors.update({name: np.abs(tensors[name]) for name in nonneg})
    factors = {n: np.ascontiguousarray(t.T if layout[n][1] else t, dtype=np.float64)
               for n, t in tensors.items()}
    if init != "random":
        rng = np.random.default_rng(seed)
        for name, (mode, _) in layout.items():
            factors[name] = _svd_factor(problem.target, mode, factors[name], rng)
    return _scaled(problem.target, factors)


def leading_vectors(data: SparseTensor, modes: list, k: int, rng) -> np.ndarray:
    """The leading left singular vectors of the unfolding of ``data`` with ``modes`` as
    rows, ``(rows, k')`` by decreasing singular value, from the unfolding's sparse Gram:
    all of them (dense ``eigh``) up to ``EIGH_BELOW`` rows, else ``k' = min(k, rows - 1)``
    (``eigsh``).

        >>> x = SparseTensor.from_dense(np.diag([1.0, 3.0, 2.0])[:, :, None])
        >>> np.abs(leading_vectors(x, [0], 1, np.random.default_rng(0))[:, 0]).round(6)
        array([0., 1., 0.])
    """
    import scipy.sparse
    import scipy.sparse.linalg
    shape = [data.shape[m] for m in modes]
    rest = [m for m in range(data.ndim) if m not in modes]
    rows = np.ravel_multi_index(tuple(data.coords[:, modes].T), shape)
    columns = np.ravel_multi_index(tuple(data.coords[:, rest].T), [data.shape[m] for m in rest]) \
        if rest else np.zeros(data.nnz, np.int64)
    n_rows = math.prod(shape)
    unfolding = scipy.sparse.csr_matrix((data.values, (rows, columns)),
                                        shape=(n_rows, int(columns.max(initial=0)) + 1))
    gram = unfolding @ unfolding.conj().T
    if n_rows <= EIGH_BELOW:
        return np.linalg.eigh(gram.toarray())[1][:, ::-1]
    _, vectors = scipy.sparse.linalg.eigsh(gram, k=min(k, n_rows - 1), which="LA",
                                           v0=rng.random(n_rows))
    return vectors[:, ::-1]


def _svd_factor(data: SparseTensor, mode: int, current, rng):
    """As :func:`tnc.fitting.als.svd_start`: the leading left singular vectors of the
    mode-``mode`` unfolding (:func:`leading_vectors`), extra columns kept random."""
    return with_leading(current, leading_vectors(data, [mode], min(current.shape), rng))


def with_leading(rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``rows`` (a copy) with its first columns replaced by ``vectors``'s; the columns
    beyond them (beyond the data's rank) stay random, scaled to about unit norm each."""
    k = min(rows.shape[1], vectors.shape[1])
    new = rows.copy()
    extra = new.shape[1] - k
    if extra:
        new[:, k:] *= math.sqrt(extra) / max(np.linalg.norm(new[:, k:]), 1e-300)
    new[:, :k] = vectors[:, :k]
    return new


def _scaled(data: SparseTensor, factors: dict) -> dict:
    """``factors`` scaled alike so that the model's norm equals the data's."""
    mm = float(np.sum(np.prod([f.T @ f for f in factors.values()], axis=0)))
    xx = float(data.values @ data.values)
    if mm <= 0 or xx <= 0:
        return factors
    scale = (xx / mm) ** (0.5 / len(factors))
    return {name: f * scale for name, f in factors.items()}
