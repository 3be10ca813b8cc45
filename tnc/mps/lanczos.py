"""The lowest eigenpair of a Hermitian operator by restarted Lanczos in the vector's own
array library (torch, jax, cupy or numpy: products, ``vdot``-like sums and norms only).

DMRG's local problems on numpy arrays go to scipy's ``eigsh`` (ARPACK); on other
backends (a torch tensor on a GPU) :func:`lowest_eigenpair` runs here instead, so the
vectors never leave their device. Each cycle builds a Krylov basis of at most
``ncv`` vectors from the current guess with full reorthogonalisation (the basis is
small: DMRG warm-starts every local problem), takes the lowest Ritz pair of the
small tridiagonal matrix (numpy, ``ncv x ncv``) and restarts from its Ritz vector
until the residual ``||H y - theta y||`` is at most ``tol * |theta|`` (ARPACK's rule).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.standard_normal((50, 50)); h = a + a.T
    >>> value, vector = lowest_eigenpair(lambda x: h @ x, np.ones(50), tol=1e-12)
    >>> bool(abs(value - np.linalg.eigvalsh(h)[0]) < 1e-9)
    True
"""
from __future__ import annotations

import numpy as np

from tnc.engine import backend


def lowest_eigenpair(matvec, v0, tol: float = 1e-10, ncv: int = 20, max_restarts: int = 500):
    """``(theta, y)``: the lowest eigenvalue (a float) and its unit eigenvector (the
    backend and dtype of ``v0``, a 1-d array) of the Hermitian operator ``matvec``.

    ``ncv``: Krylov vectors per cycle (at most the dimension); ``max_restarts``
    cycles at most (the last Ritz pair is returned then).
    """
    n = v0.shape[0]
    ncv = max(1, min(ncv, n))
    y = v0 / _norm(v0)
    theta = float("nan")
    for _ in range(max_restarts):
        theta, y, residual = _cycle(matvec, y, ncv)
        if residual <= tol * max(abs(theta), 1e-300):
            break
    return theta, y


def _cycle(matvec, v, ncv: int):
    """One Lanczos cycle from the unit vector ``v``: the lowest Ritz value, its Ritz
    vector (unit) and its residual norm."""
    basis = [v]
    alphas, betas = [], []
    w = matvec(v)
    while True:
        alpha = float(backend.to_numpy(_dot(basis[-1], w)).real)
        alphas.append(alpha)
        stacked = _stack(basis)
        w = w - stacked @ (backend.conj(stacked).T @ w)     # full reorthogonalisation
        w = w - stacked @ (backend.conj(stacked).T @ w)     # twice is enough (Kahan)
        beta = _norm(w)
        if len(basis) == ncv or beta <= 1e-14 * max(abs(alpha), 1.0):
            break
        betas.append(beta)
        basis.append(w / beta)
        w = matvec(basis[-1])
    values, vectors = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
    weights = backend.astype(backend.asarray(vectors[:, 0], like=v), backend.dtype_of(v))
    ritz = _stack(basis) @ weights
    ritz = ritz / _norm(ritz)
    residual = _norm(matvec(ritz) - values[0] * ritz)
    return float(values[0]), ritz, residual


def _stack(vectors):
    """The vectors as the columns of one matrix (their library's ``stack``)."""
    if type(vectors[0]) is np.ndarray:
        return np.stack(vectors, axis=1)
    return backend.do("stack", vectors, axis=1)


def _dot(a, b):
    return (backend.conj(a) * b).sum()


def _norm(x) -> float:
    return float(backend.to_numpy((backend.conj(x) * x).sum()).real) ** 0.5
