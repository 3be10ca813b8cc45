"""GCP with L-BFGS-B on dense data bigger than memory: the full gradient streamed in blocks.

``tnc.fit(net, data, method="gcp", loss=...)`` with ``data`` an ``np.memmap``, a zarr
array, an h5py dataset or a dask array (and ``mask`` None, a numpy bool array or an
out-of-core bool array of the data's shape, True where observed) comes here from
:mod:`tnc.fitting.streamed`. The objective ``sum over observed entries of
loss(M, X)`` is a sum over blocks of rows ``a:b`` along the data's first axis ``s``;
on a block, the model's rows ``M[a:b]`` are the network with every tensor carrying
``s`` cut to rows ``a:b``, so the block's value and gradient are
:class:`tnc.fitting.gcp.DenseObjective` (the loss's value and derivative from
:mod:`tnc.fitting.losses`, the backward sweep or the CP kernels) on that block
network. The gradient of a tensor carrying ``s`` is the concatenation of its blocks'
rows, every other tensor's the sum of its blocks' gradients. The sums go to
:func:`tnc.fitting.optimizers.run_lbfgsb` with GCP's own options (``ftol`` floor,
bounds, rescale of least-squares losses, random start scaled from 10,000 sampled
entries with the same draws), so a fit that fits in memory follows the same
iterates. One pass over the data per objective evaluation; the data (and mask) are
read block by block, here or on ``executor=`` as streamed ALS does. The progress bar
counts L-BFGS-B iterations, and a second bar under it the blocks of the current pass.

    >>> import numpy as np, tnc, tempfile, os
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, net.contract(net.random(seed=1)))
    >>> result = tnc.fit(net, np.load(path, mmap_mode="r"), method="gcp", progress=False,
    ...                  memory_limit=10_000)
    >>> result.rel_error < 1e-3, result.info["streamed"]["blocks"]
    (True, 2)
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from tnc.engine.blocks import BlockSource, MaskSource, observed, run_blocks
from tnc.engine.network import Network
from tnc.errors import TncError
from tnc.fitting import gcp
from tnc.fitting.losses import get_loss
from tnc.fitting.optimizers import run_lbfgsb
from tnc.fitting.progress import Progress
from tnc.fitting.rescale import Rescale, exponents
from tnc.fitting.result import FitResult


def unstreamable(network: Network, options) -> str:
    """Why this GCP fit cannot stream (it then loads the data), or ``""``."""
    if options.optimizer == "adam":
        return "optimizer='adam' samples entries and is not streamed (streamed: 'lbfgsb')"
    if options.weights is not None:
        return "weights= are not streamed"
    if _cut_axes(network) is None:
        return (f"a tensor carries the data's first index {network.output[0]!r} in two "
                "places, so it cannot be cut into blocks")
    return ""


def _cut_axes(network: Network) -> dict | None:
    """Tensor name -> the axis carrying the first output index (None: not carried), for
    params and inputs; None when a tensor carries it at different places in its uses."""
    index, axes = network.output[0], {}
    for occ in network.occurrences:
        axis = occ.indices.index(index) if index in occ.indices else None
        if occ.indices.count(index) > 1 or axes.setdefault(occ.name, axis) != axis:
            return None
    return axes


# -- the block objective --------------------------------------------------------------------
class BlockGCP:
    """The GCP objective of one block of rows: the network cut to the block's rows and a
    :class:`~tnc.fitting.gcp.DenseObjective` on it, planned once per block length
    (not pickled: planned again where a block runs)."""

    def __init__(self, network: Network, inputs: dict, loss, optimize):
        self.network, self.inputs, self.loss, self.optimize = network, inputs, loss, optimize
        self.index, self.axes = network.output[0], _cut_axes(network)
        self.objectives: dict = {}

    def __getstate__(self) -> dict:
        """Without the plans; a registered loss travels by name (its functions may be
        lambdas, which do not pickle)."""
        return {**self.__dict__, "objectives": {}, "loss": _by_name(self.loss)}

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["loss"], str):
            state["loss"] = get_loss(state["loss"])
        self.__dict__.update(state)

    def block_network(self, rows: int) -> Network:
        """The network with the first output index of size ``rows``."""
        spec = self.network.spec
        sizes = {**spec.index_sizes, self.index: rows}
        return Network(dataclasses.replace(spec, index_sizes=sizes), None,
                       self.network.filename)

    def cut(self, tensors: dict, start: int, stop: int) -> dict:
        """``tensors`` with the axis carrying the block index cut to ``start:stop``."""
        return {k: v if self.axes.get(k) is None else
                v[(slice(None),) * self.axes[k] + (slice(start, stop),)]
                for k, v in tensors.items()}

    def objective(self, block, start, stop, mask):
        key = (stop - start, block.dtype.str)
        if key not in self.objectives:
            self.objectives[key] = gcp.DenseObjective(
                self.block_network(stop - start), self.cut(self.inputs, start, stop), block,
                None, self.loss, self.optimize)
        objective = self.objectives[key]
        # the same plan on this block's data (DenseObjective reads these per call)
        objective.target, objective.mask = block, mask
        objective.hidden = None if mask is None else ~mask
        if objective.folded is not None:      # fixed inputs cut to these rows
            objective.folded = gcp.Folded(objective.plan, [o.name for o in
                                          objective.network.occurrences],
                                          self.cut(self.inputs, start, stop))
        return objective


def _by_name(loss):
    """``loss.name`` when :func:`~tnc.fitting.losses.get_loss` gives this loss back by it."""
    try:
        return loss.name if get_loss(loss.name).name == loss.name else loss
    except TncError:
        return loss


def _observed(block, mask):
    """The block with its missing entries zeroed (as in memory), and its observed values."""
    if mask is None:
        return block, block
    return observed(block, mask), block[mask]


def gcp_block(block, start, stop, part: BlockGCP, tensors: dict, mask=None):
    """``(loss summed over the block's observed entries, gradients)``; the gradient of a
    tensor carrying the block index is its rows ``start:stop`` only."""
    block, _ = _observed(block, mask)
    return part.objective(block, start, stop, mask)(part.cut(tensors, start, stop))


def stats_block(block, start, stop, part: BlockGCP, mask=None):
    """``(observed entries, sum x^2, sum |x|)`` of a block; a fit's first pass, so it also
    checks the observed entries are finite and in the loss's domain."""
    _, values = _observed(block, mask)
    if not np.isfinite(values).all():
        raise TncError(f"the data has {values.size - int(np.isfinite(values).sum())} NaN or "
                       f"infinite observed entries in rows {start}:{stop}; give a mask that "
                       "hides them (False where missing)")
    part.loss.check_data(values)
    flat = np.ravel(values).astype(np.float64)
    return flat.size, float(flat @ flat), float(np.abs(flat).sum())


def picked_block(block, start, stop, picks, mask=None):
    """Linear indices (in the whole data) of the observed entries numbered ``picks``
    (counted within this block)."""
    local = block.reshape(-1) if mask is None else mask.reshape(-1)
    return np.flatnonzero(local)[picks] + start * (local.size // max(stop - start, 1))


def residual_block(block, start, stop, part: BlockGCP, tensors: dict, mask=None):
    """``(||W (X - M)||^2, ||W X||^2)`` over the block's observed entries."""
    block, _ = _observed(block, mask)
    net = part.block_network(stop - start)
    model = net.contract({**part.cut(tensors, start, stop), **part.cut(part.inputs, start,
                                                                        stop)})
    diff = np.asarray(model, np.float64) - block
    if mask is not None:
        diff = np.where(mask, diff, 0.0)
    flat, data = diff.ravel(), block.ravel().astype(np.float64)
    return float(flat @ flat), float(data @ data)


class StreamedObjective:
    """``tensors -> (value, gradients)`` from one pass over the blocks (for L-BFGS-B)."""

    def __init__(self, source, mask, blocks, part: BlockGCP, executor):
        self.source, self.mask, self.blocks = source, mask, blocks
        self.part, self.executor, self.passes = part, executor, 0
        self.bar = Progress(len(blocks), enabled=False)    # the blocks of a pass, once shown

    def run(self, task, *args) -> list:
        """``task``'s result on every block, in order (one pass, shown on :attr:`bar`)."""
        self.passes += 1
        self.bar.restart()
        return run_blocks(self.source, self.blocks, task, *args, executor=self.executor,
                          mask=self.mask, on_block=self.bar.update)

    def __call__(self, tensors: dict):
        parts = self.run(gcp_block, self.part, tensors)
        value = math.fsum(v for v, _ in parts)
        grads = {}
        for name in tensors:
            axis = self.part.axes.get(name)
            pieces = [g[name] for _, g in parts]
            grads[name] = (np.concatenate(pieces, axis=axis) if axis is not None
                           else sum(pieces[1:], pieces[0]))
        return value, grads


# -- the fit --------------------------------------------------------------------------------
def run_streamed_gcp(network: Network, inputs: dict, options, source: BlockSource,
                     mask: MaskSource | None, memory_limit, executor=None) -> FitResult:
    """Streamed GCP with L-BFGS-B (see the module docstring); ``options`` a
    :class:`~tnc.fitting.gcp.GCPOptions`."""
    started = time.perf_counter()
    if options.optimizer not in ("auto", "lbfgsb"):
        raise TncError(f"streamed GCP runs optimizer 'lbfgsb', got {options.optimizer!r}")
    loss = gcp.loss_for(get_loss(options.loss), source.dtype)
    blocks = source.layout(0, memory_limit=memory_limit,
                           row_factor=4.0 + source.itemsize / 8 + (mask is not None))
    part = BlockGCP(network, inputs, loss, options.optimize)
    stream = StreamedObjective(source, mask, blocks, part, executor)
    stats = stream.run(stats_block, part)
    count, squares, absolute = (sum(s[k] for s in stats) for k in range(3))
    scaling = _scaling(network, loss, count, squares)
    source.scale = scaling.scale
    options = scaling.options(options, ())
    tensors = _initial(network, inputs, loss, options, source, mask, stream, stats,
                       (scaling.scale, squares, absolute, count))
    lower = {k: 0.0 for k in tensors} if gcp._bounded(loss) else None
    with Progress(options.max_iter, desc=f"gcp {loss.name} (streamed)",
                  enabled=options.progress) as bar, bar.inner(len(blocks), "blocks") as inner:
        stream.bar = inner
        tensors, history, converged, info = run_lbfgsb(
            stream, tensors, gcp.lbfgsb_options(options, source.dtype), lower, bar)
    converged = gcp._honest(converged, history, info, "lbfgsb")
    residual = stream.run(residual_block, part, tensors)
    wx = sum(r[1] for r in residual)
    history[-1]["rel_error"] = math.sqrt(sum(r[0] for r in residual) / wx) if wx > 0 else None
    info.update({"loss": loss.name, "optimizer": "lbfgsb", "seed": options.seed,
                 "data_scale": scaling.scale, "streamed": {
                     "kind": source.kind, "blocks": len(blocks),
                     "block_rows": max(b - a for a, b in blocks), "passes": stream.passes,
                     "mask": None if mask is None else mask.kind,
                     "executor": None if executor is None else type(executor).__name__}})
    return FitResult(network, scaling.to_data(tensors), "gcp", scaling.history(history),
                     converged, len(history), time.perf_counter() - started, dict(inputs),
                     info)


def _scaling(network, loss, count: int, squares: float) -> Rescale:
    """:func:`tnc.fitting.gcp.data_scale` from the streamed sums: ``1 / rms`` of the
    observed entries for a least-squares loss, else the identity."""
    if loss.homogeneous != 2 or not count or not 0 < squares < math.inf:
        return Rescale()
    found = exponents([network])
    return Rescale() if found is None else Rescale(1.0 / math.sqrt(squares / count), found)


def _initial(network, inputs, loss, options, source, mask, stream, stats, sums) -> dict:
    """:func:`tnc.fitting.gcp.initial_tensors` on the streamed data: the same random start
    and the same 10,000 sampled entries (their model values only; the data's statistic
    comes from the first pass)."""
    from tnc.fitting.front import FitProblem
    rng = np.random.default_rng(options.seed)
    init, dtype = options.init, source.dtype
    if not (isinstance(init, str) and init == "random"):
        problem = FitProblem(network, np.zeros(1, dtype), None, inputs)
        return gcp.initial_tensors(problem, loss, init, rng, None)
    tensors, power = gcp.random_tensors(network, loss, rng, dtype)
    if power is None:
        return tensors
    scale, squares, absolute, count = sums
    data_stat = (squares * scale ** 2 if power == 2 else absolute * scale) / max(count, 1)
    linear = _picked(rng.integers(0, count, gcp.INIT_SAMPLES), source, mask, stream, stats)
    coords = np.stack(np.unravel_index(linear, source.shape), axis=1)
    values = gcp.SampledModel(network, inputs, options.optimize).values(tensors, coords)
    model_stat = float(np.mean(np.abs(values) ** power))
    return gcp.matched(tensors, network, data_stat, model_stat, power)


def _picked(picks, source, mask, stream, stats) -> np.ndarray:
    """The linear indices of the observed entries numbered ``picks`` (in order)."""
    if mask is None:
        return picks
    bounds = np.cumsum([0] + [s[0] for s in stats])
    which = np.searchsorted(bounds, picks, side="right") - 1
    found = np.empty(len(picks), np.int64)
    for k, (a, b) in enumerate(stream.blocks):
        here = np.flatnonzero(which == k)
        if len(here):
            found[here] = run_blocks(mask, [(a, b)], picked_block, picks[here] - bounds[k])[0]
    return found
