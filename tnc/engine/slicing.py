"""Sliced contraction: contract a network over budget one slice of some indices at a time.

When the planned peak exceeds ``memory_limit``, :meth:`tnc.Network.contract` and
:meth:`tnc.Network.grad` pick indices to *slice*: each slice fixes their values
(the index becomes size 1), is contracted with the same path as the whole
network, and the slices are summed; a sliced output index puts each slice's
result into its own block of the output instead. Gradients are the sum over
slices, each slice's gradient added into the block of the tensor it touched.
The peak is then one slice's intermediates plus the full output (and, for
gradients, the full gradients) that the slices accumulate into.

Indices are chosen greedily on the opt_einsum path (the index whose slicing
shrinks the largest intermediate most, ties to the smaller peak and then the
fewer flops, repeated until the peak fits), or with cotengra's ``SliceFinder``
(``slicer="cotengra"``; cotengra stays optional).

    >>> import numpy as np, tnc
    >>> net = tnc.library("tt", N=4, d=3, r=8)
    >>> t = net.random(seed=0)
    >>> cost = net.cost(memory_limit=1200)           # unsliced: 1.758 KiB
    >>> cost.sliced, cost.slices, cost.peak_bytes <= 1200
    (('p[1]', 'p[3]'), 9, True)
    >>> bool(np.allclose(net.contract(t, memory_limit=1200), net.contract(t)))
    True
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import math
import os
from dataclasses import dataclass

import numpy as np
import opt_einsum as oe

from tnc.errors import MemoryLimitError, TncError
from tnc.engine import backend as bk
from tnc.engine.plan import Cost, format_bytes, format_count, limit_bytes, \
    peak_intermediate_elements

SLICERS = ("greedy", "cotengra")
MAX_SLICES = 2 ** 40           # past this many slices a contraction would never finish


@dataclass(frozen=True)
class SlicedCost(Cost):
    """A :class:`~tnc.engine.plan.Cost` under slicing: ``flops`` over all slices,
    ``largest_intermediate`` of one slice, ``peak_bytes`` one slice's peak plus the
    accumulated output (and gradients); ``sliced`` the index names, ``slices`` their
    number of value combinations, ``overhead`` total flops over the unsliced flops."""

    sliced: tuple[str, ...] = ()
    slices: int = 1
    overhead: float = 1.0

    def __str__(self) -> str:
        return (super().__str__() + f"; sliced over {', '.join(self.sliced)}: "
                f"{format_count(self.slices)} slices, flops overhead x{self.overhead:.4g}")


@dataclass(frozen=True)
class Slicing:
    """A chosen slicing of one network: ``network`` has every tensor use renamed
    ``name@k`` (so tied uses slice independently) and the sliced indices of size 1;
    ``path`` is the unsliced plan's path, reused for every slice."""

    sliced: tuple[str, ...]
    network: object
    path: tuple
    cost: SlicedCost


# -- the sliced network -----------------------------------------------------------------
def sliced_spec(spec, sliced):
    """``spec`` with tensor use ``k`` renamed ``name@k`` and the ``sliced`` indices of size 1."""
    occurrences = tuple(dataclasses.replace(occ, name=f"{occ.name}@{k}")
                        for k, occ in enumerate(spec.occurrences))
    sizes = {i: (1 if i in sliced else s) for i, s in spec.index_sizes.items()}
    return dataclasses.replace(spec, name=f"{spec.name}_sliced", index_sizes=sizes,
                               occurrences=occurrences)


def assignments(network, sliced):
    """Every combination of values of the ``sliced`` indices, as dicts index -> value."""
    ranges = [range(network.spec.index_sizes[i]) for i in sliced]
    return (dict(zip(sliced, values)) for values in itertools.product(*ranges))


def block(indices, values: dict) -> tuple:
    """The basic index of one slice in an array with legs ``indices``: ``k:k+1`` on a
    sliced leg (a view, never a copy), ``:`` elsewhere."""
    return tuple(slice(values[i], values[i] + 1) if i in values else slice(None)
                 for i in indices)


