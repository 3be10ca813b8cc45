"""Supervised learning with an MPS (Stoudenmire & Schwab 2016), trained by two-site sweeps.

Each input ``x`` (values in [0, 1]) becomes a product state
``phi(x_1) o ... o phi(x_N)`` with ``phi(v) = [cos(pi v / 2), sin(pi v / 2)]``;
the model is an MPS over the N sites whose *label leg* (one entry per class)
sits on the pair of cores being optimised and moves with the sweep::

    f_l(x) =  A1 -- A2 -- ... --( theta )-- ... -- AN
              |     |            |  |  \\          |
             phi1  phi2        phik phik+1  l     phiN

For the merged tensor ``theta[a, s, t, b, l]`` the squared loss with a ridge
penalty is an exact kernel ridge regression: the features of sample ``i`` are
``L_i[a] phi_k[s] phi_k+1[t] R_i[b]``, so the kernel is the elementwise product
of four small Gram matrices and the solve is one ``n x n`` Cholesky per step.
A truncated SVD then splits ``theta`` (rank from the singular values, at most
``max_rank``), handing the label leg to the next pair.

The per-sample environments ``L_i``, ``R_i`` are kept at unit norm: that scales
each sample's outputs by a positive number, which the class decision (argmax)
ignores, and keeps 64-site products from under- or overflowing.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((200, 6)); y = (x[:, 0] + x[:, 5] > 1).astype(int)
    >>> model = train_classifier(feature_map(x), y, max_rank=4, max_iter=2, progress=False)
    >>> float(np.mean(model.predict(feature_map(x)) == y)) > 0.9
    True
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sl

from tnc.mps.chain import truncated_svd
from tnc.mps.environments import MovingEnvironment, sweep
from tnc.engine.plan import check_allocation
from tnc.errors import TncError
from tnc.options import validated
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.result import TrainedModel
from tnc.fitting.records import (CLASSIFIER_ALIASES, budgeted, given_once, record,
                                 renamed, spelled)


def feature_map(x: np.ndarray, kind: str = "trig") -> np.ndarray:
    """``(n, N)`` values in [0, 1] -> ``(n, N, 2)`` local features.

    ``"trig"``: ``[cos, sin](pi x / 2)`` (Stoudenmire & Schwab); ``"linear"``:
    ``[1, x]`` (the lecture notes' map: the MPS then spans polynomials whose
    low-order terms, a linear classifier among them, need small bond sizes).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise TncError(f"feature_map takes an (samples, sites) array, got shape {x.shape}")
    if kind == "trig":
        return np.stack([np.cos(np.pi * x / 2), np.sin(np.pi * x / 2)], axis=-1)
    if kind == "linear":
        return np.stack([np.ones_like(x), x], axis=-1)
    raise TncError(f"feature_map kind must be 'trig' or 'linear', got {kind!r}")


def _data_orthonormal(env: np.ndarray, rcond: float = 1e-10):
    """``(env @ gauge, gauge)``: ``env`` rotated to orthogonal columns over the samples.

    The columns keep their relative weights (only the largest is scaled to
    ``sqrt(n)``), so the truncated SVD of the next merged tensor ranks
    directions by how much of the fit they carry, and weak directions are not
    blown up into noise features.
    """
    u, s, vt = np.linalg.svd(env, full_matrices=False)
    keep = max(1, int(np.count_nonzero(s > rcond * s[0])))
    scale = np.sqrt(env.shape[0]) / s[0]
    return u[:, :keep] * (s[:keep] * scale), vt[:keep].T * scale


@dataclass(repr=False)
class MPSClassifier(TrainedModel):
    """A trained MPS classifier: ``cores[j]`` has legs ``(left, phys, right)``, except
    ``cores[label_site]`` which has ``(left, phys, right, label)``. As a result
    (:class:`~tnc.fitting.result.Result`): ``rel_error`` is ``||F - Y|| / ||Y||`` of the
    training scores ``F`` against the one-hot labels ``Y`` at the last record
    (``sqrt(loss)``, since every row of ``Y`` has norm 1)."""

    cores: list
    label_site: int
    history: list = field(default_factory=list)
    converged: bool = False
    wall_time: float = 0.0
    info: dict = field(default_factory=dict)

    def title(self) -> str:
        labels = self.cores[self.label_site].shape[-1]
        return (f"MPS classifier of {len(self.cores)} sites, {labels} labels, "
                f"ranks up to {max(self.ranks, default=1)}")

    def scores(self, phi: np.ndarray) -> np.ndarray:
        """``(n, N, 2)`` features -> ``(n, labels)`` outputs (per-sample scaled, see module)."""
        n = phi.shape[0]
        left = np.ones((n, 1))
        for j in range(self.label_site):
            left = np.einsum("na,ns,asb->nb", left, phi[:, j], self.cores[j])
        right = np.ones((n, 1))
        for j in range(len(self.cores) - 1, self.label_site, -1):
            right = np.einsum("nb,ns,asb->na", right, phi[:, j], self.cores[j])
        return np.einsum("na,ns,asbl,nb->nl", left, phi[:, self.label_site],
                         self.cores[self.label_site], right)

    def predict(self, phi: np.ndarray) -> np.ndarray:
        return np.argmax(self.scores(phi), axis=1)

    @property
    def ranks(self) -> list[int]:
        return [c.shape[2] for c in self.cores[:-1]]


