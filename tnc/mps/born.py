"""Born machines: MPS models of distributions over discrete sequences.

A sequence ``x = (x_1, ..., x_N)`` of symbols ``0 .. d-1`` gets the probability
``p(x) = |psi(x)|^2 / Z`` with ``psi(x) = A_1[x_1] A_2[x_2] ... A_N[x_N]``, each
``A_k[s]`` an ``r_{k-1} x r_k`` matrix (``r_0 = r_N = 1``)::

    psi(x) =  A_1 -- A_2 -- ... -- A_N         Z = sum_x psi(x)^2 = <psi|psi>
              |      |             |
             x_1    x_2           x_N

The model is kept in mixed canonical form (cores left of ``centre``
left-orthonormal, right of it right-orthonormal), so ``Z`` is exactly the
squared norm of the centre core, and exact samples come from the conditional
marginals ``p(x_k | x_<k)``, one site at a time (Ferris & Vidal 2012).

Training (Han, Wang, Fan, Wang & Zhang, PRX 8, 031012, 2018):

- ``method="sweep"``: two-site sweeps. The merged pair ``theta`` of the centre
  takes ``steps`` gradient steps on the negative log-likelihood
  ``NLL = -(2/n) sum_i log|psi(x_i)| + log Z``, whose gradient is
  ``2 theta / Z - (2/n) sum_i F_i / psi(x_i)`` (``F_i = d psi(x_i) / d theta``,
  the per-sample environments), is renormalised, and is split by a truncated
  SVD whose rank follows the singular values (``cutoff``, ``max_rank``).
- ``method="gradient"``: Adam on every core at fixed ranks, the gradient of the
  NLL by the direct formula above summed over the sites (``Z`` from the
  transfer-matrix environments).

:class:`tnc.mps.uniform_born.UniformMPS` ties one core across positions (Miller,
Rabusseau & Terilla 2021) for sequences of any length.

    >>> import numpy as np
    >>> data = np.array([[0, 0, 0, 0], [1, 1, 1, 1]] * 10)
    >>> model = train_born(data, 2, max_rank=4, max_iter=4, progress=False)
    >>> round(model.nll(data), 3)            # ln 2: the two patterns, equally likely
    0.693
    >>> sorted(set(map(tuple, model.sample(50, seed=1).tolist())))
    [(0, 0, 0, 0), (1, 1, 1, 1)]
"""
from __future__ import annotations

import functools
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from tnc.mps.chain import Chain, Core, merge, split
from tnc.errors import TncError
from tnc.fitting.gcp import Adam
from tnc.options import check_arguments, validated
from tnc.engine.plan import check_allocation
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record, renamed, spelled
from tnc.fitting.result import (COUNT, FORMAT_VERSION, RESULT_FIELDS, TrainedModel, check_fields,
                                damaged, expect_kind, read_archive, write_archive)

KINDS = ("born", "uniform_born")
# the budget was sweeps= (method="sweep") and iterations= (method="gradient", train_uniform)
BORN_ALIASES = {"sweeps": "max_iter", "iterations": "max_iter"}


# -- data -------------------------------------------------------------------------------
def check_symbols(data, d: int, what: str = "data") -> np.ndarray:
    """``data`` as an int array after checking each entry is a symbol ``0 .. d-1``.

    >>> check_symbols([[0, 1], [1, 2]], 2)
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: data[1, 1] is 2, not a symbol of the alphabet 0..1 (d=2)
    """
    array = np.asarray(data)
    if array.dtype.kind not in "biuf" or array.size == 0:
        raise TncError(f"{what} must be a non-empty array of integer symbols, got "
                       f"{array.dtype} of shape {array.shape}")
    with np.errstate(invalid="ignore"):
        ok = (array >= 0) & (array < d) & (array == np.round(array))
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        shown = ", ".join(map(str, where))
        value = array[where].item()
        raise TncError(f"{what}[{shown}] is {value!r}, not a symbol of the alphabet "
                       f"0..{d - 1} (d={d})")
    return array.astype(np.intp)


