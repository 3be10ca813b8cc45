"""Constant-only subtrees of a gradient program contracted once (opt_einsum's ``constants=``).

Where a network is contracted again and again with some tensors fixed (the
fixed inputs of a GCP model: data tensors the fit never changes), the steps of
its :class:`~tnc.engine.grad.GradPlan` whose every leaf is such a constant give
the same intermediate at every call. :class:`Folded` runs them once, keeps the
intermediates the other steps read (nothing else), and hands the plan's forward
pass the remaining steps; the backward pass is unchanged (no gradient flows into
a constant). A constant must be a tensor outside the plan's ``wrt`` set.

    >>> import numpy as np, tnc
    >>> net = tnc.compile("network m(I = 4, A = 3, B = 2, J = 5) { index i: I, a: A, b: B, j: J "
    ...                   "data F(i, a), G(i, b) tensor W(a, b, j) output i, j }")
    >>> rng = np.random.default_rng(0)
    >>> fixed = {"F": rng.random((4, 3)), "G": rng.random((4, 2))}
    >>> from tnc.engine.grad import grad_plan
    >>> plan = grad_plan(net, wrt={"W"})
    >>> folded = Folded(plan, [o.name for o in net.occurrences], fixed)
    >>> W = rng.random((3, 2, 5))
    >>> value, _ = plan.forward([None, None, W], folded)
    >>> np.allclose(value, np.einsum("ia,ib,abj->ij", fixed["F"], fixed["G"], W))
    True
"""
from __future__ import annotations

from tnc.errors import TncError


class Folded:
    """The constant-only part of ``plan`` evaluated once for the arrays ``constants``.

    ``names``: the tensor name of each of the plan's leaves (its occurrences in
    order); ``constants``: name -> array of the fixed tensors. ``steps`` are the
    steps left for each call, ``values`` the kept intermediates (node -> array),
    ``saved_flops`` the multiply-adds a call no longer does.
    """

    def __init__(self, plan, names, constants: dict):
        wanted = sorted(set(constants) & set(plan.wrt))
        if wanted:
            raise TncError(f"tensor `{wanted[0]}` cannot be a constant: its gradient is "
                           "wanted")
        fixed = [name in constants for name in names]
        values = {k: leaf.forward(constants[name])
                  for k, (leaf, name) in enumerate(zip(plan.leaves, names)) if fixed[k]}
        fixed += [False] * (len(plan.indices) - len(fixed))
        self.steps, self.saved_flops = [], 0
        for step in plan.steps:
            inputs = _inputs(step)
            if all(fixed[n] for n in inputs):
                fixed[step.c] = True
                values[step.c] = (values[step.a] if len(inputs) == 1
                                  else step.forward(values[step.a], values[step.b]))
                self.saved_flops += step.forward.flops if len(inputs) == 2 else 0
            else:
                self.steps.append(step)
        read = {n for step in self.steps for n in _inputs(step)} | {plan.root}
        self.values = {n: v for n, v in values.items() if n in read}

    def seed(self, values: list) -> list:
        """Put the kept intermediates into a forward pass's ``values``; the steps left."""
        for n, value in self.values.items():
            values[n] = value
        return self.steps


def _inputs(step) -> tuple:
    """The nodes a step reads: ``(a, b)`` of a pairwise step, ``(a,)`` of a move."""
    return (step.a, step.b) if hasattr(step, "b") else (step.a,)
