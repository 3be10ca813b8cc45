"""Generic alternating least squares: fit any network's output to data, one tensor at a time.

The loss ``||X - M||^2 = <X,X> - 2<X,M> + <M,M>`` is quadratic in each parameter
``G`` (used once). Its exact minimiser solves the normal equations
``G Gram = RHS`` where

* ``RHS`` is the environment of ``G`` in the scalar network ``<X, M>``
  (``X`` contracted with every other tensor, output = G's legs);
* ``Gram`` is the environment of both copies of ``G`` in ``<M, M>``.

G's legs split three ways: *free* legs F (output indices carried by no other
tensor, like ``i`` of ``A(i, r)`` in CP or ``p[n]`` of a TT core) on which the
Gram operator is the identity, *diagonal* legs D (output indices other tensors
also carry) on which it is block diagonal, and *bond* legs B (everything
else). So one small ``|B| x |B|`` system is solved for all ``|F|`` rows at once::

    CP, update of A(i, r):     RHS(i, r)   = sum_jk X(i,j,k) B(j,r) C(k,r)
                               Gram(r, r') = (BᵀB)(r,r') * (CᵀC)(r,r')
    TT, update of core n:      RHS = X contracted with the cores left and right of n
                               Gram = left environment ⊗ right environment

Contractions run pairwise over trees of *leaves* (X, the tensor uses, and a
second, primed copy of the model for Gram networks). Every intermediate is
cached under the set of leaves it contains and dropped when one of them
changes, so intermediates shared between updates are computed once per sweep.
The RHS trees follow a *dimension tree* derived from the sweep order: the
update of a tensor in the first half of the order absorbs the second half into
X first, an intermediate the other first-half updates reuse (for 3-way CP two
passes over X per sweep instead of three). Better still, when it costs fewer
flops (checked by replaying the cache over the update sequence), the cyclic
sequence ``A B C A B C ...`` is cut into *windows* of ``N - 1`` consecutive
updates that all start from X with the one parameter outside the window
absorbed (a multi-sweep dimension tree, Ma & Solomonik 2021): windows
``(A B) (C A) (B C)`` start from ``X×C``, ``X×B``, ``X×A``, so 3-way CP streams X
1.5 times per sweep, with the same updates as plain cyclic ALS.

    >>> import tnc
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> X = net.contract(net.random(seed=1))
    >>> result = tnc.fit(net, X, method="als", seed=0, progress=False)
    >>> result.rel_error < 1e-8, result.reconstruct().shape
    (True, (6, 5, 4))
"""
from __future__ import annotations

import functools
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from tnc.engine import backend, kernels
from tnc.errors import TncError
from tnc.fitting.extrapolate import LineSearch, penalty
from tnc.fitting.identifiable import check_identifiable, check_slices
from tnc.fitting.dtypes import COMPLEX, REAL, random_start, real_dtype, resolution
from tnc.fitting.front import FitProblem, check_finite, register_method, squared_norm
from tnc.engine.plan import check_allocation
from tnc.engine.sparse import SparseTensor
from tnc.fitting.sparse_als import cp_layout, leading_vectors, run_sparse_cp, with_leading
from tnc.engine.program import optimizer_key, program_of
from tnc.engine.trees import (Leaves, Node, _nodes, arrange, chain_tree,  # noqa: F401
                              dimension_tree_groups, evaluate, path_tree, replay_flops,
                              window_key)
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.solve import hals, solve_rows, solve_tensor  # noqa: F401 (coupled, sparse)
from tnc.fitting.records import record
from tnc.fitting.screening import restart_start, screened_fit, screening
from tnc.fitting.result import FitResult

TARGET = "X"          # leaf label of the data in <X, M>
WEIGHT = "W"          # leaf label of the mask in weighted Gram networks
EXACT_BELOW = 1e-6    # below this relative error the loss is recomputed from the residual
EXACT_FIT = 1e-13     # a relative error this small counts as an exact fit
# in a dtype of resolution eps (float32: 1.2e-7) the loss formula is known to ~eps ||X||^2,
# so these floors apply: the residual is used below sqrt(eps) * RESIDUAL_FLOOR, an error
# below eps * EXACT_FLOOR is exact, and tol is at least eps * TOL_FLOOR
RESIDUAL_FLOOR, EXACT_FLOOR, TOL_FLOOR = 10.0, 30.0, 10.0
CHAIN_SLACK = 2.0     # a dimension-tree chain may cost this much more than the best path
NORMALIZE_RATIO = 1e3 # rebalance a bond once its slice norms differ by this factor
MAX_WINDOWED = 8        # windowed schedules are planned for up to this many parameters


