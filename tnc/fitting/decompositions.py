"""Direct decompositions: HOSVD, sequentially truncated HOSVD, HOOI (Tucker), TT-SVD, TT rounding.

:func:`decompose` always returns a :class:`~tnc.fitting.result.FitResult` whose network
is a Tucker or TT network with the chosen ranks (parameters ``G, U1..UN`` or
``G[1]..G[N]``, the names of ``tnc.library("tucker")`` and ``tnc.library("tt")``),
so it reconstructs, saves, loads, and serves as an ALS initialisation
(``tnc.fit(net, X, init=result)``). ``tnc.decompose`` and ``tnc.tt_round``
are this module's :func:`decompose` and :func:`tt_round`::

    >>> import numpy as np, tnc
    >>> rng = np.random.default_rng(0)
    >>> X = np.einsum("abc,ia,jb,kc->ijk", rng.random((2, 2, 2)), rng.random((5, 2)),
    ...               rng.random((6, 2)), rng.random((7, 2)))
    >>> tucker = decompose(X, "tucker", ranks=2)
    >>> tucker.rel_error < 1e-12, tucker.tensors["G"].shape
    (True, (2, 2, 2))
    >>> tt = decompose(X, "tt", rel_error=1e-10)
    >>> [core.shape for core in tt.tensors.values()]
    [(5, 2), (2, 6, 2), (2, 7)]
"""
from __future__ import annotations

import math
import time

import numpy as np

from tnc.engine import backend, kernels, streams
from tnc.lang.compiler import compile as compile_text
from tnc.errors import TncError
from tnc.fitting.front import refuse_masked
from tnc.options import check_value
from tnc.fitting.records import record
from tnc.fitting.result import FitResult
from tnc.fitting.rescale import scale_exponent   # defined there; tt imports it here

TUCKER_METHODS = ("hosvd", "sthosvd", "hooi")
GRAM_MIN_RATIO = 4        # use the Gram matrix of unfoldings at least this wide
GRAM_MIN_REL_ERROR = 1e-6  # below this requested accuracy, use a plain SVD (float64)
WORKING_DTYPES = ("float32", "float64", "complex64", "complex128")


def decompose(data, kind: str, ranks=None, rel_error: float | None = None, *,
              method: str | None = None, max_sweeps: int = 50, tol: float = 1e-10):
    """Decompose ``data`` (a dense array) as a ``"tucker"`` or ``"tt"`` network.

    ``ranks``: an int (every rank) or one per mode (Tucker: N ranks, TT: N-1
    bond ranks); ``rel_error``: a target relative error that picks the ranks
    (capped by ``ranks`` when both are given). Tucker ``method``: ``"hosvd"``,
    ``"sthosvd"`` (default) or ``"hooi"`` (HOOI sweeps from st-HOSVD, at most
    ``max_sweeps``, stopping when the core norm changes by less than ``tol``
    relative to itself; ``converged`` says whether it did). The data are
    scaled by a power of two first (:func:`scale_exponent`), so ``c * X``
    gives ``c`` times the decomposition of ``X``, the same ranks and sweeps.
    Returns a :class:`FitResult` (see the module docstring). Data of torch, jax or cupy
    are decomposed on numpy and the tensors come back in the data's library and device.

        >>> import numpy as np, tnc
        >>> X = np.random.default_rng(0).standard_normal((4, 5, 6))
        >>> tnc.decompose(X, "tt", ranks=[4, 6]).rel_error < 1e-12      # exact ranks
        True
    """
    from tnc.fitting.backends import foreign, to_library
    like = foreign({"data": data})
    result = _decompose(data if like is None else backend.to_numpy(backend.detach(data)),
                        kind, ranks, rel_error, method, max_sweeps, tol)
    return result if like is None else to_library(result, like)