def check_table(data, d: int, what: str = "data") -> np.ndarray:
    """``(samples, sites)`` symbols of fixed-length sequences (see :func:`check_symbols`)."""
    array = check_symbols(data, d, what)
    if array.ndim != 2:
        raise TncError(f"{what} must be a (samples, sites) array, got shape {array.shape}")
    return array


def encode(strings, alphabet: str) -> list[np.ndarray]:
    """Strings -> int arrays, symbol ``alphabet.index(c)``; a foreign character is named.

    >>> encode(["()", "(("], "()")
    [array([0, 1]), array([0, 0])]
    """
    lookup = {c: k for k, c in enumerate(alphabet)}
    out = []
    for number, text in enumerate(strings):
        bad = next((p for p, c in enumerate(text) if c not in lookup), None)
        if bad is not None:
            raise TncError(f"sequence {number} ({text!r}) has {text[bad]!r} at position {bad}, "
                           f"not in the alphabet {alphabet!r}")
        out.append(np.array([lookup[c] for c in text], dtype=np.intp))
    return out


# -- per-sample products ----------------------------------------------------------------
def by_symbol(symbols: np.ndarray, d: int) -> list:
    """``(s, rows)`` for each symbol ``s < d`` present in ``symbols`` (rows where it is)."""
    return [(s, rows) for s in range(d) if len(rows := np.flatnonzero(symbols == s))]


def _push(vectors: np.ndarray, core: np.ndarray, symbols: np.ndarray, from_left: bool):
    """``vectors[i] @ core[:, symbols[i], :]`` (or ``core[:, s, :] @ vectors[i]``) per row."""
    out = np.empty((len(vectors), core.shape[2] if from_left else core.shape[0]))
    for s, rows in by_symbol(symbols, core.shape[1]):
        out[rows] = vectors[rows] @ (core[:, s, :] if from_left else core[:, s, :].T)
    return out


def outer_by_symbol(left: np.ndarray, right: np.ndarray, symbols: np.ndarray, d: int):
    """``sum_i left_i (x) e(symbols_i) (x) right_i``, ``(r, d, r')``: a core's data gradient
    from per-sample environments ``left`` ``(n, r)`` and ``right`` ``(n, r')``."""
    out = np.zeros((left.shape[1], d, right.shape[1]))
    for s, rows in by_symbol(symbols, d):
        out[:, s, :] = left[rows].T @ right[rows]
    return out


def _normalised(vectors: np.ndarray, logs: np.ndarray):
    """Rows scaled to unit norm, their log norms added to ``logs`` (zero rows: ``-inf``)."""
    norms = np.linalg.norm(vectors, axis=1)
    with np.errstate(divide="ignore"):
        logs = logs + np.log(norms)
    return vectors / np.where(norms > 0, norms, 1.0)[:, None], logs


def environments(cores, x: np.ndarray, from_left: bool) -> list:
    """Per-sample boundary vectors, unit rows with their log norms: from the left, entry
    ``j`` is ``A_1[x_1] ... A_j[x_j]`` ``(n, r_j)``; from the right, entry ``j`` is
    ``A_{j+1}[x_{j+1}] ... A_N[x_N]`` (0-based sites: ``j`` cores done / left out)."""
    n, sites = x.shape
    start = (np.ones((n, 1)), np.zeros(n))
    envs = [start]
    order = range(sites) if from_left else range(sites - 1, -1, -1)
    for j in order:
        vectors, logs = envs[-1]
        envs.append(_normalised(_push(vectors, cores[j], x[:, j], from_left), logs))
    return envs if from_left else envs[::-1]


def _log_abs_psi(cores, x) -> np.ndarray:
    return _log_abs_of(environments(cores, x, True)[-1])


