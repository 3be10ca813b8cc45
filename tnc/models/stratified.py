"""Stratified non-negative tensor factorization (Stratified-NTF) and plain NTF.

The model of Sietsema, Vural, Chapman, Yaniv and Needell (2024). Stratum ``s``
holds ``m_s`` samples, ``A_s`` of shape ``(m_s, d_1, ..., d_K)``; every sample
of a stratum shares a rank-``l`` strata feature, and all strata share ``r``
rank-one global topics, weighted per sample::

    A_s  ~  1_{m_s} o [[V_s1, ..., V_sK]]   +   [[W_s, H_1, ..., H_K]]
            (strata features, rank l)          (topics, rank r)

``V_sk``: ``(d_k, l)``, ``W_s``: ``(m_s, r)``, ``H_k``: ``(d_k, r)``; ``[[...]]``
is a CP sum of outer products. Both parts are tnc networks (see
:func:`model_text`), and every factor ``G`` is fitted by the same
multiplicative update ``G <- G * env_G(A_s) / env_G(B_s)``: ``env_G`` is the
network with ``G`` deleted contracted with the data ``A_s`` or with the model
``B_s`` (a Lee-Seung step, so the loss never increases and factors stay
non-negative). With ``tv > 0`` the topics' total variation along each mode is
penalised through a quadratic majoriser of its smoothed form.

Plain NTF (non-negative CP by the same updates) is the one-stratum model
without strata features: :func:`ntf`.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> strata = [rng.random((6, 4, 5)), rng.random((8, 4, 5))]
    >>> result = stratified_ntf(strata, rank_specific=1, n_topics=2, max_iter=20,
    ...                         progress=False)
    >>> result.parameter_count == parameter_count([a.shape for a in strata], 1, 2)
    True
    >>> result.reconstruct(1).shape
    (8, 4, 5)
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tnc.lang.compiler import compile_all
from tnc.errors import TncError
from tnc.fitting.front import check_finite, real_array, refuse_masked
from tnc.engine.network import Network
from tnc.engine.plan import check_allocation
from tnc.options import check_arguments
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import (NTF_ALIASES, STRATIFIED_ALIASES, budgeted, given_once, record,
                                 renamed)
from tnc.fitting.result import (COUNT, FORMAT_VERSION, HISTORY, Field, Result, check_shapes,
                     damaged, is_number, read_archive, write_archive)
from tnc.fitting.tv import majoriser

EPS = 1e-12          # added to every update's denominator
TV_SMOOTHING = 1e-3  # |x| is smoothed to sqrt(x^2 + TV_SMOOTHING^2)


@dataclass(repr=False)
class StratifiedResult(Result):
    """A fitted Stratified-NTF (or NTF) model.

    ``features[s][k]``: ``(d_k, l)``; ``weights[s]``: ``(m_s, r)``;
    ``topics[k]``: ``(d_k, r)`` with unit-norm columns. ``history``: one record per
    iteration (:mod:`tnc.fitting.records`: ``iteration`` from 1, ``time``; the
    start's measures are ``info["initial"]``) with ``loss`` (the penalised objective
    ``0.5 * sum_s ||A_s - B_s||^2 + tv * TV``), ``sse`` (the sum of squared
    errors), ``rel_error`` (``sqrt(sse) / ||A||``) and ``tv`` (the topics'
    smoothed total variation).
    """

    features: list[list[np.ndarray]]
    weights: list[np.ndarray]
    topics: list[np.ndarray]
    history: list[dict]
    parameter_count: int
    converged: bool
    iterations: int
    wall_time: float
    info: dict = field(default_factory=dict)

    @property
    def sse(self) -> float:
        return self.history[-1]["sse"]

    def feature(self, s: int) -> np.ndarray:
        """Stratum ``s``'s strata feature, shape ``(d_1, ..., d_K)`` (zeros when ``l = 0``)."""
        shape = tuple(h.shape[0] for h in self.topics)
        if not self.features[s]:
            return np.zeros(shape)
        return _cp_dense(self.features[s])

    def topic(self, j: int) -> np.ndarray:
        """Global topic ``j`` as a dense tensor of shape ``(d_1, ..., d_K)``."""
        return _cp_dense([h[:, j:j + 1] for h in self.topics])

    def reconstruct(self, s: int) -> np.ndarray:
        """The model of stratum ``s``, shape ``(m_s, d_1, ..., d_K)``."""
        return self.feature(s)[None] + _cp_dense([self.weights[s], *self.topics])


    def title(self) -> str:
        return (f"stratified-NTF of {len(self.weights)} strata, {self.topics[0].shape[1]} "
                f"topics, strata features of rank {self.info.get('rank_specific', 0)}, "
                f"tv {self.info.get('tv', 0.0):g}")

    def save(self, path) -> None:
        """Write an ``.npz``: every factor, and as JSON the history and details
        (read it back with :func:`load_stratified`)."""
        meta = {"format": FORMAT_VERSION, "kind": "stratified", "history": self.history,
                "parameter_count": self.parameter_count, "converged": self.converged,
                "iterations": self.iterations, "wall_time": self.wall_time, "info": self.info,
                "strata": len(self.weights), "features": len(self.features[0])}
        write_archive(path, meta, {
            "weight": {str(s): w for s, w in enumerate(self.weights)},
            "topic": {str(k): h for k, h in enumerate(self.topics)},
            "feature": {f"{s}.{k}": v for s, own in enumerate(self.features)
                        for k, v in enumerate(own)}})