def _decompose(data, kind, ranks, rel_error, method, max_sweeps, tol):
    """:func:`decompose` on numpy or out-of-core data."""
    from tnc.engine.blocks import out_of_core_kind
    if out_of_core_kind(data) is not None:      # memmap, zarr, h5py, dask: streamed in blocks
        from tnc.fitting.streamed_tucker import decompose_streamed
        return decompose_streamed(data, kind, ranks, rel_error, method=method,
                                  max_sweeps=max_sweeps, tol=tol)
    X = _check_data(data)
    _check_sweeps(max_sweeps, tol)
    start = time.perf_counter()
    exponent = scale_exponent(X)
    X = _ldexp(X, -exponent)
    if kind == "tucker":
        method = method or "sthosvd"
        if method not in TUCKER_METHODS:
            raise TncError(f"unknown Tucker method {method!r}; choose one of "
                           + ", ".join(TUCKER_METHODS))
        core, factors, history, converged = _tucker(X, ranks, rel_error, method, max_sweeps,
                                                    tol)
        network, tensors = tucker_network(core, factors)
    elif kind == "tt":
        if method not in (None, "tt-svd"):
            raise TncError(f"unknown TT method {method!r}; the TT method is 'tt-svd'")
        method, converged = "tt-svd", True
        cores = tt_svd(X, ranks, rel_error)
        network, tensors = tt_network(cores)
        history = [record(1, None, None, 0.0)]
    else:
        raise TncError(f"unknown decomposition {kind!r}; choose 'tucker' or 'tt'")
    elapsed = time.perf_counter() - start
    result = FitResult(network, tensors, method, history, converged, len(history), elapsed,
                       info={"kind": kind})
    _add_error(result, X)
    _scale_back(result, "G" if kind == "tucker" else f"G[{X.ndim}]", exponent)
    return result


def _check_sweeps(max_sweeps, tol) -> None:
    """HOOI's options: ``max_sweeps`` an int >= 1, ``tol`` a finite number >= 0."""
    check_value("max_sweeps", max_sweeps, int, {"min": 1}, "decompose")
    check_value("tol", tol, float, {}, "decompose")


def _check_data(data) -> np.ndarray:
    refuse_masked(data)
    if isinstance(data, (str, bytes)):
        raise TncError(f"decompose needs a numeric array, got {type(data).__name__}")
    X = np.asarray(data)
    X = X.astype(working_dtype(X.dtype, "decompose"), copy=False)
    if X.ndim < 2:
        raise TncError(f"decompose needs a tensor with at least 2 dimensions, got shape {X.shape}")
    if X.size == 0:
        raise TncError(f"decompose needs every dimension of the data to be at least 1, got "
                       f"shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise TncError("decompose needs finite data; the data has NaN or infinite entries "
                       "(for missing data use tnc.fit(..., mask=...))")
    return X