def _log_abs_of(environment) -> np.ndarray:
    """``log |psi(x_i)|`` from the left environment past the last site."""
    vectors, logs = environment
    with np.errstate(divide="ignore"):
        return logs + np.log(np.abs(vectors[:, 0]))


# -- the chain view, for chain.py's canonical forms and splits ---------------------------
@functools.lru_cache(maxsize=64)
def _chain(sites: int) -> Chain:
    """Cores ``A0 .. A{N-1}`` with legs ``(b_k, p_k, b_{k+1})``; the end bonds (size 1)
    are not chain bonds, so chain.py treats them as site legs."""
    return Chain(tuple(Core(f"A{k}", (f"b{k}", f"p{k}", f"b{k + 1}"),
                            f"b{k}" if k > 0 else None, f"b{k + 1}" if k < sites - 1 else None)
                       for k in range(sites)), False)


def _named(cores) -> dict:
    return {f"A{k}": core for k, core in enumerate(cores)}


def _listed(arrays: dict) -> list:
    return [arrays[f"A{k}"] for k in range(len(arrays))]


def canonical(cores, centre: int = 0) -> list:
    """Copies of ``cores`` in mixed canonical form around ``centre``, scaled to ``Z = 1``
    (:func:`~tnc.fitting.decompositions.tt_orthogonalize`)."""
    from tnc.fitting.decompositions import tt_orthogonalize
    arrays = tt_orthogonalize([np.array(c, dtype=float) for c in cores], centre)
    norm = np.linalg.norm(arrays[centre])
    if not norm > 0 or not np.isfinite(norm):
        raise TncError(f"the Born machine's cores have norm {norm}; Z must be finite and > 0")
    arrays[centre] = arrays[centre] / norm
    return arrays


def random_cores(sites: int, d: int, rank: int, rng) -> list:
    """Gaussian cores, bonds ``min(rank, d**k, d**(N-k))``, in canonical form (centre 0)."""
    bonds = [min(rank, d ** min(k, sites - k)) for k in range(sites + 1)]
    cores = [rng.standard_normal((bonds[k], d, bonds[k + 1])) for k in range(sites)]
    return canonical(cores, 0)