def load_stratified(path) -> StratifiedResult:
    """Read a result written by :meth:`StratifiedResult.save`.

        >>> import os, tempfile
        >>> result = ntf(np.ones((3, 2, 2)), rank=1, max_iter=2, progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "ntf.npz")
        >>> result.save(path)
        >>> np.allclose(load_stratified(path).reconstruct(0), result.reconstruct(0))
        True
    """
    meta, groups = read_archive(path, "stratified", STRATIFIED_FIELDS)
    check_shapes(path, _saved_shapes(path, meta, groups),
                 {f"{group}:{name}": array for group, named in groups.items()
                  for name, array in named.items()})
    held = sum(array.size for named in groups.values() for array in named.values())
    if held != meta["parameter_count"]:      # sizes the shapes alone leave free (d_k, m_s)
        raise damaged(path, f"its tensors hold {held} numbers, but it records "
                            f"parameter_count {meta['parameter_count']}")
    strata, features = meta["strata"], meta["features"]
    weights, topics = groups.get("weight", {}), groups.get("topic", {})
    return StratifiedResult(
        features=[[groups["feature"][f"{s}.{k}"] for k in range(features)]
                  for s in range(strata)],
        weights=[weights[str(s)] for s in range(strata)],
        topics=[topics[str(k)] for k in range(len(topics))], history=meta["history"],
        parameter_count=meta["parameter_count"], converged=meta["converged"],
        iterations=meta["iterations"], wall_time=meta["wall_time"], info=meta.get("info", {}))


def _saved_shapes(path, meta: dict, groups: dict) -> dict:
    """``"group:name"`` -> the shape each array of a saved result must have: topic ``k``
    ``(d_k, r)``, weight ``s`` ``(m_s, r)``, feature ``s.k`` ``(d_k, l)``, the sizes read
    off topic ``k``, weight ``s`` and feature ``0.0``; all 2-D."""
    for group, named in groups.items():
        for name, array in named.items():
            if array.ndim != 2:
                raise damaged(path, f"tensor {group}:{name} has shape {array.shape}, not 2-D")
    topics, weights = groups.get("topic", {}), groups.get("weight", {})
    if "0" not in topics or meta["features"] not in (0, len(topics)):
        raise damaged(path, f"{len(topics)} topic(s) saved, {meta['features']} features "
                            "per stratum recorded")
    rank = topics["0"].shape[1]
    first = groups.get("feature", {}).get("0.0")
    specific = first.shape[1] if first is not None else 0
    size = {k: topics[str(k)].shape[0] if str(k) in topics else 0 for k in range(len(topics))}
    return {**{f"topic:{k}": (size[k], rank) for k in size},
            **{f"weight:{s}": (weights[str(s)].shape[0] if str(s) in weights else 0, rank)
               for s in range(meta["strata"])},
            **{f"feature:{s}.{k}": (size[k], specific)
               for s in range(meta["strata"]) for k in range(meta["features"])}}


