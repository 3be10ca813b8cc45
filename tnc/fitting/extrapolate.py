"""ALS extrapolation: an exact line search along the last sweep's update.

Plain ALS crawls through the long flat valleys ("swamps") of CP-like models.
After a sweep has moved every parameter from ``T_old`` to ``T_new`` the line
``T(s) = T_old + s D``, ``D = T_new - T_old``, usually keeps going downhill past
``s = 1`` (Bro 1998; Rajih, Comon & Harshman 2008; Tensorlab's ``cpd_els``).
Each parameter is used once, so the model ``M(s)`` is multilinear in them: a
polynomial of degree ``N`` (the number of parameters) in ``s``, known exactly
from ``N + 1`` contractions of the network (``M(0)`` is the previous sweep's
model and ``M(1)`` this sweep's, so ``N - 1`` new ones). The loss along the
line, masked or not, with ridge penalties, is then a polynomial of degree
``2N`` whose coefficients come from the ``(N + 1) x (N + 1)`` Gram matrix of the
model's values at the nodes and their ``N + 1`` inner products with the data; its
minimum over ``[1, cap]`` is found exactly from the roots of its derivative.

The step is taken only when the loss at it, recomputed from the combined
model, is lower than the loss at ``s = 1``, so the loss never rises from one
sweep to the next (EM's imputation included: the loss searched is the one on
observed entries). The ``cap`` doubles when the best step lies on it and
halves (down to ``MIN_CAP``) when no step helps.

    >>> import numpy as np, tnc
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> X = net.contract(net.random(seed=1))
    >>> fast = tnc.fit(net, X, method="als", seed=0, progress=False, extrapolate=True)
    >>> fast.rel_error < 1e-8
    True
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numpy.polynomial import chebyshev as cheb

from tnc.engine.plan import check_allocation

START_CAP = 2.0      # first bound on the step s (s = 1 is plain ALS)
MIN_CAP = 1.5
MAX_CAP = 64.0
TINY_LOSS = 1e-20    # below this share of ||X||^2 the fit is exact: no search
EXACT_LOSS = 1e-12   # below this share the model at the step is contracted, not interpolated
GRAM_BLOCK = 16384   # columns of the node block per GEMM of the masked Gram (kept in cache)
MARGIN = 1e-13       # a step must lower the loss by this share of ||X||^2 (rounding of the Gram)


class LineSearch:
    """Extrapolation state of one ALS run: the step's bound and the last model ``M(0)``.

    ``fit`` is a :class:`tnc.fitting.als.Fit`. Per sweep: :meth:`start_model`
    (the model at the sweep's start, reused by EM's imputation), then
    :meth:`step` with the tensors the sweep started from.

    Cost per sweep: ``N - 1`` contractions of the model (written straight into
    one preallocated ``(N + 1, size)`` block of node values), one GEMM for the
    Gram of the node values and one for the data's products with them, and one
    combination of the rows for the model at the chosen step: about ``N + 3``
    passes over data-sized arrays, no temporaries of that size.
    """

    def __init__(self, fit):
        self.fit = fit
        self.cap = START_CAP
        self.model = None          # the network's output at the current tensors, if known
        self.accepted = 0
        size, rows = fit.problem.target.size, len(fit.tensors) + 1
        check_allocation(8 * size * rows, "the extrapolation's line tensors")
        self.stack = np.empty((rows, size))      # the model at each node, one row each
        self.weight = None if fit.mask is None else fit.mask.ravel().astype(float)
        self.scratch = None if fit.mask is None else np.empty((rows, min(size, GRAM_BLOCK)))

    def start_model(self):
        """The model at the tensors the sweep starts from (computed once)."""
        if self.model is None:
            self.model = self.fit.reconstruct()
        return self.model

    def step(self, old: dict, loss: float, model_value):
        """``(loss, model)`` after extrapolating from ``old`` (tensors at the sweep's start)
        through the fit's current tensors; ``loss`` (data part) and ``model_value`` (or None)
        describe the current tensors. The fit's tensors change only when the loss drops."""
        fit = self.fit
        first, self.model = self.model, None
        if loss <= TINY_LOSS * fit.xx:
            self.model = model_value
            return loss, model_value
        if first is None:           # the first sweep: M(0) of the next one
            self.model = fit.reconstruct() if model_value is None else model_value
            return loss, model_value
        new = dict(fit.tensors)
        direction = {n: new[n] - old[n] for n in new}
        cap = min(self.cap, _nonneg_bound(old, direction, fit.settings.nonneg))
        if cap <= 1.0 + 1e-9:
            return loss, model_value
        current = fit.reconstruct() if model_value is None else model_value
        nodes = self._nodes(old, direction, cap, first, current)
        x, predicted, at_one = self._minimum(nodes, old, direction, cap)
        exact = loss <= EXACT_LOSS * fit.xx
        if not exact and predicted >= at_one - MARGIN * fit.xx:
            return self._reject(loss, current)
        s = cap * (x + 1) / 2
        tensors = {n: old[n] + s * direction[n] for n in new}
        if exact:      # near an exact fit: the interpolant's rounding would show, contract
            model = fit.problem.network.contract({**tensors, **fit.problem.inputs})
            loss = self._loss(model)
            if not loss + penalty(fit, tensors) < self._loss(current) + penalty(fit, new):
                return self._reject(loss, current)
        else:
            model = self.interpolate(nodes, x).reshape(current.shape)
            loss = predicted - penalty(fit, tensors)
        for name, array in tensors.items():
            fit.set_tensor(name, array)
        if s >= 0.99 * cap:
            self.cap = min(2 * self.cap, MAX_CAP)
        self.accepted += 1
        self.model = model
        return loss, model

    def _reject(self, loss, current):
        self.cap = max(self.cap / 2, MIN_CAP)
        self.model = current
        return loss, current

    def _nodes(self, old, direction, cap, first, current):
        """Chebyshev-Lobatto nodes in ``x`` (``s = cap (x + 1) / 2``), the model at node
        ``k`` written into row ``k`` of ``self.stack``: ``x = -1`` (s = 0) and ``s = 1``
        are known, the others are contracted."""
        nodes = _line(len(direction), cap).nodes
        others = nodes[2:]
        self._store(0, first)
        self._store(1, current)
        for k, x in enumerate(others, start=2):
            s = cap * (x + 1) / 2
            self._store(k, self.fit.problem.network.contract(
                {**{n: old[n] + s * d for n, d in direction.items()}, **self.fit.problem.inputs}))
        return nodes

    def _store(self, row: int, value) -> None:
        """Copy ``value`` (any memory layout) into row ``row`` of the node block."""
        np.copyto(self.stack[row].reshape(value.shape), value)

    def interpolate(self, nodes, x: float):
        """The line's model at ``x`` (flat): the node rows combined with Lagrange weights."""
        return _lagrange(nodes, np.array([x]))[0] @ self.stack

    def _minimum(self, nodes, old, direction, cap):
        """``(x, loss at x, loss at s = 1)`` of the line's loss polynomial on s in [1, cap].

        With ``V`` the node rows, ``W`` the 0/1 mask and ``L(x)`` the Lagrange weights,
        the model is ``L(x) V`` and the data loss ``|X|² - 2 L Vx + L (V W Vᵀ) Lᵀ``:
        one ``(N+1) x (N+1)`` Gram and ``N + 1`` products with the data."""
        fit, stack = self.fit, self.stack
        gram = _masked_gram(stack, self.weight, self.scratch)
        products = stack @ fit.observed_target.ravel()     # the data is 0 off the mask
        line = _line(len(nodes) - 1, cap)
        degree, points, weights = 2 * (len(nodes) - 1), line.points, line.weights
        values = fit.xx - 2 * weights @ products + np.einsum("pi,ij,pj->p", weights, gram, weights)
        values += _penalty_line(fit, old, direction, cap * (points + 1) / 2)
        series = np.linalg.solve(line.vander, values)
        one = 2.0 / cap - 1.0
        roots = cheb.chebroots(cheb.chebder(series)) if degree > 1 else np.array([])
        candidates = np.concatenate([roots[(np.abs(roots.imag) < 1e-9) & (roots.real > one)
                                           & (roots.real < 1.0)].real, [one, 1.0]])
        losses = cheb.chebval(candidates, series)
        best = int(np.argmin(losses))
        return float(candidates[best]), float(losses[best]), float(losses[-2])

    def _loss(self, model) -> float:
        """Data loss of ``model`` on the fitted entries."""
        residual = _observed(self.fit, self.fit.problem.target - model)
        return float(np.vdot(residual, residual))


def penalty(fit, tensors) -> float:
    """The ridge penalties ``sum l2 |T|^2`` of ``tensors`` under ``fit``'s settings."""
    return sum(w * float(np.vdot(tensors[n], tensors[n])) for n, w in fit.settings.l2.items() if w)


def _observed(fit, array):
    return array if fit.mask is None else np.where(fit.mask, array, 0.0)


def _masked_gram(stack, weight, scratch):
    """``(stack * weight) @ stack.T`` (``weight`` None: no mask), a block of columns at a
    time through ``scratch`` (``(rows, GRAM_BLOCK)``), so the weighted copy stays in cache:
    on 5 x 460,800 rows 2.5x faster than the weighted copy and one GEMM.

    >>> v, w = np.arange(6.0).reshape(2, 3), np.array([1.0, 0.0, 1.0])
    >>> _masked_gram(v, w, np.empty((2, 2))).tolist()
    [[4.0, 10.0], [10.0, 34.0]]
    """
    if weight is None:
        return stack @ stack.T
    gram = np.zeros((len(stack),) * 2)
    block = scratch.shape[1]
    for start in range(0, stack.shape[1], block):
        rows = stack[:, start:start + block]
        weighted = np.multiply(rows, weight[start:start + block], out=scratch[:, :rows.shape[1]])
        gram += weighted @ rows.T
    return gram


class Line(NamedTuple):
    """The fixed numbers of a line search of ``degree`` parameters and bound ``cap``:
    ``nodes`` (x = -1, the node of s = 1, then Chebyshev-Lobatto nodes), the loss's
    sample ``points``, the Lagrange ``weights`` of the nodes at them and the Chebyshev
    ``vander`` matrix at the points (the caps a run visits are few: powers of 2)."""

    nodes: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    vander: np.ndarray


@functools.lru_cache(maxsize=64)
def _line(degree: int, cap: float) -> Line:
    """
    >>> _line(2, 2.0).nodes.tolist()        # s = 0, s = 1 (x = 0), then x = 1
    [-1.0, 0.0, 1.0]
    """
    one = 2.0 / cap - 1.0
    lobatto = -np.cos(np.pi * np.arange(1, degree + 1) / degree) if degree else np.array([])
    others = np.delete(lobatto, np.argmin(np.abs(lobatto - one))) if degree else lobatto
    nodes = np.concatenate([[-1.0, one], others])
    order = 2 * degree
    points = -np.cos(np.pi * np.arange(order + 1) / max(order, 1))
    return Line(nodes, points, _lagrange(nodes, points), cheb.chebvander(points, order))


def _lagrange(nodes, points):
    """``(len(points), len(nodes))``: the weights that evaluate the polynomial through
    values at ``nodes`` at each of ``points`` (through the Chebyshev basis, well conditioned
    on Chebyshev-Lobatto nodes).

    >>> w = _lagrange(np.array([-1.0, 0.0, 1.0]), np.array([0.5]))
    >>> round((w @ np.array([1.0, 0.0, 1.0])).item(), 12)    # x**2 at 0.5
    0.25
    """
    degree = len(nodes) - 1
    return cheb.chebvander(points, degree) @ np.linalg.inv(cheb.chebvander(nodes, degree))


def _penalty_line(fit, old, direction, steps):
    """The ridge penalties ``sum l2 |T + s D|^2`` at each of ``steps``."""
    a = b = c = 0.0
    for name, weight in fit.settings.l2.items():
        if weight:
            a += weight * float(np.vdot(old[name], old[name]))
            b += weight * float(np.vdot(old[name], direction[name]))
            c += weight * float(np.vdot(direction[name], direction[name]))
    return a + 2 * b * steps + c * steps ** 2


def _nonneg_bound(old, direction, nonneg) -> float:
    """The largest step keeping every non-negative tensor non-negative."""
    bound = np.inf
    for name in nonneg:
        falling = direction[name] < 0
        if np.any(falling):
            bound = min(bound, float(np.min(old[name][falling] / -direction[name][falling])))
    return bound
