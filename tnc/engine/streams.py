"""Products where a big dense array streams once, on the compiled kernels of
:mod:`tnc.engine.kernels` when they are faster (big enough, a float dtype), else BLAS.

Entry points for the fits (every one returns the same numbers, to rounding, either way):

* :func:`cp_gradients`: all MTTKRPs ``G_n[i_n, r] = sum Y[i_1..i_N] prod_{m != n} U_m[i_m, r]``
  of a dense tensor (GCP's elementwise derivative) in two passes over it;
* :func:`cp_model`: the dense CP tensor ``sum_r prod_n U_n[i_n, r]``;
* :func:`project`: ``Bᵀ M`` of a wide matrix by a thin basis (TT-SVD's projection);
* :class:`CPLayout`: whether a network is CP-like (every tensor one output leg and one
  shared rank leg) and its model and gradients through the two above.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> U = [rng.standard_normal((n, 2)) for n in (3, 4, 5)]
>>> Y = rng.standard_normal((3, 4, 5))
>>> G = cp_gradients(Y, U)
>>> bool(np.allclose(G[1], np.einsum("ijk,ir,kr->jr", Y, U[0], U[2])))
True
"""
from __future__ import annotations

import math

import numpy as np

from tnc.engine import kernels


def khatri_rao(matrices) -> np.ndarray:
    """``K[s, r] = prod_n U_n[i_n, r]``, ``s`` the C-order flat index of ``(i_1, .., i_N)``:
    one or more matrices ``(I_n, R)`` -> ``(prod I_n, R)``.

    >>> khatri_rao([np.array([[1.0], [2.0]]), np.array([[3.0], [4.0]])]).ravel().tolist()
    [3.0, 4.0, 6.0, 8.0]
    """
    matrices = list(matrices)
    product = matrices[-1]
    for matrix in reversed(matrices[:-1]):
        product = (matrix[:, None, :] * product[None, :, :]).reshape(-1, matrix.shape[1])
    return product


def _split(shape) -> int:
    """The mode count ``m`` (1 <= m < N) whose halves' sizes are the most even."""
    return min(range(1, len(shape)), key=lambda m: max(math.prod(shape[:m]), math.prod(shape[m:])))


def _thin(big, small):
    """``Y[p, r, q] = sum_s big[p, s, q] small[s, r]`` on the kernels when worth it, else BLAS."""
    if big.dtype == small.dtype and kernels.worth_it(big.shape, big.dtype):
        return kernels.mode_product(np.ascontiguousarray(big), small)
    return kernels._blas_mode_product(big, small, np.empty(
        (big.shape[0], small.shape[1], big.shape[2]), np.result_type(big, small)))


def cp_gradients(upstream, factors) -> list[np.ndarray]:
    """Every MTTKRP of ``upstream`` ``(I_1, .., I_N)`` with ``factors`` ``(I_n, R)`` (N >= 2):
    ``G_n[i_n, r] = sum_{i_m, m != n} upstream[i_1..i_N] prod_{m != n} factors[m][i_m, r]``.

    Two passes over ``upstream``, both of the shapes the kernels run fastest (a short
    summed leg): its last mode contracted with ``U_N`` leaves ``(I_1, .., I_{N-1}, R)``,
    which gives ``G_1 .. G_{N-1}``; its first mode with ``U_1`` leaves ``(R, I_2, .., I_N)``,
    which gives ``G_N``.

    >>> Y = np.arange(24.0).reshape(2, 3, 4); U = [np.ones((n, 1)) for n in Y.shape]
    >>> [g.ravel().tolist() for g in cp_gradients(Y, U)][0]
    [66.0, 210.0]
    """
    shape = upstream.shape
    R = factors[0].shape[1]
    lead, trail = math.prod(shape[:-1]), math.prod(shape[1:])
    left = _thin(upstream.reshape(lead, shape[-1], 1), factors[-1]).reshape(*shape[:-1], R)
    right = _thin(upstream.reshape(1, shape[0], trail), factors[0]).reshape(R, *shape[1:])
    grads = [_partial(left, factors[:-1], n, last=True) for n in range(len(shape) - 1)]
    return grads + [_partial(right, factors[1:], len(shape) - 2, last=False)]


