"""TT-cross: a tensor train built from calls to a black-box function of the indices.

:func:`tt_cross` is the two-site (DMRG-) cross of Savostyanov and Oseledets
(2011): it keeps nested left index sets I_k (r_{k-1} prefixes i_1..i_{k-1})
and right index sets J_k (suffixes), and sweeps over the bonds. At bond k it
asks ``f`` for the *supercore* f(I_k, i_k, i_{k+1}, J_{k+2}) (r_{k-1} d_k d_{k+1}
r_{k+1} points), takes its truncated SVD (which picks the new rank, so ranks
adapt both ways) and chooses the r_k best-conditioned rows (or columns) of the
singular vectors with :func:`maxvol`; they become the next index set and the
core ``U U[rows]⁻¹`` interpolates ``f`` on them. The dense tensor is never
formed: a sweep costs about ``sum_k r² d²`` evaluations.

It stops when two consecutive half-sweeps give trains whose difference has
relative norm at most ``rel_error`` and no bond's SVD was cut short by the
size of its index sets (so the rank is not still growing).

>>> import numpy as np
>>> out = tt_cross(lambda i: 1.0 / (1.0 + i.sum(axis=1)), (4,) * 6, rel_error=1e-8)
>>> out.converged, out.tt.shape
(True, (4, 4, 4, 4, 4, 4))
>>> i = np.random.default_rng(0).integers(0, 4, (100, 6))
>>> bool(np.allclose(out.tt.entries(i), 1.0 / (1.0 + i.sum(axis=1)), rtol=1e-6))
True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from tnc.mps.chain import truncation_rank
from tnc.errors import TncError
from tnc.options import check_value
from tnc.engine.plan import check_allocation
from tnc.fitting.records import record
from tnc.mps.tt import TensorTrain


@dataclass
class CrossResult:
    """What :func:`tt_cross` found: the train, the cost in calls and points, the sweeps.

    ``history``: one :func:`~tnc.fitting.records.record` per half-sweep (``iteration``
    counting half-sweeps from 1, ``loss`` and ``rel_error`` None, ``time``, ``direction``, ``ranks``,
    ``change``: relative norm of the difference from the previous half-sweep's
    train, ``evaluations`` so far).
    """

    tt: TensorTrain
    calls: int
    evaluations: int
    sweeps: int
    converged: bool
    history: list = field(default_factory=list)


class _Counted:
    """``f`` wrapped: counts calls and points, checks each answer's shape and values."""

    def __init__(self, f, ndim: int):
        if not callable(f):
            raise TncError(f"tt_cross needs a function of integer index arrays (n, {ndim}); "
                           f"got {type(f).__name__}")
        self.f, self.ndim, self.calls, self.evaluations = f, ndim, 0, 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.evaluations += len(points)
        values = np.asarray(self.f(points))
        n = len(points)
        if values.shape != (n,) or not (np.issubdtype(values.dtype, np.number)
                                        and not np.issubdtype(values.dtype, np.timedelta64)):
            raise TncError(f"tt_cross: call {self.calls} of f, on {n} points (an index array "
                           f"of shape {points.shape}), returned shape {values.shape} of dtype "
                           f"{values.dtype}; f must return one number per point, shape ({n},)")
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise TncError(f"tt_cross: call {self.calls} of f returned {values[bad[0]]} at "
                           f"index {tuple(int(i) for i in points[bad[0]])} (point {bad[0]} of "
                           f"{n}; {len(bad)} such points); f must be finite on the grid")
        return values.astype(np.result_type(float, values.dtype), copy=False)


def tt_cross(f, shape, rel_error: float = 1e-6, max_rank: int = 100, *,
             max_sweeps: int = 20, init_rank: int = 2, seed: int = 0) -> CrossResult:
    """A :class:`~tnc.mps.tt.TensorTrain` of shape ``shape`` approximating ``f`` by TT-cross.

    ``f(indices)``: ``indices`` an int array (n, N), one row per grid point
    (0-based, ``0 <= indices[:, k] < shape[k]``); it returns n finite numbers
    (real or complex). ``rel_error``: the target relative error (Frobenius),
    which sets each bond's SVD truncation (``rel_error / (4 sqrt(N - 1))`` of
    the supercore's norm, a margin for the interpolation error on top of the
    SVD's) and the stopping test; ``max_rank``: a cap on every bond;
    ``max_sweeps``: full (left-right-left) sweeps at most; ``init_rank``: the
    size of the random starting index sets; ``seed``: their generator.
    Returns a :class:`CrossResult` with the train and the number of calls and
    points ``f`` was asked for. A value of ``f`` that is NaN, infinite or of
    the wrong shape raises a :class:`TncError` naming the call and the point.
    """
    shape = _check_shape(shape)
    check_value("rel_error", rel_error, float, {"above": 0, "below": 1}, "tt_cross")
    for name, value in (("max_rank", max_rank), ("max_sweeps", max_sweeps),
                        ("init_rank", init_rank)):
        check_value(name, value, int, {"min": 1}, "tt_cross")
    check_value("seed", seed, int, {"min": 0}, "tt_cross")
    call = _Counted(f, len(shape))
    state = _State(shape, init_rank, np.random.default_rng(seed))
    tol = rel_error / (4 * math.sqrt(len(shape) - 1))
    history, previous, converged, start = [], None, False, time.perf_counter()
    for sweep in range(1, max_sweeps + 1):
        for direction in ("right", "left"):
            saturated = state.half_sweep(call, direction, tol, max_rank)
            tt = TensorTrain(state.cores)
            change = math.inf if previous is None else _relative_change(tt, previous)
            history.append(record(len(history) + 1, None, None, time.perf_counter() - start,
                                  direction=direction, ranks=tt.ranks, change=change,
                                  evaluations=call.evaluations))
            previous = tt
            if change <= rel_error and not saturated:
                converged = True
                break
        if converged:
            break
    return CrossResult(previous, call.calls, call.evaluations, sweep, converged, history)