# -- costs on the path, without planning again ------------------------------------------
class PathCosts:
    """The path's steps as symbol sets, to cost any slicing in microseconds.

        >>> import tnc
        >>> net = tnc.library("tt", N=3, d=2, r=4)
        >>> costs = PathCosts(net, net.plan())
        >>> costs.measure(()) == (net.cost().largest_intermediate, net.cost().peak_bytes // 8,
        ...                       net.cost().flops)
        True
    """

    def __init__(self, network, plan):
        self.network = network
        self.symbol = network.symbols
        info = plan.info
        self.size_dict = dict(info.size_dict)
        self.inputs = info.input_subscripts.split(",")
        self.steps = []
        for positions, removed, einsum_str, _, _ in info.contraction_list:
            terms, result = einsum_str.split("->")
            symbols = frozenset(terms.replace(",", ""))
            self.steps.append((positions, result, symbols, bool(removed), terms.count(",") + 1))

    def measure(self, sliced) -> tuple[int, int, int]:
        """(largest intermediate, peak intermediate elements, flops) of ONE slice."""
        sizes = dict(self.size_dict)
        for index in sliced:
            sizes[self.symbol[index]] = 1
        results = [math.prod(sizes[s] for s in step[1]) for step in self.steps]
        inputs = [math.prod(sizes[s] for s in term) for term in self.inputs]
        peak = peak_intermediate_elements([(step[0], r) for step, r in zip(self.steps, results)],
                                          inputs)
        flops = sum(oe.helpers.flop_count(symbols, inner, terms, sizes)
                    for _, _, symbols, inner, terms in self.steps)
        return max(results, default=1), peak, flops


# -- choosing the indices -----------------------------------------------------------------
def choose_slicing(network, optimize, itemsize: int, memory_limit, slicer="greedy",
                   wrt=None) -> Slicing | None:
    """The slicing that fits ``memory_limit``, None when the unsliced plan fits.

    ``wrt`` None costs a contraction; a set of tensor names costs their gradients
    (one slice's reverse sweep plus the full gradients). Raises
    :class:`MemoryLimitError` when no slicing fits, :class:`TncError` for an
    unknown ``slicer``.
    """
    if slicer not in SLICERS:
        raise TncError(f"unknown slicer {slicer!r}; choose one of {', '.join(SLICERS)}")
    limit = limit_bytes(memory_limit)
    if limit is None:
        return None
    from tnc.engine.program import program_of
    program = program_of(network, optimize)
    what = (f"contracting network `{network.name}`" if wrt is None
            else f"the gradient of network `{network.name}`")
    unsliced = program.contract_cost if wrt is None else program.gradients(frozenset(wrt)).cost
    if unsliced.peak_bytes // 8 * itemsize <= limit:
        return None
    peak = _peak_function(network, program.plan.cost.path, itemsize, wrt)
    # the last slicing per kind is kept: under "auto" the limit moves with free memory
    last = program.memo(("slicing", slicer, itemsize, None if wrt is None else frozenset(wrt)),
                        dict)
    if last.get("limit") != limit:
        last.update(limit=limit, slicing=_search(network, program.plan, peak, limit, slicer,
                                                 what))
    return last["slicing"]


def _peak_function(network, path, itemsize, wrt):
    """sliced indices -> peak bytes (one slice's plan plus what the slices accumulate)."""
    from tnc.engine.program import program_of
    output = math.prod(network.output_shape)
    shapes = {**network.params, **network.data}
    grads = 0 if wrt is None else sum(math.prod(shapes[n]) for n in wrt)

    def peak(sliced) -> int:
        sub = network if not sliced else type(network)(sliced_spec(network.spec, sliced), None)
        program = program_of(sub, [list(p) for p in path])
        accumulated = (output if sliced else 0) + (grads if sliced else 0)
        if wrt is None:
            return program.contract_cost.peak_bytes // 8 * itemsize + accumulated * itemsize
        names = {f"{occ.name}@{k}" if sliced else occ.name
                 for k, occ in enumerate(network.occurrences) if occ.name in wrt}
        return program.gradients(frozenset(names)).cost.peak_bytes // 8 * itemsize \
            + accumulated * itemsize
    return peak