@dataclass
class ALSOptions:
    """Options of ``tnc.fit(..., method="als")``.

    ``max_iter``: sweep budget; ``tol``: stop when the relative error changes
    by less than ``tol`` times itself (times 1e-3 once below 1e-3) between
    sweeps, or falls below 1e-13; ``seed``: random initialisation;
    ``init``: ``"random"``, ``"svd"`` (leading singular vectors of the data's
    unfolding along each tensor's free legs; tensors without free legs
    random), ``"auto"`` (first start: on small or masked data the best of several
    short fits from the SVD start and random ones, else ``"svd"`` — the rule is
    :func:`tnc.fitting.screening.screening`; random for the other restarts) or a dict name -> array (or a FitResult) of starting tensors; ``order``: sweep order (param names, the same every sweep);
    ``l2``: ridge penalty, one float or a dict name -> float; ``nonneg``: True,
    or names of tensors kept non-negative (HALS updates); ``normalize``:
    balance the norms of the slices along every bond so scales do not drift
    (a gauge change: the model is unchanged); ``missing``: ``"em"``
    (impute from the model each sweep), ``"wls"`` (weighted least squares) or
    ``"auto"``; ``holdout``: fraction of the observed entries hidden from the
    fit and used to report ``holdout_rel_error``; ``restarts``: fits from
    seeds ``seed, seed+1, ...``, the best kept (after the first, random starts: an SVD
    start would repeat the same fit; :func:`tnc.fitting.screening.restart_start`); ``callback(state)``: called
    after each sweep, return True to stop; ``progress``: show a progress bar;
    ``optimize``: contraction path optimizer; ``extrapolate``: after each
    sweep, an exact line search along the sweep's update, taken only when it
    lowers the loss (:mod:`tnc.fitting.extrapolate`); off by default because
    a sweep costs 2.2-7x a plain one and most real-data fits run to the budget
    (``bench/bench_real.py``, README: Kinetic rank 3 converged in 291 sweeps
    against 1000 unconverged, 2.0x the time);
    ``backend``: torch/jax data's sweeps on their own library (``"auto"``, ``"native"``,
    ``"numpy"``: the policy of :mod:`tnc.fitting.backends`).

    A least-squares method: :func:`tnc.fit` fits the data rescaled to unit RMS
    and scales the result back (:mod:`tnc.fitting.rescale`), so ``c * X`` gives ``c``
    times the fit of ``X``; given ``init`` tensors, ``l2`` and the callback's
    view are converted, ``info["data_scale"]`` records the factor.
    """

    least_squares: ClassVar[bool] = True
    max_iter: int = field(default=1000, metadata={"min": 1})
    tol: float = 1e-9
    seed: int | None = 0
    init: object = "auto"
    order: list | None = None
    l2: float | dict = 0.0
    nonneg: bool | list | set | tuple = False
    normalize: bool = True
    missing: str = "auto"
    holdout: float = field(default=0.0, metadata={"below": 1})
    restarts: int = field(default=1, metadata={"min": 1})
    callback: Callable | None = None
    progress: bool = True
    optimize: str = "auto"
    extrapolate: bool = False
    backend: str = "auto"


# -- the model: leaves, legs and per-tensor update plans ------------------------------------
@dataclass
class Update:
    """How to update one parameter: RHS and Gram trees and the leg partition (D, F, B)."""

    name: str
    label: int
    legs: tuple
    diag: tuple
    free: tuple
    bond: tuple
    rhs: Node
    gram: Node | None
    weighted_gram: Node | None = None

    @property
    def axes(self) -> tuple:
        """The tensor's axes ordered as the rows of its normal equations: D, then F, then B."""
        return tuple(self.legs.index(ix) for ix in self.diag + self.free + self.bond)

    @property
    def roles(self) -> tuple:
        """Each leg's part, ``"d"`` (diagonal), ``"f"`` (free) or ``"b"`` (bond)."""
        return tuple("d" if ix in self.diag else "f" if ix in self.free else "b"
                     for ix in self.legs)

    def sizes(self, index_sizes) -> tuple[int, int, int]:
        size = lambda legs: math.prod(index_sizes[ix] for ix in legs)  # noqa: E731
        return size(self.diag), size(self.free), size(self.bond)


def prime(index: str) -> str:
    return index + "'"


