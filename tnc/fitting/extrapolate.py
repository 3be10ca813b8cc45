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
import math
from typing import NamedTuple

import numpy as np
import opt_einsum as oe
from numpy.polynomial import chebyshev as cheb

from tnc.engine.plan import check_allocation
from tnc.engine.trees import chain_tree, evaluate
from tnc.fitting.front import squared_norm      # float32 summed in float64 rows

START_CAP = 2.0      # first bound on the step s (s = 1 is plain ALS)
MIN_CAP = 1.5
MAX_CAP = 64.0
TINY_LOSS = 1e-20    # below this share of ||X||^2 the fit is exact: no search
EXACT_LOSS = 1e-12   # below this share the model at the step is contracted, not interpolated
GRAM_BLOCK = 16384   # columns of the node block per GEMM of the masked Gram (kept in cache)
MARGIN = 1e-13       # a step must lower the loss by this share of ||X||^2 (rounding of the Gram)
BATCH_ENTRIES = 1 << 22  # largest intermediate of a line network batched over its points


class LineSearch:
    """Extrapolation state of one ALS run: the step's bound and the last model ``M(0)``.

    ``fit`` is a :class:`tnc.fitting.als.Fit`. Per sweep: :meth:`start_model`
    (the model at the sweep's start, reused by EM's imputation), then
    :meth:`step` with the tensors the sweep started from.

    Complete data go through :class:`CompleteLine` (one extra pass over X and small
    networks per sweep, no dense model). With a mask (EM, WLS) the dense path: ``N - 1``
    contractions of the model (written straight into one preallocated ``(N + 1, size)``
    block of node values), one GEMM for the Gram of the node values and one for the
    data's products with them, and one combination of the rows for the model at the
    chosen step: about ``N + 3`` passes over data-sized arrays.
    """

    def __init__(self, fit):
        self.fit = fit
        self.cap = START_CAP
        self.model = None          # dense path: the network's output at the current tensors
        self.started = False       # whether the last sweep left a start for a line
        self.sweeps = 0
        self.accepted = 0
        self.line = CompleteLine.of(fit)
        if self.line is None:
            size, rows = fit.problem.target.size, len(fit.tensors) + 1
            check_allocation(8 * size * rows, "the extrapolation's line tensors")
            dtype = np.result_type(fit.problem.target.dtype, np.float64)   # complex data: complex
            self.stack = np.empty((rows, size), dtype)  # the model at each node, one row each
            self.weight = None if fit.mask is None else fit.mask.ravel().astype(float)
            self.scratch = None if fit.mask is None else np.empty((rows, min(size, GRAM_BLOCK)),
                                                                  dtype)

    def start_model(self):
        """The model at the tensors the sweep starts from (computed once)."""
        if self.model is None:
            self.model = self.fit.reconstruct()
        return self.model

    def step(self, old: dict, loss: float, model_value):
        """``(loss, model)`` after extrapolating from ``old`` (tensors at the sweep's start)
        through the fit's current tensors; ``loss`` (data part) and ``model_value`` (or None)
        describe the current tensors. The fit's tensors change only when the loss drops;
        the model returned is None when the complete-data path did not need it."""
        fit, dense = self.fit, self.line is None
        self.sweeps += 1
        first, self.model = self.model, None
        started, self.started = self.started, True
        if loss <= TINY_LOSS * fit.xx:
            self.model = model_value
            return loss, model_value
        if not started:             # the first sweep (dense: M(0) of the next one)
            if dense:
                self.model = fit.reconstruct() if model_value is None else model_value
            return loss, model_value
        new = dict(fit.tensors)
        direction = {n: new[n] - old[n] for n in new}
        cap = min(self.cap, _nonneg_bound(old, direction, fit.settings.nonneg))
        if cap <= 1.0 + 1e-9:
            self.started = False
            return loss, model_value
        if dense:
            current = fit.reconstruct() if model_value is None else model_value
            nodes = self._nodes(old, direction, cap, first, current)
            x, predicted, at_one = self._minimum(nodes, old, direction, cap)
        else:
            current = model_value
            x, predicted, at_one = self.line.minimum(old, direction, cap, self.sweeps)
        exact = loss <= EXACT_LOSS * fit.xx
        if not exact and predicted >= at_one - MARGIN * fit.xx:
            return self._reject(loss, current)
        s = cap * (x + 1) / 2
        tensors = {n: old[n] + s * direction[n] for n in new}
        if exact:      # near an exact fit: the polynomial's rounding would show, contract
            current = fit.reconstruct() if current is None else current
            model = fit.problem.network.contract({**tensors, **fit.problem.inputs})
            stepped = self._loss(model)
            if not stepped + penalty(fit, tensors) < self._loss(current) + penalty(fit, new):
                return self._reject(loss, current)
            loss = stepped
        else:
            model = self.interpolate(nodes, x).reshape(current.shape) if dense else None
            loss = predicted - penalty(fit, tensors)
        for name, array in tensors.items():
            fit.set_tensor(name, array)
        if not dense:
            self.line.plant(s)
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
        """``(x, loss at x, loss at s = 1)`` of the line's loss polynomial on s in [1, cap]
        (the dense path).

        With ``V`` the node rows, ``W`` the 0/1 mask and ``L(x)`` the Lagrange weights,
        the model is ``L(x) V`` and the data loss ``|X|² - 2 L Vx + L (V W Vᵀ) Lᵀ``:
        one ``(N+1) x (N+1)`` Gram and ``N + 1`` products with the data (complex data:
        their real parts, ``Re <V_k, V_l>`` and ``Re <V_k, X>``, as ``s`` is real)."""
        fit, stack = self.fit, self.stack
        gram = _masked_gram(stack, self.weight, self.scratch)
        products = np.real(stack.conj() @ fit.observed_target.ravel())   # 0 off the mask
        line = _line(len(nodes) - 1, cap)
        points, weights = line.points, line.weights
        values = fit.xx - 2 * weights @ products + np.einsum("pi,ij,pj->p", weights, gram, weights)
        values += _penalty_line(fit, old, direction, cap * (points + 1) / 2)
        return _lowest(values, line, cap)

    def _loss(self, model) -> float:
        """Data loss of ``model`` on the fitted entries."""
        return squared_norm(_observed(self.fit, self.fit.problem.target - model))


