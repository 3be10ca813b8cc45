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
``2N`` whose coefficients come from one Gram matrix of ``N + 2`` tensors; its
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

import numpy as np
from numpy.polynomial import chebyshev as cheb

from tnc.engine.plan import check_allocation

START_CAP = 2.0      # first bound on the step s (s = 1 is plain ALS)
MIN_CAP = 1.5
MAX_CAP = 64.0
TINY_LOSS = 1e-20    # below this share of ||X||^2 the fit is exact: no search
EXACT_LOSS = 1e-12   # below this share the model at the step is contracted, not interpolated
MARGIN = 1e-13       # a step must lower the loss by this share of ||X||^2 (rounding of the Gram)


class LineSearch:
    """Extrapolation state of one ALS run: the step's bound and the last model ``M(0)``.

    ``fit`` is a :class:`tnc.fitting.als.Fit`. Per sweep: :meth:`start_model`
    (the model at the sweep's start, reused by EM's imputation), then
    :meth:`step` with the tensors the sweep started from.
    """

    def __init__(self, fit):
        self.fit = fit
        self.cap = START_CAP
        self.model = None          # the network's output at the current tensors, if known
        self.accepted = 0
        self.weight = None if fit.mask is None else fit.mask.ravel().astype(float)
        size = fit.problem.target.size
        check_allocation(8 * size * (len(fit.tensors) + 3), "the extrapolation's line tensors")

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
        nodes, values = self._nodes(old, direction, cap, first, current)
        coefficients = _chebyshev_fit(nodes, values)
        x, predicted, at_one = self._minimum(coefficients, old, direction, cap)
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
            model = (cheb.chebvander(np.array([x]), len(nodes) - 1)[0] @ coefficients).reshape(
                current.shape)
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
        """Chebyshev-Lobatto nodes in ``x`` (``s = cap (x + 1) / 2``) with the model at each:
        ``x = -1`` (s = 0) and ``s = 1`` are known, the others are contracted."""
        degree = len(direction)
        one = 2.0 / cap - 1.0
        lobatto = -np.cos(np.pi * np.arange(1, degree + 1) / degree) if degree else np.array([])
        others = np.delete(lobatto, np.argmin(np.abs(lobatto - one))) if degree else lobatto
        nodes, values = [-1.0, one], [first, current]
        for x in others:
            s = cap * (x + 1) / 2
            nodes.append(float(x))
            values.append(self.fit.problem.network.contract(
                {**{n: old[n] + s * d for n, d in direction.items()}, **self.fit.problem.inputs}))
        return np.array(nodes), values

    def _minimum(self, coefficients, old, direction, cap):
        """``(x, loss at x, loss at s = 1)`` of the line's loss polynomial on s in [1, cap]."""
        fit = self.fit
        masked = coefficients if self.weight is None else coefficients * self.weight
        target = fit.observed_target.ravel()
        gram = np.empty((len(masked) + 1,) * 2)
        gram[0, 0] = fit.xx
        gram[0, 1:] = gram[1:, 0] = masked @ target
        gram[1:, 1:] = masked @ masked.T
        degree = 2 * (len(coefficients) - 1)
        nodes = -np.cos(np.pi * np.arange(degree + 1) / max(degree, 1))
        basis = np.hstack([np.ones((degree + 1, 1)), -cheb.chebvander(nodes, len(coefficients) - 1)])
        values = np.einsum("pi,ij,pj->p", basis, gram, basis)
        values += _penalty_line(fit, old, direction, cap * (nodes + 1) / 2)
        series = np.linalg.solve(cheb.chebvander(nodes, degree), values)
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


def _chebyshev_fit(nodes, values):
    """Chebyshev coefficients (rows, flattened tensors) of the degree ``len(nodes) - 1`` polynomial through
    ``values`` (tensors) at ``nodes``."""
    inverse = np.linalg.inv(cheb.chebvander(nodes, len(nodes) - 1))
    flat = np.empty((len(values), values[0].size))
    for row, value in zip(flat, values):
        row[:] = value.ravel()
    return inverse @ flat


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
