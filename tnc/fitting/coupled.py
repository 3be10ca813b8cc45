"""Fitting coupled models: several data sets, shared tensors, penalties and constraints.

The objective of a :class:`~tnc.models.model.CoupledModel` with data sets ``X_k``,
masks ``W_k`` (True = observed) and networks ``M_k`` is::

    sum_k w_k sum_{observed} loss_k(M_k, X_k)  +  sum_G l2_G ||G||^2
                                               +  sum_G tv_G sum |diff(G, axis)|_eps

* ``method="als"`` (every loss gaussian): each tensor in turn gets its
  exact penalised least-squares update. Its right-hand side and Gram operator
  are the sums, weighted by ``w_k``, of those of every network that uses it
  (the per-network trees and cached intermediates of :mod:`tnc.fitting.als`), plus
  ``l2 * I``; non-negative tensors are solved by HALS. A ``tv`` penalty enters
  through its quadratic majoriser at the current tensor (:mod:`tnc.fitting.tv`), so
  that tensor's update is one sparse linear system (:func:`solve_with_tv`;
  projected coordinate descent on it when the tensor is non-negative) and
  the smoothed objective still never increases. Missing entries
  (``missing=``) are filled by EM: each sweep imputes them from the current
  model (or from a caller's ``imputer``, e.g. MULTIFAC's shared-structure
  rule for missing slices); or left out by weighted least squares (WLS): the
  network's normal equations come one row of the tensor at a time, with a
  Gram matrix of its own (the mask enters the Gram network), so each update
  is the exact minimiser of the objective itself, not of EM's surrogate, and
  cannot stall where EM crawls. Networks without missing data keep their
  shared-Gram equations, broadcast to rows when summed with WLS ones.
  ``restarts`` keeps the best of several random starts.
* ``method="gcp"`` (any loss): L-BFGS-B on the whole objective; the gradient of
  each network comes from one reverse pass (:class:`tnc.fitting.gcp.DenseObjective`),
  summed per shared tensor; ``tv`` is smoothed (``sqrt(d^2 + eps^2)``) so it is
  differentiable; non-negative tensors (and every tensor of a network whose
  loss needs a non-negative model, e.g. Poisson) are bounded below by 0.

    >>> import numpy as np, tnc
    >>> text = '''
    ... network X1(I = 5, J = 4) { index i: I, j: J, r: 2  tensor A(i, r), B(j, r)  output i, j }
    ... network X2(I = 5, K = 6) { index i: I, k: K, r: 2  tensor A(i, r), C(k, r)  output i, k }
    ... model m { fit X1 to T1  fit X2 to T2 }'''
    >>> model = tnc.compile_model(text)
    >>> truth = model.random(seed=3)
    >>> result = tnc.fit_model(model, model.contract(truth), method="als", progress=False)
    >>> result.rel_error < 1e-6, sorted(result.reconstruct())
    (True, ['T1', 'T2'])
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from tnc.fitting import als
from tnc.lang import ast
from tnc.engine import kernels
from tnc.lang.compiler import read_source
from tnc.errors import TncError
from tnc.fitting.front import (FitProblem, _sizes_from_shape, as_target, check_finite, split_missing,
                      squared_norm, with_array_mask)
from tnc.engine import backend
from tnc.fitting.backends import foreign, to_library
from tnc.fitting.gcp import DenseObjective, check_loss_data, run_lbfgsb
from tnc.models.model import CoupledModel, Term, compile_model, coupled_model, pick_model
from tnc.options import validated
from tnc.lang.parser import parse
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import MODEL_ALIASES, budgeted, given_once, record, renamed
from tnc.fitting.rescale import Rescale, exponents
from tnc.fitting.result import (FORMAT_VERSION, NUMBER, NUMBERS, OBJECT, SIZES, TEXT, TEXT_OR_NULL,
                     TEXTS, Field, Result, check_shapes, compile_saved, is_int, is_number,
                     read_archive, rebuilt, records_of, write_archive)
from tnc.engine.sparse import SparseTensor
from tnc.fitting.dtypes import REAL, fit_dtype, promoted
from tnc.fitting.tv import along, majoriser_weights, total_variation


@dataclass
class CoupledOptions:
    """Options of :func:`fit_model`.

    ``max_iter``: ALS sweeps or L-BFGS-B iterations; ``tol``: ALS stops when the
    objective changes by less than ``tol`` times itself between sweeps;
    ``ftol``/``gtol``: L-BFGS-B's tests; ``seed``: random start; ``init``:
    ``"random"``, a dict name -> array or a :class:`CoupledResult`;
    ``tv_smoothing``: the ``eps`` of the smoothed total variation (> 0 for ALS,
    whose majoriser weights are ``1 / sqrt(d^2 + eps^2)``);
    ``missing``: ALS's handling of missing entries, ``"em"`` (impute them from
    the model each sweep), ``"wls"`` (weighted least squares: per-row normal
    equations, each update exact on the observed entries) or ``"auto"`` (per
    data set, WLS when its weighted Gram networks cost at most
    ``max(1e8, 20 x)`` the right-hand sides' flops, as :class:`tnc.fitting.als.ALSOptions`;
    EM when an ``imputer`` is given);
    ``imputer(data_name, tensors, model_value) -> array``: ALS-EM's values for
    the missing entries of a data set (default: the model value; EM only);
    ``restarts``: fits from seeds ``seed, seed + 1, ...`` (random starts; a
    given ``init`` only for the first), keeping the lowest final objective;
    ``callback(state)``: after each sweep/iteration, True stops; ``progress``:
    show a bar; ``optimize``: contraction path optimizer.
    """

    max_iter: int = field(default=500, metadata={"min": 1})
    tol: float = 1e-9
    ftol: float = 1e7 * np.finfo(float).eps
    gtol: float = 1e-6
    seed: int | None = 0
    init: object = "random"
    tv_smoothing: float = 1e-3
    missing: str = "em"
    imputer: Callable | None = None
    restarts: int = 1
    callback: Callable | None = None
    progress: bool = True
    optimize: str = "auto"


@dataclass(repr=False)
class CoupledResult(Result):
    """A fitted coupled model.

    ``tensors``: every parameter by name (shared ones once); ``history``: one
    record per sweep or iteration (``iteration`` from 1, ``loss``: the penalised
    objective, ``rel_error``, ``time``; ALS fills ``rel_error`` every sweep, L-BFGS
    at the last iteration: ``sqrt(sum_k ||W_k(X_k - M_k)||^2 / sum_k
    ||W_k X_k||^2)``, and ``rel_errors`` per data set); ``info``: details.
    """

    model: CoupledModel
    tensors: dict[str, np.ndarray]
    method: str
    history: list[dict]
    converged: bool
    iterations: int
    wall_time: float
    info: dict = field(default_factory=dict)

    def reconstruct(self, data: str | None = None):
        """The model value of data set ``data`` (an array), or all of them (a dict)."""
        values = self.model.contract(self.tensors)
        if data is None:
            return values
        if data not in values:
            raise TncError(f"no data set `{data}`; the model fits {', '.join(values)}")
        return values[data]

    def title(self) -> str:
        return f"{self.method} fit of coupled model `{self.model.name or '<python>'}`"

    def save(self, path) -> None:
        """Write an ``.npz``: the tensors, and as JSON each network's source and the model."""
        save_coupled(self, path)


