"""Generalized CP for every network: elementwise losses, masks, L-BFGS-B and stochastic Adam.

``tnc.fit(model, data, method="gcp", loss=...)`` minimises ``sum over observed
entries of loss(model, data)`` (Hong, Kolda & Duersch 2020) for any network the
language can express, not only CP:

- ``optimizer="lbfgsb"`` (dense data): scipy's L-BFGS-B on the full gradient,
  which is one backward pass over the contraction tree with upstream
  ``mask * loss'(model, data)``; parameters are bounded at 0 for losses whose
  model must be non-negative (non-negative tensors give a non-negative model).
- ``optimizer="adam"`` (large or sparse data): stochastic gradients from sampled
  entries (Kolda & Hong 2020). The model is never formed densely: for ``S``
  sampled entries, each tensor's slices along its output legs are gathered and
  a *sampled network* is contracted, in which every output index is replaced by
  one shared sample index ``s`` (a hyperedge; output ``(s,)``)::

      CP  A(i,r) B(j,r) C(k,r) -> (i,j,k)     becomes   A[i_s](s,r) B[j_s](s,r) C[k_s](s,r) -> (s)
      TT  G1(i,a) G2(a,j,b) G3(b,k)           becomes   G1[i_s](s,a) G2[j_s](s,a,b) G3[k_s](s,b)

  Its gradient (reverse mode, :mod:`tnc.engine.grad`) is scattered back onto the rows
  it was gathered from. Entries are sampled uniformly (dense data) or
  stratified into nonzeros and zeros (sparse data), weighted so the loss and
  gradient estimates are unbiased. Each epoch ends with a loss estimate on a
  fixed sample; when it rises, the epoch is undone and the learning rate drops
  (``lr_decay``), and after ``max_fails`` drops the fit stops (as pyttb).

    >>> import numpy as np, tnc
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> truth = {k: np.abs(v) + 0.5 for k, v in net.random(seed=1).items()}
    >>> counts = np.random.default_rng(0).poisson(net.contract(truth))
    >>> result = tnc.fit(net, counts, method="gcp", loss="poisson", progress=False)
    >>> result.method, result.info["optimizer"], result.loss < 0
    ('gcp', 'lbfgsb', True)
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tnc.errors import ConvergenceWarning, TncError
from tnc.lang.expand import NetworkSpec, Occurrence
from tnc.engine import backend
from tnc.fitting.dtypes import COMPLEX, REAL, balanced, random_start, real_dtype, resolution
from tnc.fitting.front import FitProblem, check_finite, observed_rel_error, register_method
from tnc.engine.constants import Folded
from tnc.engine.grad import grad_plan
from tnc.fitting.losses import Loss, get_loss, offending_entries
from tnc.fitting.optimizers import Adam, Packing, lower_bounds, run_lbfgsb  # noqa: F401
from tnc.engine.network import Network
from tnc.engine.streams import CPLayout
from tnc.engine.plan import check_memory
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record
from tnc.fitting.rescale import Rescale
from tnc.fitting.result import FitResult
from tnc.engine.sparse import SparseTensor

SAMPLE = "#sample"              # the shared sample index of a sampled network
DENSIFY_BELOW = 2 ** 24         # sparse data this small may use L-BFGS-B (densified)
INIT_SAMPLES = 10_000
FTOL_FLOOR = 1.0                # L-BFGS-B's ftol is at least this times the dtype's eps


@dataclass
class GCPOptions:
    """Options of ``tnc.fit(..., method="gcp")``.

    ``loss``: a registered name (``"poisson"``, ``"bernoulli_logit"``, ...), a
    parametrised one as text (``"huber(0.25)"``, ``"negative_binomial(r=5)"``,
    ``"beta(b=0.5)"``) or a :class:`~tnc.fitting.losses.Loss`. ``optimizer``:
    ``"lbfgsb"``, ``"adam"`` or ``"auto"`` (Adam for sparse data, L-BFGS-B
    otherwise). ``max_iter``: L-BFGS-B iterations or Adam epochs. ``ftol``,
    ``gtol``: L-BFGS-B's stopping tests (relative decrease of the loss, as
    scipy's ``factr=1e7``; largest projected gradient entry), the defaults pyttb's
    ``gcp_opt`` ends up using. ``tol``: as the other methods' (relative loss change):
    L-BFGS-B's ``ftol`` when given; Adam stops once an epoch lowers the loss estimate by
    less than ``tol`` times itself (None: no such test). In float32 the loss is known to
    about 1e-7 of itself, so L-BFGS-B's test is at least its ``eps`` (1.2e-7) there, and
    scipy's float64 iterates are converted to float32 tensors at every call. Complex data
    take the gaussian loss only (``|m - x|^2``; L-BFGS-B over real and imaginary parts,
    Adam along the conjugate gradient: :data:`COMPLEX_GAUSSIAN`). ``seed``: initialisation and sampling. ``init``: ``"random"`` or a
    dict name -> array (or a FitResult). Adam: ``lr`` (step size), ``lr_decay``
    (factor applied when an epoch's loss estimate rises), ``max_fails`` (stop
    after this many rises), ``epoch_iters`` (steps per epoch), ``batch_size``
    (sampled entries per step; stratified: half nonzeros, half zeros),
    ``sampler`` (``"uniform"``, ``"stratified"`` or ``"auto"``: stratified for
    sparse data), ``estimate_samples`` (fixed entries for the loss estimate).
    ``weights``: non-negative array of the data's shape (dense data): each
    observed entry's loss counts that many times (missing entries still never
    count). ``callback(state)``: called after each iteration or epoch, True stops;
    ``progress``: show a progress bar; ``optimize``: contraction path optimizer.
    ``backend``: where Adam steps torch and jax data (``"auto"``: on their own library
    when they live on a GPU, else on numpy; ``"native"``, ``"numpy"``: the policy of
    :mod:`tnc.fitting.backends`); L-BFGS-B always runs on numpy.
    """

    loss: str | Loss = "gaussian"
    optimizer: str = "auto"
    max_iter: int = field(default=1000, metadata={"min": 1})
    ftol: float = 1e7 * np.finfo(float).eps
    gtol: float = 1e-5
    tol: float | None = field(default=None, metadata={"min": 0})
    seed: int | None = 0
    init: object = "random"
    lr: float = field(default=1e-3, metadata={"above": 0})
    lr_decay: float = field(default=0.1, metadata={"above": 0, "max": 1})
    max_fails: int = 1
    epoch_iters: int = field(default=1000, metadata={"min": 1})
    batch_size: int | None = field(default=None, metadata={"min": 1})
    sampler: str = "auto"
    estimate_samples: int | None = field(default=None, metadata={"min": 1})
    weights: np.ndarray | None = None
    callback: Callable | None = None
    progress: bool = True
    optimize: str = "auto"
    backend: str = "auto"


# -- the full objective (dense data) -------------------------------------------------------
class DenseObjective:
    """``tensors -> (sum of loss over observed entries, gradients)`` with one forward pass.

    ``target``: the data (missing entries zeroed), ``mask``: bool or None. The
    loss values and upstream gradient live in two arrays reused by every call
    (with the loss's in-place ``fused`` form when it has one): on this scale
    fresh temporaries cost more than the arithmetic.
    """

    def __init__(self, network: Network, inputs: dict, target, mask, loss: Loss, optimize,
                 weights=None):
        self.network, self.inputs, self.loss = network, inputs, loss
        self.target, self.mask, self.weights = target, mask, weights
        self.hidden = None if mask is None else ~mask
        self.plan = grad_plan(network, optimize)
        check_memory(self.plan.cost, "auto", f"the GCP gradient of network `{network.name}`")
        self.buffers = None
        # CP-like networks on big data: model and MTTKRPs on the kernels (streams.py)
        self.cp = CPLayout.for_data(network, np.shape(target), np.asarray(target).dtype)
        # the fixed inputs' own products, once per fit (tnc.engine.constants)
        self.folded = Folded(self.plan, [o.name for o in network.occurrences], inputs) \
            if inputs and self.cp is None else None

    def __call__(self, tensors: dict) -> tuple[float, dict[str, np.ndarray]]:
        if self.cp is not None:
            values, upstream = self._loss(self.cp.model(tensors))
            return float(values.sum(dtype=np.float64)), self.cp.gradients(tensors, upstream)
        everything = {**tensors, **self.inputs}
        model, tape = self.plan.forward([everything[o.name] for o in self.network.occurrences],
                                        self.folded)
        values, upstream = self._loss(model)
        return float(values.sum(dtype=np.float64)), descent(self.plan.backward(tape, upstream))

    def _loss(self, model):
        if self.buffers is None or self.buffers[0].shape != model.shape:
            self.buffers = (np.empty(model.shape, real_dtype(model.dtype)),
                            np.empty(model.shape, model.dtype))
        values, upstream = self.buffers
        if self.loss.fused is not None:
            self.loss.fused(model, self.target, values, upstream)
        else:
            values[...] = self.loss.value(model, self.target)
            upstream[...] = self.loss.derivative(model, self.target)
        if self.hidden is not None:
            np.copyto(values, 0.0, where=self.hidden)
            np.copyto(upstream, 0.0, where=self.hidden)
        if self.weights is not None:
            values *= self.weights
            upstream *= self.weights
        return values, upstream


# -- the sampled network: model values at S entries without the dense model ---------------
def sampled_spec(spec: NetworkSpec, count: int) -> NetworkSpec:
    """``spec`` with every output index replaced by one sample index of size ``count``.

    A use that carries output legs becomes a tensor of its own, ``name@k`` (its
    gathered slices), with legs ``(sample, other legs...)``; other uses are kept.

        >>> import tnc
        >>> s = sampled_spec(tnc.library("tt", N=3, d=2, r=4).spec, 10)
        >>> [(o.name, o.indices) for o in s.occurrences][1], s.output
        (('G[2]@1', ('#sample', 'b[1]', 'b[2]')), ('#sample',))
    """
    output = set(spec.output)
    uses = []
    for k, occ in enumerate(spec.occurrences):
        if output.intersection(occ.indices):
            legs = (SAMPLE,) + tuple(i for i in occ.indices if i not in output)
            occ = Occurrence(f"{occ.name}@{k}", occ.kind, legs, occ.span)
        uses.append(occ)
    sizes = {i: n for i, n in spec.index_sizes.items() if i not in output}
    sizes[SAMPLE] = count
    return NetworkSpec(f"{spec.name}_sampled", dict(spec.sizes), sizes, tuple(uses),
                       (SAMPLE,), spec.span)


@dataclass(frozen=True)
class Gather:
    """How use ``k`` of tensor ``name`` is sliced at sampled coordinates.

    ``perm`` puts the output legs first; ``axes`` are the data axes of those
    legs; ``lead`` their sizes (the gathered array is ``(S, *rest)``).
    """

    k: int
    name: str
    perm: tuple[int, ...]
    axes: tuple[int, ...]
    lead: tuple[int, ...]

    def take(self, array, coords):
        if type(array) is not np.ndarray:       # torch, jax: indexed with their own ints
            index = tuple(backend.asarray(coords[:, a], array) for a in self.axes)
            return backend.transpose(array, self.perm)[index]
        if len(self.axes) == 1 and self.perm[0] == 0:
            return np.take(array, coords[:, self.axes[0]], axis=0)
        index = tuple(coords[:, a] for a in self.axes)
        return array.transpose(self.perm)[index]

    def scatter(self, grad, coords, shape) -> np.ndarray:
        """Sum the rows of ``grad`` (``(S, *rest)``) into a zero array of ``shape``."""
        count = len(coords)
        rows = coords[:, self.axes[0]] if len(self.axes) == 1 else np.ravel_multi_index(
            tuple(coords[:, a] for a in self.axes), self.lead)
        width = math.prod(grad.shape) // max(count, 1)
        flat = (rows[:, None] * width + np.arange(width)).reshape(-1)
        length = math.prod(self.lead) * width
        if type(grad) is not np.ndarray:
            permuted = _summed(flat, grad.reshape(-1), length)
        else:
            permuted = np.bincount(flat, weights=grad.real.reshape(-1), minlength=length)
            if np.iscomplexobj(grad):
                permuted = permuted + 1j * np.bincount(flat, weights=grad.imag.reshape(-1),
                                                       minlength=length)
            permuted = permuted.astype(grad.dtype, copy=False)
        permuted = permuted.reshape([shape[p] for p in self.perm])
        return backend.transpose(permuted, tuple(int(p) for p in np.argsort(self.perm)))


def _summed(flat: np.ndarray, values, length: int):
    """``out[flat[k]] += values[k]`` into zeros of ``length`` (repeated indices add up), in
    ``values``' library (torch's ``index_add_``, jax's ``.at[].add``)."""
    out = backend.zeros((length,), like=values)
    index = backend.asarray(flat, values)
    if backend.backend_name(values) == "torch":
        return out.index_add_(0, index, values)
    return out.at[index].add(values)


class SampledModel:
    """Model values at sampled entries and their gradients, for any network.

        >>> import tnc
        >>> net = tnc.library("tt", N=3, d=4, r=2)
        >>> t = net.random(seed=0)
        >>> coords = np.array([[0, 1, 2], [3, 3, 0]])
        >>> m = SampledModel(net, {}).values(t, coords)
        >>> np.allclose(m, net.contract(t)[tuple(coords.T)])
        True
    """

    def __init__(self, network: Network, inputs: dict, optimize="auto"):
        self.network, self.inputs, self.optimize = network, inputs, optimize
        output = list(network.output)
        self.gathers: list[Gather] = []
        for k, occ in enumerate(network.occurrences):
            first = [p for p, i in enumerate(occ.indices) if i in output]
            if first:
                rest = [p for p, i in enumerate(occ.indices) if i not in output]
                sizes = network.spec.shape_of(occ)
                self.gathers.append(Gather(k, occ.name, tuple(first + rest),
                                           tuple(output.index(occ.indices[p]) for p in first),
                                           tuple(sizes[p] for p in first)))
        self._plans: dict[int, tuple] = {}

    def _plan(self, count: int):
        if count not in self._plans:
            net = Network(sampled_spec(self.network.spec, count), None, self.network.filename)
            wrt = [o.name for o in net.occurrences if o.kind == "param"]
            self._plans[count] = (net, grad_plan(net, self.optimize, wrt))
        return self._plans[count]

    def _arrays(self, tensors, coords) -> list:
        everything = {**tensors, **self.inputs}
        arrays = [everything[o.name] for o in self.network.occurrences]
        for g in self.gathers:
            arrays[g.k] = g.take(arrays[g.k], coords)
        return arrays

    def forward(self, tensors: dict, coords: np.ndarray):
        """``(values (S,), tape)`` at the entries ``coords`` (``(S, ndim)`` int)."""
        _, plan = self._plan(len(coords))
        return plan.forward(self._arrays(tensors, coords))

    def values(self, tensors: dict, coords: np.ndarray) -> np.ndarray:
        return self.forward(tensors, coords)[0]

    def backward(self, tape, upstream: np.ndarray, coords: np.ndarray) -> dict:
        """Gradients of ``sum(upstream * values)`` for every parameter (full shapes)."""
        net, plan = self._plan(len(coords))
        sampled = descent(plan.backward(tape, upstream))
        dtype = backend.result_dtype(*sampled.values()) if sampled else np.float64
        like = next(iter(sampled.values()), upstream)
        grads = {name: backend.zeros(shape, like, dtype)
                 for name, shape in self.network.params.items()}
        gathered = {f"{g.name}@{g.k}": g for g in self.gathers}
        for name, grad in sampled.items():
            g = gathered.get(name)
            if g is not None:
                name, grad = g.name, g.scatter(grad, coords, self.network.params[g.name])
            grads[name] = grads[name] + grad
        return grads


# -- samplers --------------------------------------------------------------------------------
@dataclass
class Sample:
    """Sampled entries: ``coords`` (S, ndim), data ``values`` (S,), ``weights`` (S,)."""

    coords: np.ndarray
    values: np.ndarray
    weights: np.ndarray


class UniformSampler:
    """Entries drawn uniformly (with replacement) from the observed ones.

    ``data``: a dense array (with ``mask`` or None) or a :class:`SparseTensor`;
    ``weights`` (dense, optional) multiply each entry's sample weight.
    """

    def __init__(self, data, mask, rng, weights=None):
        self.data, self.rng, self.entry_weights = data, rng, weights
        self.shape = data.shape
        self.observed = None if mask is None else np.flatnonzero(mask.reshape(-1))
        self.total = math.prod(data.shape) if mask is None else len(self.observed)

    def draw(self, count: int) -> Sample:
        pick = self.rng.integers(0, self.total, count)
        linear = pick if self.observed is None else self.observed[pick]
        coords = np.stack(np.unravel_index(linear, self.shape), axis=1)
        if isinstance(self.data, SparseTensor):
            values = self.data.lookup(coords)
        elif type(self.data) is np.ndarray:
            values = self.data.reshape(-1)[linear]
        else:                                   # torch, jax: gathered on their library
            values = self.data.reshape(-1)[backend.asarray(linear, self.data)]
        weights = np.full(count, self.total / count)
        if self.entry_weights is not None:
            weights *= self.entry_weights.reshape(-1)[linear]
        return Sample(coords, values, backend.asarray(weights, values))


class StratifiedSampler:
    """Nonzeros and zeros of sparse data drawn separately, each stratum weighted by its size.

    Zeros are found by rejection: random linear indices not among the nonzeros
    (a binary search in the sorted linear indices), so nothing dense is formed.
    """

    def __init__(self, data: SparseTensor, rng):
        self.data, self.rng = data, rng
        self.total = data.size
        self.zeros = data.size - data.nnz

    def split(self, count: int) -> tuple[int, int]:
        nonzeros = min(max(count // 2, 1), self.data.nnz) if self.data.nnz else 0
        return nonzeros, min(count - nonzeros, self.zeros)

    def draw(self, count: int) -> Sample:
        n_nonzero, n_zero = self.split(count)
        picked = self.rng.integers(0, self.data.nnz, n_nonzero)
        linear_zero = self._zeros(n_zero)
        coords = np.concatenate([self.data.coords[picked],
                                 np.stack(np.unravel_index(linear_zero, self.data.shape), 1)])
        values = np.concatenate([self.data.values[picked], np.zeros(n_zero)])
        weights = np.concatenate([np.full(n_nonzero, self.data.nnz / max(n_nonzero, 1)),
                                  np.full(n_zero, self.zeros / max(n_zero, 1))])
        return Sample(coords.astype(np.int64), values, weights)

    def _zeros(self, count: int) -> np.ndarray:
        found, need = [], count
        density = self.data.nnz / self.data.size
        while need > 0:
            candidates = self.rng.integers(0, self.data.size, int(1.1 * need / (1 - density)) + 8)
            candidates.sort()                   # sorted queries: a cache-friendly search
            _, hit = self.data.find(candidates)
            keep = candidates[~hit]
            if len(keep) > need:                # a random subset, not the smallest indices
                keep = self.rng.choice(keep, need, replace=False)
            found.append(keep)
            need -= len(keep)
        return np.concatenate(found) if found else np.zeros(0, np.int64)


# -- checks and initialisation ---------------------------------------------------------------
def check_loss_data(loss: Loss, target, mask) -> None:
    """``loss.check_data`` on the observed entries, naming them by their coordinates."""
    if isinstance(target, SparseTensor):
        _check(loss, target.values, target.coords)
        if target.nnz < target.size:
            try:
                loss.check_data(np.zeros(1))
            except TncError:
                raise TncError(f"loss {loss.name!r} does not accept zeros, and the sparse "
                               f"data has {target.size - target.nnz} implicit zero entries; "
                               "give the data densely with a mask for the entries that are "
                               "missing") from None
    elif mask is None:
        loss.check_data(target)
    else:
        _check(loss, target[mask], np.argwhere(mask))


def check_weights(weights, target) -> np.ndarray | None:
    """``weights`` as a float array of the data's shape, checked (None passes)."""
    if weights is None:
        return None
    if isinstance(target, SparseTensor):
        raise TncError("weights need dense data (the same shape as the data); sparse data "
                       "takes none")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != target.shape:
        raise TncError(f"weights have shape {weights.shape} but the data has shape "
                       f"{target.shape}")
    bad = ~(weights >= 0) | ~np.isfinite(weights)
    if bad.any():
        raise TncError("weights must be finite and non-negative; "
                       + offending_entries(bad, weights))
    return weights


def _check(loss: Loss, values, coords) -> None:
    if getattr(loss.check_data, "accepts_coords", False):
        loss.check_data(values, coords=coords)
    else:
        loss.check_data(values)


def initial_tensors(problem: FitProblem, loss: Loss, init, rng, model: SampledModel) -> dict:
    """Starting tensors: given ones (checked), or random ones scaled to the data.

    For losses with a non-negative model: absolute values of Gaussians, scaled
    so the model's mean matches the data's; for Gaussian and Huber losses the
    root mean square is matched; other links start at entries of order one.
    """
    from tnc.fitting.result import FitResult
    net = problem.network
    if isinstance(init, FitResult):
        init = init.tensors
    if isinstance(init, dict):
        net.check_tensors(init, required=net.params)
        tensors = {k: np.array(init[k], dtype=problem.dtype) for k in net.params}
        for name, tensor in tensors.items():
            check_finite(tensor, f"init: `{name}`")
        if loss.model_lower_bound is not None and any((v < 0).any() for v in tensors.values()):
            raise TncError(f"init: loss {loss.name!r} keeps every tensor non-negative, but "
                           "the initial tensors have negative entries")
        return tensors
    if not (isinstance(init, str) and init == "random"):
        raise TncError(f"init must be 'random', a dict of arrays or a FitResult, got {init!r}")
    tensors, power = random_tensors(net, loss, rng, problem.dtype)
    return tensors if power is None else _scaled(tensors, problem, model, rng, power)


def random_tensors(network, loss: Loss, rng, dtype) -> tuple[dict, int | None]:
    """The random start of a GCP fit (absolute values for a non-negative model) and the
    power whose mean the start is scaled to match (1: mean, 2: mean square; None: no
    scaling, other links start at entries of order one). Draws one integer of ``rng``.
    The tensors are balanced (:func:`balanced`)."""
    tensors = balanced(random_start(network, int(rng.integers(2 ** 31)), dtype))
    if loss.model_lower_bound is not None:
        return {k: np.abs(v) for k, v in tensors.items()}, 1
    if loss.name == "gaussian" or loss.name.startswith("huber("):
        return tensors, 2
    return tensors, None


def matched(tensors: dict, network, data_stat: float, model_stat: float, power: int) -> dict:
    """``tensors`` scaled so that the model's mean ``|M|^power`` (``model_stat``) becomes
    the data's (``data_stat``), the factor spread over every parameter use."""
    uses = sum(o.kind == "param" for o in network.occurrences)
    if data_stat <= 0 or model_stat <= 0 or not uses:
        return tensors
    factor = (data_stat / model_stat) ** (1.0 / (power * uses))
    return {k: v * factor for k, v in tensors.items()}


def _scaled(tensors, problem, model: SampledModel, rng, power: int) -> dict:
    """``tensors`` scaled so that mean(model^power) matches mean(data^power)."""
    sample = UniformSampler(problem.target, problem.mask, rng).draw(INIT_SAMPLES)
    target = problem.target
    if isinstance(target, SparseTensor):
        data_stat = float(np.sum(abs(target.values) ** power)) / target.size
    else:
        observed = target if problem.mask is None else target[problem.mask]
        data_stat = float(np.mean(abs(observed) ** power))
    model_stat = float(np.mean(np.abs(model.values(tensors, sample.coords)) ** power))
    return matched(tensors, problem.network, data_stat, model_stat, power)


def sample_sizes(sampler, options: GCPOptions) -> tuple[int, int]:
    """Entries per gradient step and in the loss estimate (pyttb's defaults when None)."""
    data = sampler.data
    if isinstance(sampler, StratifiedSampler):
        batch = 2 * max(1000, math.ceil(3 * data.nnz / options.epoch_iters))
        estimate = 2 * max(math.ceil(data.nnz / 100), 100_000)
    else:
        batch = max(1000, math.ceil(10 * sampler.total / options.epoch_iters))
        estimate = max(math.ceil(sampler.total / 10), 1_000_000)
    most = 2 * max(data.nnz, 1000) if isinstance(sampler, StratifiedSampler) else sampler.total
    batch = options.batch_size or min(batch, most)
    estimate = options.estimate_samples or min(estimate, most)
    return int(batch), int(estimate)


def run_adam(loss: Loss, model: SampledModel, tensors: dict, sampler, options: GCPOptions,
             bar: Progress):
    """Epochs of Adam steps with the pyttb learning-rate schedule."""
    lower = 0.0 if loss.model_lower_bound is not None else None
    batch, n_estimate = sample_sizes(sampler, options)
    fixed = sampler.draw(n_estimate)
    adam, lr, fails = Adam(tensors, lower), options.lr, 0
    start = time.perf_counter()

    def estimate(current) -> float:
        return float((fixed.weights * loss.value(model.values(current, fixed.coords),
                                                 fixed.values)).sum())

    best, best_loss, best_state = _copy(tensors), estimate(tensors), adam.state()
    history = [record(0, best_loss, None, 0.0, lr=lr)]      # the start, dropped below
    converged = False
    for epoch in range(1, options.max_iter + 1):
        for _ in range(options.epoch_iters):
            sample = sampler.draw(batch)
            values, tape = model.forward(tensors, sample.coords)
            upstream = backend.astype(sample.weights * loss.derivative(values, sample.values),
                                      backend.dtype_of(values))
            adam.step(tensors, model.backward(tape, upstream, sample.coords), lr)
        current = estimate(tensors)
        failed = not current <= best_loss
        small = options.tol is not None and not failed and (
            best_loss - current <= options.tol * abs(best_loss))
        entry = record(epoch, current, None, time.perf_counter() - start, lr=lr, failed=failed)
        history.append(entry)
        bar.update(loss=current, lr=lr)
        if failed:
            fails += 1
            tensors = _copy(best)
            adam.restore(best_state)
            lr *= options.lr_decay
        else:
            best, best_loss, best_state = _copy(tensors), current, adam.state()
        if fails > options.max_fails or small:
            converged = True
            break
        if wants_stop(options.callback, {**entry, "tensors": tensors}):
            break
    if history[-1]["loss"] != best_loss:          # the last epoch was undone: report what is returned
        history.append(record(history[-1]["iteration"], best_loss, None,
                              time.perf_counter() - start, lr=lr, restored=True))
    info = {"batch_size": batch, "estimate_samples": n_estimate, "final_lr": lr,
            "sampler": type(sampler).__name__.replace("Sampler", "").lower(),
            "epochs": history[-1]["iteration"], "initial_loss": history[0]["loss"]}
    reason = adam_divergence(history, best_loss, options.lr)
    if reason:
        info["diverged"] = reason
    return best, history[1:], converged and not reason, info


def adam_divergence(history: list[dict], final: float, lr: float) -> str | None:
    """Why an Adam run must not count as converged (None when nothing went wrong).

    It diverged when the returned tensors' loss estimate is not finite, or when
    no epoch was ever kept (every one raised the estimate, so the returned
    tensors are the initial ones).
    """
    if not math.isfinite(final):
        return f"the loss estimate of the returned tensors is {final}"
    epochs = [h for h in history if h["iteration"] > 0 and not h.get("restored")]
    if epochs and all(h["failed"] for h in epochs):
        blown = any(not math.isfinite(h["loss"]) for h in epochs)
        return ("every epoch raised the loss estimate" + (" (to non-finite values)" * blown)
                + f", so the initial tensors are returned; the learning rate lr={lr:g} is "
                "probably too large")
    return None


def _copy(tensors: dict) -> dict:
    return {k: backend.copy_of(v) for k, v in tensors.items()}


# -- the method ------------------------------------------------------------------------------
def run_gcp(problem: FitProblem, options: GCPOptions) -> FitResult:
    """Fit ``problem`` under ``options.loss``; see the module docstring."""
    start = time.perf_counter()
    loss = loss_for(get_loss(options.loss), problem.dtype)
    check_loss_data(loss, problem.target, problem.mask)
    weights = check_weights(options.weights, problem.target)
    optimizer = _choose_optimizer(problem, options)
    if optimizer == "lbfgsb" and isinstance(problem.target, SparseTensor):
        problem = FitProblem(problem.network, problem.target.to_dense(), None, problem.inputs)
    rng = np.random.default_rng(options.seed)
    scaling = data_scale(problem, loss)
    problem, options = scaled_problem(problem, scaling), scaling.options(options, ())
    model = SampledModel(problem.network, problem.inputs, options.optimize)
    tensors = initial_tensors(problem, loss, options.init, rng, model)
    lower = {k: 0.0 for k in tensors} if _bounded(loss) else None
    with Progress(options.max_iter, desc=f"gcp {loss.name}", enabled=options.progress) as bar:
        if optimizer == "lbfgsb":
            objective = DenseObjective(problem.network, problem.inputs, problem.target,
                                       problem.mask, loss, options.optimize, weights)
            tensors, history, converged, info = run_lbfgsb(
                objective, tensors, lbfgsb_options(options, problem.dtype), lower, bar)
        else:
            like = _native_like(problem, options)
            adam_problem, model, tensors = on_library(like, problem, model, tensors)
            sampler = _choose_sampler(adam_problem, options, rng, weights)
            tensors, history, converged, info = run_adam(
                loss, model, tensors, sampler, options, bar)
            tensors = {k: backend.to_numpy(v) for k, v in tensors.items()}
            info["backend"] = "numpy" if like is None else backend.backend_name(like)
    converged = _honest(converged, history, info, optimizer)
    info.update({"loss": loss.name, "optimizer": optimizer, "seed": options.seed,
                 "data_scale": scaling.scale})
    history[-1]["rel_error"] = observed_rel_error(problem, tensors)   # scale-free
    if "initial_loss" in info:
        info["initial_loss"] = scaling.loss(info["initial_loss"])
    return FitResult(problem.network, scaling.to_data(tensors), "gcp", scaling.history(history),
                     converged, info.get("epochs", len(history)), time.perf_counter() - start,
                     dict(problem.inputs), info)


def _native_like(problem: FitProblem, options: GCPOptions):
    """The torch/jax array whose library Adam steps on (the :func:`tnc.fit` call's, under
    :func:`tnc.fitting.backends.choose`), or None for numpy."""
    from tnc.fitting import backends
    like = backends.native_like()
    refusals = {"sparse data": isinstance(problem.target, SparseTensor),
                "sampler='stratified'": options.sampler == "stratified"}
    return like if backends.choose(options.backend, like, refusals, problem.dtype,
                                   "GCP's Adam") else None


def on_library(like, problem: FitProblem, model: SampledModel, tensors: dict):
    """``(problem, model, tensors)`` with the data, the data tensors and the starting
    tensors as arrays of ``like``'s library and device (unchanged when ``like`` is None);
    the mask stays numpy (the sampler draws coordinates with numpy's generator)."""
    if like is None:
        return problem, model, tensors
    inputs = {k: backend.asarray(v, like) for k, v in problem.inputs.items()}
    moved = FitProblem(problem.network, backend.asarray(problem.target, like), problem.mask,
                       inputs, problem.memory_limit)
    return (moved, SampledModel(problem.network, inputs, model.optimize),
            {k: backend.asarray(v, like) for k, v in tensors.items()})


def _honest(converged: bool, history: list[dict], info: dict, optimizer: str) -> bool:
    """``converged`` unless the fit diverged; a divergence is recorded and warned about.

    Adam records its own reason (:func:`adam_divergence`); for either optimizer
    a non-finite final loss is one.
    """
    final = history[-1]["loss"]
    if "diverged" not in info and not math.isfinite(final):
        info["diverged"] = f"the loss of the returned tensors is {final}"
    if "diverged" not in info:
        return converged
    warnings.warn(f"GCP ({optimizer}) diverged: {info['diverged']}; converged=False",
                  ConvergenceWarning, stacklevel=4)
    return False


def data_scale(problem: FitProblem, loss: Loss) -> Rescale:
    """How GCP rescales ``problem``'s data: by the exact reciprocal RMS of the observed
    entries when the loss is least squares (:attr:`Loss.homogeneous` 2), so L-BFGS-B's
    absolute gradient and loss-change tests and Adam's step size act on data of unit
    size: fitting ``c * X`` takes the same steps as fitting ``X`` and returns ``c``
    times its model. Other losses (counts, probabilities) have a scale of their own
    and are fitted as given (the identity :class:`~tnc.fitting.rescale.Rescale`).
    """
    if loss.homogeneous != 2:
        return Rescale()
    return Rescale.of([problem.network], [problem.target], problem.observed, exact=True,
                      squares=problem.squares)


def scaled_problem(problem: FitProblem, scaling: Rescale) -> FitProblem:
    """``problem`` with its data (dense or sparse) in the fit's units (its memory limit kept)."""
    if scaling.identity:
        return problem
    return dataclasses.replace(problem, target=scaling.data(problem.target), squares=None)


def _bounded(loss: Loss) -> bool:
    bound = loss.model_lower_bound
    if bound is not None and bound > 0:
        raise TncError(f"loss {loss.name!r}: a model lower bound of {bound} > 0 is not "
                       "supported (tensors can only be kept non-negative)")
    return bound is not None


def _choose_optimizer(problem: FitProblem, options: GCPOptions) -> str:
    choices = ("auto", "lbfgsb", "adam")
    if options.optimizer not in choices:
        raise TncError(f"optimizer must be one of {', '.join(choices)}, "
                       f"got {options.optimizer!r}")
    sparse = isinstance(problem.target, SparseTensor)
    if options.optimizer == "auto":
        return "adam" if sparse and problem.target.size > DENSIFY_BELOW else "lbfgsb"
    if options.optimizer == "lbfgsb" and sparse and problem.target.size > DENSIFY_BELOW:
        raise TncError(f"optimizer 'lbfgsb' needs the dense model, and this sparse data has "
                       f"{problem.target.size} entries; use optimizer='adam'")
    return options.optimizer


def _choose_sampler(problem: FitProblem, options: GCPOptions, rng, weights):
    choices = ("auto", "uniform", "stratified")
    if options.sampler not in choices:
        raise TncError(f"sampler must be one of {', '.join(choices)}, got {options.sampler!r}")
    target = problem.target
    sparse = isinstance(target, SparseTensor)
    if options.sampler == "stratified" or options.sampler == "auto" and sparse:
        if weights is not None:
            raise TncError("sampler 'stratified' takes no weights; use sampler='uniform'")
        if not sparse:
            if problem.mask is not None:
                raise TncError("sampler 'stratified' needs fully observed data (sparse, or "
                               "dense without a mask); use sampler='uniform'")
            target = SparseTensor.from_dense(target)
        return StratifiedSampler(target, rng)
    return UniformSampler(target, problem.mask, rng, weights)


def lbfgsb_options(options: GCPOptions, dtype) -> GCPOptions:
    """``options`` with L-BFGS-B's ``ftol``: ``tol`` when given, floored at ``FTOL_FLOOR``
    times the fit dtype's eps (float32's loss is known to ~1e-7 of itself; float64's
    default 2.2e-9 unchanged). A floor of 10 eps stopped float32 fits in swamps (0.30
    against 0.047 on a rank-3 CP where float64 took 530 iterations).

        >>> lbfgsb_options(GCPOptions(tol=1e-12), np.float32).ftol == resolution(np.float32)
        True
    """
    ftol = options.ftol if options.tol is None else options.tol
    return dataclasses.replace(options, ftol=max(ftol, FTOL_FLOOR * resolution(dtype)))


def loss_for(loss: Loss, dtype) -> Loss:
    """``loss`` for data of ``dtype``: as it is for real data; for complex data the
    gaussian loss becomes :data:`COMPLEX_GAUSSIAN` and any other is a TncError naming it."""
    if np.dtype(dtype).kind != "c":
        return loss
    if loss.name != "gaussian":
        raise TncError(f"method 'gcp' fits complex data ({np.dtype(dtype)}) with the gaussian "
                       f"loss only, not {loss.name!r}")
    return COMPLEX_GAUSSIAN


def _complex_gaussian_check(values, coords=None) -> None:
    """Every finite complex value is valid gaussian data (front.split_missing checked)."""


COMPLEX_GAUSSIAN = Loss("gaussian", lambda m, x: abs(m - x) ** 2,
                        lambda m, x: 2 * np.conj(m - x), _complex_gaussian_check,
                        homogeneous=2)
"""The gaussian loss ``|m - x|^2`` of complex data. Its ``derivative`` is the upstream
``2 conj(m - x)`` of the reverse sweep (holomorphic: ``g = J^T u``); :func:`descent`
turns the gradients into ``dL/dRe + i dL/dIm = conj(g)``, the direction L-BFGS-B (over
real and imaginary parts, :class:`~tnc.fitting.optimizers.Packing`) and Adam step along."""


def descent(grads: dict) -> dict:
    """Gradients of the reverse sweep as descent directions: unchanged when real, their
    conjugates when complex (see :data:`COMPLEX_GAUSSIAN`)."""
    return {k: (g.conj() if np.iscomplexobj(g) else g) if type(g) is np.ndarray
            else backend.conj(g) for k, g in grads.items()}


register_method("gcp", GCPOptions, run_gcp, sparse=True, dtypes=REAL + COMPLEX)
