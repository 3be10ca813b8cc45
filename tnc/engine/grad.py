"""Gradients of a network: reverse mode over one contraction tree.

The derivative of ``sum(upstream * contract(tensors))`` with respect to a tensor
is its environment (the network with that tensor deleted) contracted with
``upstream``; a tied tensor gets the sum over its uses. Instead of contracting
one environment per tensor, :class:`GradPlan` runs the planned pairwise
contractions forward, keeps the intermediates the backward pass needs, and
walks the tree back once: for a step ``C = A * B`` (one matrix product),
``dA = dC * B`` and ``dB = dC * A`` are matrix products of the same size. So all
gradients cost about two to three forward contractions, and subtrees holding
no tensor of ``wrt`` (data tensors, usually) get no gradient at all.

    >>> import numpy as np, tnc
    >>> net = tnc.compile('''
    ...     network mm(I = 2, J = 3, K = 4) {
    ...         index i: I, j: J, k: K
    ...         tensor A(i, j), B(j, k)
    ...         output i, k
    ...     }''')
    >>> t = net.random(seed=0)
    >>> g = net.grad(t)                 # upstream = ones(2, 4)
    >>> np.allclose(g["A"], np.ones((2, 4)) @ t["B"].T), g["B"].shape
    (True, (3, 4))

The tree is the forward plan's path (``Network.plan(optimize)``): on the
library networks and the benchmark cases no greedy or random-greedy path had
fewer forward-plus-backward flops, since the backward pass repeats each
product at most twice and skips the branches of data tensors.

Arrays may be numpy, torch, jax or cupy (one library per call, checked by
:func:`tnc.engine.backend.backend_of`); values and gradients stay on the inputs'
library, device and dtype, and mixed dtypes promote by numpy's rules. A torch
tensor with ``requires_grad`` is used through its detached value. The
:class:`GradPlan` calls (:meth:`GradPlan.forward`, :meth:`GradPlan.backward`) are
trace-safe: no conversion to numpy, no ``.item()``, no branch on a value and no
in-place write on non-numpy arrays, so they run on jax tracers under ``jax.jit``.

Complex tensors: the reverse sweep is *holomorphic* (no conjugation):
``backward(tape, u)[T] = sum_out u * d out / d T``, the vector-Jacobian product
jax's ``vjp`` computes. torch's autograd convention is the conjugate one,
``conj(backward(tape, conj(u)))``. For a real loss ``L`` of complex tensors the
descent direction ``dL/dRe T + i dL/dIm T`` is
``conj(backward(tape, conj(dL/dRe out + i dL/dIm out)))``: what
:meth:`tnc.Network.value_and_grad` returns (:mod:`tnc.fitting.losses` gives the
derivative in that sense, ``2 (m - x)`` for least squares).

Leaves are preprocessed first: repeated indices on one tensor (``A(i, i)``)
become its diagonal, and indices carried by that tensor alone (and not in the
output) are summed; the backward pass scatters onto the diagonal and
broadcasts along the summed legs. Index sets are tuples of integers (positions
in ``spec.index_sizes``), so networks with any number of indices work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tnc.errors import TensorError, TncError
from tnc.lang.expand import NetworkSpec
from tnc.engine import backend as bk
from tnc.engine.pairwise import Pairwise, _perm, _size, pairwise
from tnc.engine.plan import Cost, check_memory

Indices = tuple  # of int index ids
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"    # einsum of one leaf


# -- gradient steps: pairwise products (tnc.engine.pairwise) -----------------------------
@dataclass(frozen=True)
class Gradient:
    """``d(mine) = dC * other`` as a :class:`Pairwise`, the operands in whichever order
    needs fewer copies and leaves the result in ``mine``'s own leg order."""

    recipe: Pairwise
    dc_first: bool

    @classmethod
    def make(cls, dc: Indices, other: Indices, mine: Indices, sizes) -> "Gradient":
        options = [cls(pairwise(dc, other, set(mine), sizes), True),
                   cls(pairwise(other, dc, set(mine), sizes), False)]
        return min(options, key=lambda g: (g.recipe.copied, g.recipe.out != mine))

    def __call__(self, dc, other):
        return self.recipe(dc, other) if self.dc_first else self.recipe(other, dc)