# -- the model ------------------------------------------------------------------------------
@dataclass(repr=False)
class BornMachine(TrainedModel):
    """``p(x) = psi(x)^2 / Z`` over sequences of ``len(cores)`` symbols ``0 .. d-1``.

    ``cores[k]``: ``(r_k, d, r_{k+1})``, mixed canonical around ``centre``. As a
    result (:class:`~tnc.fitting.result.Result`): ``history`` one record per sweep or
    Adam step (``loss``: the training NLL in nats; ``rel_error`` None: no data tensor
    to compare with), ``iterations`` its length, ``converged``, ``wall_time``, ``info``.
    """

    cores: list
    centre: int = 0
    history: list = field(default_factory=list)
    converged: bool = False
    wall_time: float = 0.0
    info: dict = field(default_factory=dict)

    def title(self) -> str:
        return (f"Born machine of {self.length} sites, d {self.d}, "
                f"ranks up to {max(self.ranks, default=1)}")

    @property
    def d(self) -> int:
        return self.cores[0].shape[1]

    @property
    def length(self) -> int:
        return len(self.cores)

    @property
    def ranks(self) -> list[int]:
        return [c.shape[2] for c in self.cores[:-1]]

    @classmethod
    def from_train(cls, train) -> "BornMachine":
        """The Born machine of a real :class:`tnc.TensorTrain` ``psi`` (equal site sizes).

        >>> import tnc
        >>> train = tnc.TensorTrain.from_dense(np.arange(8.0).reshape(2, 2, 2))
        >>> bool(np.allclose(BornMachine.from_train(train).probabilities().ravel(),
        ...                  np.arange(8.0) ** 2 / 140))
        True
        """
        sizes = {c.shape[1] for c in train.cores}
        if len(sizes) != 1 or np.iscomplexobj(train.cores[0]) or len(train.cores) < 2:
            raise TncError(f"a Born machine needs a real train of at least 2 sites of one "
                           f"size, got {train!r}")
        return cls(canonical(train.cores, 0))

    def to_train(self):
        """``psi`` as a :class:`tnc.TensorTrain` (normalised: ``Z = 1``)."""
        from tnc.mps.tt import TensorTrain
        return TensorTrain(canonical(self.cores, 0))

    def norm_squared(self) -> float:
        """``Z``, exact from the canonical form: the squared norm of the centre core."""
        return float(np.sum(self.cores[self.centre] ** 2))

    def log_prob(self, x) -> np.ndarray:
        """``(n, N)`` symbols -> ``(n,)`` values of ``log p(x)`` (``-inf`` where ``p = 0``)."""
        x = self._checked(x)
        return 2 * _log_abs_psi(self.cores, x) - np.log(self.norm_squared())

    def nll(self, x) -> float:
        """Mean negative log-likelihood (nats) of the rows of ``x``."""
        return float(-np.mean(self.log_prob(x)))

    def probabilities(self, memory_limit="auto") -> np.ndarray:
        """All ``d**N`` probabilities as a dense ``(d,) * N`` array (memory-checked)."""
        check_allocation(8 * self.d ** self.length, f"a dense {self.d}**{self.length} "
                         "probability table", memory_limit)
        psi = np.ones((1, 1))
        for core in self.cores:
            psi = np.tensordot(psi, core, axes=(-1, 0)).reshape(-1, core.shape[2])
        return (psi[:, 0] ** 2 / self.norm_squared()).reshape((self.d,) * self.length)

    def sample(self, n: int, seed=None) -> np.ndarray:
        """``n`` exact samples ``(n, N)``, drawn site by site from ``p(x_k | x_<k)``."""
        check_arguments(BornMachine.sample, {"n": n}, {"n": {"min": 1}})
        rng = np.random.default_rng(seed)
        cores = self.cores if self.centre == 0 else canonical(self.cores, 0)
        out = np.empty((n, self.length), dtype=np.intp)
        vectors = np.ones((n, 1))
        for k, core in enumerate(cores):     # right of k: right-orthonormal, so the
            branches = np.einsum("na,asb->nsb", vectors, core)   # marginal is |v A[s]|^2
            weights = np.sum(branches ** 2, axis=2)
            out[:, k] = _draw(weights, rng)
            vectors = branches[np.arange(n), out[:, k]]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return out

    def save(self, path) -> None:
        """An ``.npz`` archive (:func:`tnc.fitting.result.write_archive`); read with :func:`load_born`."""
        write_archive(path, self._meta("born"), {"core": _named(self.cores)})

    def _meta(self, kind: str) -> dict:
        return {"format": FORMAT_VERSION, "kind": kind, "history": self.history,
                "converged": self.converged, "iterations": len(self.history),
                "wall_time": self.wall_time, "info": self.info}

    def _checked(self, x) -> np.ndarray:
        x = check_table(x, self.d)
        if x.shape[1] != self.length:
            raise TncError(f"data has {x.shape[1]} sites per sequence, but the Born machine "
                           f"has {self.length}")
        return x


def _draw(weights: np.ndarray, rng) -> np.ndarray:
    """One category per row, with probabilities proportional to ``weights`` ``(n, d)``."""
    weights = np.maximum(weights, 0)
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1]
    return np.minimum(np.sum(u[:, None] >= cdf, axis=1), weights.shape[1] - 1)