def _search(network, plan, peak, limit, slicer, what) -> Slicing:
    costs = PathCosts(network, plan)
    floor = peak(tuple(i for i, s in network.spec.index_sizes.items() if s > 1))
    if floor > limit:
        raise MemoryLimitError(
            f"{what} does not fit the memory limit of {format_bytes(limit)} even sliced over "
            f"every index: the output of {format_count(math.prod(network.output_shape))} "
            f"elements and what each slice keeps need {format_bytes(floor)}; lower the sizes "
            "or raise memory_limit")
    find = _cotengra_indices if slicer == "cotengra" else _greedy_indices
    sliced = find(network, plan, costs, peak, limit)
    slices = math.prod(network.spec.index_sizes[i] for i in sliced)
    if slices > MAX_SLICES:
        raise MemoryLimitError(
            f"{what} fits the memory limit of {format_bytes(limit)} only in "
            f"{format_count(slices)} slices (over {', '.join(sliced)}), more than the "
            f"{format_count(MAX_SLICES)} tnc runs; lower the sizes or raise memory_limit")
    largest, _, flops = costs.measure(sliced)
    total = flops * slices
    cost = SlicedCost(total, largest, peak(sliced), plan.cost.path, sliced, slices,
                      total / max(plan.cost.flops, 1))
    return Slicing(sliced, type(network)(sliced_spec(network.spec, sliced), None),
                   plan.cost.path, cost)


def _greedy_indices(network, plan, costs, peak, limit) -> tuple[str, ...]:
    """Add the index that shrinks the largest intermediate most until ``peak`` fits."""
    sliced: tuple[str, ...] = ()
    candidates = [i for i, s in network.spec.index_sizes.items() if s > 1]
    while peak(sliced) > limit:
        scored = [(costs.measure(sliced + (i,)), k, i) for k, i in enumerate(candidates)
                  if i not in sliced]
        sliced += (min(scored)[2],)
    return sliced


