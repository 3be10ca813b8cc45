"""Tensor trains (TT / MPS) and TT-matrices (MPO) as values: sums, products, rounding.

A :class:`TensorTrain` holds N cores of shapes (r_{k-1}, d_k, r_k) with
r_0 = r_N = 1; a :class:`TTMatrix` holds cores (r_{k-1}, m_k, n_k, r_k), an
operator from the n-legs to the m-legs. Both convert both ways with the
tensors of ``tnc.library("tt" / "ttm", ...)`` networks, ``decompose(X, "tt")``
results and ``tnc.fit(..., method="dmrg")`` results. float32, float64, complex64
and complex128 cores keep their dtype through every operation (mixed trains promote
by numpy's rules); numpy or torch cores (torch's own SVD and QR, on the tensors'
device; :meth:`TensorTrain.entries`, the network conversions and the ``"gram"``
rounding are numpy-only).

The operations are the direct formulas of the lecture notes ("Efficient
computations with tensor networks"; Oseledets 2011), never the dense tensor:

- ``a + b``, ``a - b``: block-diagonal cores, ranks r_a + r_b (2R);
- ``a * b`` (or :meth:`hadamard`): cores ``kron``-ed per site, ranks r_a r_b (R²);
- ``c * a``: the first core times the scalar;
- :meth:`dot` (``<a, b> = sum conj(a) b``) and :meth:`norm`: one left-to-right
  sweep of environments, O(N d R³);
- :meth:`round`: right-to-left QR, left-to-right truncated SVD (``tt_round``), O(N d R³);
- ``A @ x``, ``A @ B``: cores contracted over the shared leg, ranks R_A R_x;
  :meth:`TTMatrix.apply` rounds the product.

>>> import numpy as np, tnc
>>> x = TensorTrain.from_dense(np.arange(24.0).reshape(2, 3, 4), rel_error=1e-12)
>>> x.ranks, (x + x).ranks, (x * x).ranks
([2, 2], [4, 4], [4, 4])
>>> bool(np.allclose((x + 2 * x).round(rel_error=1e-12).to_dense(), 3 * x.to_dense()))
True
>>> A = TTMatrix.from_dense(np.eye(24).reshape(2, 3, 4, 2, 3, 4), rel_error=1e-12)
>>> float(abs((A @ x).dot(x) - x.norm() ** 2)) < 1e-9
True
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from tnc.errors import TncError
from tnc.engine import backend
from tnc.fitting.decompositions import (_ldexp, _truncation, adjoint, as_cores,
                                        gram_min_rel_error, is_complex, linalg, per_mode, scale_exponent,
                                        tensordot, tt_orthogonalize, tt_round, tt_svd,
                                        working_dtype)
from tnc.options import check_value
from tnc.engine.plan import check_allocation


class _Train:
    """What trains and TT-matrices share: cores with the site legs between two bonds.

    Every operation works on the *flat* cores (r_{k-1}, prod(site), r_k) and
    gives the site legs back with :meth:`_like`.
    """

    __array_ufunc__ = None          # numpy scalars and arrays defer to our operators
    site_ndim = 1
    kind = "train"

    def __init__(self, cores):
        cores = as_cores(cores, type(self).__name__)
        _check_cores(cores, self.site_ndim + 2, type(self).__name__)
        self.cores = cores

    # -- shape -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cores)

    @property
    def ranks(self) -> list[int]:
        """The N - 1 bond sizes."""
        return [c.shape[-1] for c in self.cores[:-1]]

    @property
    def sites(self) -> list[tuple[int, ...]]:
        """The site legs of each core: (d_k,) for a train, (m_k, n_k) for a TT-matrix."""
        return [c.shape[1:-1] for c in self.cores]

    @property
    def dtype(self) -> np.dtype:
        """The cores' dtype, as a numpy dtype (also for torch cores)."""
        return backend.dtype_of(self.cores[0])

    def __repr__(self) -> str:
        return (f"<tnc.{type(self).__name__} shape {self.shape}, ranks {self.ranks}, "
                f"{self.dtype}>")

    def _flat(self) -> list[np.ndarray]:
        return [c.reshape(c.shape[0], -1, c.shape[-1]) for c in self.cores]

    def _like(self, flat):
        """A train of this type whose cores are ``flat`` with this train's site legs."""
        return type(self)([c.reshape((c.shape[0],) + s + (c.shape[-1],))
                           for c, s in zip(flat, self.sites)])

    def _same_shape(self, other, what: str) -> None:
        if type(other) is not type(self):
            raise TncError(f"cannot {what} a {type(self).__name__} of shape {self.shape} and "
                           f"a {type(other).__name__}"
                           + (f" of shape {other.shape}" if isinstance(other, _Train) else ""))
        if self.sites != other.sites:
            raise TncError(f"cannot {what} a {type(self).__name__} of shape {self.shape} "
                           f"({len(self)} cores) and one of shape {other.shape} "
                           f"({len(other)} cores); the lengths and leg sizes must agree")

    # -- arithmetic ----------------------------------------------------------------------
    def __add__(self, other):
        if not isinstance(other, _Train):
            return NotImplemented
        self._same_shape(other, "add")
        return self._like(_block_sum(self._flat(), other._flat()))

    def __sub__(self, other):
        if not isinstance(other, _Train):
            return NotImplemented
        return self + (-1) * other

    def __neg__(self):
        return (-1) * self

    def __mul__(self, other):
        if isinstance(other, _Train):
            return self.hadamard(other)
        if not isinstance(other, numbers.Number) or isinstance(other, bool):
            return NotImplemented
        return type(self)([other * self.cores[0]] + self.cores[1:])

    __rmul__ = __mul__

    def __truediv__(self, other):
        if not isinstance(other, numbers.Number) or isinstance(other, bool):
            return NotImplemented
        return self * (1 / other)

    def hadamard(self, other):
        """The entrywise product; ranks r_a r_b (cores ``kron``-ed per site index)."""
        self._same_shape(other, "multiply (Hadamard)")
        return self._like([_kron_cores(a, b) for a, b in zip(self._flat(), other._flat())])

    def dot(self, other) -> complex | float:
        """``sum(conj(self) * other)`` over every entry, in O(N d R³) (no dense tensor)."""
        self._same_shape(other, "take the inner product of")
        flat = self._flat() + other._flat()
        if self.dtype != other.dtype:
            flat = backend.promote(*flat)
        env = backend.ones((1, 1), like=flat[0])
        for a, b in zip(flat[:len(self)], flat[len(self):]):
            env = tensordot(env, b, ([1], [0]))                          # (ra, d, rb)
            env = tensordot(backend.conj(a), env, ([0, 1], [0, 1]))      # (ra', rb')
        value = env[0, 0]
        return complex(value) if is_complex(env) else float(value)

    def norm(self) -> float:
        """The Frobenius norm, from the orthogonalised train (accurate also for tiny norms)."""
        return float(linalg("norm", tt_orthogonalize(self._flat(), 0)[0]))

    def round(self, rel_error: float | None = None, max_rank=None, method: str = "auto"):
        """Recompressed to relative error ``rel_error`` (Frobenius) and/or bond sizes at most
        ``max_rank`` (one int or N - 1); O(N d R³).

        ``method``: ``"qr"`` is :func:`tnc.fitting.decompositions.tt_round` (a QR of every
        core right to left, then an SVD of every core left to right: accurate to machine
        precision); ``"gram"`` (:func:`_gram_round`) replaces both by matrix products and
        one r x r eigen-decomposition per bond (Gram matrices of the right parts, their
        Cholesky factors, the eigenvalues of the factored core Grams): no decomposition
        of a core-sized (r d, r) matrix, about 2x faster than ``"qr"`` at rank 100, but
        resolving singular values only down to ~sqrt(eps) of the largest (1e-8 in
        float64, 3e-4 in float32); ``"auto"`` takes ``"gram"`` when that cannot matter
        (``rel_error`` None or at least 1e-6 in float64, 2.3e-2 in float32:
        :func:`~tnc.fitting.decompositions.gram_min_rel_error`, as :func:`tnc.decompose`
        does), else ``"qr"``; torch cores always take ``"qr"`` (torch's own QR and SVD).
        The result has this train's dtype and backend.
        """
        check_value("method", method, str, {"choices": ("auto", "qr", "gram")}, "round")
        if rel_error is None and max_rank is None:
            rel_error = 0.0
        ranks = _capped(max_rank, self.ranks)
        numpy = type(self.cores[0]) is np.ndarray
        if method == "auto":
            method = "gram" if numpy and (rel_error is None or rel_error >= gram_min_rel_error(
                self.dtype)) else "qr"
        if method == "gram" and not numpy:
            raise TncError(f"round(method='gram') is numpy-only; these cores are "
                           f"{backend.backend_name(self.cores[0])} tensors: use method='qr'")
        if method == "qr":
            return self._like(tt_round(self._flat(), ranks=ranks, rel_error=rel_error))
        if rel_error is not None:
            check_value("rel_error", rel_error, float, {"below": 1}, "round")
        return self._like(_gram_round(self._flat(), per_mode(ranks, len(self) - 1, "TT"),
                                      rel_error))

    def canonical(self, centre: int = 0):
        """The same tensor with cores left of ``centre`` (0-based) left-orthonormal and
        cores right of it right-orthonormal (mixed canonical form); ``centre=len - 1`` is
        the left-canonical form, ``0`` the right-canonical one."""
        check_value("centre", centre, int, {"max": len(self) - 1}, "canonical")
        return self._like(tt_orthogonalize(self._flat(), centre))

    # -- dense ---------------------------------------------------------------------------
    def to_dense(self, memory_limit="auto") -> np.ndarray:
        """The full tensor (shape :attr:`shape`), after checking it fits ``memory_limit``."""
        size = math.prod(self.shape)
        check_allocation(size * self.dtype.itemsize,
                         f"the dense form of a {type(self).__name__} of shape {self.shape}",
                         memory_limit)
        out = backend.ones((1, 1), like=self.cores[0])
        for core in self._flat():
            out = tensordot(out, core, ([1], [0])).reshape(-1, core.shape[-1])
        return self._dense_layout(out.reshape([s for site in self.sites for s in site]))

    def _dense_layout(self, interleaved):
        return interleaved