def working_dtype(dtype, what: str) -> np.dtype:
    """The dtype a decomposition runs in for data of ``dtype``: float32, float64,
    complex64 and complex128 as given, integers and booleans as float64; any other
    dtype is a :class:`TncError` naming it and ``what``.

    >>> working_dtype(np.dtype("int32"), "decompose"), working_dtype(np.dtype("complex64"), "x")
    (dtype('float64'), dtype('complex64'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.name not in WORKING_DTYPES:
        raise TncError(f"{what} cannot work in dtype {dtype}; it takes "
                       f"{', '.join(WORKING_DTYPES)} (integers and booleans become float64)")
    return dtype


def gram_min_rel_error(dtype) -> float:
    """:data:`GRAM_MIN_REL_ERROR` for ``dtype``: Gram matrices square the singular values,
    which then resolve down to ~sqrt(eps) of the largest, so the bound scales with
    sqrt(eps): 1e-6 in float64, about 2.3e-2 in float32.

    >>> gram_min_rel_error(np.float64), round(gram_min_rel_error(np.complex64), 3)
    (1e-06, 0.023)
    """
    ratio = np.finfo(dtype).eps / np.finfo(np.float64).eps
    return GRAM_MIN_REL_ERROR * math.sqrt(ratio)


def _add_error(result: FitResult, X) -> None:
    """Fill the last history entry with the exact loss and relative error."""
    residual = X - result.reconstruct()
    loss = float(np.vdot(residual, residual).real)
    norm = float(np.linalg.norm(X))
    result.history[-1].update(loss=loss, rel_error=math.sqrt(loss) / norm if norm else 0.0,
                              time=result.wall_time)


def _scale_back(result: FitResult, name: str, exponent: int) -> None:
    """Undo :func:`scale_exponent`: tensor ``name`` and every loss times ``2**exponent`` (squared).

    A loss beyond the float range becomes inf; relative errors need no scaling.
    """
    if not exponent:
        return
    result.tensors[name] = _ldexp(result.tensors[name], exponent)
    with np.errstate(over="ignore", under="ignore"):
        for entry in result.history:
            if "loss" in entry:
                entry["loss"] = float(np.ldexp(entry["loss"], 2 * exponent))


def per_mode(ranks, count: int, what: str) -> list[int] | None:
    """``ranks`` as a list of ``count`` positive ints (one int is repeated)."""
    if ranks is None:
        return None
    if isinstance(ranks, (int, np.integer)):
        ranks = [int(ranks)] * count
    ranks = list(ranks)
    if len(ranks) != count or not all(isinstance(r, (int, np.integer)) for r in ranks):
        raise TncError(f"{what} ranks must be one int or {count} ints, got {ranks!r}")
    if any(r < 1 for r in ranks):
        raise TncError(f"{what} ranks must be positive, got {ranks!r}")
    return [int(r) for r in ranks]


# -- truncated SVD of an unfolding -----------------------------------------------------------
def leading_vectors(matrix, rank: int | None, tail: float = 0.0, exact: bool = False):
    """Leading left singular vectors of ``matrix`` (m, n) and the singular values kept.

    Keeps at most ``rank`` vectors and the fewest whose discarded singular
    values have 2-norm at most ``tail``. Wide matrices go through their small
    Gram matrix ``A Aᵀ`` (one BLAS pass) unless ``exact``.
    """
    m, n = matrix.shape
    if type(matrix) is not np.ndarray:                    # torch, jax, ...: its own SVD
        vectors, values, _ = linalg("svd", matrix, full_matrices=False)
        keep = _truncation(backend.to_numpy(values), rank, tail)
        return vectors[:, :keep], values[:keep]
    if not exact and n >= GRAM_MIN_RATIO * m:
        values, vectors = np.linalg.eigh(matrix @ adjoint(matrix))
        values, vectors = np.sqrt(np.maximum(values[::-1], 0.0)), vectors[:, ::-1]
    else:
        vectors, values, _ = np.linalg.svd(matrix, full_matrices=False)
    keep = _truncation(values, rank, tail)
    return vectors[:, :keep], values[:keep]


def adjoint(matrix):
    """The conjugate transpose (the plain transpose, no copy, for real matrices)."""
    return matrix.conj().T if is_complex(matrix) else matrix.T


def is_complex(array) -> bool:
    """Whether ``array`` (any backend) holds complex numbers."""
    return backend.dtype_name(array).startswith("complex")


def linalg(name: str, matrix, **options):
    """``numpy.linalg.<name>`` of a numpy array, else the array library's own
    (``torch.linalg.svd`` of a torch tensor: through autoray, on its device)."""
    if type(matrix) is np.ndarray:
        return getattr(np.linalg, name)(matrix, **options)
    return backend.do(f"linalg.{name}", matrix, **options)


def tensordot(a, b, axes):
    """``tensordot`` of ``a`` and ``b``'s library (numpy's for numpy arrays)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.tensordot(a, b, axes=axes)
    return backend.do("tensordot", a, b, axes=axes)


def exponent_of(array) -> int:
    """:func:`~tnc.fitting.rescale.scale_exponent` of an array of any backend."""
    if type(array) is np.ndarray:
        return scale_exponent(array)
    largest = float(abs(array).max()) if math.prod(array.shape) else 0.0
    return int(np.frexp(largest)[1]) if largest > 0 else 0


def as_cores(cores, what: str) -> list:
    """``cores`` as arrays of one backend (numpy for lists and scalars; torch tensors
    stay torch) in their joined working dtype (:func:`working_dtype`)."""
    cores = list(cores)
    if all(type(c) is np.ndarray for c in cores):        # the common case: numpy's own calls
        dtype = working_dtype(np.result_type(*cores), what)
        return [c.astype(dtype, copy=False) for c in cores]
    if backend.backend_of(cores, what) in ("numpy", "builtins"):
        cores = [np.asarray(c) for c in cores]
    dtype = working_dtype(backend.result_dtype(*cores), what)
    return [backend.astype(c, dtype) for c in cores]