class CompleteLine:
    """The loss along the line ``T(s) = T_old + s D`` on complete data, from small networks.

    ``|X - M(s)|^2 = |X|^2 - 2 <X, M(s)> + <M(s), M(s)>``:

    * ``<M(s), M(s)>`` (degree ``2N`` in ``s``) is the model-norm network (the ALS Gram
      network with every tensor included: for CP, Hadamard products of ``R x R`` Grams)
      evaluated at the ``2N + 1`` sample points of the loss;
    * ``<X, M(s)>`` (degree ``N``) is split at the first contraction that brings a
      parameter ``q`` to X: ``Z(s) = X x q(s) = Z_new + (s - 1) Z_D`` with ``Z_new``
      (X with the current ``q``) from the ALS cache and ``Z_D = X x D_q`` the one extra
      pass over X; the rest of the network (``Z`` is ``1/I`` of X times a rank for CP)
      is evaluated at ``N + 1`` Chebyshev points and interpolated.

    ``q`` and the split are those of the next sweep's first right-hand side, so after a
    step the data contraction at it, ``Z(s)``, goes into the ALS cache
    (:meth:`plant`) and that update does not stream X again: about one pass over X per
    sweep beyond plain ALS, and no data-sized model. Exact up to rounding.

        >>> import tnc
        >>> net = tnc.library("cp", I=5, J=4, K=3, R=2)
        >>> X = net.contract(net.random(seed=1))
        >>> fit = tnc.fit(net, X, method="als", progress=False, extrapolate=True)
        >>> fit.rel_error < 1e-8
        True
    """

    def __init__(self, fit, params: frozenset):
        self.fit, self.params = fit, params
        model = fit.model
        self.norm = model.norm_tree
        self.fixed: dict = {}      # parameter-free intermediates (data, inputs), kept
        self.plans: dict = {}      # id of the next sweep's first RHS tree -> split
        self.split = None          # (split node, q's name, Z_new, Z_D) of the last search
        self.batched: dict = {}    # the line networks batched over their points

    @classmethod
    def of(cls, fit):
        """The complete-data line of ``fit``, or None (masked data: the dense path)."""
        if fit.mask is not None or fit.mode != "dense":
            return None
        return cls(fit, frozenset(fit.model.label_of.values()))

    def minimum(self, old: dict, direction: dict, cap: float, sweep: int):
        """``(x, loss at x, loss at s = 1)`` on ``s = cap (x + 1) / 2`` in ``[1, cap]``,
        penalties included, for the line through ``old`` along ``direction``."""
        fit = self.fit
        line = _line(len(direction), cap)
        steps = cap * (line.points + 1) / 2
        norms = self._batched_norms(old, direction, steps)
        if norms is None:
            norms = np.array([self._norm(old, direction, s) for s in steps])
        values = fit.xx - 2 * self._products(old, direction, cap, sweep, line.points) + norms
        values += _penalty_line(fit, old, direction, steps)
        return _lowest(values, line, cap)

    def plant(self, s: float) -> None:
        """Store ``Z(s)``, the split node's value at the step taken, in the ALS cache."""
        node, _, new, change = self.split
        self.fit.cache[node.key] = new + (s - 1.0) * change

    def _norm(self, old, direction, s) -> float:
        values = self._values({n: old[n] + s * d for n, d in direction.items()})
        return float(np.real(self._evaluate(self.norm, values, {})))

    def _batched_norms(self, old, direction, steps):
        """``<M(s), M(s)>`` at every one of ``steps`` in one contraction: the model-norm
        network with a batch leg on every parameter (one einsum path, not ``2N + 1``
        tree walks: on small fits the line search's cost was Python's); None when its
        intermediates would pass ``BATCH_ENTRIES``."""
        mm = self.fit.model.mm
        leaves = {label: (mm.legs[label], _label(label) in self.params) for label in mm.legs}
        expression = self._batched("norm", mm, leaves, len(steps))
        if expression is None:
            return None
        stacks = _stacks(old, direction, steps)
        names = self.fit.model.name_of
        return np.real(expression(*(
            _leaf(label, stacks[names[_label(label)]]) if batched else self.fit.values[label]
            for label, (_, batched) in leaves.items())))

    def _batched(self, key, network, leaves: dict, count: int):
        """The contraction of ``leaves`` (label -> (legs, batched)) of ``network`` (a
        :class:`~tnc.engine.trees.Leaves`) down to the batch leg of ``count`` points, or
        None when an intermediate would pass ``BATCH_ENTRIES`` (planned once per key)."""
        cache_key = (key, count, tuple(leaves))
        if cache_key not in self.batched:
            used = set(network.symbols.values())
            batch = next(oe.get_symbol(k) for k in range(len(used) + 1)
                         if oe.get_symbol(k) not in used)
            terms = [(batch if batched else "") + "".join(network.symbols[ix] for ix in legs)
                     for legs, batched in leaves.values()]
            shapes = [((count,) if batched else ()) + tuple(network.sizes[ix] for ix in legs)
                      for legs, batched in leaves.values()]
            self.batched[cache_key] = _batched_expression(
                ",".join(terms) + "->" + batch, tuple(shapes))
        return self.batched[cache_key]

    def _products(self, old, direction, cap, sweep, points):
        """``<X, M(s)>`` at ``points`` (``x``), exact: degree ``N`` from ``N + 1`` values."""
        fit = self.fit
        tree, node, name = self._plan(sweep * len(fit.model.order))
        new = evaluate(node, fit.values, fit.cache)          # cached, or the next sweep's
        change = node.expression(*(
            evaluate(c, {**fit.values, **self._uses(name, direction[name])}, {})
            if c.leaves & self.params else evaluate(c, fit.values, fit.cache)
            for c in node.children))
        self.split = (node, name, new, change)
        degree = len(direction)
        at = -np.cos(np.pi * np.arange(degree + 1) / degree)
        sampled = self._batched_products(tree, node, old, direction, cap * (at + 1) / 2)
        if sampled is None:
            sampled = []
            for x in at:
                s = cap * (x + 1) / 2
                values = self._values({n: old[n] + s * d for n, d in direction.items()})
                sampled.append(float(np.real(self._evaluate(
                    tree, values, {node.key: new + (s - 1.0) * change}))))
        series = np.linalg.solve(cheb.chebvander(at, degree), np.array(sampled))
        return cheb.chebval(points, series)

    def _batched_products(self, tree, node, old, direction, steps):
        """``<X, M(s)>`` at ``steps``: ``<Z(s), R(s)> = <Z_new, R(s)> + (s - 1) <Z_D, R(s)>``,
        two contractions of the split node's values (never stacked: they are data-sized)
        with the rest of ``tree`` batched over the steps; None past ``BATCH_ENTRIES``."""
        xm = self.fit.model.xm
        rest = [k for k in xm.legs if k in tree.leaves and k not in node.leaves]
        leaves = {"split": (node.indices, False),
                  **{k: (xm.legs[k], k in self.params) for k in rest}}
        expression = self._batched(("products", node.key), xm, leaves, len(steps))
        if expression is None:
            return None
        _, _, new, change = self.split
        stacks = _stacks(old, direction, steps)
        names = self.fit.model.name_of
        others = [_leaf(k, stacks[names[k]]) if k in self.params else self.fit.values[k]
                  for k in rest]
        return np.real(expression(new, *others) + (steps - 1.0) * expression(change, *others))

    def _plan(self, step: int):
        """``(scalar tree of <X, M>, split node, q's name)`` through the RHS tree of update
        ``step``: that tree joined with the updated tensor's leaf."""
        model = self.fit.model
        rhs = model.rhs_at(step)
        plan = self.plans.get(id(rhs))
        if plan is None:
            target = next(iter(rhs.leaves - self.params - _inputs(model, rhs.leaves)))
            updated = next(k for k in self.params if k not in rhs.leaves)
            tree = model.xm.join(rhs, model.xm.leaf(updated))
            node = _split(tree, target, self.params)
            if len(node.leaves & self.params) != 1:     # several tensors meet X at once
                node, tree = _own_split(model, target, self.params)
            (q,) = node.leaves & self.params
            plan = self.plans[id(rhs)] = (tree, node, model.name_of[q])
        return plan

    def _uses(self, name, array) -> dict:
        """The leaves of every use of ``name`` in both scalar networks, set to ``array``
        (conjugated where :func:`tnc.fitting.als.leaf_values` conjugates)."""
        from tnc.fitting.als import leaf_values       # als imports this module
        leaves = {}
        for label, owner in self.fit.model.name_of.items():
            if owner == name:
                leaves.update(leaf_values(label, array))
        return leaves

    def _values(self, tensors: dict) -> dict:
        values = dict(self.fit.values)
        for name, array in tensors.items():
            values.update(self._uses(name, array))
        return values

    def _evaluate(self, tree, values, planted):
        """``tree`` at ``values``, the parameter-free intermediates kept across calls."""
        cache = {**self.fixed, **planted}
        value = evaluate(tree, values, cache)
        for key, array in cache.items():
            if key not in self.fixed and not any(_label(k) in self.params for k in key[1]):
                self.fixed[key] = array
        return value