# -- the public entry point -----------------------------------------------------------------
@budgeted
def fit_model(model, data: dict, method: str = "als", *, mask=None, name=None,
              sizes=None, settings=None, **options) -> CoupledResult:
    """Fit a coupled model to ``data`` (data name -> array or SparseTensor).

    ``model``: a :class:`~tnc.models.model.CoupledModel`, or tnc text / a path with a
    ``model`` block (``name`` picks one; ``sizes`` and ``settings`` as in
    :func:`~tnc.models.model.compile_model`); sizes the headers leave open are read
    off the data. ``mask``: data name -> boolean array (True = observed) or
    ``"nan"``; a :class:`numpy.ma.MaskedArray`'s hidden entries are missing too
    (AND with its mask); whole slices may be missing (ALS: ``missing="em"``,
    ``"wls"`` or ``"auto"``). Unobserved entries never influence the fit;
    ``rel_error`` and ``rel_errors`` are over the observed entries.
    ``options``: fields of :class:`CoupledOptions` (``restarts=3``: the best of
    three starts, ``info["restarts"]``). ``masks=`` is the old name of ``mask``
    (deprecated); ``memory_limit`` (bytes, ``"auto"`` or None) bounds every
    allocation the fit checks. The result's ``history`` holds one record per sweep or iteration
    (:mod:`tnc.fitting.records`). Data of torch, jax or cupy come back as tensors of their
    library and device; the fit runs in float64 and the tensors come back in the data's
    float dtype (float32 data: float32 tensors; mixed: numpy's promotion; integers:
    float64). Complex data are refused (coupled fits are real).
    """
    like, dtype = _data_kind(data, mask, method, options.get("init"))
    result = _fit_model(model, data, method, mask, name, sizes, settings, options)
    result.tensors = {k: v.astype(dtype, copy=False) for k, v in result.tensors.items()}
    return result if like is None else to_library(result, like)


def _data_kind(data, mask, method, init) -> tuple:
    """``(foreign array or None, the float dtype the tensors come back in)`` of
    :func:`fit_model`'s data and starting tensors, by the dtype policy every method
    follows (:func:`tnc.fitting.dtypes.promoted`, real dtypes only): a TncError names
    a complex data set, an integer starting tensor or an unsupported dtype."""
    if not isinstance(data, dict):
        return None, np.dtype(np.float64)
    arrays = {f"data {k}": v for k, v in data.items() if not isinstance(v, SparseTensor)}
    if isinstance(mask, dict):
        arrays.update({f"mask {k}": v for k, v in mask.items()})
    values = {k: v.values if isinstance(v, SparseTensor) else v for k, v in data.items()}
    values = {k: v if hasattr(v, "dtype") else np.asarray(v, dtype=float) for k, v in values.items()}
    what = f"coupled {method}" if isinstance(method, str) else "coupled"
    for key, value in values.items():
        if backend.dtype_of(value).kind == "c":
            raise TncError(f"method {what!r} fits real data; data set `{key}` is "
                           f"{backend.dtype_of(value)} (fit complex data with tnc.fit)")
    init = init.tensors if isinstance(init, CoupledResult) else init
    dtype = promoted(np.float64 if not values else np.result_type(
        *[fit_dtype(backend.dtype_of(v), what, REAL, f"data set `{k}`") for k, v in values.items()]),
        init, {}, what, REAL)
    return foreign(arrays), dtype