def _truncation(values, rank, tail: float) -> int:
    squares = np.cumsum((values ** 2)[::-1])[::-1]      # squares[k] = sum of values[k:]**2
    keep = len(values)
    if tail > 0 or squares[0] == 0:                    # all-zero data: one vector is exact
        small = np.nonzero(squares <= tail ** 2)[0]
        keep = int(small[0]) if len(small) else len(values)
    keep = max(keep, 1)
    return min(keep, rank) if rank is not None else keep


def unfold(tensor, mode: int):
    return np.moveaxis(tensor, mode, 0).reshape(tensor.shape[mode], -1)


def conj(array):
    """The complex conjugate; real arrays as they are (no copy)."""
    return array.conj() if np.iscomplexobj(array) else array


def mode_product(tensor, matrix, mode: int):
    """``tensor ×_mode matrix``: contract leg ``mode`` with the rows of ``matrix`` (n, r)."""
    moved = np.tensordot(tensor, matrix, axes=([mode], [0]))
    return np.moveaxis(moved, -1, mode)


# -- Tucker ---------------------------------------------------------------------------------
def _tucker(X, ranks, rel_error, method, max_sweeps, tol):
    ranks = per_mode(ranks, X.ndim, "Tucker")
    if ranks is None and rel_error is None:
        raise TncError("decompose(..., 'tucker') needs ranks=... or rel_error=...")
    if ranks is not None:
        for mode, (r, size) in enumerate(zip(ranks, X.shape)):
            others = X.size // size
            if r > min(size, others):
                raise TncError(f"Tucker rank {r} of mode {mode + 1} is larger than the data "
                               f"allows (mode size {size}, other modes {others}); "
                               f"use at most {min(size, others)}")
    tail = _tail(X, rel_error, X.ndim)
    exact = rel_error is not None and rel_error < gram_min_rel_error(backend.dtype_of(X))
    if method == "hosvd":
        factors = [leading_vectors(unfold(X, n), None if ranks is None else ranks[n], tail,
                                   exact)[0] for n in range(X.ndim)]
        core = X
        for n, U in enumerate(factors):
            core = mode_product(core, conj(U), n)
        return core, factors, [record(1, None, None, 0.0)], True
    core, factors = st_hosvd(X, ranks, tail, exact)
    if method == "sthosvd":
        return core, factors, [record(1, None, None, 0.0)], True
    core, factors, history = hooi(X, factors, max_sweeps, tol)
    return core, factors, history, history[-1]["converged"]


def _tail(X, rel_error, count: int) -> float:
    if rel_error is None:
        return 0.0
    if not 0 <= rel_error < 1:
        raise TncError(f"rel_error must be in [0, 1), got {rel_error!r}")
    return rel_error * float(linalg("norm", X)) / math.sqrt(count)


def st_hosvd(X, ranks, tail: float = 0.0, exact: bool = False):
    """Sequentially truncated HOSVD: ``(core, factors)``, the core shrinking mode by mode."""
    core, factors = X, []
    for n in range(X.ndim):
        U, _ = leading_vectors(unfold(core, n), None if ranks is None else ranks[n], tail, exact)
        factors.append(U)
        core = mode_product(core, conj(U), n)
    return core, factors