@functools.lru_cache(maxsize=256)
def _batched_expression(equation: str, shapes: tuple):
    """opt_einsum's expression for ``equation`` on ``shapes`` (greedy path: planned in
    microseconds, kept across fits), or None when an intermediate passes
    ``BATCH_ENTRIES``."""
    _, info = oe.contract_path(equation, *shapes, shapes=True, optimize="greedy")
    if info.largest_intermediate > BATCH_ENTRIES:
        return None
    return oe.contract_expression(equation, *shapes, optimize="greedy")


def _stacks(old: dict, direction: dict, steps) -> dict:
    """Name -> ``(len(steps), *shape)``: each tensor ``T + s D`` at every step."""
    return {n: old[n][None] + steps.reshape((-1,) + (1,) * d.ndim) * d[None]
            for n, d in direction.items()}


def _leaf(leaf, array):
    """``array`` as the value of ``leaf``, by :func:`tnc.fitting.als.leaf_values` (a complex
    tensor conjugated in ``<X, M>`` and in the primed copy of ``<M, M>``)."""
    from tnc.fitting.als import leaf_values       # als imports this module
    return leaf_values(_label(leaf), array)[leaf]


def _label(leaf):
    """The tensor use a leaf stands for (``("1", k)`` and ``("2", k)`` copies: ``k``)."""
    return leaf[1] if isinstance(leaf, tuple) else leaf