# -- two-site sweeps ---------------------------------------------------------------------------
@dataclass
class SweepOptions:
    """``max_rank``: largest bond; ``cutoff``: discarded singular weight per split;
    ``lr``: gradient step on the unit-norm pair; ``steps``: steps per pair;
    ``max_iter``: passes (right, then left, ...; ``sweeps`` before 0.2); ``init_rank``: random start;
    ``tol``: stop when a sweep changes the NLL by less than this (nats)."""

    max_rank: int = field(default=32, metadata={"min": 1})
    cutoff: float = field(default=1e-7, metadata={"below": 1})
    lr: float = field(default=0.1, metadata={"above": 0})
    steps: int = field(default=2, metadata={"min": 1})
    max_iter: int = field(default=10, metadata={"min": 1})
    init_rank: int = field(default=2, metadata={"min": 1})
    tol: float = 1e-5
    seed: int = 0
    progress: bool = True
    callback: object = None


class _Pair:
    """The data side of a two-site step: ``psi`` and ``sum_i F_i / psi_i`` for ``theta``."""

    def __init__(self, left, right, s, t, d):
        self.left, self.right = left, right
        self.groups = [(divmod(c, d), rows) for c, rows in by_symbol(s * d + t, d * d)]
        self.n = len(s)

    def psi(self, theta) -> np.ndarray:
        out = np.empty(self.n)
        for (s, t), rows in self.groups:
            out[rows] = np.sum((self.left[rows] @ theta[:, s, t, :]) * self.right[rows], axis=1)
        return out

    def pull(self, theta, psi) -> np.ndarray:
        out = np.zeros_like(theta)
        for (s, t), rows in self.groups:
            out[:, s, t, :] = self.left[rows].T @ (self.right[rows] / psi[rows, None])
        return out


def local_steps(theta, pair: _Pair, lr: float, steps: int) -> np.ndarray:
    """``steps`` normalised gradient steps on the NLL of the merged pair ``theta``; a step
    that would raise the NLL is halved (at most 20 times), so the pair's NLL never rises."""
    theta = theta / np.linalg.norm(theta)
    psi = pair.psi(theta)
    loss = _pair_nll(psi)
    for _ in range(steps):
        grad = 2 * theta - (2 / pair.n) * pair.pull(theta, psi)      # Z = 1 here
        for _ in range(20):
            trial = theta - lr * grad
            trial = trial / np.linalg.norm(trial)
            trial_psi = pair.psi(trial)
            trial_loss = _pair_nll(trial_psi)
            if trial_loss <= loss:
                theta, psi, loss = trial, trial_psi, trial_loss
                break
            lr /= 2
    return theta


def _pair_nll(psi) -> float:
    with np.errstate(divide="ignore"):
        return float(-2 * np.mean(np.log(np.abs(psi))))


def _sweep(cores, x, opts, to_right: bool, lefts: list, rights: list) -> dict:
    """One pass of two-site steps; updates ``cores`` and the environments in place."""
    sites, d = x.shape[1], cores[0].shape[1]
    chain, arrays = _chain(sites), _named(cores)
    worst, pairs = 0.0, range(sites - 1) if to_right else range(sites - 2, -1, -1)
    for k in pairs:
        (left, left_logs), (right, right_logs) = lefts[k], rights[k + 2]
        pair = _Pair(left, right, x[:, k], x[:, k + 1], d)
        theta = local_steps(merge(chain, arrays, k), pair, opts.lr, opts.steps)
        worst = max(worst, split(chain, arrays, k, theta, opts.max_rank, opts.cutoff,
                                 centre_right=to_right).error)
        if to_right:
            lefts[k + 1] = _normalised(_push(left, arrays[f"A{k}"], x[:, k], True), left_logs)
        else:
            rights[k + 1] = _normalised(_push(right, arrays[f"A{k + 1}"], x[:, k + 1], False),
                                        right_logs)
    cores[:] = _listed(arrays)
    centre = sites - 1 if to_right else 0
    cores[centre] /= np.linalg.norm(cores[centre])          # Z = 1
    vectors, logs = lefts[-2] if to_right else rights[1]    # the environment next to it
    last = _normalised(_push(vectors, cores[centre], x[:, centre], to_right), logs)
    ranks = [c.shape[2] for c in cores[:-1]]
    return {"loss": float(-np.mean(2 * _log_abs_of(last))), "truncation_error": worst,
            "max_rank": max(ranks), "ranks": ranks}