def hooi(X, factors, max_sweeps: int = 50, tol: float = 1e-10):
    """Higher-order orthogonal iteration from ``factors``: ``(core, factors, history)``.

    Stops when the core norm (the fit: ``||X||² - ||G||²`` is the loss)
    changes by at most ``tol`` relative to itself between two sweeps; the last
    history entry's ``converged`` says whether that happened within
    ``max_sweeps`` (the first sweep has nothing to compare with, so one sweep
    never converges).

    The projection of X onto every factor but one is a contraction tree over
    the leaves X, U1..UN (with the core closing the network), built like the
    ALS right-hand sides, so intermediates are shared between modes of a sweep.
    """
    from tnc.fitting.als import Leaves, chain_tree, dimension_tree_groups, evaluate
    N = X.ndim
    legs = {"X": tuple(f"i{n}" for n in range(N)), "G": tuple(f"a{n}" for n in range(N))}
    legs.update({n: (f"i{n}", f"a{n}") for n in range(N)})
    sizes = {f"i{n}": X.shape[n] for n in range(N)}
    sizes.update({f"a{n}": U.shape[1] for n, U in enumerate(factors)})
    leaves = Leaves("hooi", legs, sizes, {ix: k for k, ix in enumerate(
        [*legs["X"], *legs["G"]])})
    order = list(range(N))
    trees = [chain_tree(leaves, "X", dimension_tree_groups(order, n)) for n in order]
    values = {"X": X, **{n: conj(U) for n, U in enumerate(factors)}}  # core = X x_n U_nᴴ
    cache: dict = {}
    history, previous, xx = [], None, float(np.vdot(X, X).real)
    start = time.perf_counter()
    with kernels.blas_serial(X):
        for sweep in range(1, max_sweeps + 1):
            for n in order:
                projected = evaluate(trees[n], values, cache)
                rows = np.moveaxis(projected, trees[n].indices.index(f"i{n}"), 0)
                U, _ = leading_vectors(rows.reshape(rows.shape[0], -1), sizes[f"a{n}"])
                values[n] = conj(U)
                for key in [k for k in cache if n in k[1]]:
                    del cache[key]
            core = np.tensordot(conj(U), rows, axes=([0], [0]))
            core_axes = ("a" + str(n),) + tuple(ix for ix in trees[n].indices if ix != f"i{n}")
            core = np.transpose(core, [core_axes.index(f"a{m}") for m in range(N)])
            norm = float(np.linalg.norm(core))
            loss = max(xx - norm ** 2, 0.0)
            converged = previous is not None and abs(norm - previous) <= tol * norm
            history.append(record(sweep, loss, math.sqrt(loss / xx) if xx else 0.0,
                                  time.perf_counter() - start, converged=converged))
            if converged:
                break
            previous = norm
    return core, [conj(values[n]) for n in order], history


def tucker_network(core, factors):
    """The Tucker network of these sizes and its tensors (names ``G``, ``U1``..``UN``)."""
    N = len(factors)
    params = [f"I{n} = {U.shape[0]}" for n, U in enumerate(factors, 1)]
    params += [f"R{n} = {U.shape[1]}" for n, U in enumerate(factors, 1)]
    indices = [f"i{n}: I{n}" for n in range(1, N + 1)] + [f"a{n}: R{n}" for n in range(1, N + 1)]
    uses = [f"G({', '.join(f'a{n}' for n in range(1, N + 1))})"]
    uses += [f"U{n}(i{n}, a{n})" for n in range(1, N + 1)]
    text = (f"network tucker({', '.join(params)}) {{\n    index {', '.join(indices)}\n"
            f"    tensor {', '.join(uses)}\n"
            f"    output {', '.join(f'i{n}' for n in range(1, N + 1))}\n}}\n")
    tensors = {"G": np.ascontiguousarray(core)}
    tensors.update({f"U{n}": np.ascontiguousarray(U) for n, U in enumerate(factors, 1)})
    return compile_text(text), tensors


