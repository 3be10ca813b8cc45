"""What :mod:`tnc.torch` and :mod:`tnc.jax` share: one contraction call, and layer networks.

Neither torch nor jax is imported here. A :class:`Call` is one tnc network
called on a dict of arrays: its distinct tensor names (the order in which the
framework sees them as inputs), the ones to differentiate, and the engine's
:class:`~tnc.engine.grad.GradPlan` whose ``forward``/``backward`` do the work.

    >>> import numpy as np, tnc
    >>> net = tnc.compile("network mm() { index i: 2, j: 3, k: 2  tensor A(i, j), B(j, k) "
    ...                   "output i, k }")
    >>> call = Call.make(net, "auto", wrt={"A"})
    >>> call.names, sorted(call.plan.wrt)
    (('A', 'B'), ['A'])
    >>> t = net.random()
    >>> value, tape = call.forward([t["A"], t["B"]])
    >>> np.allclose(value, t["A"] @ t["B"])
    True

:func:`layer_network` turns a network with open legs into the batched network a
layer contracts: the weight network plus a data tensor ``x(batch, inputs...)``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re

from tnc.errors import TensorError, TncError


@dataclasses.dataclass(frozen=True)
class Call:
    """One network called on named arrays: ``names`` (distinct tensors, first use
    first), ``plan`` (the engine's gradient plan for ``wrt``), the network."""

    network: object
    names: tuple[str, ...]
    plan: object

    @classmethod
    def make(cls, network, optimize, wrt, numpy_arrays: bool = False) -> "Call":
        """The call's plan. For torch or jax arrays (``numpy_arrays`` False) it is laid
        out for BLAS products: tnc's compiled kernels take numpy arrays only, and a
        kernel layout run on torch or jax arrays becomes a broadcast batched product
        of thin matrices (54 ms instead of 17 ms for one step of the 1024 x 1024
        TT-matrix layer at batch 256, torch CPU). ``numpy_arrays``: the call runs on
        numpy arrays (views of CPU tensors), laid out for the kernels."""
        from tnc.engine import kernels
        from tnc.engine.grad import grad_plan
        names = tuple(dict.fromkeys(occ.name for occ in network.occurrences))
        with contextlib.nullcontext() if numpy_arrays else kernels.disabled():
            return cls(network, names, grad_plan(network, optimize, frozenset(wrt)))

    def operands(self, arrays) -> list:
        """``arrays`` (one per name, in :attr:`names` order) in occurrence order."""
        by_name = dict(zip(self.names, arrays))
        return [by_name[occ.name] for occ in self.network.occurrences]

    def forward(self, arrays):
        """``(value, tape)`` of the engine's forward sweep on ``arrays`` (names order)."""
        return self.plan.forward(self.operands(arrays))

    def backward(self, tape, upstream) -> dict:
        """Gradients name -> array for the names in ``wrt``; the tape is kept (a copy
        of its list is consumed) so that a second backward over it works too."""
        return self.plan.backward(list(tape), upstream)

    def check_memory(self, itemsize: int, memory_limit) -> None:
        from tnc.engine.plan import check_memory
        check_memory(self.plan.cost.for_itemsize(itemsize), memory_limit,
                     f"the gradient of network `{self.network.name}`")


def ordered_arrays(network, tensors, is_array, kind: str) -> list:
    """``tensors[name]`` for each distinct tensor name of ``network`` (first use first),
    after tnc's name and shape checks; anything ``is_array`` refuses is a
    :class:`~tnc.errors.TensorError` naming the tensor, its type and ``kind``."""
    from tnc.engine.backend import backend_of
    network.check_tensors(tensors)
    names = dict.fromkeys(occ.name for occ in network.occurrences)
    for name in names:
        if not is_array(tensors[name]):
            raise TensorError(f"tensor `{name}` of network `{network.name}` must be a {kind}, "
                              f"got {type(tensors[name]).__name__}")
    arrays = {name: tensors[name] for name in names}
    backend_of(arrays, f"network `{network.name}`")       # one device (TncError naming both)
    return list(arrays.values())


# -- layers -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerLegs:
    """A weight network's open legs split into ``inputs`` and ``outputs`` (index names,
    in the network's output order), with their sizes."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    in_sizes: tuple[int, ...]
    out_sizes: tuple[int, ...]

    @property
    def fan_in(self) -> int:
        return math.prod(self.in_sizes)

    @property
    def fan_out(self) -> int:
        return math.prod(self.out_sizes)


def split_legs(network, inputs) -> LayerLegs:
    """The output legs of ``network`` named by ``inputs`` and the rest.

    An entry of ``inputs`` names one output leg (``"col[2]"``) or a whole index
    family (``"col"`` matches ``col[1]``, ``col[2]``, ...).

        >>> import tnc
        >>> legs = split_legs(tnc.library("ttm", N=3, m=2, k=4, r=2), ["col"])
        >>> legs.inputs, legs.out_sizes, legs.fan_in
        (('col[1]', 'col[2]', 'col[3]'), (2, 2, 2), 64)
    """
    check_weight_network(network)
    if isinstance(inputs, str):
        inputs = [inputs]
    output = network.output
    chosen = []
    for entry in inputs:
        family = re.compile(re.escape(entry) + r"\[[^\]]*\]$")
        matched = [leg for leg in output if leg == entry or family.match(leg)]
        if not matched:
            raise TncError(f"layer input `{entry}` is not an output leg or index family of "
                           f"network `{network.name}`; its output legs are " + ", ".join(output))
        chosen += matched
    chosen = [leg for leg in output if leg in set(chosen)]
    rest = [leg for leg in output if leg not in set(chosen)]
    if not rest:
        raise TncError(f"every output leg of network `{network.name}` is a layer input; "
                       "a layer needs at least one output leg left")
    sizes = network.spec.index_sizes
    return LayerLegs(tuple(chosen), tuple(rest), tuple(sizes[i] for i in chosen),
                     tuple(sizes[i] for i in rest))


def check_weight_network(network, x_name: str = "x") -> None:
    """A layer's weight network holds parameters only, none named like the input."""
    if network.data:
        raise TncError(f"network `{network.name}` has data tensors ("
                       + ", ".join(f"`{n}`" for n in network.data)
                       + "); a layer's weight network must hold parameters only")
    if x_name in network.params:
        raise TncError(f"network `{network.name}` has a tensor `{x_name}`, the name of the "
                       "layer input; rename it")


def layer_network(network, legs: LayerLegs, batch: int, x_name: str = "x"):
    """The network of one layer call: ``network`` with a data tensor
    ``x(batch, *legs.inputs)``; output ``(batch, *legs.outputs)``.

        >>> import tnc
        >>> net = tnc.library("ttm", N=2, m=3, k=2, r=2)
        >>> batched = layer_network(net, split_legs(net, ["col"]), batch=5)
        >>> batched.output_shape, batched.data
        ((5, 3, 3), {'x': (5, 2, 2)})
    """
    from tnc.engine.network import Network
    from tnc.lang.expand import Occurrence
    spec = network.spec
    batch_leg = _fresh_name("batch", spec.index_sizes)
    x = Occurrence(x_name, "data", (batch_leg, *legs.inputs), spec.span)
    batched = dataclasses.replace(spec, name=f"{spec.name}_layer",
                                  index_sizes={**spec.index_sizes, batch_leg: batch},
                                  occurrences=(*spec.occurrences, x),
                                  output=(batch_leg, *legs.outputs))
    return Network(batched, None)


def weight_network(network, legs: LayerLegs):
    """``network`` with its open legs reordered ``(*legs.outputs, *legs.inputs)``: its
    value reshapes (a view) to the dense ``(fan_out, fan_in)`` weight."""
    from tnc.engine.network import Network
    spec = dataclasses.replace(network.spec, output=(*legs.outputs, *legs.inputs))
    return Network(spec, None)


@dataclasses.dataclass(frozen=True)
class WeightHalves:
    """The dense weight as one matrix product of two halves of the network.

    ``left`` holds the first tensors with output ``(*outs_L, *ins_L, *shared)`` and
    ``right`` the others with output ``(*shared, *outs_R, *ins_R)``; ``W[oL, oR, iL, iR]
    = sum_s L[oL, iL, s] R[s, oR, iR]`` is one product (:class:`tnc.torch.Layer` runs it
    as one einsum). A TT-matrix contracted whole ends interleaved
    (row 1, col 1, row 2, ...): its reshape to ``(fan_out, fan_in)`` was a 10-d permuted
    copy of the 4 MB weight, 3.1 ms in torch, once forward and twice back.
    ``dims``: ``(OL, OR, IL, IR, S)``.

        >>> import tnc
        >>> net = tnc.library("ttm", N=4, m=2, k=3, r=2)
        >>> halves = weight_halves(net, split_legs(net, "col"))
        >>> halves.left.output, halves.right.output, halves.dims
        (('row[1]', 'row[2]', 'col[1]', 'col[2]', 'b[2]'), ('b[2]', 'row[3]', 'row[4]', 'col[3]', 'col[4]'), (4, 4, 9, 9, 2))
        >>> weight_halves(tnc.library("ttm", N=5, m=4, k=4, r=8), split_legs(
        ...     tnc.library("ttm", N=5, m=4, k=4, r=8), "col")).dims
        (64, 16, 64, 16, 8)
    """

    left: object
    right: object
    dims: tuple[int, int, int, int, int]


def weight_halves(network, legs: LayerLegs) -> WeightHalves | None:
    """The split of ``network``'s tensors, first ones left, that makes the best
    :class:`WeightHalves` (fewest shared entries ``S``, then the most balanced halves; a
    1024 x 1024 TT-matrix layer in torch measured 19.0 ms split (64, 16 | 64, 16)
    against 19.7-21.8 ms at the other splits and 24.6 ms unsplit), or
    None when no split keeps each open leg on one side with the left side's outputs and
    inputs first."""
    from tnc.engine.network import Network
    spec, occurrences = network.spec, network.occurrences
    size = lambda ixs: math.prod(spec.index_sizes[ix] for ix in ixs)    # noqa: E731
    open_legs, best = set(legs.outputs) | set(legs.inputs), None
    for k in range(1, len(occurrences)):
        left = {ix for occ in occurrences[:k] for ix in occ.indices}
        right = {ix for occ in occurrences[k:] for ix in occ.indices}
        if open_legs & left & right:
            continue
        outs = [leg in left for leg in legs.outputs]
        ins = [leg in left for leg in legs.inputs]
        if outs != sorted(outs, reverse=True) or ins != sorted(ins, reverse=True):
            continue
        shared = tuple(ix for ix in spec.index_sizes if ix in left and ix in right)
        outs_l, outs_r = legs.outputs[:sum(outs)], legs.outputs[sum(outs):]
        ins_l, ins_r = legs.inputs[:sum(ins)], legs.inputs[sum(ins):]
        dims = (size(outs_l), size(outs_r), size(ins_l), size(ins_r), size(shared))
        # S, then the most balanced halves, then the bigger left (measured best in torch)
        rank = (dims[4], -min(dims[0] * dims[2], dims[1] * dims[3]), -dims[0] * dims[2])
        if best is None or rank < best[0]:
            halves = (dataclasses.replace(spec, name=f"{spec.name}_left", occurrences=
                                          occurrences[:k], output=(*outs_l, *ins_l, *shared)),
                      dataclasses.replace(spec, name=f"{spec.name}_right", occurrences=
                                          occurrences[k:], output=(*shared, *outs_r, *ins_r)))
            best = (rank, halves, dims)
    if best is None:
        return None
    _, (left, right), dims = best
    return WeightHalves(Network(left, None), Network(right, None), dims)


def _fresh_name(base: str, taken) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name


def init_std(network, variance: float) -> float:
    """The standard deviation, the same for every entry of every tensor, that gives
    the dense equivalent of ``network`` (all its open legs) entries of variance
    ``variance``.

    For independent zero-mean entries each dense entry is a sum of
    ``prod(contracted sizes)`` uncorrelated products of one entry per tensor use,
    so its variance is ``prod(contracted sizes) * std ** (2 * uses)``. (A tensor used
    twice makes the products correlated; then the variance is only approximate.)

        >>> import tnc
        >>> round(init_std(tnc.library("ttm", N=2, m=2, k=2, r=4), 1.0), 6)   # (1/4)^(1/4)
        0.707107
    """
    spec = network.spec
    contracted = [i for i in spec.index_sizes if i not in spec.output]
    log_terms = sum(math.log(spec.index_sizes[i]) for i in contracted)
    return math.exp((math.log(variance) - log_terms) / (2 * len(spec.occurrences)))


def attribute_names(names) -> dict[str, str]:
    """A valid, distinct Python attribute name for each tensor name.

        >>> attribute_names(["W[1]", "W[2]", "G", "W_1"])
        {'W[1]': 'W_1', 'W[2]': 'W_2', 'G': 'G', 'W_1': 'W_1_'}
    """
    result: dict[str, str] = {}
    for name in names:
        attr = re.sub(r"\W+", "_", name).strip("_") or "t"
        if attr[0].isdigit():
            attr = "t_" + attr
        while attr in result.values():
            attr += "_"
        result[name] = attr
    return result