def _inputs(model, leaves) -> set:
    return {k for k in leaves if not isinstance(k, tuple) and k in model.name_of
            and k not in model.label_of.values()}


def _split(tree, target, params):
    """The lowest node of ``tree`` holding ``target`` whose child holding it has no
    parameter: where the first parameters meet the data."""
    node = tree
    while True:
        child = next(c for c in node.children if target in c.leaves)
        if not child.children or not child.leaves & params:
            return node
        node = child


def _own_split(model, target, params):
    """A scalar ``<X, M>`` tree whose first product is X with one parameter: the one
    leaving the smallest intermediate."""
    xm = model.xm
    sharing = [k for k in params if set(xm.legs[k]) & set(xm.legs[target])]
    q = min(sharing, key=lambda k: math.prod(
        xm.sizes[ix] for ix in xm.join(xm.leaf(target), xm.leaf(k)).indices))
    others = [k for k in xm.legs if k not in (target, q)]
    tree = chain_tree(xm, target, [[q], others] if others else [[q]])
    return _split(tree, target, params), tree


def penalty(fit, tensors) -> float:
    """The ridge penalties ``sum l2 |T|^2`` of ``tensors`` under ``fit``'s settings."""
    return sum(w * float(np.vdot(tensors[n], tensors[n]).real)
               for n, w in fit.settings.l2.items() if w)


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
        return np.real(stack.conj() @ stack.T)
    gram = np.zeros((len(stack),) * 2)
    block = scratch.shape[1]
    for start in range(0, stack.shape[1], block):
        rows = stack[:, start:start + block]
        weighted = np.multiply(rows, weight[start:start + block], out=scratch[:, :rows.shape[1]])
        gram += np.real(weighted.conj() @ rows.T)
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


