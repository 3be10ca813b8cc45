"""Compiled contraction programs, one per network structure and optimizer, in ONE bounded cache.

A :class:`Program` holds what is planned for one network structure (its tensor
uses and their legs, the index sizes, the output) and one optimizer spec: the
forward :class:`~tnc.engine.plan.Plan` (opt_einsum's path and cost), the reverse
sweeps of :class:`~tnc.engine.grad.GradPlan` per ``wrt`` set, and whatever a
method plans on top (ALS's contraction trees, via :meth:`Program.memo`). Programs
live in a module-level LRU of ``CACHE_SIZE`` entries keyed by value, so two
networks compiled from the same text share one, and 60 calls with 3 distinct
explicit paths leave 3 programs (not 60, as a cache keyed by ``id(path)`` did).

Path optimizer *objects* (``oe.RandomGreedy()``, a cotengra ``HyperOptimizer``)
are stateful and, by opt_einsum's rule, serve one search only: each search uses
a deep copy (:func:`tnc.engine.plan.resolve_optimizer`) and the programs they give
are not cached, since no value identifies what the object would find next.
Plans do not depend on the dtype: costs are planned at 8 bytes an element and
scaled when checked (:meth:`tnc.engine.plan.Cost.for_itemsize`).

    >>> import tnc
    >>> from tnc.engine import program
    >>> a, b = tnc.library("cp", I=3, J=4, K=5, R=2), tnc.library("cp", I=3, J=4, K=5, R=2)
    >>> program.program_of(a) is program.program_of(b)
    True
    >>> program.program_of(a, [(0, 1), (0, 1)]) is program.program_of(a, [(0, 1), (0, 1)])
    True
"""
from __future__ import annotations

from collections import OrderedDict

from tnc.engine.plan import Plan, plan_contraction

CACHE_SIZE = 256          # programs kept; the least recently used is dropped first
_programs: OrderedDict = OrderedDict()
_MISSING = object()


def structure_key(spec) -> tuple:
    """What a plan depends on: tensor uses (name, kind, legs), index sizes in order, output."""
    return (tuple((occ.name, occ.kind, tuple(occ.indices)) for occ in spec.occurrences),
            tuple(spec.index_sizes.items()), tuple(spec.output))


def optimizer_key(optimize):
    """A hashable value naming ``optimize``, or None when it has none (an optimizer object,
    whose next search depends on its state).

    >>> optimizer_key("greedy"), optimizer_key([[0, 1], (0, 1)]), optimizer_key(object())
    ('greedy', ('path', ((0, 1), (0, 1))), None)
    """
    if optimize is None or isinstance(optimize, str):
        return optimize
    if isinstance(optimize, (list, tuple)) and all(
            isinstance(step, (list, tuple)) and all(isinstance(p, int) for p in step)
            for step in optimize):
        return ("path", tuple(tuple(step) for step in optimize))
    return None


class Program:
    """Everything planned for one network structure and optimizer.

    ``plan``: the forward plan (path, cost, opt_einsum expression);
    :meth:`gradients` the reverse-mode program for a ``wrt`` set; :meth:`memo` any
    other planned object derived from the same structure and path.
    """

    def __init__(self, spec, equation: str, shapes, optimize):
        self.spec = spec
        self.plan: Plan = plan_contraction(equation, shapes, optimize)
        self._memo: dict = {}

    def memo(self, key, build):
        """``build()`` once per ``key`` and kernel state (:func:`kernel_key`) for this
        program: pairwise steps are laid out for the compiled kernel or for BLAS when
        planned, so what was planned with the kernels is not reused under
        :func:`tnc.engine.kernels.disabled`. A build may load the kernels: its result
        is kept under the state it leaves."""
        entry = self._memo.get((key, kernel_key()), _MISSING)
        if entry is _MISSING:
            entry = build()
            self._memo[(key, kernel_key())] = entry
        return entry

    @property
    def contract_cost(self):
        """The forward plan's :class:`~tnc.engine.plan.Cost` with the engine's copies of
        operands added to its peak (:meth:`tnc.engine.grad.GradPlan.operand_copies`:
        reduced leaves and the largest transposed layout), the bound a contraction's
        ``memory_limit`` is checked against."""
        import dataclasses

        def build():
            copies = self.gradients(frozenset()).operand_copies()
            return dataclasses.replace(self.plan.cost,
                                       peak_bytes=self.plan.cost.peak_bytes + 8 * copies)
        return self.memo(("contract cost",), build)

    def gradients(self, wrt: frozenset):
        """The :class:`~tnc.engine.grad.GradPlan` (forward steps and one reverse sweep)
        for the tensors in ``wrt``; ``wrt=frozenset()`` is the plain forward program."""
        from tnc.engine.grad import GradPlan
        return self.memo(("grad", frozenset(wrt)),
                         lambda: GradPlan(self.spec, self.plan.cost.path, frozenset(wrt)))


def program_of(network, optimize="auto") -> Program:
    """The :class:`Program` of ``network`` for ``optimize`` (a name, a path or an
    optimizer object), from the cache when the pair has a key."""
    key = optimizer_key(optimize)
    if key is None:
        return Program(network.spec, network.equation, network.shapes, optimize)
    return cached((structure_key(network.spec), key),
                  lambda: Program(network.spec, network.equation, network.shapes, optimize))


def kernel_key():
    """What pairwise layouts planned now depend on in :mod:`tnc.engine.kernels`:
    ``"off"`` inside :func:`~tnc.engine.kernels.disabled`, else the variant in use
    (``"blas"`` when none is), or ``None`` while the kernel library is not loaded yet
    (loading it for a key would compile it for networks too small to use it).

    >>> from tnc.engine import kernels
    >>> with kernels.disabled():
    ...     kernel_key()
    'off'
    """
    from tnc.engine import kernels
    return kernels.planning_state()


def cached(key, build):
    """The cache entry under ``key``, built by ``build()`` when missing; the least
    recently used entry is dropped past ``CACHE_SIZE``."""
    entry = _programs.get(key)
    if entry is not None:
        _programs.move_to_end(key)
        return entry
    entry = build()
    _programs[key] = entry
    while len(_programs) > CACHE_SIZE:
        _programs.popitem(last=False)
    return entry


def cache_size() -> int:
    """How many programs the cache holds now."""
    return len(_programs)


def clear_cache() -> None:
    """Forget every cached program."""
    _programs.clear()