def _train_sweeps(x, cores, opts, bar) -> tuple[list, list, bool]:
    lefts = environments(cores, x, True)          # cores arrive with centre 0
    rights = environments(cores, x, False)
    history, converged, begin = [], False, time.perf_counter()
    for number in range(1, opts.max_iter + 1):
        own = _sweep(cores, x, opts, number % 2 == 1, lefts, rights)
        entry = record(number, own.pop("loss"), None, time.perf_counter() - begin, **own)
        history.append(entry)
        bar.update(nll=entry["loss"], max_rank=entry["max_rank"])
        converged = len(history) > 1 and abs(history[-2]["loss"] - entry["loss"]) <= opts.tol
        if wants_stop(opts.callback, entry) or converged:
            break
    return cores, history, converged


# -- gradients of the whole chain ---------------------------------------------------------
def _transfer(env, core, from_left: bool):
    """One step of the ``<psi|psi>`` environment, rescaled to unit norm (with its log)."""
    if from_left:       # env (a, c) -> sum A[a, s, b] env[a, c] A[c, s, d]: (b, d)
        new = np.tensordot(np.tensordot(env, core, (0, 0)), core, ((0, 1), (0, 1)))
    else:               # env (b, d) -> (a, c)
        new = np.tensordot(np.tensordot(core, env, (2, 0)), core, ((1, 2), (1, 2)))
    norm = np.linalg.norm(new)
    return new / norm, float(np.log(norm))


def _z_pull(head, core, tail):
    """``dZ / dA`` for one use of ``A`` between environments ``head`` (a, c), ``tail`` (b, d)."""
    return 2 * np.tensordot(np.tensordot(head, core, (1, 0)), tail, (2, 1))


def nll_and_grad(cores, x) -> tuple[float, list]:
    """The NLL of the rows of ``x`` and its gradient with respect to every core.

    ``d NLL / d A_j = -(2/n) sum_i dpsi_i/dA_j / psi_i + dZ/dA_j / Z``, each term
    from per-sample (data) or transfer-matrix (``Z``) environments, which are
    rescaled freely since both ratios are scale-free.
    """
    n = len(x)
    lefts, rights = environments(cores, x, True), environments(cores, x, False)
    z_left = [(np.ones((1, 1)), 0.0)]
    for core in cores:
        z_left.append(_transfer(z_left[-1][0], core, True))
    z_right, grads = np.ones((1, 1)), []
    for j in range(len(cores) - 1, -1, -1):
        core, (left, _), (right, _) = cores[j], lefts[j], rights[j + 1]
        psi = np.sum(_push(left, core, x[:, j], True) * right, axis=1)
        data = outer_by_symbol(left, right / psi[:, None], x[:, j], core.shape[1])
        dz = _z_pull(z_left[j][0], core, z_right)
        z = np.sum(dz * core) / 2
        grads.append(-(2 / n) * data + dz / z)
        z_right, _ = _transfer(z_right, core, False)
    log_z = sum(log for _, log in z_left[1:]) + np.log(np.sum(z_left[-1][0]))
    return float(-np.mean(2 * _log_abs_of(lefts[-1])) + log_z), grads[::-1]


@dataclass
class GradientOptions:
    """``rank``: bond size of a random start; ``lr``: Adam step; ``max_iter``: steps
    (``iterations`` before 0.2);
    ``batch_size``: rows per step (None: all); ``tol``: stop when an epoch changes the
    NLL by less than this (nats, full batch only)."""

    rank: int = field(default=8, metadata={"min": 1})
    lr: float = field(default=0.01, metadata={"above": 0})
    max_iter: int = field(default=200, metadata={"min": 1})
    batch_size: int | None = field(default=None, metadata={"min": 1})
    tol: float = 0.0
    seed: int = 0
    progress: bool = True
    callback: object = None