# -- tensor train ---------------------------------------------------------------------------
def tt_svd(X, ranks=None, rel_error: float | None = None) -> list[np.ndarray]:
    """TT-SVD (Oseledets 2011): cores of shapes (r_{k-1}, d_k, r_k), r_0 = r_N = 1.

    ``ranks``: max bond ranks (one int or N-1); ``rel_error``: error budget,
    split evenly (``eps ||X|| / sqrt(N-1)`` per truncation). A torch (or other
    autoray-known) array is decomposed with its own library's SVD, cores on its
    device and in its dtype.
    """
    N = X.ndim
    if ranks is None and rel_error is None:
        raise TncError("decompose(..., 'tt') needs ranks=... or rel_error=...")
    ranks = _tt_ranks(X.shape, ranks)
    tail = _tail(X, rel_error, N - 1)
    exact = rel_error is not None and rel_error < gram_min_rel_error(backend.dtype_of(X))
    cores, rest, r_prev = [], X.reshape(1, -1), 1
    numpy = type(X) is np.ndarray
    with kernels.blas_serial(X if numpy else X.shape):   # projections on the kernels' threads
        for k in range(N - 1):
            matrix = rest.reshape(r_prev * X.shape[k], -1)
            U, _ = leading_vectors(matrix, None if ranks is None else ranks[k], tail, exact)
            cores.append(U.reshape(r_prev, X.shape[k], U.shape[1]))
            rest = streams.project(U, matrix) if numpy else adjoint(U) @ matrix
            r_prev = U.shape[1]
    cores.append(rest.reshape(r_prev, X.shape[-1], 1))
    return cores


def _tt_ranks(shape, ranks):
    """Per-bond max ranks; one int is a cap clipped to each unfolding, a list must fit."""
    N = len(shape)
    allowed = [min(math.prod(shape[:k + 1]), math.prod(shape[k + 1:])) for k in range(N - 1)]
    single = isinstance(ranks, (int, np.integer))
    ranks = per_mode(ranks, N - 1, "TT")
    if ranks is None:
        return None
    if single and ranks[0] <= max(allowed):
        return [min(r, a) for r, a in zip(ranks, allowed)]
    for k, (r, a) in enumerate(zip(ranks, allowed)):
        if r > a:
            raise TncError(f"TT rank {r} of bond {k + 1} is larger than the data allows "
                           f"(the unfolding is {math.prod(shape[:k + 1])} x "
                           f"{math.prod(shape[k + 1:])}); use at most {a}")
    return ranks


def tt_round(cores, ranks=None, rel_error: float | None = None) -> list[np.ndarray]:
    """Recompress TT cores (r_{k-1}, d_k, r_k): right-to-left QR (R factors only,
    :func:`_right_triangles`), then left to right a QR ``m = q r`` of each core (times
    what the last step carried), the singular values of the small ``r F_k`` and, only
    where they say to truncate, its SVD's leading vectors ``v`` (core ``q v``, carry
    ``v^H r``); where nothing is cut (:func:`_keeps_every_vector` proves it without the
    singular values, else they decide) the core is ``q`` and the carry ``r``: no SVD of
    the tall ``m`` (about 2x faster on a sum of random trains, which never truncates).
    Cores come back left-orthonormal.

    Costs O(N d r³) and never forms the full tensor. Real or complex cores, numpy
    or torch (its ``linalg.qr`` / ``linalg.svd``; cores stay on its device);
    the end cores may also be 2-d, as :func:`decompose` gives them ((d_1, r_1)
    and (r_{N-1}, d_N)), and come back in the layout they came in.

    >>> rng = np.random.default_rng(0)
    >>> cores = tt_svd(rng.random((3, 4, 5)), ranks=3)
    >>> [c.shape for c in tt_round(cores, ranks=2)]
    [(1, 3, 2), (2, 4, 2), (2, 5, 1)]
    >>> [c.shape for c in tt_round(decompose(rng.random((3, 4, 5)), "tt", ranks=3).tensors.values(), ranks=2)]
    [(3, 2), (2, 4, 2), (2, 5)]
    """
    cores, flat_ends = _three_d(cores)
    N = len(cores)
    ranks = per_mode(ranks, N - 1, "TT")
    if rel_error is not None:
        check_value("rel_error", rel_error, float, {"below": 1}, "tt_round")
    exponents = [exponent_of(c) for c in cores]          # exact; undone on the last core
    cores = [_ldexp(c, -e) for c, e in zip(cores, exponents)]
    factors, tail, carry = _right_triangles(cores), None, None
    for k in range(N - 1):
        d, r1 = cores[k].shape[1:]
        m = cores[k] if carry is None else tensordot(carry, cores[k], ([1], [0]))
        q, r = linalg("qr", m.reshape(-1, r1))               # m (t d, r1) = q r
        small = r @ factors[k]                               # the unfolding's singular values
        if tail is None:                                     # ||small||_F at bond 1 is ||X||
            norm = float(linalg("norm", small))
            tail = 0.0 if rel_error is None else rel_error * norm / math.sqrt(max(N - 1, 1))
        cap = None if ranks is None else ranks[k]
        keep = q.shape[1]
        if not _keeps_every_vector(small, tail, cap):        # the singular values decide
            u, s, _ = linalg("svd", small, full_matrices=False)
            keep = _truncation(backend.to_numpy(s), cap, tail)
            if keep < q.shape[1]:                            # truncate: the leading vectors
                q, r = q @ u[:, :keep], adjoint(u[:, :keep]) @ r   # r: the projection onto q
        cores[k] = q.reshape(-1, d, keep)
        carry = r
    cores[-1] = _ldexp(tensordot(carry, cores[-1], ([1], [0])), sum(exponents))
    if flat_ends:
        cores[0], cores[-1] = cores[0][0], cores[-1][..., 0]
    return cores