class _Sweeper:
    """Per-sample environments and the two-site kernel ridge step."""

    def __init__(self, phi, targets, cores, ridge):
        self.phi, self.targets, self.cores, self.ridge = phi, targets, cores, ridge
        n, sites = phi.shape[:2]
        self.moving = MovingEnvironment(sites, self._grow_left, self._grow_right,
                                        np.ones((n, 1)), np.ones((n, 1)))

    def _grow_left(self, block, j):
        env = np.einsum("na,ns,asb->nb", block, self.phi[:, j], self.cores[j])
        block, gauge = _data_orthonormal(env)
        self.cores[j] = np.einsum("asb,bc->asc", self.cores[j], gauge)
        return block

    def _grow_right(self, block, j):
        env = np.einsum("nb,ns,asb->na", block, self.phi[:, j], self.cores[j])
        block, gauge = _data_orthonormal(env)
        self.cores[j] = np.einsum("asb,ac->csb", self.cores[j], gauge)
        return block

    def solve(self, k):
        """Kernel ridge solution ``theta[a, s, t, b, l]`` for cores ``k, k+1`` and its fit."""
        left, right = self.moving.pair(k)
        p, q = self.phi[:, k], self.phi[:, k + 1]
        kernel = (left @ left.T) * (p @ p.T) * (q @ q.T) * (right @ right.T)
        shift = self.ridge * float(np.mean(np.diag(kernel)))    # ridge relative to the kernel
        kernel[np.diag_indices_from(kernel)] += shift
        alpha = sl.cho_solve(sl.cho_factor(kernel, lower=True), self.targets)
        theta = np.einsum("na,ns,nt,nb,nl->astbl", left, p, q, right, alpha, optimize=True)
        fitted = self.targets - shift * alpha                 # (K + shift) alpha = Y
        return theta, fitted


def _split(theta, max_rank, cutoff, to_right):
    """SVD split of ``theta[a, s, t, b, l]``; the label leg goes with the centre."""
    a, s, t, b, labels = theta.shape
    if to_right:
        matrix = theta.reshape(a * s, t * b * labels)
    else:
        matrix = theta.transpose(0, 1, 4, 2, 3).reshape(a * s * labels, t * b)
    u, sv, vt, error = truncated_svd(matrix, max_rank, cutoff)
    rank = sv.size
    if to_right:
        return u.reshape(a, s, rank), (sv[:, None] * vt).reshape(rank, t, b, labels), error
    left = (u * sv).reshape(a, s, labels, rank).transpose(0, 1, 3, 2)
    return left, vt.reshape(rank, t, b), error


@dataclass
class ClassifierOptions:
    """``max_rank``: largest bond size; ``cutoff``: discarded weight per split;
    ``ridge``: penalty of the local least squares, relative to the mean kernel diagonal;
    ``max_iter``: full passes (alternating direction; ``sweeps`` before 0.2), then a
    half pass parks the
    label leg in the middle of the chain, where both environments feed it;
    ``init_rank``: random start;
    ``tol``: stop when the training loss changes by less than this fraction."""

    max_rank: int = field(default=16, metadata={"min": 1})
    cutoff: float = field(default=1e-10, metadata={"below": 1})
    ridge: float = 1e-1
    max_iter: int = field(default=4, metadata={"min": 1})
    init_rank: int = field(default=2, metadata={"min": 1})
    tol: float = 1e-4
    seed: int = 0
    progress: bool = True
    callback: object = None


def _initial_cores(sites, rank, rng) -> list:
    sizes = [1] + [rank] * (sites - 1) + [1]
    cores = [rng.standard_normal((sizes[j], 2, sizes[j + 1])) for j in range(sites)]
    for j in range(sites - 1, 0, -1):                       # right-orthonormal
        q, r = np.linalg.qr(cores[j].reshape(cores[j].shape[0], -1).T)
        cores[j] = q.T.reshape((q.shape[1],) + cores[j].shape[1:])
        cores[j - 1] = np.einsum("asb,cb->asc", cores[j - 1], r)
    return cores