STRATIFIED_FIELDS = {
    "history": Field(lambda v: HISTORY.test(v) and bool(v) and all(
        is_number(v[-1].get(key)) for key in ("loss", "rel_error")),
        "a non-empty list of objects, the last with a numeric loss and rel_error"),
    "parameter_count": COUNT, "strata": Field(lambda v: COUNT.test(v) and v > 0,
                                              "a positive integer"),
    "features": COUNT}


def _cp_dense(factors: list[np.ndarray]) -> np.ndarray:
    """``sum_r outer(factors[0][:, r], factors[1][:, r], ...)``."""
    letters = "abcdefghijklmnopqrstuvwxyz"[:len(factors)]
    return np.einsum(",".join(c + "z" for c in letters) + "->" + letters, *factors)


# -- the model as tnc networks ------------------------------------------------------

def model_text(n_modes: int, rank_specific: int) -> str:
    """tnc text of one stratum's networks for ``n_modes`` non-sample modes.

    ``topics`` and ``features`` are the two parts of the model; ``env_<G>`` is
    the part holding ``G`` with ``G`` deleted and ``X`` in place of the output
    (its contraction is the MTTKRP of the update of ``G``). ``X`` stacks the
    data and the model along a leading index ``p`` of size 2, so one
    contraction gives both the numerator and the denominator of the update.

        >>> print(model_text(2, 0).splitlines()[2])
        network topics(M = 1, R = 1, D1 = 1, D2 = 1) {
    """
    modes = range(1, n_modes + 1)
    xs = [f"x{k}" for k in modes]
    header = "M = 1, R = 1, L = 1, " if rank_specific else "M = 1, R = 1, "
    header += ", ".join(f"D{k} = 1" for k in modes)
    indices = "index p: 2, m: M, r: R, " + ("l: L, " if rank_specific else "") + \
        ", ".join(f"x{k}: D{k}" for k in modes)
    topics = [("W", "m", "r")] + [(f"H{k}", f"x{k}", "r") for k in modes]
    features = [(f"V{k}", f"x{k}", "l") for k in modes]
    data = "data X(p, m, " + ", ".join(xs) + ")"
    parts = [_network("topics", header, indices, topics, "", ["m", *xs])]
    for name, *legs in topics:
        parts.append(_network(f"env_{name}", header, indices,
                              [t for t in topics if t[0] != name], data, ["p", *legs]))
    if rank_specific:
        parts.append(_network("features", header, indices, features, "", xs))
        for name, *legs in features:
            rest = [t for t in features if t[0] != name]
            parts.append(_network(f"env_{name}", header, indices, rest,
                                  data + ("" if rest else "\n    data U(l)"), ["p", *legs]))
    return "# Stratified-NTF: one stratum's model and the environments of its factors\n\n" + \
        "\n".join(parts)


def _network(name, header, indices, tensors, data, output) -> str:
    body = [f"    {indices}"]
    if tensors:
        body.append("    tensor " + ", ".join(f"{t}({', '.join(legs)})" for t, *legs in tensors))
    if data:
        body.append(f"    {data}")
    body.append("    output " + ", ".join(output))
    return f"network {name}({header}) {{\n" + "\n".join(body) + "\n}\n"


