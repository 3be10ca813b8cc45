"""ALS on dense data bigger than memory: the data streamed in blocks, never loaded whole.

``tnc.fit(net, data, method="als")`` with ``data`` an ``np.memmap`` (``np.load(path,
mmap_mode="r")``), a zarr array, an h5py dataset or a dask array comes here
(:mod:`tnc.engine.blocks` reads it). The data enters ``<X, M>`` once, so a block of X
along its first output index ``s`` (rows ``a:b``) is one slice of the scalar network
along ``s``: every tensor carrying ``s`` cut to rows ``a:b``. The right-hand side of a
parameter is a sum of block contractions (numpy/opt_einsum on each block), whose
rows ``a:b`` along ``s`` come from block ``a:b`` alone when the parameter carries
``s``. Grams never touch the data and are the in-memory fit's own.

One pass over the data per update, except that the parameter ``P`` carrying ``s`` as
a free leg (CP's ``A(i, r)``) is solved block by block, its rows ``a:b`` from block
``a:b`` only, and the next update's right-hand side accumulates in the same pass from
the new rows (a dimension tree inside each block): 3-way CP reads the data twice
per sweep. The updates, their order and the stopping test are those of the in-memory
ALS (:mod:`tnc.fitting.als`), so a fit that fits in memory gives the same result.

A mask (True: observed; a numpy array, an out-of-core array of any kind above, or
``"nan"``) is read in the same blocks, and the in-memory masked ALS is followed exactly:
EM fills each block's unobserved entries from the model of the tensors at the sweep's
start (recomputed per block and pass: nothing data-sized is kept) and measures the
observed residual in one more pass; weighted least squares (``missing="wls"``, or
``"auto"`` when als.missing_mode picks it) sums each update's right-hand side from the
zero-filled block and its weighted Gram ``<W, M, M>`` from the block's mask in the same
pass (one pass per update: the fused pass is not used). The first pass also refuses
non-finite observed entries and a slice with no observed entry, by name.

float32 data stream as float32 blocks: their products run in float32 and are summed over
blocks, solved and kept in float64, with ALS's float32 thresholds (``als.Limits``), and the
tensors come back float32, as the in-memory fit of float32 data gives. Blocks of a
memory-mapped file are views of the mapping, unmapped after use (the process's resident
memory stays about a block). Blocks are sized from ``memory_limit`` (see :func:`tnc.engine.blocks.block_rows`) and
joined from whole chunks of the storage. ``executor=``: a ``dask.distributed.Client``
computes a dask array's blocks on its workers and sends back only factor-sized
results; any ``concurrent.futures`` executor runs the block reads and products in its
workers. Without ``executor=`` and with a dask array, dask's default client is used when
``distributed`` has one (``Client()`` made in this process); otherwise the blocks are
read here, one at a time. A block failing there (an error, a worker lost) stops the fit
with a :class:`~tnc.errors.TncError` naming it; nothing is returned as converged.

    >>> import numpy as np, tnc, tempfile, os
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, net.contract(net.random(seed=1)))
    >>> result = tnc.fit(net, np.load(path, mmap_mode="r"), progress=False, memory_limit=10_000)
    >>> result.rel_error < 1e-8, result.info["streamed"]["blocks"]
    (True, 2)
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from tnc.engine.blocks import BlockSource, check_finite, mask_source, observed, run_blocks
from tnc.errors import TncError
from tnc.engine.trees import Leaves, arrange, evaluate, path_tree
from tnc.fitting import als
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record
from tnc.fitting.identifiable import check_seen
from tnc.fitting.rescale import MAX_EXPONENT, SAFE_EXPONENT, Rescale, exponents
from tnc.fitting.result import FitResult
from tnc.fitting.screening import restart_start, screened_fit, screening

STREAMED_METHODS = ("als",)         # and "gcp" with L-BFGS-B: tnc.fitting.streamed_gcp


def fit(chosen, model, data, mask, inputs, name, sizes, memory_limit, options, spelling):
    """:func:`tnc.fit` for out-of-core ``data``: ALS streams it (:func:`run_streamed_als`),
    GCP with L-BFGS-B too (:mod:`tnc.fitting.streamed_gcp`), each with its mask; a method
    or option that does not stream gets it loaded when it fits ``memory_limit``."""
    from tnc.fitting.front import FitProblem, check_inputs, make_options, model_for_data
    source = BlockSource(data)
    options = dict(options)
    executor = options.pop("executor", None)
    if chosen.name == "gcp":
        return _gcp(chosen, model, source, mask, inputs, name, sizes, memory_limit, options,
                    spelling, executor)
    unstreamed = _unstreamed(chosen.name, options)
    if unstreamed:
        return _loaded(chosen, model, source, mask, inputs, name, sizes, memory_limit,
                       options, spelling, executor, unstreamed)
    network = model_for_data(model, source.shape, name=name, **(sizes or {}))
    mask = None if mask is None else mask_source(mask, source)
    problem = FitProblem(network, source, mask, check_inputs(network, inputs), memory_limit)
    als_options = make_options(chosen, options, spelling)
    return run_streamed_als(problem, als_options, source, _executor(executor, source))


def _gcp(chosen, model, source, mask, inputs, name, sizes, memory_limit, options, spelling,
         executor):
    """GCP on out-of-core data: the full gradient streamed (:mod:`tnc.fitting.streamed_gcp`),
    with a mask read in the same blocks; loaded when an option does not stream."""
    from tnc.fitting import streamed_gcp
    from tnc.fitting.front import check_inputs, make_options, model_for_data
    network = model_for_data(model, source.shape, name=name, **(sizes or {}))
    gcp_options = make_options(chosen, dict(options), spelling)
    why = streamed_gcp.unstreamable(network, gcp_options) or _unstreamed_option(options)
    if why:
        return _loaded(chosen, model, source, mask, inputs, name, sizes, memory_limit,
                       options, spelling, executor, why)
    mask = None if mask is None else mask_source(mask, source)
    inputs = check_inputs(network, inputs)
    network.check_arrays_fit(network.params, "parameter tensors", memory_limit)
    return streamed_gcp.run_streamed_gcp(network, inputs, gcp_options, source, mask,
                                         memory_limit, _executor(executor, source))


def _unstreamed(method: str, options: dict) -> str:
    """Why this fit cannot stream (a method or option streaming lacks), or ``""``."""
    if method not in STREAMED_METHODS:
        return f"method {method!r} does not stream (streamed: {', '.join(STREAMED_METHODS)})"
    return _unstreamed_option(options)


def _unstreamed_option(options: dict) -> str:
    """The first option set that no streamed fit takes, as a reason, or ``""``."""
    return next((f"{o}= is not streamed" for o in ("holdout", "extrapolate")
                 if options.get(o)), "")


def _loaded(chosen, model, source, mask, inputs, name, sizes, memory_limit, options, spelling,
            executor, why: str):
    """The in-memory fit of the data read whole, when it fits ``memory_limit``."""
    if executor is not None:
        raise TncError(f"executor= runs the blocks of a streamed fit, but {why}")
    from tnc.fitting.front import _fit
    return _fit(model, source.load(why, memory_limit), chosen.name, mask, inputs, name, sizes, memory_limit, options,
                spelling)


def _executor(executor, source: BlockSource):
    """The executor blocks run on: the one given, else dask's default client for a dask
    array when ``distributed`` is imported and has one, else None (here)."""
    if executor is not None:
        if not hasattr(executor, "submit"):
            raise TncError(f"executor must be a concurrent.futures executor or a "
                           f"dask.distributed Client, got {type(executor).__name__}")
        return executor
    if source.kind == "dask" and "distributed" in sys.modules:
        try:
            return sys.modules["distributed"].default_client()
        except ValueError:
            return None
    return None


# -- block contractions ---------------------------------------------------------------------
@dataclass(frozen=True)
class BlockTrees:
    """One contraction of a block's scalar network for every block length: the cached
    pairwise trees of :mod:`tnc.engine.trees` (matrix products laid out without copying
    the block where they can), the result arranged to ``want`` (picklable: they travel
    to workers)."""

    trees: dict           # block rows -> Node
    want: tuple

    def __call__(self, values: dict, cache: dict):
        tree = self.trees[_rows_of(values)]
        value = arrange(evaluate(tree, values, cache), tree.indices, self.want)
        # float64 out (float32 blocks sum in float64), and never a view of the block,
        # whose memory the next block reuses
        return np.array(value, dtype=np.float64, copy=np.may_share_memory(value, values["X"])
                        or None)


def _rows_of(values: dict) -> int:
    return values["X"].shape[0]


def sliced(array, axis, start: int, stop: int):
    """``array`` cut to ``start:stop`` along ``axis`` (None: whole)."""
    if axis is None:
        return array
    return array[(slice(None),) * axis + (slice(start, stop),)]


@dataclass(frozen=True)
class Operands:
    """The tensors of a block's network: leaf label -> (value, axis cut to the block or None).

    With a mask (True: observed) the block's unobserved entries are zeroed (weighted least
    squares: the observed target, and the mask as the leaf ``W`` when ``weighted``) or, with
    ``fill``, taken from the model (EM's imputation, :class:`Imputed`)."""

    values: dict
    fill: "Imputed | None" = None
    weighted: bool = False

    def block(self, block, start: int, stop: int, mask=None) -> dict:
        values = {k: sliced(v, axis, start, stop).astype(block.dtype, copy=False)
                  for k, (v, axis) in self.values.items()}
        if mask is not None:
            if self.weighted:
                values[als.WEIGHT] = mask.astype(block.dtype)
            block = observed(block, mask) if self.fill is None else self.fill(
                block, start, stop, mask)
        values["X"] = block
        return values


@dataclass(frozen=True)
class Imputed:
    """EM's data: a block's unobserved entries from the model of the sweep's start tensors
    (``operands``), as the in-memory EM imputes once a sweep."""

    model: BlockTrees
    operands: Operands

    def __call__(self, block, start, stop, mask):
        model = self.model(self.operands.block(block, start, stop), {})
        return np.where(mask, block, model.astype(block.dtype, copy=False))


# Block tasks: ``task(block, start, stop, *args, mask=rows or None)`` (module functions: they
# travel to workers)
def rhs_block(block, start, stop, contraction: BlockTrees, operands: Operands, mask=None):
    """The right-hand side contribution of one block (rows ``start:stop``)."""
    return contraction(operands.block(block, start, stop, mask), {})


def weighted_block(block, start, stop, rhs: BlockTrees, gram: BlockTrees, operands: Operands,
                   mask=None):
    """Weighted least squares: ``(right-hand side, weighted Gram)`` contributions of one
    block, the Gram's mask the block's."""
    values, cache = operands.block(block, start, stop, mask), {}
    return rhs(values, cache), gram(values, cache)


def fused_block(block, start, stop, first: BlockTrees, second: BlockTrees, operands: Operands,
                label, solve, mask=None):
    """One block of the fused pass: the rows ``start:stop`` of ``P`` (leaf ``label``) solved
    from the block, then the next parameter's contribution from the new rows (the block
    times the other tensors is computed once, cached between the two):
    ``(P rows, contribution)``."""
    values, cache = operands.block(block, start, stop, mask), {}
    rows = solve(first(values, cache), start, stop)
    values[label] = rows
    return rows, second(values, cache)


def residual_block(block, start, stop, model: BlockTrees, operands: Operands,
                   mask=None) -> float:
    """``||X_block - M_block||^2`` (over the observed entries, with ``mask``)."""
    diff = block - model(operands.block(block, start, stop), {})
    return squared(diff if mask is None else observed(diff, mask))


def squared(array) -> float:
    """``sum(array ** 2)`` accumulated in float64 (float32 blocks too)."""
    flat = np.ravel(array)
    return float(np.einsum("i,i->", flat, flat, dtype=np.float64))


def squares_block(block, start, stop, unit: float = 1.0, mask=None) -> tuple:
    """``(sum of (block / unit)^2, largest magnitude, observed entries, seen)`` over the
    observed entries; a fit's first pass, so it also refuses non-finite observed entries
    (by their rows). ``seen``: None without a mask, else per axis whether each slice of
    the block has an observed entry."""
    check_finite(block, start, stop, mask=mask)
    seen = None
    if mask is not None:
        block = observed(block, mask)
        seen = [np.any(mask, axis=tuple(k for k in range(mask.ndim) if k != a))
                for a in range(mask.ndim)]
    scaled = block if unit == 1.0 else block / unit
    count = block.size if mask is None else int(np.count_nonzero(mask))
    return squared(scaled), float(np.max(np.abs(block), initial=0.0)), count, seen


def grams_block(block, start, stop, wanted, mask=None) -> dict:
    """``name -> U Uᵀ`` for the block's unfolding ``U`` along each ``(name, axes)`` of
    ``wanted`` (the axes as rows); unobserved entries (``mask`` False) count as 0."""
    block = block if mask is None else observed(block, mask)
    grams = {}
    for name, axes in wanted:
        rows = math.prod(block.shape[a] for a in axes)
        unfolding = np.moveaxis(block, axes, range(len(axes))).reshape(rows, -1)
        unfolding = unfolding.astype(np.float64, copy=False)
        grams[name] = unfolding @ unfolding.T
    return grams


@dataclass(frozen=True)
class BlockSolve:
    """Solves rows ``start:stop`` (along the block axis ``axis`` of ``P``) of ``P``'s normal
    equations from their right-hand side (in ``P``'s leg order), as the in-memory ALS does."""

    gram: np.ndarray
    order: tuple          # P's legs -> the rows' layout (diagonal, free, bond)
    n_bond: int
    axis: int
    current: np.ndarray
    l2: float
    nonneg: bool

    def __call__(self, rhs, start, stop):
        rhs = np.transpose(rhs, self.order).reshape(self.gram.shape[0], -1, self.n_bond)
        current = sliced(self.current, self.axis, start, stop)
        return als.solve_tensor(rhs, self.gram, self.order, current, self.l2, self.nonneg)[1]


class BlockPlan:
    """The block contractions of one network's streamed ALS (CP, Tucker, TT, ...): trees over
    the leaves of ``<X, M>`` with the block index cut to each block length, planned once."""

    def __init__(self, model, blocks, optimize="auto"):
        self.model, self.optimize = model, optimize
        self.axis_index = model.network.output[0]
        self.legs = model.xm.legs
        self.rows = max(b - a for a, b in blocks)
        self.leaves, self.weighted = {}, {}
        for n in sorted({b - a for a, b in blocks}):
            sizes = {**model.xm.sizes, self.axis_index: n}
            self.leaves[n] = Leaves(f"block{n}", dict(self.legs), sizes, model.xm.rank)
            self.weighted[n] = Leaves(f"wblock{n}", dict(model.wmm.legs), sizes,
                                      model.wmm.rank)
        self.memo: dict = {}

    def environment(self, labels: tuple, want: tuple) -> BlockTrees:
        """The contraction of the leaves ``labels`` of ``<X, M>``, arranged as ``want``."""
        key = ("env", labels, want)
        if key not in self.memo:
            self.memo[key] = BlockTrees({n: path_tree(leaves, list(labels), self.optimize)
                                         for n, leaves in self.leaves.items()}, want)
        return self.memo[key]

    def weighted_gram(self, name: str) -> BlockTrees:
        """``name``'s weighted Gram ``<W, M, M>`` without ``name`` (:meth:`als.Model.
        plan_weighted`), laid out as (diagonal, free, bond, primed bond) legs."""
        key = ("wgram", name)
        if key not in self.memo:
            u = self.model.updates[name]
            labels = self.model.weighted_labels(u.label)
            want = u.diag + u.free + u.bond + tuple(map(als.prime, u.bond))
            self.memo[key] = BlockTrees({n: path_tree(leaves, labels, self.optimize)
                                         for n, leaves in self.weighted.items()}, want)
        return self.memo[key]

    def fused(self, p, h) -> tuple[BlockTrees, BlockTrees]:
        """The trees of the fused pass: ``(P's environment, H's environment)`` sharing
        the node of the block times every tensor but ``P`` and ``H``."""
        key = ("fused", p, h)
        if key not in self.memo:
            inner, first, second = self.others(p, h), {}, {}
            for n, leaves in self.leaves.items():
                shared = path_tree(leaves, ["X", *inner], self.optimize)
                first[n] = leaves.join(shared, leaves.leaf(h))
                second[n] = leaves.join(shared, leaves.leaf(p))
            self.memo[key] = (BlockTrees(first, self.legs[p]), BlockTrees(second, self.legs[h]))
        return self.memo[key]

    def operands(self, labels, values: dict, fill=None, weighted=False) -> Operands:
        """The leaves ``labels`` (of ``<X, M>`` or ``<W, M, M>``) of ``values``, each cut to
        a block along the block index when it carries it."""
        legs = self.model.wmm.legs
        return Operands({k: (values[k], _axis(self.legs[k] if k in self.legs else legs[k],
                                               self.axis_index)) for k in labels},
                        fill, weighted)

    def others(self, *excluded) -> list:
        return [k for k in self.legs if k != "X" and k not in excluded]


def _axis(legs: tuple, index: str) -> int | None:
    return legs.index(index) if index in legs else None



# -- the fit ----------------------------------------------------------------------------------
class Stream:
    """The passes over the data of one streamed fit: blocks, executor, progress bar (one
    step a block of a first-axis pass, the sweep and error as its postfix)."""

    def __init__(self, source: BlockSource, blocks, executor, bar, memory_limit, mask=None):
        self.source, self.blocks, self.executor, self.bar = source, blocks, executor, bar
        self.memory_limit, self.passes, self.status, self.mask = memory_limit, 0, {}, mask

    def run(self, task, *args, axis: int = 0) -> list:
        self.passes += 1
        blocks = self.blocks if axis == 0 else self.source.layout(
            axis, memory_limit=self.memory_limit, strict=False)
        tick = (lambda: self.bar.update(**self.status)) if axis == 0 else None
        return run_blocks(self.source, blocks, task, *args, axis=axis, executor=self.executor,
                          on_block=tick, mask=self.mask)


class StreamedFit(als.Fit):
    """An in-memory :class:`tnc.fitting.als.Fit` whose right-hand sides come from passes
    over the blocks (put in ``pending`` before :meth:`update`); Grams, solves, losses and
    normalisation are the Fit's own."""

    def __init__(self, problem, model, settings, tensors: dict, xx: float, mode: str):
        self.problem, self.model, self.settings = problem, model, settings
        self.tensors, self.mask, self.xx, self.mode = tensors, None, xx, mode
        self.xx_filled = math.nan     # EM's loss is the residual pass's, never the formula's
        self.cache, self.pending, self.pending_grams = {}, {}, {}
        self.values = model.values(tensors, problem.inputs, None, None)

    def contributions(self, name: str, rhs_tree=None):
        u = self.model.updates[name]
        rhs, gram = np.transpose(self.pending.pop(name), u.axes), self.gram_of(name)
        return np.reshape(rhs, (gram.shape[0], -1, gram.shape[-1])), gram, u.axes

    def gram_of(self, name: str) -> np.ndarray:
        """``name``'s Gram: the in-memory one, or (weighted least squares) the weighted one
        summed over the blocks (put in ``pending_grams``), laid out as the Fit's."""
        u = self.model.updates[name]
        n_diag, n_free, n_bond = u.sizes(self.problem.network.spec.index_sizes)
        if self.mode == "wls":
            return self.pending_grams.pop(name).reshape(n_diag * n_free, n_bond, n_bond)
        return self._gram(u, n_diag, n_free, n_bond)


def run_streamed_als(problem, options, source: BlockSource, executor=None):
    """Streamed ALS (see the module docstring) of ``problem`` (its target the ``source``)."""
    settings = als.resolve_settings(problem, options)
    als.check_identifiable(problem.network)
    model = als.als_model(problem.network, settings.order, options.optimize)
    mask = problem.mask
    mode = als.missing_mode(model, mask is not None, settings.missing)
    blocks = source.layout(0, memory_limit=problem.memory_limit,   # raw + float64 + products
                           row_factor=2.0 + source.itemsize / 8 + 2.2 * (mask is not None))
    plan = BlockPlan(model, blocks, options.optimize)
    fused = _fused_position(model, settings.order, plan.axis_index, mode)
    passes = len(settings.order) - (fused is not None) + als.residual_every_sweep(
        mode, source.dtype)
    screen = screening(problem, options)        # the in-memory init="auto" rule
    starts, sweeps = screen or (0, 0)
    total = (options.max_iter * options.restarts + starts * sweeps) * len(blocks) * passes
    started, best = time.perf_counter(), None
    with Progress(total, desc="als (blocks)", enabled=options.progress) as bar:
        stream = Stream(source, blocks, executor, bar, problem.memory_limit, mask)
        xx, observed_count, rescale = _unit_scale(stream, problem.network)
        source.scale = rescale.scale
        options = rescale.options(options, problem.network.params)
        grams = _start_grams(stream, model, options.init)
        data = Data(xx, observed_count, mode)
        def run(run_options, run_seed, init):
            return _fit_once(problem, model, settings, run_options, run_seed, init, stream,
                             plan, data, grams)
        for k in range(options.restarts):
            seed = None if options.seed is None else options.seed + k
            if k == 0 and screen is not None:
                result = screened_fit(run, options, seed, screen)
            else:
                result = run(options, seed, restart_start(options.init, k))
            if best is None or result.loss < best.loss:
                best = result
            stopped = options.callback is not None and not result.converged and (
                len(result.history) < options.max_iter)     # the callback asked to stop
            if best.rel_error < als.Limits.of(source.dtype, 0).exact_fit or stopped:
                break
    best.wall_time = time.perf_counter() - started
    best.info.update(restarts=options.restarts, streamed={
        "kind": source.kind, "blocks": len(blocks), "block_rows": plan.rows,
        "passes": stream.passes, "executor": None if executor is None else
        type(executor).__name__, "mask": None if mask is None else mask.kind})
    return rescale.result(best)


@dataclass(frozen=True)
class Data:
    """What the first pass learnt of the data: ``||X||^2`` over the observed entries (in
    the fit's units), how many are observed, and the missing-data mode (``"dense"``,
    ``"em"`` or ``"wls"``: :func:`tnc.fitting.als.missing_mode`)."""

    xx: float
    observed: int
    mode: str


def _unit_scale(stream: Stream, network):
    """``(||X||^2 in the fit's units, observed entries, Rescale)``: the unit-RMS rescale
    :func:`tnc.fit` applies in memory (:mod:`tnc.fitting.rescale`, over the observed
    entries), from one pass (two for data whose squares leave the float range), which also
    checks that every slice has an observed entry."""
    parts = stream.run(squares_block)
    xx, largest = sum(p[0] for p in parts), max(p[1] for p in parts)
    size = sum(p[2] for p in parts)
    if stream.mask is not None:
        check_seen(network, [np.concatenate([p[3][0] for p in parts]),
                             *(np.any([p[3][a] for p in parts], axis=0)
                               for a in range(1, stream.source.ndim))])
    value = math.sqrt(xx / size) if size else 0.0
    if not 1e-280 < xx < 1e280 and largest > 0 and math.isfinite(largest):
        unit = math.ldexp(1.0, math.frexp(largest)[1])
        value = unit * math.sqrt(sum(p[0] for p in stream.run(squares_block, unit)) / size)
    exponent = -round(math.log2(value)) if value > 0 and math.isfinite(value) else 0
    found = exponents([network]) if abs(exponent) > SAFE_EXPONENT else None
    if found is None:
        return xx, size, Rescale()
    rescale = Rescale(math.ldexp(1.0, max(-MAX_EXPONENT, min(MAX_EXPONENT, exponent))), found)
    return (value * rescale.scale) ** 2 * size, size, rescale


def _start_grams(stream: Stream, model, init) -> dict:
    """``name -> U Uᵀ`` of the data's unfolding ``U`` along each tensor's free legs, for
    ``init="svd"`` and ``"auto"`` (the SVD start on complete data); else empty."""
    if not (isinstance(init, str) and init in ("svd", "auto")):
        return {}
    output = list(model.network.output)
    return _start_grams_of(stream, {n: tuple(output.index(ix) for ix in u.free)
                                    for n, u in model.updates.items() if u.free and not u.diag})


def _start_grams_of(stream: Stream, wanted: dict) -> dict:
    """``name -> U Uᵀ`` of the data's unfolding ``U`` along the axes ``wanted[name]``: one
    pass along axis 0 for the unfoldings without it, one along the next axis for those with
    it."""
    grams: dict = {}
    for axis in range(stream.source.ndim):
        here = tuple((n, axes) for n, axes in wanted.items()
                     if n not in grams and axis not in axes)
        if here:
            parts = stream.run(grams_block, here, axis=axis)
            grams.update({n: sum(p[n] for p in parts[1:]) + parts[0][n] for n, _ in here})
    return grams


def _start(problem, model, init, seed, nonneg, grams: dict, data: Data) -> dict:
    """The in-memory ALS start (:func:`tnc.fitting.als.initial_tensors`) from the streamed
    unfolding Grams and ``||X||^2``: the SVD start reads the leading eigenvectors of
    ``U Uᵀ``, which any ``L`` with ``L Lᵀ = U Uᵀ`` shares, so it is given such an ``L``."""
    from tnc.fitting.front import FitProblem
    xx = data.xx * problem.target.size / max(data.observed, 1)   # as ALS scales masked data
    norm = FitProblem(problem.network, np.array([math.sqrt(xx)]), None, problem.inputs,
                      problem.memory_limit)      # ||X||^2 (one entry) for the start's scale
    if not (isinstance(init, str) and init in ("svd", "auto")):
        return als.initial_tensors(norm, model, init, seed, nonneg)
    tensors = problem.network.random(seed=seed)
    tensors.update({name: np.abs(tensors[name]) for name in nonneg})
    for name, gram in grams.items():
        update = model.updates[name]
        root = _gram_root(gram, problem.network, update)
        if root is not None:
            tensors[name] = als.svd_start(root, problem.network, update, tensors[name], None)
    return als._scaled(norm, model, tensors)


def _gram_root(gram, network, update):
    """An array shaped like the data on ``update``'s free axes whose unfolding ``L`` there has
    ``L Lᵀ = gram``; None when every output leg is free (no axis left to hold ``L``)."""
    output = list(network.output)
    axes = [output.index(ix) for ix in update.free]
    if len(axes) == len(output):
        return None
    values, vectors = np.linalg.eigh(gram)
    root = vectors * np.sqrt(np.maximum(values, 0.0))
    shape = tuple(network.spec.index_sizes[ix] for ix in update.free) + (root.shape[1],)
    root = root.reshape(shape + (1,) * (len(output) - len(axes) - 1))
    return np.moveaxis(root, range(len(axes)), axes)


def _fit_once(problem, model, settings, options, seed, init, stream, plan, data, grams):
    """One streamed ALS run: :func:`tnc.fitting.als.fit_once`'s sweeps, stopping test and
    history, on complete data or (with a mask) by EM or weighted least squares."""
    started = time.perf_counter()
    tensors = _start(problem, model, init, seed, settings.nonneg, grams, data)
    fit = StreamedFit(problem, model, settings, tensors, data.xx, data.mode)
    order = settings.order
    fused = _fused_position(model, order, plan.axis_index, data.mode)
    limits = als.Limits.of(stream.source.dtype, options.tol)   # float32: floored thresholds
    history, converged, previous = [], False, math.inf
    for sweep in range(1, options.max_iter + 1):
        stream.status = {"sweep": sweep, **({"rel_error": previous} if history else {})}
        fill = _imputation(fit, plan) if fit.mode == "em" else None
        position = 0
        while position < len(order):
            name = order[position]
            if position == fused:
                _fused_pass(fit, plan, stream, name, order[position + 1], fill)
                position += 1
            elif fit.mode == "wls":
                fit.pending[name], fit.pending_grams[name] = _weighted_pass(fit, plan, stream,
                                                                            name)
            else:
                fit.pending[name] = _rhs_pass(fit, plan, stream, name, fill)
            loss = fit.update(order[position])
            position += 1
        if als.residual_every_sweep(fit.mode, stream.source.dtype) or (
                loss < limits.exact_below ** 2 * fit.xx):
            loss = _residual_pass(fit, plan, stream)
        if options.normalize:
            fit.normalize()
        rel = math.sqrt(max(loss, 0.0) / fit.xx) if fit.xx > 0 else math.sqrt(max(loss, 0.0))
        entry = record(sweep, loss + als.penalty(fit, fit.tensors), rel,
                       time.perf_counter() - started)
        history.append(entry)
        converged = limits.converged(previous, rel)
        previous = rel
        if wants_stop(options.callback, {**entry, "tensors": fit.tensors}) or converged:
            break
    info = {"seed": seed, "order": order, "missing": fit.mode,
            "init": init if isinstance(init, str) else "given", "tol": limits.tol}
    tensors = {k: v.astype(stream.source.dtype, copy=False) for k, v in fit.tensors.items()}
    return FitResult(problem.network, tensors, "als", history, converged, len(history),
                     time.perf_counter() - started, dict(problem.inputs), info)


def _fused_position(model, order: list, index: str, mode: str) -> int | None:
    """The position of the parameter carrying the block index as a free leg, when another
    update follows it in the sweep (so both share one pass), else None (also for weighted
    least squares, whose passes carry the weighted Grams)."""
    if mode == "wls":
        return None
    for position, name in enumerate(order[:-1]):
        if index in model.updates[name].free:
            return position
    return None


def _imputation(fit, plan: BlockPlan) -> Imputed:
    """EM's filling for this sweep: the model of the tensors as they are now."""
    values = fit.model.values(dict(fit.tensors), fit.problem.inputs)
    labels = plan.others()
    return Imputed(plan.environment(tuple(labels), plan.legs["X"]),
                   plan.operands(labels, values))


def _rhs_pass(fit, plan: BlockPlan, stream: Stream, name: str, fill=None) -> np.ndarray:
    """``name``'s right-hand side in its own leg order, from one pass over the blocks."""
    label = fit.model.label_of[name]
    legs, others = plan.legs[label], plan.others(label)
    values = fit.model.values(fit.tensors, fit.problem.inputs)
    parts = stream.run(rhs_block, plan.environment(("X", *others), legs),
                       plan.operands(others, values, fill))
    return _joined(parts, _axis(legs, plan.axis_index))


def _joined(parts: list, axis: int | None) -> np.ndarray:
    """Block contributions summed, or joined along ``axis`` when each holds its own rows."""
    return sum(parts[1:], parts[0]) if axis is None else np.concatenate(parts, axis=axis)


def _weighted_pass(fit, plan: BlockPlan, stream: Stream, name: str) -> tuple:
    """``(right-hand side, weighted Gram)`` of ``name`` from one pass: the observed target
    and the mask of each block (weighted least squares)."""
    u, label = fit.model.updates[name], fit.model.label_of[name]
    others = plan.others(label)
    gram_labels = fit.model.weighted_labels(label)[1:]      # W is the block's mask
    values = fit.model.values(fit.tensors, fit.problem.inputs)
    gram = plan.weighted_gram(name)
    parts = stream.run(weighted_block, plan.environment(("X", *others), u.legs), gram,
                       plan.operands([*others, *gram_labels], values, weighted=True))
    index = plan.axis_index
    gram_axis = gram.want.index(index) if index in u.diag + u.free else None
    return (_joined([p[0] for p in parts], _axis(u.legs, index)),
            _joined([p[1] for p in parts], gram_axis))


def _fused_pass(fit, plan: BlockPlan, stream: Stream, first: str, second: str,
                fill=None) -> None:
    """Update ``first`` (carrying the block index as a free leg) block by block and leave
    ``second``'s right-hand side, accumulated from the new rows, in ``fit.pending``."""
    model = fit.model
    p, h = model.label_of[first], model.label_of[second]
    u, axis = model.updates[first], plan.legs[p].index(plan.axis_index)
    solve = BlockSolve(fit.gram_of(first), u.axes, u.sizes(model.xm.sizes)[2], axis,
                       fit.tensors[first], fit.settings.l2[first], first in fit.settings.nonneg)
    values = model.values(fit.tensors, fit.problem.inputs)
    to_first, to_second = plan.fused(p, h)
    parts = stream.run(fused_block, to_first, to_second,
                       plan.operands(plan.others(p), values, fill), p, solve)
    fit.set_tensor(first, np.ascontiguousarray(_joined([r for r, _ in parts], axis)))
    fit.pending[second] = _joined([c for _, c in parts], None)


def _residual_pass(fit, plan: BlockPlan, stream: Stream) -> float:
    """``||X - M||^2`` from one pass (the exact loss, once the fit is very close)."""
    values = fit.model.values(fit.tensors, fit.problem.inputs)
    labels = plan.others()
    return sum(stream.run(residual_block, plan.environment(tuple(labels), plan.legs["X"]),
                          plan.operands(labels, values)))