def _sweep(state: _Sweeper, labels, opts, to_right, stop: int | None = None) -> dict:
    """A pass of two-site updates (ending at pair ``stop`` if given); returns its record."""
    fitted = [None]

    def update(k: int) -> float:
        theta, fitted[0] = state.solve(k)
        state.cores[k], state.cores[k + 1], error = _split(theta, opts.max_rank, opts.cutoff,
                                                           to_right)
        return error

    worst, last = sweep(state.moving, to_right, update, stop)   # the next sweep starts on
    fitted = fitted[0]                                          # the last pair: its gauge stays
    ranks = [c.shape[2] for c in state.cores[:-1]]
    return {"label_site": last + 1 if to_right else last, "loss": float(np.mean(np.sum((fitted - state.targets) ** 2, axis=1))),
            "train_accuracy": float(np.mean(np.argmax(fitted, axis=1) == labels)),
            "truncation_error": worst, "max_rank": max(ranks), "ranks": ranks}


@budgeted
def train_classifier(data: np.ndarray = None, labels: np.ndarray = None,
                     n_labels: int | None = None, **options) -> MPSClassifier:
    """Train on features ``data`` ``(n, N, 2)`` (see :func:`feature_map`; ``phi=`` is
    its old name) and integer ``labels``.

    History per sweep (:mod:`tnc.fitting.records`): ``iteration`` from 1 (the
    closing half pass is the last), ``loss`` (mean squared error of the one-hot
    fit, seen at the last pair before its split; the last record's is the returned
    model's), ``rel_error`` (``sqrt(loss)``: the one-hot rows have norm 1), ``time``, ``train_accuracy``, ``truncation_error``,
    ``max_rank``, ``ranks``, ``label_site``. Options: :class:`ClassifierOptions`
    (``sweeps=`` is the old name of ``max_iter``), checked by name, type and range;
    ``memory_limit=`` (bytes, ``"auto"`` or None) bounds the ``(n, n)`` kernel of
    each local solve, checked before training.
    """
    spelling = spelled(options, CLASSIFIER_ALIASES)
    options = renamed(options, "train_classifier", CLASSIFIER_ALIASES)
    phi = given_once(data, options, "data", "train_classifier")
    opts = validated(ClassifierOptions, options, "train_classifier", spelling)
    if phi is None or labels is None:
        raise TncError("train_classifier needs data (features) and labels")
    phi = np.asarray(phi)
    labels = np.asarray(labels)
    if phi.ndim != 3 or phi.shape[0] != labels.shape[0] or phi.shape[1] < 2:
        raise TncError(f"phi must be (samples, sites >= 2, d) matching {labels.shape[0]} "
                       f"labels, got {phi.shape}")
    n_labels = int(labels.max()) + 1 if n_labels is None else n_labels
    check_allocation(8 * 2 * phi.shape[0] ** 2, f"the ({phi.shape[0]} x {phi.shape[0]}) kernel "
                     "of train_classifier's local solves (and its Cholesky factor)")
    cores = _initial_cores(phi.shape[1], opts.init_rank, np.random.default_rng(opts.seed))
    state = _Sweeper(phi, np.eye(n_labels)[labels], cores, opts.ridge)
    history, converged, start = [], False, time.perf_counter()
    with Progress(opts.max_iter + 1, desc="mps", enabled=opts.progress) as bar:
        for number in range(opts.max_iter + 1):
            last = number == opts.max_iter
            centre = (len(cores) - 2) // 2 if last else None
            own = _sweep(state, labels, opts, number % 2 == 0, stop=centre)
            loss = own.pop("loss")
            entry = record(number + 1, loss, math.sqrt(max(loss, 0.0)),
                           time.perf_counter() - start, **own)
            history.append(entry)
            bar.update(loss=entry["loss"], max_rank=entry["max_rank"])
            if wants_stop(opts.callback, entry) or last:
                break
    converged = len(history) > 1 and abs(history[-2]["loss"] - history[-1]["loss"]) <= (
        opts.tol * history[-2]["loss"])
    model = MPSClassifier(state.cores, history[-1]["label_site"], history, converged,
                          time.perf_counter() - start)
    residual = model.scores(phi) - state.targets         # the returned model, after its split
    loss = float(np.mean(np.sum(residual ** 2, axis=1)))
    model.history[-1].update(loss=loss, rel_error=math.sqrt(loss))
    return model