class TensorTrain(_Train):
    """A tensor train (MPS): cores (r_{k-1}, d_k, r_k), r_0 = r_N = 1.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((3, 4, 5))
    >>> tt = TensorTrain.from_dense(X, rel_error=1e-12)
    >>> tt.shape, tt.ranks
    ((3, 4, 5), [3, 5])
    >>> bool(np.isclose(tt.norm(), np.linalg.norm(X)))
    True
    """

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(c.shape[1] for c in self.cores)

    @classmethod
    def from_dense(cls, X, rel_error: float | None = None, max_rank=None) -> "TensorTrain":
        """TT-SVD of the dense array ``X`` (at least 2-d) to ``rel_error`` and/or ``max_rank``
        (one int, capped at each unfolding, or N - 1); real or complex."""
        X = _dense(X)
        if X.ndim < 2:
            raise TncError(f"TensorTrain.from_dense needs at least 2 dimensions, got shape "
                           f"{X.shape}")
        if rel_error is None and max_rank is None:
            rel_error = 0.0
        return cls(_tt_svd(X, max_rank, rel_error))

    @classmethod
    def from_network(cls, network, tensors: dict) -> "TensorTrain":
        """The train held by a TT network's ``tensors`` (``tnc.library("tt")``, a
        ``decompose(X, "tt")`` or DMRG result), cores in chain order; the network's
        output must list the physical legs in that order."""
        return cls(_chain_cores(network, tensors, 1))

    @classmethod
    def from_result(cls, result) -> "TensorTrain":
        """:meth:`from_network` of a :class:`~tnc.fitting.result.FitResult`."""
        return cls.from_network(result.network, result.tensors)

    def to_network(self):
        """``(network, tensors)``: the TT network of these shapes (``decompose``'s, with
        parameters ``G[1]..G[N]`` and 2-d end cores); ``network.contract(tensors)`` is
        :meth:`to_dense`."""
        from tnc.fitting.decompositions import tt_network
        return tt_network(self.cores)

    def to_result(self):
        """A :class:`~tnc.fitting.result.FitResult` of :meth:`to_network` (saves, loads, reconstructs,
        starts ``tnc.fit(..., init=...)``)."""
        return _result(*self.to_network(), "tensor-train")

    def entries(self, indices) -> np.ndarray:
        """The entries at integer ``indices`` (n, N), O(n N R²) without the dense tensor."""
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.shape[1] != len(self):
            raise TncError(f"entries needs indices of shape (n, {len(self)}), got shape "
                           f"{idx.shape}")
        out = np.ones((idx.shape[0], 1), dtype=self.dtype)
        for k, core in enumerate(self.cores):
            out = np.einsum("na,anb->nb", out, core[:, idx[:, k], :])
        return out[:, 0]