def _train_gradient(x, cores, opts, bar) -> tuple[list, list, bool]:
    rng = np.random.default_rng(opts.seed)
    tensors = _named(cores)
    adam, history, converged = Adam(tensors, None), [], False
    batch, begin = len(x) if opts.batch_size is None else min(opts.batch_size, len(x)), \
        time.perf_counter()
    for number in range(1, opts.max_iter + 1):
        rows = rng.choice(len(x), batch, replace=False) if batch < len(x) else slice(None)
        loss, grads = nll_and_grad(_listed(tensors), x[rows])
        adam.step(tensors, _named(grads), opts.lr)
        history.append(record(number, loss, None, time.perf_counter() - begin))
        bar.update(nll=loss)
        converged = (batch == len(x) and number > 1
                     and abs(history[-2]["loss"] - loss) <= opts.tol)
        if wants_stop(opts.callback, history[-1]) or converged:
            break
    return _listed(tensors), history, converged


METHODS = {"sweep": (SweepOptions, _train_sweeps), "gradient": (GradientOptions, _train_gradient)}


def train_born(data, d: int = 2, method: str = "sweep", start: BornMachine | None = None,
               **options) -> BornMachine:
    """A :class:`BornMachine` fitted to the rows of ``data`` ``(n, N)`` (symbols ``0..d-1``).

    ``method="sweep"`` (:class:`SweepOptions`: adaptive ranks) or ``"gradient"``
    (:class:`GradientOptions`: fixed ranks); ``start`` continues from a model.
    History per sweep or step (:mod:`tnc.fitting.records`): ``iteration`` from 1,
    ``loss`` (training NLL, nats), ``rel_error`` None, ``time``, and for sweeps
    ``truncation_error``, ``max_rank``, ``ranks``; the callback gets each record.
    The budget is ``max_iter`` (``sweeps=`` and ``iterations=`` are its old names,
    deprecated).
    """
    check_arguments(train_born, {"d": d}, {"d": {"min": 2}})
    if method not in METHODS:
        raise TncError(f"train_born: method must be one of {', '.join(map(repr, METHODS))}, "
                       f"got {method!r}")
    kind, run = METHODS[method]
    opts = born_options(kind, options, f"train_born(method={method!r})")
    x = check_table(data, d)
    if x.shape[1] < 2:
        raise TncError(f"a Born machine needs sequences of at least 2 sites, got {x.shape[1]}")
    if start is None:
        rank = opts.init_rank if method == "sweep" else opts.rank
        cores = random_cores(x.shape[1], d, rank, np.random.default_rng(opts.seed))
    else:
        start._checked(x[:1])
        cores = canonical(start.cores, 0)
    begin = time.perf_counter()
    with Progress(opts.max_iter, desc="born", enabled=opts.progress) as bar:
        cores, history, converged = run(x, cores, opts, bar)
    return BornMachine(canonical(cores, 0), 0, history, converged,
                       time.perf_counter() - begin)


def born_options(kind: type, options: dict, what: str):
    """``kind`` built from ``options`` with the old budget names renamed (warning) and every
    option checked (:func:`tnc.options.validated`, errors in the caller's spelling)."""
    spelling = spelled(options, BORN_ALIASES)
    if sum(key in options for key in ("max_iter", *BORN_ALIASES)) > 1:
        raise TncError(f"{what}: give the budget once, as max_iter= (sweeps= and "
                       "iterations= are its old names)")
    return validated(kind, renamed(options, what, BORN_ALIASES), what, spelling)