@functools.lru_cache(maxsize=64)
def stratum_networks(shape: tuple[int, ...], rank_specific: int, n_topics: int
                     ) -> dict[str, Network]:
    """The compiled networks of a stratum of ``shape = (m, d_1, ..., d_K)`` (cached).

        >>> nets = stratum_networks((5, 3, 4), 2, 3)
        >>> nets["env_H1"].equation, nets["features"].output_shape
        ('bc,ec,abde->adc', (3, 4))
    """
    sizes = {"M": shape[0], "R": n_topics}
    sizes.update({f"D{k}": d for k, d in enumerate(shape[1:], start=1)})
    if rank_specific:
        sizes["L"] = rank_specific
    return compile_all(model_text(len(shape) - 1, rank_specific), **sizes)


def _contract(network: Network, pool: dict) -> np.ndarray:
    """Contract ``network`` taking its tensors by name from ``pool``."""
    return network.contract({n: pool[n] for n in (*network.params, *network.data)})


# -- counting and checking ----------------------------------------------------------

def parameter_count(shapes, rank_specific: int, n_topics: int) -> int:
    """Number of fitted numbers of a Stratified-NTF of strata with these shapes.

    Plain NTF of one tensor is ``parameter_count([shape], 0, rank)``.

        >>> parameter_count([(10, 8, 8), (20, 8, 8)], 1, 3)   # 2*16 + 3*30 + 3*16
        170
        >>> parameter_count([(30, 8, 8)], 0, 4)               # 4 * (30 + 8 + 8)
        184
    """
    shapes = [tuple(s) for s in shapes]
    mode_total = sum(shapes[0][1:])
    return (len(shapes) * rank_specific * mode_total
            + n_topics * sum(s[0] for s in shapes) + n_topics * mode_total)


def check_strata(strata) -> list[np.ndarray]:
    """The strata as float arrays after checking they can be factorized together."""
    if isinstance(strata, np.ndarray) or not isinstance(strata, (list, tuple)) or not strata:
        raise TncError("strata must be a non-empty list of arrays of shape (m_s, d_1, ..., d_K)")
    arrays = []
    for s, stratum in enumerate(strata):
        refuse_masked(stratum, f"stratum {s}")          # as front.as_target, naming the stratum
        array = real_array(stratum, f"stratum {s}")
        if array.ndim < 2 or 0 in array.shape:
            raise TncError(f"stratum {s} must have shape (m_s, d_1, ..., d_K) with K >= 1 and "
                           f"no empty mode, got {array.shape}")
        if array.shape[1:] != np.shape(strata[0])[1:]:
            raise TncError(f"stratum {s} has modes {array.shape[1:]} but stratum 0 has "
                           f"{np.shape(strata[0])[1:]}; only the sample count may differ")
        check_finite(array, f"stratum {s}")
        if (array < 0).any():
            raise TncError(f"stratum {s} has {int((array < 0).sum())} negative entries; "
                           "non-negative factorization needs non-negative data")
        arrays.append(array)
    return arrays


# -- the fit --------------------------------------------------------------------------