class TTMatrix(_Train):
    """A TT-matrix (MPO): cores (r_{k-1}, m_k, n_k, r_k), mapping n-legs to m-legs.

    Its dense form has shape (m_1, .., m_N, n_1, .., n_N), the output order of
    ``tnc.library("ttm")``.

    >>> import numpy as np
    >>> A = TTMatrix.from_dense(np.eye(6).reshape(2, 3, 2, 3), rel_error=1e-12)
    >>> A.shape, A.ranks
    ((2, 3, 2, 3), [1])
    """

    site_ndim = 2

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(c.shape[1] for c in self.cores) + tuple(c.shape[2] for c in self.cores)

    def _dense_layout(self, interleaved):
        N = len(self)
        return backend.transpose(interleaved, list(range(0, 2 * N, 2)) + list(range(1, 2 * N, 2)))

    @classmethod
    def from_dense(cls, A, rel_error: float | None = None, max_rank=None) -> "TTMatrix":
        """TT-SVD of ``A`` of shape (m_1, .., m_N, n_1, .., n_N) with rows and columns
        interleaved per site (cores (r, m_k, n_k, r))."""
        A = _dense(A)
        if A.ndim < 4 or A.ndim % 2:
            raise TncError(f"TTMatrix.from_dense needs shape (m_1, .., m_N, n_1, .., n_N) "
                           f"with N >= 2, got shape {A.shape}")
        N = A.ndim // 2
        order = [a for k in range(N) for a in (k, N + k)]
        sites = [(A.shape[k], A.shape[N + k]) for k in range(N)]
        merged = backend.transpose(A, order).reshape([m * n for m, n in sites])
        if rel_error is None and max_rank is None:
            rel_error = 0.0
        cores = _tt_svd(merged, max_rank, rel_error)
        return cls([c.reshape((c.shape[0],) + s + (c.shape[-1],)) for c, s in zip(cores, sites)])

    @classmethod
    def from_network(cls, network, tensors: dict) -> "TTMatrix":
        """The TT-matrix held by a TT-matrix network's ``tensors`` (``tnc.library("ttm")``,
        a DMRG result): row legs are those in the first half of the output."""
        return cls(_chain_cores(network, tensors, 2))

    @classmethod
    def from_result(cls, result) -> "TTMatrix":
        return cls.from_network(result.network, result.tensors)

    def to_network(self):
        """``(network, tensors)``: a TT-matrix network of these shapes (parameters
        ``W[1]..W[N]``, legs ``(b, row, col, b)``, output rows then columns)."""
        return _ttm_network(self.cores)

    def to_result(self):
        return _result(*self.to_network(), "tt-matrix")

    def __matmul__(self, other):
        """``A @ x`` (a TensorTrain, ranks R_A R_x) or ``A @ B`` (a TTMatrix)."""
        if not isinstance(other, _Train):
            return NotImplemented
        inner = [c.shape[2] for c in self.cores]
        outer = [c.shape[1] for c in other.cores]
        if len(self) != len(other) or inner != outer:
            raise TncError(f"cannot apply a TTMatrix of shape {self.shape} to a "
                           f"{type(other).__name__} of shape {other.shape}: the column legs "
                           f"{tuple(inner)} must match its legs {tuple(outer)} site by site")
        if isinstance(other, TensorTrain):
            return TensorTrain([_contract_cores(a, b, "amnb,cnd->acmbd")
                                for a, b in zip(self.cores, other.cores)])
        return TTMatrix([_contract_cores(a, b, "amnb,cnpd->acmpbd")
                         for a, b in zip(self.cores, other.cores)])

    def apply(self, x, rel_error: float | None = None, max_rank=None):
        """``(self @ x).round(rel_error, max_rank)``: the operator applied, then compressed."""
        return (self @ x).round(rel_error=rel_error, max_rank=max_rank)

    @property
    def T(self) -> "TTMatrix":
        """The transpose (rows and columns swapped per site)."""
        return TTMatrix([backend.transpose(c, (0, 2, 1, 3)) for c in self.cores])