def _cotengra_indices(network, plan, costs, peak, limit) -> tuple[str, ...]:
    """cotengra's ``SliceFinder`` on the same path, its target size lowered by a fifth
    at a time until ``peak`` fits (the target counts the largest intermediate, tnc's
    limit the peak)."""
    try:
        from cotengra import SliceFinder
    except ImportError:
        raise TncError("slicer='cotengra' needs the optional cotengra package: "
                       "pip install 'tnc[cotengra]'") from None
    name_of = {symbol: name for name, symbol in network.symbols.items()}
    target = costs.measure(())[0]
    sliced: tuple[str, ...] = ()
    while peak(sliced) > limit:
        target = max(1, target * 4 // 5)
        finder = SliceFinder(plan.info, target_size=target, seed=0)
        symbols, _ = finder.search(max_repeats=8)
        sliced = tuple(sorted((name_of[s] for s in symbols),
                              key=list(network.spec.index_sizes).index))
        if target == 1 and peak(sliced) > limit:    # the floor check makes this unreachable
            raise TncError("cotengra's SliceFinder found no slicing that fits")
    return sliced


# -- running the slices -------------------------------------------------------------------
def contract_sliced(network, arrays, slicing: Slicing, backend="auto", executor=None):
    """The network's value from its occurrence-ordered ``arrays``, summed over slices
    (run on ``executor`` when given: a ``concurrent.futures.Executor`` or anything with
    ``submit`` returning futures with ``result()``, such as a dask.distributed Client)."""
    occurrences = network.occurrences
    output = network.output
    numpy = backend in ("auto", "numpy") and bk.all_numpy(arrays)
    engine = backend == "auto" and bk.backend_of(arrays) in bk.ENGINE_BACKENDS
    dtype = np.result_type(*arrays) if numpy else None
    arrays = arrays if numpy or not engine else bk.promote(*arrays)
    out_sliced = [i for i in slicing.sliced if i in output]

    def items(values):
        return (tuple(values[i] for i in out_sliced),
                [a[block(occ.indices, values)] for a, occ in zip(arrays, occurrences)])

    chunks = [assignments(network, slicing.sliced)] if executor is None else \
        _chunks(list(assignments(network, slicing.sliced)), executor)
    job = (slicing.network, [list(p) for p in slicing.path],
           "numpy" if numpy else "engine" if engine else backend)
    if executor is None:            # one slice's views at a time
        partials = (_run_slices(job, (items(v) for v in chunk)) for chunk in chunks)
    else:
        partials = _gather(executor, [executor.submit(_run_slices, job, [items(v) for v in chunk])
                                      for chunk in chunks])
    result = None
    for partial in partials:
        for key, value in partial.items():
            if result is None:
                result = _zeros_like(value, network.output_shape, dtype)
            index = block(output, dict(zip(out_sliced, key)))
            result = bk.add_at(result, index, value)
    return result


def _zeros_like(value, shape, dtype):
    if dtype is not None:
        return np.zeros(shape, dtype=np.result_type(dtype, value))
    return bk.zeros(shape, like=value)


def _chunks(values: list, executor) -> list[list]:
    """Slices grouped for an executor: about four groups per worker."""
    workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    size = max(1, math.ceil(len(values) / (4 * workers)))
    return [values[k:k + size] for k in range(0, len(values), size)]


def _gather(executor, futures):
    """Results as they complete (``concurrent.futures``) or in order (other executors)."""
    if isinstance(executor, concurrent.futures.Executor):
        return (f.result() for f in concurrent.futures.as_completed(futures))
    return (f.result() for f in futures)


def _run_slices(job, items) -> dict:
    """Contract each ``(output key, arrays)`` slice of ``job``; blocks of one key summed.
    Module-level so that a process pool can pickle it."""
    network, path, backend = job
    partial: dict = {}
    for key, arrays in items:
        if backend == "numpy":
            value = network._contract_numpy(list(arrays), path)
        elif backend == "engine":
            value = network._contract_engine(list(arrays), path)
        else:
            value = network.plan(path).expression(*arrays, backend=backend)
        partial[key] = value if key not in partial else partial[key] + value
    return partial


def grad_sliced(network, arrays, upstream, wrt, slicing: Slicing) -> dict[str, np.ndarray]:
    """Gradients of ``sum(upstream * value)`` for the names in ``wrt``, summed over
    slices: each slice's gradient of a tensor use goes into that use's block."""
    from tnc.engine.program import program_of
    names = frozenset(f"{occ.name}@{k}" for k, occ in enumerate(network.occurrences)
                      if occ.name in wrt)
    plan = program_of(slicing.network, [list(p) for p in slicing.path]).gradients(names)
    dtype = bk.result_dtype(upstream, *arrays)
    shapes = {**network.params, **network.data}
    grads = {name: bk.zeros(shapes[name], like=upstream, dtype=dtype) for name in wrt}
    for values in assignments(network, slicing.sliced):
        sliced = [a[block(occ.indices, values)] for a, occ in zip(arrays, network.occurrences)]
        _, tape = plan.forward(sliced)
        for use, g in plan.backward(tape, upstream[block(network.output, values)]).items():
            occ = network.occurrences[int(use.rsplit("@", 1)[1])]
            grads[occ.name] = bk.add_at(grads[occ.name], block(occ.indices, values), g)
    return grads


def gradient_slicing(network, arrays, wrt: frozenset, optimize, limit: int | None,
                     slicer="greedy") -> Slicing | None:
    """The slicing a reverse sweep of ``network`` over ``arrays`` (occurrence order) needs
    to fit ``limit`` bytes (at the arrays' promoted itemsize), None when it fits unsliced."""
    from tnc.engine.grad import grad_plan
    if limit is None:
        return None
    itemsize = bk.result_dtype(*arrays).itemsize
    if grad_plan(network, optimize, wrt).cost.for_itemsize(itemsize).peak_bytes <= limit:
        return None
    return choose_slicing(network, optimize, itemsize, limit, slicer, wrt)


def grad_if_sliced(network, tensors, upstream, wrt, optimize, memory_limit, slicer):
    """:meth:`tnc.Network.grad` under slicing, or None when its plan fits ``memory_limit``
    unsliced (then the plain reverse sweep runs)."""
    from tnc.engine.grad import gradient_operands, output_array, resolve_wrt
    limit = limit_bytes(memory_limit)
    if limit is None:
        return None
    wrt = resolve_wrt(network, wrt)
    arrays = gradient_operands(network, tensors)
    slicing = gradient_slicing(network, arrays, wrt, optimize, limit, slicer)
    if slicing is None:
        return None
    if upstream is None:
        upstream = bk.ones(network.output_shape, like=arrays[0], dtype=bk.result_dtype(*arrays))
    return grad_sliced(network, arrays, output_array(network, upstream, like=arrays[0]), wrt,
                       slicing)