# -- archives ------------------------------------------------------------------------------
def load_born(path):
    """A model written by :meth:`BornMachine.save` or
    :meth:`~tnc.mps.uniform_born.UniformMPS.save`, checked."""
    meta, groups = read_archive(path)
    if meta.get("kind") not in KINDS:
        expect_kind(meta, path, "born")
    check_fields(meta, {**RESULT_FIELDS, "iterations": COUNT}, path)
    cores = groups.get("core", {})
    if not all(np.isrealobj(c) and np.all(np.isfinite(c)) for c in cores.values()):
        raise damaged(path, "its cores hold complex, NaN or infinite values")
    saved = dict(history=meta["history"], converged=meta["converged"],
                 wall_time=meta["wall_time"], info=meta.get("info", {}))
    if meta["kind"] == "uniform_born":
        from tnc.mps.uniform_born import UniformMPS, uniform_arrays
        return UniformMPS(*uniform_arrays(path, cores), **saved)
    return BornMachine(_born_arrays(path, cores), 0, **saved)


def _born_arrays(path, cores: dict) -> list:
    names = [f"A{k}" for k in range(len(cores))]
    if len(cores) < 2 or sorted(cores) != sorted(names):
        raise damaged(path, f"its cores are {sorted(cores)}, not A0 .. A(N-1) with N >= 2")
    listed = [cores[name].astype(float) for name in names]
    for k, core in enumerate(listed):
        left = 1 if k == 0 else listed[k - 1].shape[-1]
        if core.ndim != 3 or core.shape[0] != left or core.shape[1] != listed[0].shape[1] or (
                k == len(listed) - 1 and core.shape[2] != 1):
            raise damaged(path, f"core A{k} has shape {core.shape}, which does not continue "
                                "the chain")
    return canonical(listed, 0)


def independent_nll(train, test, d: int = 2, smoothing: float = 1.0) -> tuple[float, float]:
    """Train and test NLL (nats per sequence) of the independent-site baseline: each site's
    symbol frequencies in ``train``, plus ``smoothing`` counts per symbol (Laplace).

    >>> [round(v, 3) for v in independent_nll([[0, 1], [0, 0]], [[1, 1]])]  # 3/4, 1/2; 1/4, 1/2
    [0.981, 2.079]
    """
    train, test = check_table(train, d, "train"), check_table(test, d, "test")
    counts = np.stack([np.sum(train == s, axis=0) for s in range(d)], axis=1) + smoothing
    with np.errstate(divide="ignore"):
        logs = np.log(counts / counts.sum(axis=1, keepdims=True))       # (sites, d)
    sites = np.arange(train.shape[1])
    return (float(-np.mean(np.sum(logs[sites, train], axis=1))),
            float(-np.mean(np.sum(logs[sites, test], axis=1))))


def bars_and_stripes(n: int = 4) -> np.ndarray:
    """The ``2 * 2**n - 2`` distinct n x n binary images whose rows (or columns) are all
    constant, flattened row by row: ``(patterns, n * n)``.

    >>> bars_and_stripes(4).shape
    (30, 16)
    """
    patterns = set()
    for bits in itertools.product([0, 1], repeat=n):
        b = np.array(bits)
        patterns.add(tuple(np.repeat(b[:, None], n, 1).ravel()))
        patterns.add(tuple(np.repeat(b[None, :], n, 0).ravel()))
    return np.array(sorted(patterns), dtype=np.intp)


def all_sequences(length: int, d: int) -> np.ndarray:
    """Every sequence of ``length`` symbols ``0..d-1``, ``(d**length, length)``, in the
    order of a C-order ``(d,) * length`` table."""
    check_allocation(8 * length * d ** length, f"all {d}**{length} sequences")
    return np.array(list(itertools.product(range(d), repeat=length)), dtype=np.intp)


_MOVED = ("UniformMPS", "UniformOptions", "train_uniform", "uniform_nll_and_grad", "UNIFORM_MPS")


def __getattr__(name: str):
    """The uniform MPS moved to :mod:`tnc.mps.uniform_born`; its public names still
    resolve here (``tnc.UniformMPS``, ``tnc.train_uniform`` go through this module)."""
    if name in _MOVED:
        from tnc.mps import uniform_born
        return getattr(uniform_born, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