# -- formulas on flat cores -------------------------------------------------------------
def _block_sum(a: list, b: list) -> list:
    """Cores of the sum: [A B] first, diag(A, B) inside, [A; B] last (ranks add)."""
    if len(a) == 1:
        return [a[0] + b[0]]
    cores = backend.promote(*a, *b)
    a, b = cores[:len(a)], cores[len(a):]
    out = [_concatenate([a[0], b[0]], 2)]
    for x, y in zip(a[1:-1], b[1:-1]):
        block = backend.zeros((x.shape[0] + y.shape[0], x.shape[1], x.shape[2] + y.shape[2]),
                              like=x)
        block[:x.shape[0], :, :x.shape[2]] = x
        block[x.shape[0]:, :, x.shape[2]:] = y
        out.append(block)
    out.append(_concatenate([a[-1], b[-1]], 0))
    return out


def _concatenate(arrays, axis: int):
    if type(arrays[0]) is np.ndarray:
        return np.concatenate(arrays, axis=axis)
    return backend.do("concatenate", arrays, axis=axis)


def _dense(X):
    """A dense array as given when torch (or another autoray-known library), else numpy."""
    if backend.backend_name(X) in ("numpy", "builtins") or isinstance(X, (list, tuple)):
        return np.asarray(X)
    return X