# -- leaves: diagonals and lonely legs ------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    """One tensor use: its legs ``legs`` (repeats allowed) reduced to ``indices``.

    ``indices`` are the distinct legs that some other tensor or the output
    carries, in order of first appearance; ``full`` all distinct legs.

        >>> leaf = Leaf.make("A", (0, 0, 1), keep={0}, sizes=[3, 2])
        >>> leaf.indices, leaf.forward(np.ones((3, 3, 2))).tolist()
        ((0,), [2.0, 2.0, 2.0])
        >>> leaf.backward(np.array([1.0, 2.0, 3.0]))[:, :, 0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]
    """

    name: str
    legs: Indices
    full: Indices
    indices: Indices
    sizes: tuple[int, ...]          # of ``full``

    @classmethod
    def make(cls, name, legs, keep, sizes) -> "Leaf":
        full = tuple(dict.fromkeys(legs))
        return cls(name, tuple(legs), full, tuple(i for i in full if i in keep),
                   tuple(sizes[i] for i in full))

    @property
    def trivial(self) -> bool:
        return self.legs == self.indices

    def _local(self, indices):
        return [self.full.index(i) for i in indices]

    def _letters(self, indices) -> str:
        return "".join(LETTERS[self.full.index(i)] for i in indices)

    def forward(self, x):
        """``x`` with repeated legs reduced to their diagonal and lonely legs summed."""
        if self.trivial:
            return x
        if type(x) is not np.ndarray:
            return bk.einsum(f"{self._letters(self.legs)}->{self._letters(self.indices)}", x)
        return np.einsum(x, self._local(self.legs), self._local(self.indices))

    def backward(self, g):
        """The gradient on the full tensor from ``g`` (legs ``indices``)."""
        if self.trivial:
            return g
        if type(g) is not np.ndarray:
            return self._backward_any(g)
        expand = tuple(slice(None) if i in self.indices else None for i in self.full)
        g = np.broadcast_to(g[expand], self.sizes)
        if self.legs == self.full:
            return np.array(g)
        shape = tuple(self.sizes[self.full.index(i)] for i in self.legs)
        result = np.zeros(shape, dtype=g.dtype)
        np.einsum(result, self._local(self.legs), self._local(self.full))[...] = g
        return result

    def _backward_any(self, g):
        """:meth:`backward` without writing in place (torch, jax, cupy): one einsum of
        ``g`` with a ones vector per summed leg and an identity per repeated use of a
        leg (``A(i, i, j)``: ``g[i, j] eye[i, i']``)."""
        first: dict = {}                # leg -> the letter of its first use
        terms, operands, out = [], [g], ""
        for k, i in enumerate(self.legs):
            if i in first:
                terms.append(first[i] + LETTERS[k])
                operands.append(bk.eye(self.sizes[self.full.index(i)], like=g))
            else:
                first[i] = LETTERS[k]
            out += LETTERS[k]
        for i in self.full:
            if i not in self.indices:
                terms.append(first[i])
                operands.append(bk.ones((self.sizes[self.full.index(i)],), like=g))
        head = "".join(first[i] for i in self.indices)
        return bk.einsum(",".join([head, *terms]) + "->" + out, *operands)


# -- the tape: forward steps and their backward ---------------------------------------------
@dataclass(frozen=True)
class Step:
    """``nodes[c] = forward(nodes[a], nodes[b])``; ``grad_a``/``grad_b`` None when not wanted."""

    a: int
    b: int
    c: int
    forward: Pairwise
    grad_a: Gradient | None
    grad_b: Gradient | None


@dataclass(frozen=True)
class Move:
    """A unary path step: node ``a`` becomes node ``c`` unchanged."""

    a: int
    c: int


class GradPlan:
    """Forward steps and backward recipes for one network, path and ``wrt`` set.

    Built once per ``(network, optimize, wrt)`` by :func:`grad_plan`.
    ``cost.flops`` counts forward plus backward, two per multiply-add (like
    ``Network.cost().flops``); ``cost.peak_bytes`` bounds the float64 memory of
    the kept intermediates, the largest other intermediate, the gradients and the
    copies of operands (:meth:`operand_copies`).
    """

    def __init__(self, spec: NetworkSpec, path, wrt: frozenset[str]):
        ids = {name: k for k, name in enumerate(spec.index_sizes)}
        self.sizes = [spec.index_sizes[name] for name in spec.index_sizes]
        self.output: Indices = tuple(ids[i] for i in spec.output)
        self.wrt = wrt
        legs = [tuple(ids[i] for i in occ.indices) for occ in spec.occurrences]
        self.leaves = [Leaf.make(occ.name, legs[k], self._carried(legs, k), self.sizes)
                       for k, occ in enumerate(spec.occurrences)]
        self.indices: list[Indices] = [leaf.indices for leaf in self.leaves]
        self.needs: list[bool] = [leaf.name in wrt for leaf in self.leaves]
        self.grad_order: dict[int, Indices] = {}
        self.steps: list[Step | Move] = []
        self._build(path)
        self.cost = self._cost(path)

    def _carried(self, legs, k) -> set[int]:
        """Legs of tensor ``k`` that the output or another tensor carries too."""
        others = {i for j, l in enumerate(legs) if j != k for i in l}
        return others | set(self.output)

    # -- planning --------------------------------------------------------------------
    def _new_node(self, indices: Indices, needs: bool) -> int:
        self.indices.append(indices)
        self.needs.append(needs)
        return len(self.indices) - 1

    def _build(self, path) -> None:
        live = list(range(len(self.leaves)))
        for positions in path:
            group = [live[p] for p in positions]
            for p in sorted(positions, reverse=True):
                live.pop(p)
            later = set(self.output).union(*(self.indices[n] for n in live))
            node = group[0]
            if len(group) == 1:
                node = self._new_node(self.indices[node], self.needs[node])
                self.steps.append(Move(group[0], node))
            for k, other in enumerate(group[1:], start=1):
                keep = later.union(*(self.indices[n] for n in group[k + 1:]))
                node = self._add_step(node, other, keep)
            live.append(node)
        self.root = live[0]
        self.grad_order[self.root] = self.output
        for k in reversed(range(len(self.steps))):
            self.steps[k] = self._plan_backward(self.steps[k])
        self.root_perm = _perm(self.indices[self.root], list(self.output))
        self.leaf_perms = [_perm(self.grad_order[k], list(leaf.indices))
                           if k in self.grad_order else None
                           for k, leaf in enumerate(self.leaves)]
        self.kept = {n for s in self.steps if isinstance(s, Step)
                     for n, g in ((s.b, s.grad_a), (s.a, s.grad_b)) if g is not None}

    def _add_step(self, a: int, b: int, keep: set[int]) -> int:
        forward = pairwise(self.indices[a], self.indices[b], keep, self.sizes, self.output)
        c = self._new_node(forward.out, self.needs[a] or self.needs[b])
        self.steps.append(Step(a, b, c, forward, None, None))
        return c

    def _plan_backward(self, step):
        """``step`` with its gradient recipes filled in (steps are visited root first)."""
        if isinstance(step, Move):
            if step.c in self.grad_order:
                self.grad_order[step.a] = self.grad_order[step.c]
            return step
        dc = self.grad_order.get(step.c)
        grads = []
        for mine, other in ((step.a, step.b), (step.b, step.a)):
            gradient = None
            if self.needs[mine] and dc is not None:
                gradient = Gradient.make(dc, self.indices[other], self.indices[mine], self.sizes)
                self.grad_order[mine] = gradient.recipe.out
            grads.append(gradient)
        return Step(step.a, step.b, step.c, step.forward, *grads)

    def _cost(self, path) -> Cost:
        """Flops of forward and backward, and a bound on the memory they keep alive."""
        flops = 0
        for step in self.steps:
            if isinstance(step, Step):
                flops += step.forward.flops + sum(g.recipe.flops for g in (step.grad_a, step.grad_b)
                                                  if g is not None)
        nodes = [_size(ix, self.sizes) for ix in self.indices]
        kept = sum(nodes[n] for n in self.kept if n >= len(self.leaves))
        intermediates = kept + max(nodes[len(self.leaves):], default=0)
        grads = sum(nodes[n] for n in self.grad_order)
        largest = max(nodes[len(self.leaves):], default=max(nodes))
        return Cost(2 * flops, largest, 8 * (intermediates + grads + self.operand_copies()),
                    tuple(path))

    def operand_copies(self) -> int:
        """Elements of the copies the sweep makes of its operands beside the
        intermediates: every reduced leaf (a diagonal or summed legs of an input,
        made up front) and the largest transposed layout of any one product (both
        operands of a step, forward or backward; freed once the product is done).

            >>> import tnc
            >>> net = tnc.compile("network t(n = 4) { index i: n, j: n  tensor A(i, j), "
            ...                   "B(j, i)  output i }")
            >>> grad_plan(net, wrt=()).operand_copies()     # one operand transposed
            16
        """
        reduced = sum(_size(leaf.indices, self.sizes) for leaf in self.leaves
                      if not leaf.trivial)
        recipes = [r for step in self.steps if isinstance(step, Step)
                   for r in (step.forward, *(g.recipe for g in (step.grad_a, step.grad_b)
                                             if g is not None))]
        return reduced + max((r.copied for r in recipes), default=0)

    # -- running ---------------------------------------------------------------------
    def forward(self, arrays, folded=None) -> tuple[np.ndarray, list]:
        """The network's value (legs in output order) and the tape for :meth:`backward`.

        ``folded``: a :class:`tnc.engine.constants.Folded` of this plan, holding its
        constant-only intermediates (their leaves' ``arrays`` may then be None)."""
        values = [None if x is None else leaf.forward(x) for leaf, x in zip(self.leaves, arrays)]
        values += [None] * (len(self.indices) - len(values))
        for step in (self.steps if folded is None else folded.seed(values)):
            if isinstance(step, Move):
                values[step.c] = values[step.a]
            else:
                values[step.c] = step.forward(values[step.a], values[step.b])
                for n in (step.a, step.b):
                    if n not in self.kept:
                        values[n] = None
        result = values[self.root]
        return (result if self.root_perm is None else bk.transpose(result, self.root_perm)), values

    def backward(self, values: list, upstream) -> dict[str, np.ndarray]:
        """Gradients of ``sum(upstream * value)`` for every tensor in ``wrt``.

        Consumes ``values`` (intermediates are freed as soon as they are used).
        """
        grads: list = [None] * len(self.indices)
        grads[self.root] = upstream
        for step in reversed(self.steps):
            dc = grads[step.c]
            grads[step.c] = None
            if dc is None:
                continue
            if isinstance(step, Move):
                grads[step.a] = dc
                continue
            if step.grad_a is not None:
                grads[step.a] = step.grad_a(dc, values[step.b])
            if step.grad_b is not None:
                grads[step.b] = step.grad_b(dc, values[step.a])
            values[step.a] = values[step.b] = None
        return self._leaf_grads(grads, upstream)

    def _leaf_grads(self, grads, upstream) -> dict[str, np.ndarray]:
        """Per tensor name: the sum over its uses, each put back onto its full legs."""
        result: dict[str, np.ndarray] = {}
        for k, leaf in enumerate(self.leaves):
            g = grads[k]
            if g is None:
                continue
            perm = self.leaf_perms[k]
            g = leaf.backward(g if perm is None else bk.transpose(g, perm))
            result[leaf.name] = g if leaf.name not in result else result[leaf.name] + g
        if type(upstream) is not np.ndarray:
            return {name: bk.owned(g, upstream) for name, g in result.items()}
        return {name: np.array(g) if g.base is not None or g is upstream else g
                for name, g in result.items()}


# -- entry points used by Network -----------------------------------------------------------
def grad_plan(network, optimize="auto", wrt=None) -> GradPlan:
    """The :class:`GradPlan` of ``network`` for ``optimize`` and ``wrt``, kept by the
    network's program (:mod:`tnc.engine.program`)."""
    from tnc.engine.program import program_of      # program builds on this module
    return program_of(network, optimize).gradients(resolve_wrt(network, wrt))


def resolve_wrt(network, wrt) -> frozenset[str]:
    """``wrt`` as a set of tensor names (default: every parameter), checked."""
    if wrt is None:
        return frozenset(network.params)
    if isinstance(wrt, str):
        wrt = [wrt]
    names = list(wrt)
    known = {**network.params, **network.data}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TensorError(f"cannot differentiate network `{network.name}` with respect to "
                          + ", ".join(f"`{n}`" for n in unknown) + "; its tensors are "
                          + ", ".join(known))
    return frozenset(names)


def gradient_operands(network, tensors, what: str = "the gradient") -> list:
    """The occurrence-ordered arrays for a reverse sweep of ``network``: one library and
    device (:func:`~tnc.engine.backend.backend_of`, a :class:`TncError` naming both
    otherwise), torch tensors detached, numpy array-likes as plain ndarrays, and arrays
    of other libraries cast to one dtype (numpy's promotion; torch multiplies only
    equal dtypes)."""
    arrays = network.operands(tensors)
    if bk.all_numpy(arrays):
        return arrays
    names = [occ.name for occ in network.occurrences]
    if bk.backend_of(arrays, f"{what} of network `{network.name}`", names) == "numpy":
        return [np.asarray(a) for a in arrays]
    return bk.promote(*(bk.detach(a) for a in arrays))


def _run_forward(network, tensors, plan: GradPlan, memory_limit):
    arrays = gradient_operands(network, tensors)
    cost = plan.cost.for_itemsize(bk.result_dtype(*arrays).itemsize)
    check_memory(cost, memory_limit, f"the gradient of network `{network.name}`")
    return plan.forward(arrays)


def output_array(network, array, what: str = "upstream", like=None):
    """``array`` checked to have the network's output shape; with ``like`` (an array of
    the network's operands), checked to be of ``like``'s library and device (a scalar
    or a numpy upstream given with numpy operands is made an array of it)."""
    if like is not None:
        bk.backend_of([like, array], f"the {what} for network `{network.name}`",
                      ["the tensors", what])
    if like is None or type(like) is np.ndarray:
        array = np.asarray(array)
    else:
        array = bk.detach(bk.asarray(array, like))
    shape = network.output_shape
    if tuple(array.shape) != shape:
        raise TensorError(f"{what} for network `{network.name}` must have the output's "
                          f"shape {shape}, got {tuple(array.shape)}")
    return array


def grad(network, tensors, upstream=None, wrt=None, optimize="auto",
         memory_limit="auto") -> dict:
    """See :meth:`tnc.Network.grad`."""
    plan = grad_plan(network, optimize, wrt)
    value, tape = _run_forward(network, tensors, plan, memory_limit)
    if upstream is None:
        upstream = bk.ones(network.output_shape, like=value)
    return plan.backward(tape, output_array(network, upstream, like=value))


def value_and_grad(network, tensors, loss, target, mask=None, wrt=None, optimize="auto",
                   memory_limit="auto"):
    """See :meth:`tnc.Network.value_and_grad`."""
    from tnc.fitting.losses import get_loss
    loss = get_loss(loss)
    plan = grad_plan(network, optimize, wrt)
    model, sweep = _model_and_sweep(network, tensors, plan, optimize, memory_limit)
    target = output_array(network, target, "target", like=model)
    model, target = bk.promote(model, target) if type(model) is not np.ndarray else \
        (model, target)
    if mask is not None:
        mask = bk.astype(output_array(network, mask, "mask", like=model), np.bool_)
    if mask is None:
        loss.check_data(target)
        value, upstream = loss.value(model, target).sum(), loss.derivative(model, target)
    else:
        observed_model, observed = model[mask], target[mask]   # missing entries never evaluated
        loss.check_data(observed)
        upstream = bk.zeros(model.shape, like=model, dtype=bk.result_dtype(model, observed))
        upstream = bk.add_at(upstream, mask, loss.derivative(observed_model, observed))
        value = loss.value(observed_model, observed).sum()
    if bk.is_scalar(upstream):            # numpy's arithmetic on 0-d arrays gives scalars
        upstream = np.asarray(upstream)
    return float(value), _descent(sweep, upstream)


def _model_and_sweep(network, tensors, plan: GradPlan, optimize, memory_limit):
    """The network's value and a function upstream -> gradients (holomorphic), sliced as
    :meth:`tnc.Network.grad` slices when the reverse sweep does not fit ``memory_limit``.
    The loss keeps two more arrays of the output's size (the model and the loss's
    entries) beside what the sweep keeps: the slicing leaves room for them."""
    from tnc.engine.slicing import contract_sliced, grad_sliced, gradient_slicing
    from tnc.engine.plan import limit_bytes
    limit = limit_bytes(memory_limit)
    arrays = gradient_operands(network, tensors)
    if limit is not None:
        itemsize = bk.result_dtype(*arrays).itemsize
        room = limit - 2 * math.prod(network.output_shape) * itemsize
        slicing = gradient_slicing(network, arrays, plan.wrt, optimize, max(room, 0))
        if slicing is not None:
            model = contract_sliced(network, arrays, slicing)
            return model, lambda upstream: grad_sliced(network, arrays, upstream, plan.wrt,
                                                       slicing)
    check_memory(plan.cost.for_itemsize(bk.result_dtype(*arrays).itemsize), memory_limit,
                 f"the gradient of network `{network.name}`")
    model, tape = plan.forward(arrays)
    return model, lambda upstream: plan.backward(tape, upstream)


def _descent(sweep, upstream) -> dict:
    """The reverse sweep for a real loss: ``upstream`` is ``dL/dRe m + i dL/dIm m``;
    the result ``dL/dRe T + i dL/dIm T`` per tensor (for complex tensors the
    holomorphic ``sweep`` is conjugated on the way in and out; a no-op for real ones)."""
    if not bk.dtype_name(upstream).startswith("complex"):
        return sweep(upstream)
    return {name: bk.conj(g) for name, g in sweep(bk.conj(upstream)).items()}


# -- environments ---------------------------------------------------------------------------
def environment_spec(spec: NetworkSpec, name: str, occurrence=None) -> NetworkSpec:
    """``spec`` with one use of tensor ``name`` deleted, its legs opened.

    The output is the deleted tensor's distinct legs in its own order, then the
    original output legs not already among them. Legs no other tensor carries
    (and not in the output) are left out: the environment is constant along them.
    """
    uses = [k for k, occ in enumerate(spec.occurrences) if occ.name == name]
    if not uses:
        raise TncError(f"network `{spec.name}` has no tensor `{name}`; its tensors are "
                       + ", ".join(dict.fromkeys(o.name for o in spec.occurrences)))
    if occurrence is None and len(uses) > 1:
        raise TncError(f"tensor `{name}` is used {len(uses)} times in network `{spec.name}`; "
                       f"its gradient is the sum of {len(uses)} environments, one network "
                       f"each: pass occurrence=k for k in 0..{len(uses) - 1}")
    k = occurrence or 0
    if not 0 <= k < len(uses):
        raise TncError(f"tensor `{name}` has uses 0..{len(uses) - 1}, not occurrence={k}")
    deleted = spec.occurrences[uses[k]]
    rest = tuple(o for j, o in enumerate(spec.occurrences) if j != uses[k])
    if not rest:
        raise TncError(f"`{name}` is the only tensor of network `{spec.name}`; its "
                       "environment is empty (the gradient is the upstream itself)")
    carried = {i for o in rest for i in o.indices}
    output = tuple(i for i in dict.fromkeys(deleted.indices + spec.output) if i in carried)
    index_sizes = {i: s for i, s in spec.index_sizes.items() if i in carried}
    return NetworkSpec(f"{spec.name}_env_{name}" + (f"_{k}" if len(uses) > 1 else ""),
                       dict(spec.sizes), index_sizes, rest, output, spec.span)