class Model:
    """The scalar networks ``<X, M>`` and ``<M, M>`` (and ``<W, M, M>``) of a network."""

    def __init__(self, network, order: list, optimize):
        self.network = network
        occurrences = network.occurrences
        self.label_of = {occ.name: k for k, occ in enumerate(occurrences) if occ.kind == "param"}
        self.name_of = {k: occ.name for k, occ in enumerate(occurrences)}
        output = tuple(network.output)
        sizes = dict(network.spec.index_sizes)
        sizes.update({prime(ix): n for ix, n in network.spec.index_sizes.items()})
        declared = [*output, *(ix for ix in network.spec.index_sizes if ix not in output)]
        rank = {ix: k for k, ix in enumerate(declared)}
        rank.update({prime(ix): len(declared) + k for k, ix in enumerate(declared)})
        legs = {k: tuple(occ.indices) for k, occ in enumerate(occurrences)}
        copy2 = {("2", k): tuple(ix if ix in output else prime(ix) for ix in idx)
                 for k, idx in legs.items()}
        self.xm = Leaves("xm", {TARGET: output, **legs}, sizes, rank)
        self.mm = Leaves("mm", {**{("1", k): idx for k, idx in legs.items()}, **copy2}, sizes, rank)
        self.wmm = Leaves("wmm", {WEIGHT: output, **self.mm.legs}, sizes, rank)
        self.order, self.optimize = list(order), optimize
        self.updates = {name: self._plan(name, order, optimize) for name in order}

    def check_memory(self, memory_limit="auto") -> None:
        """Raise :class:`~tnc.errors.MemoryLimitError` before any sweep when the largest
        right-hand-side or Gram intermediate (a Gram is R x R for a CP rank R) cannot fit."""
        trees = [t for u in self.updates.values() for t in (u.rhs, u.gram) if t is not None]
        nodes = [n for tree in trees for n in _nodes(tree) if n.children]
        if nodes:
            largest = max(nodes, key=lambda n: math.prod(self.xm.sizes[ix] for ix in n.indices))
            shape = tuple(self.xm.sizes[ix] for ix in largest.indices)
            check_allocation(8 * math.prod(shape), f"ALS on network `{self.network.name}` "
                             f"(an intermediate of shape {shape})", memory_limit)

    @functools.cached_property
    def norm_tree(self) -> Node:
        """The tree of ``<M, M>`` (every tensor, both copies), planned once per model: the
        starts' scale, extrapolation's line and sparse ALS's residual evaluate it."""
        return path_tree(self.mm, list(self.mm.legs), "auto")

    @functools.cached_property
    def windows(self) -> dict | None:
        """``(window start, position) -> RHS tree`` of the windowed schedule (see the
        module docstring), or None when it would not stream X less than the plain trees.
        Planned on first use: fits that never sweep with it (EM, coupled) skip the cost."""
        n, optimize = len(self.order), self.optimize
        if not 3 <= n <= MAX_WINDOWED:
            return None
        width, windows = n - 1, {}
        for start in range(n):
            window = [self.order[(start + j) % n] for j in range(width)]
            outside = self.order[(start + width) % n]
            for position, name in enumerate(window):
                groups = [[outside], *dimension_tree_groups(window, position)]
                label = self.label_of[name]
                others = [k for k in self.xm.legs if k not in (TARGET, label)]
                windows[start, position] = self._tree(label, groups, others, optimize)
        plain = [self.updates[name].rhs for name in self.order]
        period = n * width
        windowed = [windows[window_key(t, n)] for t in range(period)]
        labels = [self.label_of[self.order[t % n]] for t in range(period)]
        cheaper = replay_flops(labels, windowed) < replay_flops(labels, plain * width)
        return windows if cheaper else None

    def rhs_at(self, step: int) -> Node:
        """RHS tree of update number ``step`` (from 0) of the cyclic sequence
        ``order, order, ...``: the windowed tree when planned, else the plain one."""
        n = len(self.order)
        if self.windows is None:
            return self.updates[self.order[step % n]].rhs
        return self.windows[window_key(step, n)]

    def _plan(self, name, order, optimize) -> Update:
        label = self.label_of[name]
        legs = self.xm.legs[label]
        others = [k for k in self.xm.legs if k not in (TARGET, label)]
        carried = Counter(ix for k in others for ix in self.xm.legs[k])
        output = set(self.network.output)
        diag = tuple(ix for ix in legs if ix in output and carried[ix])
        free = tuple(ix for ix in legs if ix in output and not carried[ix])
        bond = tuple(ix for ix in legs if ix not in output)
        lonely = [ix for ix in bond if not carried[ix]]
        if lonely:
            raise TncError(f"ALS: leg `{lonely[0]}` of `{name}` is summed over but no other "
                           "tensor carries it; drop the leg or make it an output index")
        rhs = self._rhs_tree(label, order, order.index(name), others, optimize)
        mm_labels = [lab for lab in self.mm.legs if lab[1] != label]
        gram = path_tree(self.mm, mm_labels, optimize) if mm_labels else None
        return Update(name, label, legs, diag, free, bond, rhs, gram)

    def _rhs_tree(self, label, order, position, others, optimize) -> Node:
        return self._tree(label, dimension_tree_groups(order, position), others, optimize)

    def _tree(self, label, group_names, others, optimize) -> Node:
        """X absorbing the fixed leaves, then ``group_names`` in turn (a chain), unless
        that costs more than ``CHAIN_SLACK`` times the best path."""
        groups = [[self.label_of[n] for n in g] for g in group_names]
        fixed = [k for k in others if k not in {lab for g in groups for lab in g}]
        chain = chain_tree(self.xm, TARGET, [fixed, *groups] if fixed else groups)
        best = path_tree(self.xm, [TARGET, *others], optimize)
        return chain if chain.flops <= CHAIN_SLACK * best.flops else best

    def plan_weighted(self, optimize) -> None:
        """Gram trees with the mask as a leaf, for weighted least squares."""
        for update in self.updates.values():
            update.weighted_gram = path_tree(self.wmm, self.weighted_labels(update.label),
                                             optimize)

    def weighted_labels(self, label) -> list:
        """The leaves of the weighted Gram of the tensor use ``label``: the mask, then both
        copies of every other tensor in ``<W, M, M>``."""
        return [WEIGHT, *(lab for lab in self.mm.legs if lab[1] != label)]

    def invalidate(self, cache: dict, name: str) -> None:
        """Forget every cached intermediate that contains a use of ``name``."""
        labels = {k for k, n in self.name_of.items() if n == name}
        stale = [key for key in cache if any(
            (lab if not isinstance(lab, tuple) else lab[1]) in labels
            for lab in key[1] if lab not in (TARGET, WEIGHT))]
        for key in stale:
            del cache[key]

    def values(self, tensors: dict, inputs: dict, target=None, weight=None) -> dict:
        """Leaf label -> array for every leaf of the three scalar networks: complex
        tensors enter ``<X, M>`` and the primed copy of ``<M, M>`` conjugated, so the
        normal equations are ``Gram = E^H E`` and ``RHS = E^H x`` (see :func:`leaf_values`)."""
        arrays = {**tensors, **inputs}
        values = {}
        for k, n in self.name_of.items():
            values.update(leaf_values(k, arrays[n]))
        values[TARGET] = target
        values[WEIGHT] = weight
        return values