def _kron_cores(a, b):
    """Core of the entrywise product: (ra rb, d, ra' rb') with a's bond the slow one."""
    a, b = backend.promote(a, b)
    core = backend.einsum("adb,cde->acdbe", a, b)
    return core.reshape(a.shape[0] * b.shape[0], a.shape[1], a.shape[2] * b.shape[2])


def _contract_cores(a, b, equation: str):
    """``einsum(equation)`` of an operator core and a core, bonds merged (a's slow)."""
    core = backend.einsum(equation, *backend.promote(a, b))
    s = core.shape
    return core.reshape((s[0] * s[1],) + s[2:-2] + (s[-2] * s[-1],))


def _gram_round(cores: list, ranks, rel_error) -> list:
    """TT rounding by Gram matrices (Al Daas, Ballard and Benner 2022) with no
    decomposition of a core-sized matrix: right-to-left, W_k = L_k L_kᴴ, the Gram of
    the part right of bond k (two products per core, then a Cholesky factor);
    left-to-right, the unfolding's singular values are those of ``M_k L_k`` (core k's
    matrix M_k of shape (r d, r')), whose squares are the eigenvalues of the small
    Hermitian ``L_kᴴ (M_kᴴ M_k) L_k`` (r' x r'). Its eigenvectors V give core k,
    ``U = M_k L_k V Σ⁻¹``, and the carry ``Uᴴ M_k = (L_k V Σ⁻¹)ᴴ (M_kᴴ M_k)`` into core
    k + 1. Only products and r' x r' eigen-decompositions: singular values resolve
    down to ~1e-8 of the largest (squares). A wide core matrix (r d < r') takes the SVD
    of ``M_k L_k`` directly (it is small). O(N d R³); cores scaled by powers of two as in
    :func:`~tnc.fitting.decompositions.tt_round`.
    """
    N = len(cores)
    exponents = [scale_exponent(c) for c in cores]
    cores = [_ldexp(c, -e) for c, e in zip(cores, exponents)]
    factors = _right_factors(cores)
    tail, current = None, cores[0]
    for k in range(N - 1):
        r0, d, r1 = current.shape
        matrix = current.reshape(r0 * d, r1)
        s, u, carry = _gram_step(matrix, factors[k])
        if tail is None:
            norm = float(np.linalg.norm(s))
            tail = 0.0 if rel_error is None else rel_error * norm / math.sqrt(max(N - 1, 1))
        keep = _truncation(s, None if ranks is None else ranks[k], tail)
        keep = max(1, min(keep, r0 * d, factors[k].shape[1], int(np.count_nonzero(s))))
        cores[k] = u(keep).reshape(r0, d, keep)
        current = np.tensordot(carry(keep), cores[k + 1], axes=([1], [0]))
    cores[-1] = _ldexp(current, sum(exponents))
    return cores