def _keeps_every_vector(small, tail: float, rank) -> bool:
    """Whether :func:`_truncation` would keep all ``n`` singular values of ``small`` (n x c,
    numpy), proved without computing them: ``n <= c``, no rank cap below ``n``, and a
    Cholesky factorisation of ``small small^H - mu I`` succeeds, ``mu = tail^2 + 4 (n + 1)
    eps ||small||_F^2`` (the margin covers the rounding of the Gram and of Cholesky), so
    ``sigma_min^2 > tail^2``. A failed test says nothing: the caller then computes the
    singular values. Torch tensors always take that path.

        >>> _keeps_every_vector(np.diag([3.0, 1.0]), 0.5, None)
        True
        >>> _keeps_every_vector(np.diag([3.0, 1e-9]), 0.0, None)     # unsure: False
        False
    """
    n, c = small.shape
    if type(small) is not np.ndarray or n > c or (rank is not None and rank < n):
        return False
    eps = np.finfo(small.dtype).eps
    margin = tail ** 2 + 4 * (n + 1) * eps * float(np.vdot(small, small).real)
    gram = small @ adjoint(small)
    gram[np.diag_indices(n)] -= margin
    try:
        np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        return False
    return True


def _right_triangles(cores) -> list:
    """``F_k`` (r_k x c_k), k < N - 1, with the part of the train right of bond k equal to
    ``F_k Q`` for some Q with orthonormal rows: right to left, ``W = core ×₃ F`` as an
    (r_k, d c) matrix is its own factor while no wider than r_k, else the transposed
    triangular factor of the QR of ``Wᵀ`` (no Q is formed: half a QR's work).

    The singular values of the unfolding at bond k are then those of ``M_k F_k``
    (``M_k``: the left part, orthonormal in :func:`tt_round`'s sweep), so rounding
    needs one SVD per core and no orthogonalised copy of the train (Oseledets 2011's
    right-to-left QR sweep, with only its R factors kept).
    """
    factors, f = [None] * (len(cores) - 1), None
    for k in range(len(cores) - 1, 0, -1):
        r0, d, r1 = cores[k].shape
        w = cores[k].reshape(r0 * d, r1)
        w = (w if f is None else w @ f).reshape(r0, -1)
        f = w if w.shape[1] <= r0 else _r_factor(w.T).T
        factors[k - 1] = f
    return factors


def _r_factor(matrix):
    """R of the reduced QR of ``matrix`` (m, n), m >= n, without forming Q."""
    if type(matrix) is np.ndarray:
        return np.linalg.qr(matrix, mode="r")
    return backend.do("linalg.qr", matrix, mode="r")[1]       # torch: (empty Q, R)


