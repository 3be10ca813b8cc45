"""Solving ALS's normal equations ``rows @ Gram = rhs``, batch by batch: Cholesky-checked
solves (pseudo-inverse when singular), ridge penalties, HALS for non-negative rows;
real (symmetric Gram) or complex (Hermitian Gram, ``Gram = sum E conj(E')``).

    >>> rows, tensor = solve_tensor(np.array([[[2.0, 4.0]]]), np.array([[[2.0, 0.0], [0.0, 4.0]]]),
    ...                             (1, 0), np.zeros((2, 1)))
    >>> rows.tolist()
    [[[1.0, 1.0]]]
"""
from __future__ import annotations

import numpy as np


def solve_rows(rhs, gram, l2: float = 0.0, nonneg: bool = False, start=None):
    """Rows ``g`` minimising ``g Gram gᴴ - 2 Re(g·conj(rhs)) + l2 |g|²``, batch by batch
    (real: ``g Gram gᵀ - 2 g·rhs``): the solution of ``g Gram = rhs``.

    ``rhs``: (n, m, b) — n batches of m rows; ``gram``: (n, b, b), symmetric, or Hermitian
    for complex rows (``Gram = sum E conj(E')`` of :meth:`Fit.contributions`).

    >>> H = np.array([[[2.0, 0.0], [0.0, 4.0]]])
    >>> solve_rows(np.array([[[2.0, 4.0]]]), H)
    array([[[1., 1.]]])
    """
    if l2:
        gram = gram + l2 * np.eye(gram.shape[-1], dtype=gram.dtype)
    if nonneg:
        return hals(rhs, gram, np.maximum(start, 0.0) if start is not None else
                    np.zeros_like(rhs))
    # g Gram = rhs is Gramᵀ gᵀ = rhsᵀ; a complex Gram is Hermitian, so Gramᵀ = conj(Gram)
    system = gram.conj() if np.iscomplexobj(gram) else gram
    try:
        if gram.shape[0] == 1:
            np.linalg.cholesky(gram[0])   # numpy's LAPACK: scipy's has its own threads
            return np.linalg.solve(system[0], rhs[0].T).T[None]
        np.linalg.cholesky(gram)
        return np.linalg.solve(system, rhs.transpose(0, 2, 1)).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        return rhs @ np.linalg.pinv(gram, hermitian=True)


def solve_tensor(rhs, gram, axes: tuple, current, l2: float = 0.0, nonneg: bool = False):
    """``(rows, tensor)``: :func:`solve_rows` of normal equations laid out along ``axes``
    (see :meth:`Fit.contributions`), and the rows as a tensor shaped like ``current``
    (also HALS's start).

    >>> rows, tensor = solve_tensor(np.array([[[2.0, 4.0]]]), np.array([[[2.0, 0.0], [0.0, 4.0]]]),
    ...                             (1, 0), np.zeros((2, 1)))
    >>> tensor
    array([[1.],
           [1.]])
    """
    identity = axes == tuple(range(len(axes)))
    permuted = current if identity else np.transpose(current, axes)
    new = solve_rows(rhs, gram, l2, nonneg, permuted.reshape(rhs.shape))
    tensor = new.reshape(permuted.shape)
    if not identity:
        tensor = np.transpose(tensor, np.argsort(axes))
    return new, np.ascontiguousarray(tensor)


def hals(rhs, gram, g, sweeps: int = 50, tol: float = 1e-12):
    """Non-negative rows by coordinate descent (HALS), starting from ``g`` (n, m, b)."""
    g = np.array(g, dtype=np.result_type(g, rhs))
    diag = np.maximum(np.einsum("nbb->nb", gram), 1e-300)
    floor = 1e-14 * max(float(np.max(np.abs(g))), 1e-300)  # a zeroed column could not recover
    for _ in range(sweeps):
        change = 0.0
        for b in range(g.shape[-1]):
            residual = rhs[..., b] - np.einsum("nmc,nc->nm", g, gram[:, :, b])
            new = np.maximum(g[..., b] + residual / diag[:, None, b], floor)
            change += float(np.sum((new - g[..., b]) ** 2))
            g[..., b] = new
        if change <= tol * max(float(np.sum(g * g)), 1e-300):
            break
    return g