def _right_factors(cores: list) -> list:
    """F_k with F_k F_kᴴ = the Gram of the part right of bond k (r_k x r_k), k < N - 1:
    that part itself (r_k, prod d_{k+1..N}) while it is no wider than r_k (exact, and
    its Gram singular), then Cholesky factors of W_{k-1} = C_k W_k C_kᴴ (two products)."""
    N = len(cores)
    factors, gram = [None] * (N - 1), None
    part = np.ones((1, 1), dtype=cores[0].dtype)
    for k in range(N - 1, 0, -1):
        r0, d, r1 = cores[k].shape
        flat = cores[k].reshape(r0, d * r1)
        if part is not None and d * part.shape[1] <= r0:
            part = (cores[k].reshape(r0 * d, r1) @ part).reshape(r0, -1)
            factors[k - 1] = part
            continue
        if gram is None:
            gram, part = part @ adjoint(part), None
        gram = (cores[k].reshape(r0 * d, r1) @ gram).reshape(r0, d * r1) @ adjoint(flat)
        factors[k - 1] = _gram_factor(gram)
    return factors


def _gram_step(matrix, factor):
    """Singular values ``s`` (descending) of ``matrix @ factor`` and two functions of a
    rank t: the t leading left vectors U (orthonormal columns) and the carry Uᴴ matrix."""
    rows, cols = matrix.shape
    if rows < cols:
        u, s, _ = np.linalg.svd(matrix @ factor, full_matrices=False)
        return s, lambda t: u[:, :t], lambda t: adjoint(u[:, :t]) @ matrix
    gram = adjoint(matrix) @ matrix                                  # (r', r')
    small = adjoint(factor) @ gram @ factor
    values, vectors = np.linalg.eigh((small + adjoint(small)) / 2)
    s = np.sqrt(np.maximum(values[::-1], 0.0))
    vectors = vectors[:, ::-1]

    weights = functools.lru_cache(maxsize=1)(lambda t: (factor @ vectors[:, :t]) / s[:t])
    return s, lambda t: matrix @ weights(t), lambda t: adjoint(weights(t)) @ gram