def _fit_model(model, data, method, mask, name, sizes, settings, options) -> CoupledResult:
    """:func:`fit_model` on the data's numpy values, in float64."""
    options = renamed(options, "fit_model", MODEL_ALIASES)
    masks = given_once(mask, options, "mask", "fit_model")
    if method not in ENGINES:
        raise TncError(f"method must be one of {', '.join(ENGINES)}, got {method!r}")
    chosen = checked_options(validated(CoupledOptions, options, "fit_model"), method)
    if isinstance(model, CoupledModel):
        if sizes or settings:
            raise TncError("sizes and settings apply to model text; this model is compiled "
                           "(give them to tnc.compile_model)")
        targets, masks = _targets(model.data_names, data, masks or {})
        model = model_for_data(model, targets)
    else:
        text, filename = read_source(model)
        definition = pick_model(parse(text, filename), name)
        wanted = [s.data for s in definition.statements if isinstance(s, ast.FitStmt)]
        targets, masks = _targets(wanted, data, masks or {})
        model = compile_for_data(text, filename, definition.name, sizes or {}, targets,
                                 settings or {})
    return at_unit_scale(method, model, targets, masks, chosen)


def at_unit_scale(method: str, model: CoupledModel, targets, masks, options) -> CoupledResult:
    """:func:`best_of_restarts` on the data times ONE common factor (per-set factors
    would change the data sets' weighting) that brings their observed RMS to about 1,
    the result scaled back (:mod:`tnc.fitting.rescale`), so ``c * data`` gives ``c`` times
    the fit. ALS uses a power of two (exact; 1 for unit-size data, no copy); GCP the
    exact reciprocal RMS, because L-BFGS-B's ``gtol`` and its ``ftol`` below an
    objective of 1 are absolute. Only least-squares models without ``tv`` are
    rescaled (a smoothed total variation and the other losses have scales of their
    own); ``l2`` weights, given starts, the imputer and the callback are converted."""
    engine = ENGINES[method]
    if model.tv or any(t.loss.homogeneous != 2 for t in model.terms):
        return best_of_restarts(engine, model, targets, masks, options)
    observed = sum(v.size if masks[k] is None else int(masks[k].sum())
                   for k, v in targets.items())
    rescale = Rescale.of([t.network for t in model.terms], list(targets.values()), observed,
                         exact=method == "gcp")
    if rescale.identity:
        return best_of_restarts(engine, model, targets, masks, options)
    names = list(model.params)
    scaled_model = replace(model, l2=rescale.l2(model.l2, names))
    options = rescale.options(options, names)
    if options.imputer is not None:
        options = replace(options, imputer=_scaled_imputer(rescale, options.imputer))
    result = best_of_restarts(engine, scaled_model, {k: rescale.data(v) for k, v in
                                                     targets.items()}, masks, options)
    result.model = model
    result.info["restart_objectives"] = [rescale.loss(v)
                                         for v in result.info["restart_objectives"]]
    return rescale.result(result)


def _scaled_imputer(rescale: Rescale, imputer):
    """``imputer`` (data's units) called from a fit at ``rescale``'s units."""
    def scaled(name, tensors, value):
        return rescale.scale * np.asarray(imputer(name, rescale.to_data(tensors),
                                                  value / rescale.scale))
    return scaled


def checked_options(options: CoupledOptions, method: str) -> CoupledOptions:
    """``options`` after checking ``missing``, ``imputer`` and ``restarts``."""
    if options.missing not in MISSING_MODES:
        raise TncError(f"missing must be one of {', '.join(map(repr, MISSING_MODES))}, got "
                       f"{options.missing!r}")
    if options.imputer is not None and options.missing == "wls":
        raise TncError("an imputer fills missing entries by EM; weighted least squares "
                       "(missing='wls') leaves them out: use missing='em' with an imputer")
    if options.imputer is not None and method != "als":
        raise TncError(f"an imputer is an ALS-EM option; method={method!r} does not impute")
    if not isinstance(options.restarts, int) or options.restarts < 1:
        raise TncError(f"restarts must be a positive integer, got {options.restarts!r}")
    return options


MISSING_MODES = ("em", "wls", "auto")


def best_of_restarts(engine, model, targets, masks, options: CoupledOptions) -> CoupledResult:
    """The fit with the lowest final objective over ``options.restarts`` runs of ``engine``
    from seeds ``seed, seed + 1, ...`` (a given ``init`` only for the first)."""
    start, best, finals = time.perf_counter(), None, []
    for k in range(options.restarts):
        seed = options.seed if options.seed is None else options.seed + k
        run = replace(options, seed=seed, init=options.init if k == 0 else "random")
        result = engine(model, targets, masks, run)
        finals.append(final_objective(result))
        if best is None or finals[-1] < final_objective(best):
            best = result
    best.info.update(restarts=options.restarts, restart_objectives=finals)
    best.wall_time = time.perf_counter() - start
    return best


def final_objective(result: CoupledResult) -> float:
    """The penalised objective after the last sweep or iteration (inf if none)."""
    return result.history[-1]["loss"] if result.history else math.inf