def _lowest(values, line: Line, cap: float):
    """``(x, value, value at s = 1)``: the minimum over ``s = cap (x + 1) / 2`` in
    ``[1, cap]`` of the polynomial of degree ``2N`` sampled at ``line.points``, from the
    roots of its derivative."""
    series = np.linalg.solve(line.vander, values)
    one = 2.0 / cap - 1.0
    roots = cheb.chebroots(cheb.chebder(series)) if len(series) > 2 else np.array([])
    candidates = np.concatenate([roots[(np.abs(roots.imag) < 1e-9) & (roots.real > one)
                                       & (roots.real < 1.0)].real, [one, 1.0]])
    losses = cheb.chebval(candidates, series)
    best = int(np.argmin(losses))
    return float(candidates[best]), float(losses[best]), float(losses[-2])


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
            a += weight * float(np.vdot(old[name], old[name]).real)
            b += weight * float(np.vdot(old[name], direction[name]).real)
            c += weight * float(np.vdot(direction[name], direction[name]).real)
    return a + 2 * b * steps + c * steps ** 2


def _nonneg_bound(old, direction, nonneg) -> float:
    """The largest step keeping every non-negative tensor non-negative."""
    bound = np.inf
    for name in nonneg:
        falling = direction[name] < 0
        if np.any(falling):
            bound = min(bound, float(np.min(old[name][falling] / -direction[name][falling])))
    return bound