def _three_d(cores) -> tuple[list[np.ndarray], bool]:
    """TT cores as 3-d arrays in their joined dtype (float32, float64, complex64 or
    complex128; integers as float64) and whether the end cores came 2-d."""
    cores = list(cores)
    if not cores:
        raise TncError("tt_round needs at least one TT core, got none")
    cores = as_cores(cores, "tt_round")
    flat_ends = len(cores) > 1 and cores[0].ndim == 2 and cores[-1].ndim == 2
    if flat_ends:
        cores[0], cores[-1] = cores[0][None], cores[-1][..., None]
    for k, core in enumerate(cores):
        if core.ndim != 3 or (k and core.shape[0] != cores[k - 1].shape[2]):
            raise TncError(f"TT core {k + 1} has shape {core.shape}; TT cores are 3-d "
                           "(r_{k-1}, d_k, r_k) with matching bonds (or 2-d end cores "
                           f"(d_1, r_1), (r_{{N-1}}, d_N)); the shapes are "
                           f"{[c.shape for c in cores]}")
    if cores[0].shape[0] != 1 or cores[-1].shape[2] != 1:
        raise TncError(f"the end TT cores need outer bonds of size 1, got shapes "
                       f"{cores[0].shape} and {cores[-1].shape}")
    return cores, flat_ends


def _ldexp(array, exponent: int):
    """``array * 2**exponent``, exact (real and imaginary parts of complex arrays apart)."""
    if not exponent:
        return array
    if type(array) is not np.ndarray:
        return array * 2.0 ** exponent             # a power of two: exact in range
    if np.iscomplexobj(array):
        return np.ldexp(array.real, exponent) + 1j * np.ldexp(array.imag, exponent)
    return np.ldexp(array, exponent)


def tt_orthogonalize(cores, centre: int = 0) -> list[np.ndarray]:
    """Mixed canonical form of 3-d TT cores by QR sweeps: cores left of ``centre``
    left-orthonormal (``core.reshape(r0 * d, r1)`` has orthonormal columns), cores right
    of it right-orthonormal (``core.reshape(r0, d * r1)`` has orthonormal rows); the
    tensor is unchanged and a bond may shrink to what its QR factor holds. O(N d r³).

    >>> rng = np.random.default_rng(0)
    >>> cores = tt_orthogonalize(tt_svd(rng.random((3, 4, 5)), ranks=3), 2)
    >>> q = cores[0].reshape(3, -1)
    >>> bool(np.allclose(q.T @ q, np.eye(q.shape[1])))
    True
    """
    cores = list(cores)
    for k in range(centre):
        r0, d, r1 = cores[k].shape
        q, r = linalg("qr", cores[k].reshape(r0 * d, r1))
        cores[k] = q.reshape(r0, d, q.shape[1])
        cores[k + 1] = tensordot(r, cores[k + 1], ([1], [0]))
    for k in range(len(cores) - 1, centre, -1):
        r0, d, r1 = cores[k].shape
        q, r = linalg("qr", cores[k].reshape(r0, d * r1).T)
        cores[k] = q.T.reshape(q.shape[1], d, r1)
        cores[k - 1] = tensordot(cores[k - 1], r.T, ([2], [0]))
    return cores


def tt_network(cores):
    """The TT network of these core shapes and its tensors (names ``G[1]``..``G[N]``)."""
    N = len(cores)
    dims = [c.shape[1] for c in cores]
    bonds = [c.shape[2] for c in cores[:-1]]
    params = [f"d{n} = {d}" for n, d in enumerate(dims, 1)]
    params += [f"r{n} = {r}" for n, r in enumerate(bonds, 1)]
    indices = [f"p{n}: d{n}" for n in range(1, N + 1)] + [f"b{n}: r{n}" for n in range(1, N)]
    uses, tensors = [], {}
    for n in range(1, N + 1):
        legs = ([f"b{n - 1}"] if n > 1 else []) + [f"p{n}"] + ([f"b{n}"] if n < N else [])
        uses.append(f"G[{n}]({', '.join(legs)})")
        core = cores[n - 1]
        shape = tuple(s for s, keep in zip(core.shape, (n > 1, True, n < N)) if keep)
        tensors[f"G[{n}]"] = np.ascontiguousarray(core.reshape(shape))
    text = (f"network tt({', '.join(params)}) {{\n    index {', '.join(indices)}\n"
            f"    tensor {', '.join(uses)}\n"
            f"    output {', '.join(f'p{n}' for n in range(1, N + 1))}\n}}\n")
    return compile_text(text), tensors