def _targets(wanted, data, masks) -> tuple[dict, dict]:
    if not isinstance(data, dict):
        raise TncError("data must be a dict data name -> array, e.g. {'T1': X1, 'T2': X2}")
    missing = [d for d in wanted if d not in data]
    unknown = [d for d in [*data, *masks] if d not in wanted]
    if missing or unknown:
        raise TncError(f"the model fits data sets {', '.join(wanted)}; "
                       + (f"missing {', '.join(missing)}" if missing else "")
                       + ("; " if missing and unknown else "")
                       + (f"unknown {', '.join(dict.fromkeys(unknown))}" if unknown else ""))
    targets, clean_masks = {}, {}
    for key in wanted:
        value, mask = with_array_mask(data[key], masks.get(key))
        value = value.to_dense() if isinstance(value, SparseTensor) else as_target(value)
        targets[key], clean_masks[key] = split_missing(value, mask)
    return targets, clean_masks


def model_for_data(model: CoupledModel, targets: dict) -> CoupledModel:
    """``model`` itself when its shapes fit the data, else recompiled with sizes read off it."""
    if all(t.network.output_shape == targets[t.data].shape for t in model.terms):
        return model
    if model.source is None:
        term = next(t for t in model.terms if t.network.output_shape != targets[t.data].shape)
        raise TncError(f"network `{term.network.name}` has output shape "
                       f"{term.network.output_shape} but data set `{term.data}` has shape "
                       f"{targets[term.data].shape}")
    return compile_for_data(model.source, model.filename, model.name, model.sizes, targets,
                            model.settings)


def compile_for_data(text, filename, name, sizes, targets, settings=None) -> CoupledModel:
    """Compile model block ``name`` with ``settings`` (header parameter values), each
    network's open sizes solved from its data set's shape (:func:`tnc.lang.sizes.solve_sizes`,
    as :func:`tnc.fit` does: no compiles with stand-in sizes), one compile at the end.
    A size shared by two networks must come out the same from both data sets."""
    module = parse(text, filename)
    definitions = {d.name: d for d in module.networks}
    fits = [s for s in pick_model(module, name).statements if isinstance(s, ast.FitStmt)]
    bound: dict[str, int] = {}
    for statement in fits:
        definition = definitions.get(statement.network)
        if definition is None:
            break                      # compile_model reports the unknown network
        mine = {p.name for p in definition.params}
        own = {k: v for k, v in {**sizes, **bound}.items() if k in mine}
        read = _sizes_from_shape(text, filename, definition, targets[statement.data].shape,
                                 own, {})
        read = {k: v for k, v in read.items() if k in mine}
        for key, value in read.items():
            if bound.setdefault(key, value) != value:
                raise TncError(f"size `{key}` would be both {bound[key]} and {value} "
                               f"(read off data set `{statement.data}`)")
    model = compile_model(text, name=name, filename=filename, settings=settings,
                          **{**sizes, **bound})
    for term in model.terms:
        if term.network.output_shape != targets[term.data].shape:
            raise TncError(f"network `{term.network.name}` has output shape "
                           f"{term.network.output_shape} but data set `{term.data}` has "
                           f"shape {targets[term.data].shape}")
    return model


# -- shared pieces: start, penalties, measures ------------------------------------------------
def initial_tensors(model: CoupledModel, targets: dict, masks: dict, init, seed) -> dict:
    """Random tensors scaled so each network's norm is about its data's (geometric mean),
    or given ones (checked)."""
    shapes = model.params
    if isinstance(init, CoupledResult):
        init = init.tensors
    if isinstance(init, dict):
        tensors = model.random(seed)
        for key, array in init.items():
            if key not in shapes:
                raise TncError(f"init: `{key}` is not a parameter of the model")
            array = np.asarray(array, dtype=float)
            if array.shape != shapes[key]:
                raise TncError(f"init: `{key}` must have shape {shapes[key]}, got {array.shape}")
            check_finite(array, f"init: `{key}`")
            tensors[key] = array.copy()
        return tensors
    if init != "random":
        raise TncError(f"init must be 'random' or a dict of arrays, got {init!r}")
    tensors = {k: (np.abs(v) if k in model.nonneg or _bounded_names(model, k) else v)
               for k, v in model.random(seed).items()}
    logs = []
    values = model.contract(tensors)
    for term in model.terms:
        observed = masks[term.data].mean() if masks[term.data] is not None else 1.0
        data_norm = np.linalg.norm(targets[term.data]) / math.sqrt(max(observed, 1e-12))
        model_norm = np.linalg.norm(values[term.data])
        if data_norm > 0 and model_norm > 0:
            logs.append(math.log(data_norm / model_norm))
    if not logs:
        return tensors
    log_factor, split = sum(logs) / len(logs), start_exponents(model)
    return {k: v * math.exp(log_factor * split[k]) for k, v in tensors.items()}


def start_exponents(model: CoupledModel) -> dict[str, float]:
    """How a random start shares a common factor ``f`` among the tensors: each ``G``
    times ``f ** x_G`` scales every network's model by ``f`` (:func:`tnc.fitting.rescale.exponents`),
    so starts, and fits, of ``c * data`` are ``c`` times those of the data; where no
    such split exists, every tensor takes ``f ** (1 / mean uses per network)``."""
    found = exponents([t.network for t in model.terms])
    if found is not None:
        return found
    uses = [sum(o.kind == "param" for o in t.network.occurrences) for t in model.terms]
    return {k: 1.0 / max(1.0, sum(uses) / len(uses)) for k in model.params}


def _bounded_names(model: CoupledModel, key: str) -> bool:
    return any(t.loss.model_lower_bound is not None and key in t.network.params
               for t in model.terms)