def _gram_factor(gram):
    """L with L Lᴴ = ``gram`` (Hermitian, semidefinite): Cholesky, else from eigh."""
    try:
        return np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(gram)
        return vectors * np.sqrt(np.maximum(values, 0.0))


def _capped(max_rank, ranks):
    """``max_rank`` for tt_round: one int capped at each current bond, or a list as given."""
    if max_rank is None:
        return None
    if isinstance(max_rank, (int, np.integer)) and not isinstance(max_rank, bool):
        check_value("max_rank", max_rank, int, {"min": 1}, "round")
        return [min(int(max_rank), r) for r in ranks]
    return max_rank


def _tt_svd(X, max_rank, rel_error):
    """:func:`tnc.fitting.decompositions.tt_svd` of ``X`` in its dtype (float32, float64,
    complex64, complex128; integers as float64), ``rel_error`` checked."""
    if rel_error is not None:
        check_value("rel_error", rel_error, float, {"below": 1}, "from_dense")
    return tt_svd(backend.astype(X, working_dtype(backend.dtype_of(X), "from_dense")), max_rank,
                  rel_error)


# -- networks ---------------------------------------------------------------------------
def _check_cores(cores: list, ndim: int, what: str) -> None:
    if not cores:
        raise TncError(f"a {what} needs at least one core, got none")
    shapes = [c.shape for c in cores]
    for k, c in enumerate(cores):
        if c.ndim != ndim or (k and c.shape[0] != cores[k - 1].shape[-1]):
            raise TncError(f"{what} core {k + 1} has shape {c.shape}; the cores must be "
                           f"{ndim}-d with matching bonds, got {shapes}")
    if cores[0].shape[0] != 1 or cores[-1].shape[-1] != 1:
        raise TncError(f"the end cores of a {what} need outer bonds of size 1, got {shapes}")


def _chain_cores(network, tensors: dict, site_legs: int) -> list[np.ndarray]:
    """The cores of a chain network's ``tensors`` as (left, site legs..., right) arrays."""
    from tnc.mps.chain import find_chain
    chain = find_chain(network)
    if chain.closed:
        raise TncError(f"network `{network.name}` is a ring; a tensor train needs open ends")
    output = list(network.output)
    N = len(chain)
    cores = []
    for k, core in enumerate(chain.cores):
        legs = core.physical
        if site_legs == 2 and len(legs) == 2 and output.index(legs[0]) >= N:
            legs = legs[::-1]
        expected = (output[k],) if site_legs == 1 else (output[k], output[N + k])
        if len(output) != site_legs * N or tuple(legs) != expected:
            raise TncError(f"network `{network.name}` is not a "
                           f"{'tensor train' if site_legs == 1 else 'TT-matrix'} with "
                           f"outputs in chain order: core `{core.name}` carries legs "
                           f"{core.physical}, the output is {tuple(output)}")
        array = np.asarray(tensors[core.name])
        order = ([core.axis(core.left)] if core.left else []) + [core.axis(i) for i in legs] \
            + ([core.axis(core.right)] if core.right else [])
        array = array.transpose(order)
        if core.left is None:
            array = array[None]
        if core.right is None:
            array = array[..., None]
        cores.append(array)
    return cores