class _State:
    """Factors, data and cached model parts of a fit in progress."""

    def __init__(self, strata, rank_specific, n_topics, seed):
        rng = np.random.default_rng(seed)
        self.strata = strata
        self.nets = [stratum_networks(a.shape, rank_specific, n_topics) for a in strata]
        modes = strata[0].shape[1:]
        self.topics = {f"H{k}": rng.random((d, n_topics)) for k, d in enumerate(modes, 1)}
        self.local = []
        for a in strata:
            own = {"W": rng.random((a.shape[0], n_topics))}
            if rank_specific:
                own.update({f"V{k}": rng.random((d, rank_specific))
                            for k, d in enumerate(modes, 1)})
                own["U"] = np.ones(rank_specific)
            self.local.append(own)
        self.models: list[np.ndarray | None] = [None] * len(strata)
        self.normalize_topics()
        for s, a in enumerate(strata):
            scale = a.mean() / max(self.model(s).mean(), EPS)
            for name in ("W", "V1"):
                if name in self.local[s]:
                    self.local[s][name] *= scale
            self.models[s] = None

    def pool(self, s: int) -> dict:
        return {**self.topics, **self.local[s]}

    def model(self, s: int) -> np.ndarray:
        """Stratum ``s``'s reconstruction ``B_s`` (cached until a factor of it changes)."""
        if self.models[s] is None:
            nets, pool = self.nets[s], self.pool(s)
            dense = _contract(nets["topics"], pool)
            if "features" in nets:
                dense = dense + _contract(nets["features"], pool)[None]
            self.models[s] = dense
        return self.models[s]

    def environments(self, s: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(env_name(A_s), env_name(B_s))``: numerator and denominator of an update."""
        net, pool = self.nets[s][f"env_{name}"], self.pool(s)
        both = _contract(net, {**pool, "X": np.stack([self.strata[s], self.model(s)])})
        return both[0], both[1]

    def normalize_topics(self) -> None:
        """Unit-norm topic columns, their scale moved into the weights (model unchanged)."""
        for name, h in self.topics.items():
            norms = np.maximum(np.linalg.norm(h, axis=0), EPS)
            self.topics[name] = h / norms
            for own in self.local:
                own["W"] = own["W"] * norms


def _update_local(state: _State, s: int, names) -> None:
    for name in names:
        num, den = state.environments(s, name)
        own = state.local[s]
        own[name] = own[name] * num / (den + EPS)
        state.models[s] = None


def _update_topic(state: _State, name: str, tv: float) -> None:
    """One multiplicative step of a shared topic factor ``H_k`` summed over the strata."""
    h = state.topics[name]
    num, den = np.zeros_like(h), np.zeros_like(h)
    for s in range(len(state.strata)):
        a, b = state.environments(s, name)
        num += a
        den += b
    if tv > 0:
        # (D h, A h) of the Laplacian D - A majorising TV at h; K = diag((Q h + c) / h)
        # + 2 tv D dominates the Hessian (D + A is positive semi-definite), so the
        # step h * (b + tv (D + A) h) / (Q h + c + 2 tv D h) cannot increase the loss
        degree, neighbours = majoriser(h, 0, TV_SMOOTHING)
        num += tv * (degree + neighbours)
        den += 2 * tv * degree
    state.topics[name] = h * num / (den + EPS)
    state.models = [None] * len(state.strata)


def total_variation(factors, smoothing: float = 0.0) -> float:
    """Sum over columns of ``sum_i |f[i+1] - f[i]|`` along axis 0 of each factor.

        >>> total_variation([np.array([[0.0], [1.0], [3.0]])])
        3.0
    """
    return float(sum(np.sqrt(np.diff(f, axis=0) ** 2 + smoothing ** 2).sum() for f in factors))


def _measure(state: _State, tv: float, norm2: float) -> dict:
    sse = sum(float(((a - state.model(s)) ** 2).sum()) for s, a in enumerate(state.strata))
    penalty = total_variation(state.topics.values(), TV_SMOOTHING)
    return {"loss": 0.5 * sse + tv * penalty, "sse": sse,
            "rel_error": float(np.sqrt(sse / norm2)) if norm2 > 0 else 0.0, "tv": penalty}


@budgeted
def stratified_ntf(data=None, rank_specific: int = 1, n_topics: int = 5, tv: float = 0.0,
                   max_iter: int = 200, seed: int | None = 0, tol: float = 1e-7,
                   strata_updates: int = 2, progress: bool = True,
                   callback: Callable | None = None, **old) -> StratifiedResult:
    """Fit Stratified-NTF to the strata ``data`` (list of ``(m_s, d_1, ..., d_K)``
    non-negative arrays; ``strata=`` is its old name, deprecated).

    ``rank_specific``: rank ``l`` of each stratum's feature (0 for none);
    ``n_topics``: number ``r`` of global rank-one topics; ``tv``: weight of the
    topics' total-variation penalty; ``strata_updates``: feature updates per
    iteration (the paper's ``M``). Stops after ``max_iter`` iterations or when
    the loss falls by less than ``tol`` (relative) in one iteration.
    ``callback(state)`` gets the iteration's history record after each
    iteration and may return True to stop. ``memory_limit=`` (bytes, ``"auto"``
    or None) bounds the factors, checked before they are made.
    """
    strata = check_strata(_data(data, old, "stratified_ntf", STRATIFIED_ALIASES))
    check_arguments(stratified_ntf, dict(
        rank_specific=rank_specific, n_topics=n_topics, tv=tv, max_iter=max_iter, seed=seed,
        tol=tol, strata_updates=strata_updates, progress=progress, callback=callback),
        {"n_topics": {"min": 1}, "strata_updates": {"min": 1}, "max_iter": {"min": 1}})
    start = time.perf_counter()
    check_allocation(8 * parameter_count([a.shape for a in strata], rank_specific, n_topics),
                     "the factors of stratified_ntf")
    state = _State(strata, rank_specific, n_topics, seed)
    norm2 = sum(float((a ** 2).sum()) for a in strata)
    initial = _measure(state, tv, norm2)
    history, converged, previous = [], False, initial["loss"]
    features = [f"V{k}" for k in range(1, strata[0].ndim)] if rank_specific else []
    with Progress(max_iter, desc="stratified-ntf", enabled=progress) as bar:
        for iteration in range(1, max_iter + 1):
            _iterate(state, features, strata_updates, tv)
            measured = _measure(state, tv, norm2)
            history.append(record(iteration, measured.pop("loss"), measured.pop("rel_error"),
                                  time.perf_counter() - start, **measured))
            bar.update(loss=history[-1]["loss"], rel_error=history[-1]["rel_error"])
            current = history[-1]["loss"]
            converged = previous - current <= tol * max(previous, EPS)
            previous = current
            if wants_stop(callback, history[-1]) or converged:
                break
    return StratifiedResult(
        features=[[own[n] for n in features] for own in state.local],
        weights=[own["W"] for own in state.local],
        topics=list(state.topics.values()), history=history,
        parameter_count=parameter_count([a.shape for a in strata], rank_specific, n_topics),
        converged=converged, iterations=len(history),
        wall_time=time.perf_counter() - start,
        info={"rank_specific": rank_specific, "n_topics": n_topics, "tv": tv,
              "initial": initial})


def _data(data, old: dict, what: str, aliases: dict):
    """``data``, or its value under the old keyword in ``old``; any other keyword in
    ``old`` is a :class:`TncError` naming it."""
    old = renamed(old, what, aliases)
    data = given_once(data, old, "data", what)
    if old:
        raise TncError(f"{what} got unexpected keyword(s) {', '.join(old)}")
    if data is None:
        raise TncError(f"{what}: no data given")
    return data


def _iterate(state: _State, features, strata_updates: int, tv: float) -> None:
    """One sweep: strata features, then weights, then the shared topics."""
    for s in range(len(state.strata)):
        for _ in range(strata_updates):
            _update_local(state, s, features)
        _update_local(state, s, ["W"])
    for name in list(state.topics):
        _update_topic(state, name, tv)
    state.normalize_topics()


@budgeted
def ntf(data=None, rank: int | None = None, max_iter: int = 200, seed=0, tol: float = 1e-7,
        progress: bool = True, callback=None, **old) -> StratifiedResult:
    """Plain non-negative CP of ``data`` (``(m, d_1, ..., d_K)``; ``tensor=`` is its old
    name, deprecated) by multiplicative updates.

    The one-stratum Stratified-NTF without strata features: ``weights[0]`` is
    the first mode's factor and ``topics`` the others'.

        >>> rng = np.random.default_rng(1)
        >>> result = ntf(rng.random((6, 4, 5)), rank=2, max_iter=10, progress=False)
        >>> result.parameter_count, result.reconstruct(0).shape
        (30, (6, 4, 5))
    """
    if rank is None:
        raise TncError("ntf: no rank given")
    data = _data(data, old, "ntf", NTF_ALIASES)
    return stratified_ntf([data], rank_specific=0, n_topics=rank, max_iter=max_iter,
                          seed=seed, tol=tol, progress=progress, callback=callback)