def penalty(model: CoupledModel, tensors: dict, smoothing: float) -> float:
    """The l2 and tv penalties of ``tensors``."""
    value = sum(w * float(np.vdot(tensors[k], tensors[k])) for k, w in model.l2.items() if w)
    for key, (weight, axis) in model.tv.items():
        value += weight * total_variation(tensors[key], axis, smoothing)[0]
    return value


def measure(model: CoupledModel, tensors: dict, targets: dict, masks: dict) -> dict:
    """``rel_error`` over all data sets, ``rel_errors`` per data set and the data-fit
    terms of a gaussian objective (``sse``), from one contraction per network."""
    values = model.contract(tensors)
    errors, norms, per = 0.0, 0.0, {}
    for term in model.terms:
        residual = targets[term.data] - values[term.data]
        if masks[term.data] is not None:
            residual = np.where(masks[term.data], residual, 0.0)
        err, norm = squared_norm(residual), squared_norm(targets[term.data])
        per[term.data] = math.sqrt(err / norm) if norm > 0 else math.sqrt(err)
        errors, norms = errors + err, norms + norm
    return {"rel_error": math.sqrt(errors / norms) if norms > 0 else math.sqrt(errors),
            "rel_errors": per, "values": values}


# -- ALS ----------------------------------------------------------------------------------------
class CoupledALS:
    """One :class:`tnc.fitting.als.Fit` per data set, all sharing one dict of tensors."""

    def __init__(self, model: CoupledModel, targets, masks, tensors, optimize,
                 smoothing: float = 1e-3, missing: str = "em"):
        self.model, self.tensors, self.smoothing = model, tensors, smoothing
        self.fits = []
        for term in model.terms:
            net = term.network
            uses = Counter(o.name for o in net.occurrences if o.kind == "param")
            tied = [n for n, c in uses.items() if c > 1]
            if tied:
                raise TncError(f"ALS needs each parameter used once per network, but `{tied[0]}`"
                               f" is used {uses[tied[0]]} times in `{net.name}`; use method='gcp'")
            if net.data:
                raise TncError(f"network `{net.name}` has data tensors; coupled ALS fits "
                               "networks without them (use method='gcp')")
            problem = FitProblem(net, targets[term.data], masks[term.data], {})
            order = list(net.params)
            settings = als.Settings(order, {n: 0.0 for n in order}, set(), missing)
            self.fits.append(als.Fit(problem, als.als_model(net, order, optimize), settings,
                                     tensors, masks[term.data]))
        self.carriers = {key: [k for k, t in enumerate(model.terms) if key in t.network.params]
                         for key in model.params}

    def impute(self, values: dict, imputer) -> None:
        """EM step for every data set with missing entries fitted by EM (not WLS)."""
        for term, fit in zip(self.model.terms, self.fits):
            if fit.mode == "em":
                value = values[term.data] if imputer is None else imputer(
                    term.data, self.tensors, values[term.data])
                fit.impute(value)

    def update(self, key: str) -> None:
        """Exact penalised least-squares update of tensor ``key`` over every data set: the
        weighted sum of each network's normal equations (:meth:`tnc.fitting.als.Fit.contributions`;
        in per-row form, :func:`as_rows`, when some network's are per row (WLS))."""
        pieces, roles = [], None
        for k in self.carriers[key]:
            fit, weight = self.fits[k], self.model.terms[k].weight
            if roles is None:
                roles = fit.model.updates[key].roles
            elif fit.model.updates[key].roles != roles:
                raise TncError(f"ALS: the legs of `{key}` play different roles in `"
                               f"{self.model.terms[self.carriers[key][0]].network.name}` and `"
                               f"{fit.problem.network.name}` (output/summed); use method='gcp'")
            rhs, gram, axes = fit.contributions(key)
            pieces.append((weight, rhs, gram))
        rhs_sum, gram_sum = sum_normal_equations(pieces)
        l2, nonneg = self.model.l2.get(key, 0.0), key in self.model.nonneg
        if key in self.model.tv:
            tv_weight, tv_axis = self.model.tv[key]
            tensor = solve_with_tv(rhs_sum, gram_sum, axes, self.tensors[key], l2, nonneg,
                                   tv_weight, tv_axis, self.smoothing)
        else:
            _, tensor = als.solve_tensor(rhs_sum, gram_sum, axes, self.tensors[key], l2, nonneg)
        for k in self.carriers[key]:
            self.fits[k].set_tensor(key, tensor)


def sum_normal_equations(pieces: list) -> tuple[np.ndarray, np.ndarray]:
    """``(sum w rhs, sum w gram)`` of ``(w, rhs, gram)`` normal equations of one tensor laid
    out alike: as given if all have one shape, else every one in per-row form (:func:`as_rows`)."""
    if len({(rhs.shape, gram.shape) for _, rhs, gram in pieces}) > 1:
        pieces = [(w, *as_rows(rhs, gram)) for w, rhs, gram in pieces]
    rhs_sum = sum(w * rhs for w, rhs, _ in pieces)
    gram_sum = sum(w * gram for w, _, gram in pieces)
    return rhs_sum, gram_sum