def chain_init(network, chain, init, what: str, dtype=np.float64):
    """Starting cores (name -> array) for the DMRG of ``chain`` in ``network`` from
    ``init``: a :class:`TensorTrain` (cores in chain order, each moved into its core's
    leg order, end bonds dropped; leg sizes checked, bonds at most the declared ones),
    a :class:`~tnc.fitting.result.FitResult` (its tensors) or a dict; copies in
    ``dtype`` (the dtype the sweeps run in; complex starting cores need a complex one).

    >>> import numpy as np, tnc
    >>> net = tnc.library("tt", N=3, d=2, r=2)
    >>> x = TensorTrain.from_dense(np.arange(8.0).reshape(2, 2, 2))
    >>> from tnc.mps.chain import find_chain
    >>> {k: v.shape for k, v in chain_init(net, find_chain(net), x, "fit").items()}
    {'G[1]': (2, 2), 'G[2]': (2, 2, 2), 'G[3]': (2, 2)}
    """
    from tnc.fitting.result import FitResult
    if isinstance(init, FitResult):
        init = init.tensors
    dtype = np.dtype(dtype)
    arrays = dict(init) if not isinstance(init, TensorTrain) else {
        f"core {k + 1}": c for k, c in enumerate(init.cores)}
    complex_start = [k for k, v in arrays.items() if np.iscomplexobj(v)]
    if complex_start and dtype.kind != "c":
        bad = complex_start[0]
        raise TncError(f"{what}: init `{bad}` is complex ({arrays[bad].dtype}) but the "
                       f"sweeps run in {dtype}; give complex data or a real start")
    if not isinstance(init, TensorTrain):
        return {k: np.array(v, dtype=dtype) for k, v in arrays.items()}
    if len(init) != len(chain):
        raise TncError(f"{what}: init is a {init!r}; network `{network.name}` needs a "
                       f"TensorTrain of {len(chain)} cores")
    sizes, out = network.spec.index_sizes, {}
    for core, array in zip(chain.cores, init.cores):
        legs = [core.left, *core.physical, core.right]
        if len(core.physical) != 1 or any(
                leg is not None and (sizes[leg] < n if leg in (core.left, core.right)
                                     else sizes[leg] != n) for leg, n in zip(legs, array.shape)):
            raise TncError(f"{what}: init core {len(out) + 1} of shape {array.shape} does not "
                           f"fit core `{core.name}` (legs {core.indices}, sizes "
                           f"{tuple(sizes[i] for i in core.indices)})")
        array = array[0] if core.left is None else array
        array = array[..., 0] if core.right is None else array
        order = [core.axis(i) for i in legs if i is not None]
        out[core.name] = np.array(array.transpose(np.argsort(order)), dtype=dtype)
    return out


def _ttm_network(cores):
    """The TT-matrix network of these 4-d core shapes and its tensors ``W[1]..W[N]``."""
    from tnc.lang.compiler import compile as compile_text
    N = len(cores)
    params = [f"m{n} = {c.shape[1]}, n{n} = {c.shape[2]}" for n, c in enumerate(cores, 1)]
    params += [f"r{n} = {c.shape[3]}" for n, c in enumerate(cores[:-1], 1)]
    indices = [f"row{n}: m{n}, col{n}: n{n}" for n in range(1, N + 1)]
    indices += [f"b{n}: r{n}" for n in range(1, N)]
    uses, tensors = [], {}
    for n, core in enumerate(cores, 1):
        legs = ([f"b{n - 1}"] if n > 1 else []) + [f"row{n}", f"col{n}"] \
            + ([f"b{n}"] if n < N else [])
        uses.append(f"W[{n}]({', '.join(legs)})")
        array = core[0] if n == 1 else core
        tensors[f"W[{n}]"] = np.ascontiguousarray(array[..., 0] if n == N else array)
    outputs = [f"row{n}" for n in range(1, N + 1)] + [f"col{n}" for n in range(1, N + 1)]
    text = (f"network ttm({', '.join(params)}) {{\n    index {', '.join(indices)}\n"
            f"    tensor {', '.join(uses)}\n    output {', '.join(outputs)}\n}}\n")
    return compile_text(text), tensors


def _result(network, tensors, method: str):
    from tnc.fitting.result import FitResult
    return FitResult(network, tensors, method, [], True, 0, 0.0,
                     info={"kind": "tt" if method == "tensor-train" else "ttm"})