def _check_shape(shape) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (dims is None or len(dims) < 2
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                       for d in dims)):
        raise TncError(f"tt_cross needs a shape of at least 2 positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _relative_change(new: TensorTrain, old: TensorTrain) -> float:
    norm = new.norm()
    return (new - old).norm() / norm if norm else 0.0


class _State:
    """Index sets and cores of a cross: ``left[k]`` (r_{k-1}, k-1 positions), ``right[k]``
    (r_k, positions k..N-1), 0-based positions, ``left[0]`` and ``right[N]`` empty."""

    def __init__(self, shape, init_rank: int, rng):
        N = len(shape)
        self.shape = shape
        self.left = [np.zeros((1, k), dtype=np.intp) if k == 0 else None for k in range(N + 1)]
        self.right = [None] * N + [np.zeros((1, 0), dtype=np.intp)]
        for k in range(N - 1, 0, -1):
            rank = min(init_rank, math.prod(shape[k:]), math.prod(shape[:k]))
            draws = np.stack([rng.integers(0, d, 4 * rank) for d in shape[k:]], axis=1)
            self.right[k] = np.unique(draws, axis=0)[:rank]
        self.cores = [None] * N
        self.bound = [min(math.prod(shape[:k + 1]), math.prod(shape[k + 1:]))
                      for k in range(N - 1)]

    def supercore(self, call, k: int) -> np.ndarray:
        """f on left[k] x i_k x i_{k+1} x right[k + 2]: shape (a, d_k, d_{k+1}, b)."""
        I, J = self.left[k], self.right[k + 2]
        d0, d1, N = self.shape[k], self.shape[k + 1], len(self.shape)
        dims = (len(I), d0, d1, len(J))
        check_allocation(math.prod(dims) * N * np.dtype(np.intp).itemsize,
                         f"the index array of a TT-cross supercore {dims}")
        points = np.empty(dims + (N,), dtype=np.intp)
        points[..., :k] = I[:, None, None, None, :]
        points[..., k] = np.arange(d0)[None, :, None, None]
        points[..., k + 1] = np.arange(d1)[None, None, :, None]
        points[..., k + 2:] = J[None, None, None, :, :]
        return call(points.reshape(-1, N)).reshape(dims)

    def half_sweep(self, call, direction: str, tol: float, max_rank: int) -> bool:
        """Update every bond once; True when some bond's rank was capped by its index sets."""
        N = len(self.shape)
        bonds = range(N - 1) if direction == "right" else range(N - 2, -1, -1)
        saturated = False
        for k in bonds:
            S = self.supercore(call, k)
            a, d0, d1, b = S.shape
            matrix = S.reshape(a * d0, d1 * b)
            u, s, vt = np.linalg.svd(matrix, full_matrices=False)
            rank = truncation_rank(s, max_rank, tol ** 2)   # tail ||s[r:]|| <= tol ||s||
            saturated |= rank == len(s) < min(self.bound[k], max_rank)
            if direction == "right":
                self._move_right(k, matrix, u[:, :rank], (a, d0, d1, b))
            else:
                self._move_left(k, matrix, vt[:rank].T, (a, d0, d1, b))
        return saturated

    def _move_right(self, k, matrix, u, dims) -> None:
        a, d0, d1, b = dims
        rows = maxvol(u)
        self.cores[k] = np.linalg.solve(u[rows].T, u.T).T.reshape(a, d0, len(rows))
        self.left[k + 1] = np.concatenate([self.left[k][rows // d0], (rows % d0)[:, None]],
                                          axis=1)
        if k == len(self.shape) - 2:
            self.cores[k + 1] = matrix[rows].reshape(len(rows), d1, b)

    def _move_left(self, k, matrix, v, dims) -> None:
        a, d0, d1, b = dims
        cols = maxvol(v)
        self.cores[k + 1] = np.linalg.solve(v[cols].T, v.T).reshape(len(cols), d1, b)
        self.right[k + 1] = np.concatenate([(cols // b)[:, None], self.right[k + 2][cols % b]],
                                           axis=1)
        if k == 0:
            self.cores[0] = matrix[:, cols].reshape(a, d0, len(cols))


def maxvol(A: np.ndarray, tol: float = 1.05, max_iters: int = 200) -> np.ndarray:
    """Rows of the tall matrix ``A`` (n, r), n >= r, whose r x r submatrix has nearly the
    largest volume |det|: every entry of ``A @ inv(A[rows])`` is at most ``tol`` in
    modulus (Goreinov, Oseledets, Savostyanov, Tyrtyshnikov and Zamarashkin 2010).
    Starts from QR with column pivoting of ``A.T`` and swaps one row per step.

    >>> A = np.random.default_rng(0).standard_normal((50, 4))
    >>> rows = maxvol(A)
    >>> bool(np.abs(A @ np.linalg.inv(A[rows])).max() <= 1.05)
    True
    """
    import scipy.linalg
    n, r = A.shape
    if n <= r:
        return np.arange(n)
    rows = scipy.linalg.qr(A.T, mode="r", pivoting=True, check_finite=False)[1][:r].copy()
    B = np.linalg.solve(A[rows].T, A.T).T
    for _ in range(max_iters):
        i, j = np.unravel_index(int(np.argmax(np.abs(B))), B.shape)
        if abs(B[i, j]) <= tol:
            break
        rows[j] = i
        row = B[i].copy()
        row[j] -= 1.0
        B -= np.outer(B[:, j], row / B[i, j])
    return rows