def missing_mode(model: Model, masked: bool, missing) -> str:
    """``"dense"`` (no mask), or the missing-data mode ``"em"`` or ``"wls"`` (``"auto"``:
    WLS while its weighted Grams cost at most ``max(1e8, 20 x)`` the right-hand sides'
    flops); WLS plans the weighted Gram trees."""
    if not masked:
        return "dense"
    if missing in ("auto", "wls"):
        model.plan_weighted("auto")
    if missing == "auto":
        weighted = sum(u.weighted_gram.flops for u in model.updates.values())
        rhs = sum(u.rhs.flops for u in model.updates.values())
        return "wls" if weighted <= max(1e8, 20 * rhs) else "em"
    return missing


def leaf_values(label, array) -> dict:
    """The three leaves of one tensor use ``label``: in ``<X, M>`` (``label``), and in
    ``<M, M>`` unprimed (``("1", label)``) and primed (``("2", label)``). A complex
    ``array`` is conjugated in the first and the last: the RHS of a tensor ``G`` is then
    ``sum X conj(E)`` and its Gram ``sum E conj(E')``, the rows form of the complex
    normal equations ``E^H E g = E^H x`` (:func:`solve_rows` solves them). Real arrays
    are shared, never copied.

        >>> v = leaf_values(0, np.array([1j]))
        >>> v[0], v["1", 0], v["2", 0]
        (array([0.-1.j]), array([0.+1.j]), array([0.-1.j]))
    """
    complex_ = (np.iscomplexobj(array) if type(array) is np.ndarray
                else backend.dtype_name(array).startswith("complex"))   # torch, jax: native
    conj = array.conj() if complex_ else array
    return {label: conj, ("1", label): array, ("2", label): conj}


def als_model(network, order: list, optimize="auto", dense_data: bool = True) -> Model:
    """The :class:`Model` of ``network`` for the sweep ``order``, planned once and kept by
    the network's program (:mod:`tnc.engine.program`: repeated fits — restarts,
    cross-validation — skip the planning); planned anew for an optimizer object. With
    ``dense_data`` its RHS trees must fit in memory (:meth:`Model.check_memory`); sparse
    data never run them (:mod:`tnc.fitting.sparse_network`)."""
    if optimizer_key(optimize) is None:
        model = Model(network, list(order), optimize)
    else:
        model = program_of(network, optimize).memo(
            ("als", tuple(order)), lambda: Model(network, list(order), optimize))
    if dense_data:
        model.check_memory()
    return model


# -- one fit -----------------------------------------------------------------------------
@dataclass
class Settings:
    """Options resolved against one network: order, per-tensor penalties, missing-data mode."""

    order: list
    l2: dict
    nonneg: set
    missing: str | None


def resolve_settings(problem: FitProblem, options: ALSOptions) -> Settings:
    net = problem.network
    uses = Counter(occ.name for occ in net.occurrences if occ.kind == "param")
    tied = [name for name, n in uses.items() if n > 1]
    if tied:
        raise TncError(f"ALS needs each parameter used once, but `{tied[0]}` is used "
                       f"{uses[tied[0]]} times (a tied tensor makes the loss non-quadratic "
                       "in it); use method='gcp'")
    if not net.params:
        raise TncError(f"network `{net.name}` has no parameters to fit")
    check_ranks(net)
    order = list(options.order) if options.order is not None else list(net.params)
    _check_names(order, net, "order")
    missing_names = [n for n in net.params if n not in order]
    if missing_names:
        raise TncError(f"order must list every parameter once; missing {', '.join(missing_names)}")
    if len(set(order)) != len(order):
        raise TncError("order lists a parameter twice")
    l2 = options.l2 if isinstance(options.l2, dict) else {n: options.l2 for n in net.params}
    _check_names(l2, net, "l2")
    if any(float(v) < 0 for v in l2.values()):
        raise TncError("l2 penalties must be non-negative")
    nonneg = options.nonneg
    nonneg = set(net.params) if nonneg is True else set() if nonneg is False else set(nonneg)
    _check_names(nonneg, net, "nonneg")
    if nonneg and problem.dtype.kind == "c":
        raise TncError(f"nonneg: complex data ({problem.dtype}) has no non-negative tensors; "
                       "fit it without nonneg")
    if options.missing not in ("auto", "em", "wls"):
        raise TncError(f"missing must be 'auto', 'em' or 'wls', got {options.missing!r}")
    if not 0.0 <= options.holdout < 1.0:
        raise TncError(f"holdout must be a fraction in [0, 1), got {options.holdout!r}")
    if options.max_iter < 1 or options.restarts < 1:
        raise TncError("max_iter and restarts must be at least 1")
    return Settings(order, {n: float(l2.get(n, 0.0)) for n in net.params}, nonneg,
                    None if problem.mask is None and not options.holdout else options.missing)