def as_rows(rhs, gram) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations with ``n`` shared Grams (``rhs`` (n, m, b), ``gram`` (n or 1, b, b)) as
    ``n * m`` rows of their own (``(n * m, 1, b)``, ``(n * m, b, b)``), the rows in the same
    order; per-row ones (m = 1, n Grams) come back as they are.

    >>> rhs, gram = as_rows(np.ones((2, 3, 1)), np.array([[[1.0]], [[2.0]]]))
    >>> rhs.shape, gram.ravel()
    ((6, 1, 1), array([1., 1., 1., 2., 2., 2.]))
    """
    n, m, b = rhs.shape
    if m == 1 and gram.shape[0] == n:
        return rhs, gram
    return rhs.reshape(n * m, 1, b), row_grams(gram, n, m)


def row_grams(gram, n: int, m: int) -> np.ndarray:
    """``(n * m, b, b)``: each of the ``n`` Grams (``gram`` ``(n or 1, b, b)``) once per row of
    its ``m`` rows."""
    b = gram.shape[-1]
    return np.repeat(np.broadcast_to(gram, (n, b, b)), m, axis=0)


# -- ALS with a tv penalty: one majorised, exactly solved quadratic per update ---------------
def solve_with_tv(rhs, gram, axes: tuple, current, l2: float, nonneg: bool, tv_weight: float,
                  tv_axis: int, smoothing: float) -> np.ndarray:
    """The tensor minimising the normal equations' quadratic (``rhs`` (n, m, b), ``gram``
    (n, b, b), rows laid out along ``axes`` as in :meth:`tnc.fitting.als.Fit.contributions`; WLS's
    per-row equations are the case ``m = 1``, one Gram per row)
    plus ``l2 |G|^2`` plus ``tv_weight`` times the quadratic majoriser of the smoothed
    total variation along ``tv_axis`` at ``current`` (:mod:`tnc.fitting.tv`), shaped like ``current``.

    The minimiser solves ``(Gram (x) I + l2 I + tv_weight/2 L_w) g = rhs``: the block
    diagonal Gram operator plus the weighted difference Laplacian of every fibre along
    ``tv_axis``. It is assembled as one sparse matrix and solved exactly by sparse LU
    (its weights differ from fibre to fibre, so it does not separate into a Sylvester
    equation; an exact solve keeps every ALS update a descent step). Non-negative
    tensors get projected coordinate descent on the same system (:func:`nonneg_descent`).

    Fitting ``(0, 3)`` with ``|g - x|^2 + 2 |g_2 - g_1|`` (minimum ``(1, 2)``): one
    majorised step from ``(0, 3)``, then repeated steps:

    >>> rhs, gram, g = np.array([[[0.0], [3.0]]]), np.ones((1, 1, 1)), np.array([[0.0], [3.0]])
    >>> solve_with_tv(rhs, gram, (0, 1), g, 0.0, False, 2.0, 0, 0.0).ravel()
    array([0.6, 2.4])
    >>> for _ in range(60):
    ...     g = solve_with_tv(rhs, gram, (0, 1), g, 0.0, False, 2.0, 0, 1e-9)
    >>> g.ravel().round(6)
    array([1., 2.])
    """
    positions = row_positions(current.shape, axes)
    weights = majoriser_weights(current, tv_axis, smoothing)
    matrix = (gram_operator(gram, rhs.shape, l2)
              + (tv_weight / 2) * difference_laplacian(positions, weights, tv_axis))
    start = np.empty(current.size)
    start[positions] = current
    if nonneg:
        solution = nonneg_descent(matrix, rhs.reshape(-1), start,
                                  coupling_free_groups(positions, tv_axis, rhs.shape[-1]))
    else:
        solution = sparse_solve(matrix, rhs.reshape(-1))
    return np.ascontiguousarray(solution[positions])


def row_positions(shape: tuple, axes: tuple) -> np.ndarray:
    """For each entry of a tensor of ``shape`` (array of that shape), its position in the
    flattened rows of normal equations laid out along ``axes``.

    >>> row_positions((2, 3), (1, 0))
    array([[0, 2, 4],
           [1, 3, 5]])
    """
    laid_out = tuple(shape[a] for a in axes)
    return np.arange(int(np.prod(shape))).reshape(laid_out).transpose(np.argsort(axes))


def gram_operator(gram, rhs_shape: tuple, l2: float):
    """Sparse ``(N, N)`` matrix of ``rows @ gram + l2 rows`` on the flattened ``(n, m, b)`` rows:
    block diagonal, the ``m`` rows of batch ``i`` each with block ``gram[i]`` (``gram``
    ``(n or 1, b, b)``).

    >>> gram_operator(np.array([[[2.0]]]), (1, 2, 1), 0.5).toarray()
    array([[2.5, 0. ],
           [0. , 2.5]])
    """
    import scipy.sparse as sp
    n, m, b = rhs_shape
    blocks = row_grams(gram, n, m)
    base = (np.arange(n * m) * b)[:, None, None]
    rows = np.broadcast_to(base + np.arange(b)[:, None], blocks.shape)
    cols = np.broadcast_to(base + np.arange(b)[None, :], blocks.shape)
    size = n * m * b
    matrix = sp.coo_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())), shape=(size, size))
    return (matrix + l2 * sp.identity(size)).tocsr()


def difference_laplacian(positions, weights, axis: int):
    """Sparse ``L_w = sum_e w_e (u_i - u_j)(u_i - u_j)^T`` over neighbours ``i, j`` along
    ``axis`` (``positions``: each entry's flat index; ``weights``: one per difference):
    the Hessian of ``sum w d^2 / 2``.

    >>> difference_laplacian(np.arange(3), np.array([1.0, 2.0]), 0).toarray()
    array([[ 1., -1.,  0.],
           [-1.,  3., -2.],
           [ 0., -2.,  2.]])
    """
    import scipy.sparse as sp
    ndim = positions.ndim
    first = positions[along(axis, ndim, slice(None, -1))].ravel()
    second = positions[along(axis, ndim, slice(1, None))].ravel()
    w = weights.ravel()
    rows = np.concatenate([first, second, first, second])
    cols = np.concatenate([first, second, second, first])
    values = np.concatenate([w, w, -w, -w])
    return sp.coo_matrix((values, (rows, cols)), shape=(positions.size,) * 2).tocsr()


def sparse_solve(matrix, rhs) -> np.ndarray:
    """``matrix^-1 rhs`` by sparse LU; a least-squares solution if ``matrix`` is singular."""
    from scipy.sparse.linalg import lsmr, splu
    try:
        return splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(rhs)
    except RuntimeError:                          # exactly singular: no unique minimiser
        return lsmr(matrix, rhs, atol=1e-14, btol=1e-14, maxiter=10 * rhs.size)[0]


def coupling_free_groups(positions, tv_axis: int, n_bond: int) -> list[np.ndarray]:
    """Flat positions split so no two of a group are coupled: the Gram blocks couple
    entries of one row (different bond columns), the Laplacian neighbours along
    ``tv_axis`` (different parity), so each (bond column, parity) group can be
    updated at once.

    >>> [g.tolist() for g in coupling_free_groups(np.arange(4).reshape(2, 2), 1, 2)]
    [[0, 2], [1, 3]]
    """
    parity = np.empty(positions.size, dtype=int)
    parity[positions] = np.indices(positions.shape)[tv_axis] % 2
    key = (np.arange(positions.size) % n_bond) * 2 + parity
    return [np.flatnonzero(key == k) for k in np.unique(key)]


def nonneg_descent(matrix, rhs, start, groups, sweeps: int = 50, tol: float = 1e-12):
    """Non-negative ``g`` minimising ``g A g - 2 g rhs`` by exact coordinate steps projected on
    ``g >= floor``, one group of uncoupled coordinates at a time (HALS on the full system:
    every step lowers the quadratic, so ALS stays monotone)."""
    g = np.maximum(np.asarray(start, dtype=float), 0.0)
    diag = np.maximum(matrix.diagonal(), 1e-300)
    floor = 1e-14 * max(float(np.max(np.abs(g))), 1e-300)   # a zeroed entry could not recover
    blocks = [(rows, matrix[rows]) for rows in groups]
    for _ in range(sweeps):
        change = 0.0
        for rows, block in blocks:
            new = np.maximum(g[rows] + (rhs[rows] - block @ g) / diag[rows], floor)
            change += float(np.sum((new - g[rows]) ** 2))
            g[rows] = new
        if change <= tol * max(float(np.sum(g * g)), 1e-300):
            break
    return g


def run_als(model: CoupledModel, targets, masks, options: CoupledOptions) -> CoupledResult:
    """Penalised ALS (EM or WLS for missing entries) on a coupled model of least-squares data sets."""
    start = time.perf_counter()
    wrong = [t for t in model.terms if t.loss.name != "gaussian"]
    if wrong:
        raise TncError(f"ALS fits least-squares data sets; `{wrong[0].data}` has loss "
                       f"{wrong[0].loss.name!r}; use method='gcp'")
    if model.tv and not options.tv_smoothing > 0:
        raise TncError("ALS takes a tv penalty through its smoothed form; tv_smoothing must be "
                       f"> 0, got {options.tv_smoothing!r}")
    tensors = initial_tensors(model, targets, masks, options.init, options.seed)
    engine = CoupledALS(model, targets, masks, tensors, options.optimize, options.tv_smoothing,
                        "em" if options.missing == "auto" and options.imputer else options.missing)
    order = list(model.params)
    history, converged, previous = [], False, math.inf
    values = model.contract(tensors)
    with Progress(options.max_iter, desc="coupled als", enabled=options.progress) as bar, \
            kernels.blas_serial(*targets.values()):
        for sweep in range(1, options.max_iter + 1):
            engine.impute(values, options.imputer)
            for key in order:
                engine.update(key)
            measured = measure(model, tensors, targets, masks)
            values = measured.pop("values")
            objective = _objective(model, tensors, values, targets, masks, options.tv_smoothing)
            entry = record(sweep, objective, measured.pop("rel_error"),
                           time.perf_counter() - start, **measured)
            history.append(entry)
            bar.update(loss=objective)
            converged = (abs(previous - objective) <= options.tol * max(abs(objective), 1e-300)
                         or entry["rel_error"] < als.EXACT_FIT)
            previous = objective
            if wants_stop(options.callback, {**entry, "tensors": tensors}) or converged:
                break
    return CoupledResult(model, dict(tensors), "als", history, converged, len(history),
                         time.perf_counter() - start, {"seed": options.seed, "missing": {
                             t.data: f.mode for t, f in zip(model.terms, engine.fits)}})


def _objective(model, tensors, values, targets, masks, smoothing) -> float:
    total = penalty(model, tensors, smoothing)
    for term in model.terms:
        loss = term.loss.value(values[term.data], targets[term.data])
        if masks[term.data] is not None:
            loss = np.where(masks[term.data], loss, 0.0)
        total += term.weight * float(np.sum(loss))
    return total


# -- GCP ----------------------------------------------------------------------------------------
class CoupledObjective:
    """``tensors -> (objective, gradients)``: per-network reverse passes, summed per name."""

    def __init__(self, model: CoupledModel, targets, masks, options: CoupledOptions):
        self.model, self.smoothing = model, options.tv_smoothing
        self.parts = []
        for term in model.terms:
            check_loss_data(term.loss, targets[term.data], masks[term.data])
            self.parts.append(DenseObjective(term.network, {}, targets[term.data],
                                             masks[term.data], term.loss, options.optimize))

    def __call__(self, tensors: dict):
        grads = {k: np.zeros_like(v) for k, v in tensors.items()}
        total = 0.0
        for term, part in zip(self.model.terms, self.parts):
            value, own = part({k: tensors[k] for k in term.network.params})
            total += term.weight * value
            for key, g in own.items():
                grads[key] += term.weight * g
        for key, weight in self.model.l2.items():
            total += weight * float(np.vdot(tensors[key], tensors[key]))
            grads[key] += 2 * weight * tensors[key]
        for key, (weight, axis) in self.model.tv.items():
            value, g = total_variation(tensors[key], axis, self.smoothing)
            total += weight * value
            grads[key] += weight * g
        return total, grads


def run_gcp(model: CoupledModel, targets, masks, options: CoupledOptions) -> CoupledResult:
    """L-BFGS-B on the whole penalised objective, any loss per data set."""
    start = time.perf_counter()
    objective = CoupledObjective(model, targets, masks, options)
    tensors = initial_tensors(model, targets, masks, options.init, options.seed)
    lower = {k: 0.0 if k in model.nonneg or _bounded_names(model, k) else None for k in tensors}
    with Progress(options.max_iter, desc="coupled gcp", enabled=options.progress) as bar:
        tensors, history, converged, info = run_lbfgsb(objective, tensors, options, lower, bar)
    tensors = {k: v.copy() for k, v in tensors.items()}
    measured = measure(model, tensors, targets, masks)
    measured.pop("values")
    history[-1].update(measured)
    return CoupledResult(model, tensors, "gcp", history, converged, len(history),
                         time.perf_counter() - start, {"seed": options.seed, **info})


ENGINES = {"als": run_als, "gcp": run_gcp}


# -- saving and loading ---------------------------------------------------------------------------
def save_coupled(result: CoupledResult, path) -> None:
    model = result.model
    terms = []
    for term in model.terms:
        if term.network.source is None:
            raise TncError(f"network `{term.network.name}` was not compiled from text, so the "
                           "result cannot be saved")
        terms.append({"source": term.network.source, "filename": term.network.filename,
                      "network": term.network.name, "sizes": term.network.sizes,
                      "data": term.data, "loss": term.loss.name, "weight": term.weight})
    meta = {"format": FORMAT_VERSION, "kind": "coupled", "terms": terms, "l2": model.l2,
            "tv": {k: list(v) for k, v in model.tv.items()}, "nonneg": sorted(model.nonneg),
            "name": model.name, "source": model.source, "filename": model.filename,
            "sizes": model.sizes, "settings": model.settings, "method": result.method,
            "history": result.history, "converged": result.converged,
            "iterations": result.iterations, "wall_time": result.wall_time, "info": result.info}
    write_archive(path, meta, {"tensor": result.tensors})


def load_coupled(path) -> CoupledResult:
    """Read a result written by :meth:`CoupledResult.save`: every field checked, each
    network compiled from its saved text (never read as a path), the tensors checked
    against the model's shapes."""
    meta, groups = read_archive(path, "coupled", COUPLED_FIELDS)
    if meta["source"] is not None:           # kept for refits: it must be text, not a path
        rebuilt(path, lambda: parse(meta["source"], meta["filename"]),
                "its model source does not parse")
    terms = [Term(compile_saved(path, t["source"], name=t["network"], filename=t["filename"],
                                **t["sizes"]), t["data"],
                  rebuilt(path, lambda t=t: _loss(t["loss"]), "its loss"), t["weight"])
             for t in meta["terms"]]
    model = rebuilt(path, lambda: coupled_model(
        terms, l2=meta["l2"], tv={k: tuple(v) for k, v in meta["tv"].items()},
        nonneg=meta["nonneg"], name=meta["name"], source=meta["source"],
        filename=meta["filename"], sizes=meta["sizes"], settings=meta.get("settings", {})),
        "its model")
    tensors = groups.get("tensor", {})
    check_shapes(path, model.params, tensors)
    return CoupledResult(model, tensors, meta["method"], meta["history"], meta["converged"],
                         meta["iterations"], meta["wall_time"], meta.get("info", {}))


_TV = Field(lambda v: isinstance(v, dict) and all(
    isinstance(x, list) and len(x) == 2 and is_number(x[0]) and is_int(x[1]) for x in v.values()),
    "an object of [weight, axis] pairs")
_TERM = {"source": TEXT, "filename": TEXT_OR_NULL, "network": TEXT, "sizes": SIZES,
         "data": TEXT, "loss": TEXT, "weight": NUMBER}
COUPLED_FIELDS = {"terms": records_of(_TERM, "a non-empty list of terms (source, filename, "
                                              "network, sizes, data, loss, weight)"),
                  "l2": NUMBERS, "tv": _TV, "nonneg": TEXTS, "name": TEXT_OR_NULL,
                  "source": TEXT_OR_NULL, "filename": TEXT_OR_NULL, "sizes": SIZES,
                  "method": TEXT, "settings": OBJECT}


def _loss(name: str):
    from tnc.fitting.losses import get_loss
    return get_loss(name)