def _partial(partial, factors, n: int, last: bool) -> np.ndarray:
    """``G_n`` from a partial MTTKRP with the rank leg last (``last``) or first."""
    if len(factors) == 1:
        return partial if last else partial.T
    legs = list(range(len(factors)))
    rank = len(factors)
    operands = [partial, legs + [rank] if last else [rank] + legs]
    for k, factor in enumerate(factors):
        if k != n:
            operands += [factor, [k, rank]]
    return np.einsum(*operands, [n, rank], optimize=len(factors) > 2)


def cp_model(factors) -> np.ndarray:
    """The dense CP tensor ``sum_r prod_n factors[n][i_n, r]``, shape ``(I_1, .., I_N)``.

    >>> cp_model([np.ones((2, 1)), np.full((3, 1), 2.0)]).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """
    shape = tuple(f.shape[0] for f in factors)
    if len(shape) == 1:
        return factors[0].sum(axis=1)
    m = _split(shape)
    return (khatri_rao(factors[:m]) @ khatri_rao(factors[m:]).T).reshape(shape)


def project(basis, matrix) -> np.ndarray:
    """``basis.T @ matrix``: ``basis (m, r)``, ``matrix (m, n)`` -> ``(r, n)`` (real).

    >>> project(np.eye(2)[:, :1], np.arange(6.0).reshape(2, 3)).tolist()
    [[0.0, 1.0, 2.0]]
    """
    if np.iscomplexobj(matrix) or np.iscomplexobj(basis):
        return basis.conj().T @ matrix
    return _thin(matrix[None], np.ascontiguousarray(basis, dtype=matrix.dtype))[0]


# measured (CPU time, one thread, rank 5-20, AVX-512): the grad engine's BLAS products
# beat the kernels' two passes while the data sit in cache (60^3: 0.36 against 0.50 ms,
# 100^3: 2.3 against 3.2 ms) and lose once they stream from memory (200^3: 29 against 25 ms)
CP_GRADIENT_ENTRIES = 1 << 22


class CPLayout:
    """How a CP-like network's tensors sit: every use one output leg and the one rank leg
    every use shares (any leg order, any output order, tied names summed), no data inputs.

    ``CPLayout.of(network)`` is None for any other network.
    """

    def __init__(self, uses: list, rank: str):
        self.uses, self.rank = uses, rank   # uses: (name, mode, rank leg first) per output leg

    @classmethod
    def of(cls, network) -> "CPLayout | None":
        occurrences, output = network.occurrences, tuple(network.output)
        if len(output) < 2 or any(o.kind != "param" or len(o.indices) != 2 for o in occurrences):
            return None
        ranks = {ix for o in occurrences for ix in o.indices if ix not in output}
        if len(ranks) != 1 or len(occurrences) != len(output):
            return None
        rank = ranks.pop()
        if any(o.indices.count(rank) != 1 for o in occurrences):
            return None
        legs = [next(ix for ix in o.indices if ix != rank) for o in occurrences]
        if sorted(legs, key=output.index) != list(output):
            return None
        uses = sorted(((o.name, output.index(leg), o.indices[0] == rank)
                       for o, leg in zip(occurrences, legs)), key=lambda use: use[1])
        return cls(uses, rank)

    @classmethod
    def for_data(cls, network, shape, dtype) -> "CPLayout | None":
        """The layout when ``network`` is CP-like and its data (``shape``, ``dtype``) big
        enough for the kernels' passes to beat the grad engine (:data:`CP_GRADIENT_ENTRIES`)."""
        big = math.prod(shape) >= CP_GRADIENT_ENTRIES and kernels.worth_it(shape, dtype)
        return cls.of(network) if big else None

    def factors(self, tensors: dict) -> list:
        return [tensors[name].T if first else tensors[name] for name, _, first in self.uses]

    def model(self, tensors: dict) -> np.ndarray:
        return cp_model(self.factors(tensors))

    def gradients(self, tensors: dict, upstream) -> dict:
        """``{name: d sum(upstream * model) / d tensor}``, each in its tensor's leg order."""
        grads: dict = {}
        for (name, _, first), g in zip(self.uses, cp_gradients(upstream, self.factors(tensors))):
            g = g.T if first else g
            grads[name] = grads[name] + g if name in grads else np.ascontiguousarray(g)
        return grads