def check_ranks(net) -> None:
    """A bond that cuts the network in two can be at most as large as either side's output
    (unless a side holds data tensors only: in a regression ``H(i, j) a(j)`` the bond
    ``j`` counts features, and any number of them can be fitted).

    >>> import tnc
    >>> check_ranks(tnc.library("tucker", I=3, J=4, K=5, R1=4, R2=2, R3=2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: rank 4 of index `a` is larger than the data allows: it splits the output into 20 x 3 entries, so at most 3 is useful; lower that size ...
    """
    occurrences, sizes = net.occurrences, net.spec.index_sizes
    total = math.prod(net.output_shape)
    for ix in sizes:
        carriers = [k for k, occ in enumerate(occurrences) if ix in occ.indices]
        if ix in net.output or len(carriers) != 2:
            continue
        side = _component(occurrences, carriers[0], ix)
        if carriers[1] in side or not all(
                any(occurrences[k].kind == "param" for k in part)
                for part in (side, set(range(len(occurrences))) - side)):
            continue     # a loop, or a side of data only (regression: its rank is a feature count)
        outputs = {o for k in side for o in occurrences[k].indices if o in net.output}
        crossing = [o for o in outputs if any(o in occurrences[k].indices for k in
                                              range(len(occurrences)) if k not in side)]
        if crossing:
            continue
        left = math.prod(sizes[o] for o in outputs)
        if sizes[ix] > min(left, total // left):
            raise TncError(f"rank {sizes[ix]} of index `{ix}` is larger than the data allows: "
                           f"it splits the output into {left} x {total // left} entries, so at "
                           f"most {min(left, total // left)} is useful; lower that size (a network "
                           "with one rank for every bond, like the library's tt, needs "
                           "the smallest bond's bound)")


def _component(occurrences, start: int, cut: str) -> set:
    """Tensor uses reachable from ``start`` through shared indices other than ``cut``."""
    seen, todo = {start}, [start]
    while todo:
        legs = set(occurrences[todo.pop()].indices) - {cut}
        for k, occ in enumerate(occurrences):
            if k not in seen and legs & set(occ.indices):
                seen.add(k)
                todo.append(k)
    return seen


def _check_names(names, net, what: str) -> None:
    unknown = [n for n in names if n not in net.params]
    if unknown:
        raise TncError(f"{what}: `{unknown[0]}` is not a parameter of network `{net.name}`; "
                       f"its parameters are {', '.join(net.params)}")


class Fit:
    """The state of one ALS run: tensors, target, cached intermediates."""

    def __init__(self, problem, model: Model, settings: Settings, tensors: dict, mask):
        self.problem, self.model, self.settings = problem, model, settings
        self.tensors = tensors
        self.mask = mask
        self.observed_target = np.ascontiguousarray(    # C order: BLAS reads X in place
            problem.target if mask is None else np.where(mask, problem.target, 0.0))
        known = problem.squares if mask is None else None      # the data check's sum
        self.xx = squared_norm(self.observed_target) if known is None else known
        self.cache: dict = {}
        self.mode = self._mode(settings.missing)
        weight = None if mask is None else mask.astype(real_dtype(problem.dtype))
        self.values = model.values(tensors, problem.inputs, self.observed_target, weight)

    def _mode(self, missing) -> str:
        return missing_mode(self.model, self.mask is not None, missing)

    def reconstruct(self):
        return self.problem.network.contract({**self.tensors, **self.problem.inputs})

    def residual_loss(self, model_value=None) -> float:
        model_value = self.reconstruct() if model_value is None else model_value
        diff = self.problem.target - model_value
        if self.mask is not None:      # in place, 7x faster than np.where's data-sized copy
            diff *= self.mask          # (its faults cost 3 s against 0.8 for the model at 400^3)
        return squared_norm(diff)

    def impute(self, model_value) -> None:
        """EM step: missing entries of the target from the current model."""
        self.values[TARGET] = np.where(self.mask, self.problem.target, model_value)
        self.xx_filled = squared_norm(self.values[TARGET])
        for key in [k for k in self.cache if TARGET in k[1]]:
            del self.cache[key]

    def update(self, name: str, rhs_tree: Node | None = None) -> float:
        """Solve for ``name``; return the loss ``||X||² - 2<X,M> + <M,M>`` after the update.
        ``rhs_tree``: the tree computing its RHS (default: the plain dimension tree)."""
        rhs, gram, axes = self.contributions(name, rhs_tree)
        new, tensor = solve_tensor(rhs, gram, axes, self.tensors[name], self.settings.l2[name],
                                   name in self.settings.nonneg)
        self.set_tensor(name, tensor)
        xm = float(np.vdot(rhs, new).real)
        mm = float(np.einsum("nmb,nbc,nmc->", new, gram, new.conj()).real)
        return (self.xx_filled if self.mode == "em" else self.xx) - 2 * xm + mm

    def contributions(self, name: str, rhs_tree: Node | None = None
                      ) -> tuple[np.ndarray, np.ndarray, tuple]:
        """``(rhs, gram, axes)``: the normal equations ``rows @ gram = rhs`` of ``name``.

        ``rhs`` is ``(n_diag, n_free, n_bond)`` and ``gram`` ``(n_diag, n_bond,
        n_bond)`` (weighted least squares: ``(n_diag * n_free, 1, n_bond)`` and
        ``(n_diag * n_free, n_bond, n_bond)``); ``axes`` are the tensor's axes in
        the rows' layout (diagonal, free, bond legs), for :func:`solve_tensor`.
        Sums of these over networks that share the tensor are again normal equations.
        """
        u = self.model.updates[name]
        n_diag, n_free, n_bond = u.sizes(self.problem.network.spec.index_sizes)
        tree = u.rhs if rhs_tree is None else rhs_tree
        rhs = arrange(evaluate(tree, self.values, self.cache), tree.indices,
                      u.diag + u.free + u.bond)
        gram = self._gram(u, n_diag, n_free, n_bond)
        return rhs.reshape(gram.shape[0], -1, n_bond), gram, u.axes

    def set_tensor(self, name: str, array) -> None:
        """Make ``array`` the value of ``name``, dropping intermediates that used the old one."""
        self.tensors[name] = array
        self._changed(name)

    def _gram(self, u: Update, n_diag, n_free, n_bond):
        if self.mode == "wls":
            gram = evaluate(u.weighted_gram, self.values, self.cache)
            want = u.diag + u.free + u.bond + tuple(map(prime, u.bond))
            return arrange(gram, u.weighted_gram.indices, want).reshape(
                n_diag * n_free, n_bond, n_bond)
        if u.gram is None:      # in the target's library and device (native fits too)
            return backend.ones((1, 1, 1), like=self.values[TARGET], dtype=self.problem.dtype)
        gram = evaluate(u.gram, self.values, self.cache)
        want = u.diag + u.bond + tuple(map(prime, u.bond))
        return arrange(gram, u.gram.indices, want).reshape(n_diag, n_bond, n_bond)

    def _changed(self, name: str) -> None:
        self.model.invalidate(self.cache, name)
        for label, n in self.model.name_of.items():
            if n == name:
                self.values.update(leaf_values(label, self.tensors[name]))

    def normalize(self) -> bool:
        """Balance slice norms along every bond shared only by parameters (a gauge change).

        Only bonds whose slice norms differ by more than ``NORMALIZE_RATIO``
        between their tensors are balanced, so cached intermediates survive
        most sweeps. Returns whether anything changed.
        """
        net = self.problem.network
        carriers: dict[str, list[str]] = {}
        for occ in net.occurrences:
            for ix in occ.indices:
                if ix not in net.output:
                    carriers.setdefault(ix, []).append(occ.name if occ.kind == "param" else "")
        changed = set()
        for ix, names in carriers.items():
            if len(names) >= 2 and "" not in names and self._balance(ix, names):
                changed.update(names)
        for name in changed:
            self._changed(name)
        return bool(changed)

    def _balance(self, ix: str, names: list) -> bool:
        axes = {n: self.model.xm.legs[self.model.label_of[n]].index(ix) for n in names}
        norms = {n: self._slice_norms(self.tensors[n], axes[n]) for n in names}
        stacked = np.array(list(norms.values()))
        if np.any(stacked <= 1e-300) or np.max(stacked.max(0) / stacked.min(0)) < NORMALIZE_RATIO:
            return False
        target = np.exp(np.mean(np.log(stacked), axis=0))
        for n in names:
            shape = [1] * self.tensors[n].ndim
            shape[axes[n]] = -1
            self.tensors[n] = self._scaled(self.tensors[n], (target / norms[n]).reshape(shape))
        return True

    @staticmethod
    def _slice_norms(tensor, axis: int) -> np.ndarray:
        """The 2-norm of each slice of ``tensor`` along ``axis``, a float64 numpy vector."""
        return np.sqrt(np.sum(abs(np.moveaxis(tensor, axis, 0).reshape(
            tensor.shape[axis], -1)) ** 2, axis=1))

    def _scaled(self, tensor, factor: np.ndarray):
        """``tensor`` times ``factor`` (a numpy array broadcasting along one axis)."""
        return tensor * factor


# -- initialisation --------------------------------------------------------------------------
def initial_tensors(problem: FitProblem, model: Model, init, seed, nonneg=()) -> dict:
    """Starting tensors: random, SVD-based or given, scaled so that ``||M|| ≈ ||X||``.

    Random starts of non-negative tensors are the absolute values of Gaussians.
    """
    net = problem.network
    tensors = random_start(net, seed, problem.dtype)
    tensors.update({name: np.abs(tensors[name]) for name in nonneg})
    if isinstance(init, FitResult):
        init = init.tensors
    if isinstance(init, dict):
        _check_names(init, net, "init")
        for name, array in init.items():
            array = np.asarray(array, dtype=problem.dtype)
            if array.shape != net.params[name]:
                raise TncError(f"init: `{name}` must have shape {net.params[name]}, "
                               f"got {array.shape}")
            check_finite(array, f"init: `{name}`")
            tensors[name] = array.copy()
        return tensors
    if init == "svd":
        rng = np.random.default_rng(seed)
        for name, update in model.updates.items():
            if update.free and not update.diag:
                tensors[name] = svd_start(problem.target, net, update, tensors[name], rng)
    elif init != "random":
        raise TncError(f"init must be 'auto', 'random', 'svd' or a dict of arrays, got {init!r}")
    return _scaled(problem, model, tensors)


def svd_start(target, net, update: Update, current, rng):
    """A tensor whose free-leg rows span the leading left singular space of X's unfolding."""
    sizes = net.spec.index_sizes
    axes = [net.output.index(ix) for ix in update.free]
    n_free = math.prod(sizes[ix] for ix in update.free)
    shape = tuple(sizes[ix] for ix in update.free + update.bond)
    rows = arrange(current, update.legs, update.free + update.bond).reshape(n_free, -1)
    if isinstance(target, SparseTensor):
        vectors = leading_vectors(target, axes, min(rows.shape), rng)
    else:
        unfolding = np.moveaxis(target, axes, range(len(axes))).reshape(n_free, -1)
        vectors = np.linalg.eigh(unfolding @ unfolding.conj().T)[1][:, ::-1]
    rows = with_leading(rows, vectors)
    return np.ascontiguousarray(arrange(rows.reshape(shape), update.free + update.bond,
                                        update.legs))


def _scaled(problem, model: Model, tensors: dict) -> dict:
    mm = float(np.real(evaluate(model.norm_tree, model.values(tensors, problem.inputs), {})))
    target = problem.target
    xx = squared_norm(target.values if isinstance(target, SparseTensor) else target) * (
        target.size / problem.observed)
    if mm <= 0 or xx <= 0:
        return tensors
    factor = (xx / mm) ** (0.5 / len(tensors))
    return {name: array * factor for name, array in tensors.items()}


# -- the sweep loop ------------------------------------------------------------------------
def split_holdout(problem: FitProblem, fraction: float, seed):
    """``(fit mask, held-out mask)``: a random ``fraction`` of the observed entries held out."""
    if not fraction:        # before any mask is made: sparse data's would be dense
        return problem.mask, None
    observed = np.ones(problem.target.shape, bool) if problem.mask is None else problem.mask
    rng = np.random.default_rng(None if seed is None else seed + 7919)
    held = observed & (rng.random(observed.shape) < fraction)
    if not held.any() or held.sum() == observed.sum():
        raise TncError(f"holdout={fraction} leaves no entries to hold out or none to fit")
    return observed & ~held, held


def fit_once(problem, model, settings, options, seed, bar, init, make_fit=Fit) -> FitResult:
    """One ALS run from ``init`` (the start's kind or arrays) and ``seed``; ``make_fit``:
    the run's state class (:class:`Fit`, or :mod:`tnc.fitting.native`'s on torch/jax)."""
    start = time.perf_counter()
    mask, held = split_holdout(problem, options.holdout, seed)
    tensors = initial_tensors(problem, model, init, seed, settings.nonneg)
    fit = make_fit(problem, model, settings, tensors, mask)
    limits = Limits.of(problem.dtype, options.tol)
    search = LineSearch(fit) if options.extrapolate else None
    history, converged, previous = [], False, math.inf
    for sweep in range(1, options.max_iter + 1):
        if fit.mode == "em":
            fit.impute(fit.reconstruct() if search is None else search.start_model())
        old = dict(fit.tensors)
        for position, name in enumerate(settings.order):
            loss = fit.update(name, _windowed_tree(model, fit, sweep, position))
        model_value = fit.reconstruct() if residual_every_sweep(fit.mode, problem.dtype) or (
            held is not None or loss < limits.exact_below ** 2 * fit.xx) else None
        if model_value is not None:
            loss = fit.residual_loss(model_value)
        if search is not None:
            loss, model_value = search.step(old, loss, model_value)
        if options.normalize:
            fit.normalize()
        rel = math.sqrt(max(loss, 0.0) / fit.xx) if fit.xx > 0 else math.sqrt(max(loss, 0.0))
        entry = record(sweep, loss + _penalty(fit), rel, time.perf_counter() - start)
        if held is not None:
            entry["holdout_rel_error"] = _held_error(problem.target, model_value, held)
        history.append(entry)
        bar.update(rel_error=rel)
        converged = limits.converged(previous, rel)
        previous = rel
        state = {**entry, "tensors": fit.tensors}
        if wants_stop(options.callback, state) or converged:
            break
    info = {"seed": seed, "order": settings.order, "missing": fit.mode,
            "init": init if isinstance(init, str) else "given",
            "extrapolated": 0 if search is None else search.accepted, "tol": limits.tol}
    return FitResult(problem.network, fit.tensors, "als", history, converged, len(history),
                     time.perf_counter() - start, dict(problem.inputs), info)


def residual_every_sweep(mode: str, dtype) -> bool:
    """Whether each sweep's loss comes from the residual, not the formula
    ``||X||^2 - 2<X,M> + <M,M>``: EM (the formula is the filled data's) and weighted least
    squares in float32 or complex64, whose weighted Grams sum millions of float32 products
    that cancel in the formula (its rel_error read 0.0986 for a true 0.0995 at 600^3)."""
    return mode == "em" or (mode == "wls" and resolution(dtype) > 1e-10)


@dataclass(frozen=True)
class Limits:
    """A fit's numeric thresholds in its dtype: ``EXACT_BELOW``, ``EXACT_FIT`` and ``tol``,
    each floored at the dtype's resolution (float64: unchanged; float32: the residual
    below 3.4e-3, exact below 3.6e-6, tol at least 1.2e-6).

        >>> Limits.of(np.float64, 1e-9) == Limits(EXACT_BELOW, EXACT_FIT, 1e-9)
        True
        >>> round(Limits.of(np.float32, 1e-9).tol, 8)
        1.19e-06
    """

    exact_below: float
    exact_fit: float
    tol: float

    noise: float = 0.0

    @classmethod
    def of(cls, dtype, tol: float) -> "Limits":
        eps = resolution(dtype)
        noise = 1.0 * eps / 2 if eps > 1e-10 and tol else 0.0
        return cls(max(EXACT_BELOW, RESIDUAL_FLOOR * math.sqrt(eps)),
                   max(EXACT_FIT, EXACT_FLOOR * eps), max(tol, TOL_FLOOR * eps) if tol else tol,
                   noise)

    def converged(self, previous: float, rel: float) -> bool:
        """Whether a sweep that moved the relative error from ``previous`` to ``rel`` ends
        the fit: a change under ``tol`` relative to ``rel`` (1e-3 at least), or under what
        the loss formula resolves, or an exact fit. The formula ``||X||^2 - 2<X,M> + <M,M>``
        carries about ``eps ||X||^2``, which moves ``rel`` by ``eps / (2 rel)``: 6e-6 in
        float32 at rel 0.01, far above ``tol * rel``, so without this a float32 fit stopped
        only when its loss repeated exactly (``noise``; float64's 1e-15 / rel sits below the
        tol float64 fits use, so it is left out there and float64 fits stay as they were).

            >>> Limits.of(np.float32, 1e-9).converged(0.010002, 0.01)
            True
            >>> Limits.of(np.float64, 1e-9).converged(0.010002, 0.01)
            False
        """
        step = abs(previous - rel)
        return (step < self.tol * max(rel, 1e-3) or step < self.noise / max(rel, self.exact_fit)
                or rel < self.exact_fit)


def _windowed_tree(model: Model, fit: Fit, sweep: int, position: int):
    """The RHS tree of a sweep's update under the windowed schedule, or None (the plain
    tree): EM changes X every sweep, which breaks windows spanning two sweeps."""
    if fit.mode == "em" or not getattr(fit, "windowed", True) or model.windows is None:
        return None
    return model.rhs_at((sweep - 1) * len(model.order) + position)


def _penalty(fit: Fit) -> float:
    own = getattr(fit, "penalty", None)       # a NativeFit reduces on its backend
    return own() if own is not None else penalty(fit, fit.tensors)


def _held_error(target, model_value, held) -> float:
    norm = float(np.linalg.norm(target[held]))
    error = float(np.linalg.norm((target - model_value)[held]))
    return error / norm if norm > 0 else error


def run_als(problem: FitProblem, options: ALSOptions) -> FitResult:
    """Fit ``problem.network`` to ``problem.target`` by ALS; the best of ``options.restarts``.
    Sparse data (a SparseTensor) on a CP network go to :mod:`tnc.fitting.sparse_als`, on
    any other network to :mod:`tnc.fitting.sparse_network`'s products in this sweep."""
    sparse = isinstance(problem.target, SparseTensor)
    if sparse and cp_layout(problem.network) is not None:
        return run_sparse_cp(problem, options)
    if sparse and (options.holdout or options.extrapolate):
        raise TncError("ALS on sparse data takes no holdout= or extrapolate=")
    settings = resolve_settings(problem, options)
    check_slices(problem.network, problem.mask)
    check_identifiable(problem.network)
    model = als_model(problem.network, settings.order, options.optimize, dense_data=not sparse)
    make_fit = sparse_fit_class() if sparse else fit_class(problem, options, settings)
    start, best = time.perf_counter(), None
    seeds = [None if options.seed is None else options.seed + k for k in range(options.restarts)]
    plan = screening(problem, options)
    starts, sweeps = plan or (0, 0)
    with Progress(options.max_iter * options.restarts + starts * sweeps, desc="als",
                  enabled=options.progress) as bar, kernels.blas_serial(
                      problem.target.values if sparse else problem.target):
        def run(run_options, run_seed, init):
            return fit_once(problem, model, settings, run_options, run_seed, bar, init,
                            make_fit)
        for k, seed in enumerate(seeds):
            if k == 0 and plan is not None:
                result = screened_fit(run, options, seed, plan)
            else:
                result = run(options, seed, restart_start(options.init, k))
            if best is None or result.loss < best.loss:
                best = result
            exact = best.rel_error < Limits.of(problem.dtype, 0).exact_fit
            if exact or (result.history and options.callback is not None
                         and not result.converged and len(result.history) < options.max_iter):
                break
    best.wall_time = time.perf_counter() - start
    best.info["restarts"] = len(seeds)
    if sparse:
        best.info["sparse"] = True
    return best


def sparse_fit_class():
    from tnc.fitting.sparse_network import SparseFit
    return SparseFit


def fit_class(problem: FitProblem, options: ALSOptions, settings: Settings):
    """:class:`Fit`, or :class:`tnc.fitting.native.NativeFit` bound to the call's torch/jax
    array when :func:`tnc.fitting.backends.choose` runs the sweeps natively."""
    from tnc.fitting import backends
    like = backends.native_like()
    refusals = {"nonneg": bool(settings.nonneg), "extrapolate": options.extrapolate,
                "holdout": bool(options.holdout)}
    if not backends.choose(options.backend, like, refusals, problem.dtype):
        return Fit
    from tnc.fitting.native import NativeFit
    return functools.partial(NativeFit, like=like)


register_method("als", ALSOptions, run_als, sparse=True, dtypes=REAL + COMPLEX)
