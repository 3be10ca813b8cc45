"""Uniform MPS: one core tied across positions, for sequences of any length.

``psi(x) = alpha^T A[x_1] ... A[x_n] omega`` with one core ``A`` ``(r, d, r)``
(Miller, Rabusseau & Terilla 2021), ``p(x | n) = psi(x)^2 / Z_n``; ``Z_n`` from
the transfer matrix ``E = sum_s A[s] (x) A[s]``; trained by Adam on the NLL
(:func:`train_uniform`). The per-sample and transfer-matrix products are those of
:mod:`tnc.mps.born`.

    >>> model = train_uniform([[0, 1], [0, 1, 0, 1]], 2, rank=2, max_iter=60,
    ...                       progress=False)
    >>> bool(model.nll([[0, 1]]) < model.nll([[1, 0]]))
    True
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tnc.errors import TncError
from tnc.engine.plan import check_allocation
from tnc.fitting.gcp import Adam
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record
from tnc.fitting.result import TrainedModel, damaged, write_archive
from tnc.mps.born import (BornMachine, _draw, _normalised, _push, _transfer, _z_pull,
                          born_options, check_symbols, outer_by_symbol)
from tnc.options import check_arguments


@dataclass(repr=False)
class UniformMPS(TrainedModel):
    """``psi(x) = alpha^T A[x_1] ... A[x_n] omega``, one core ``A`` ``(r, d, r)`` for every
    position; ``p(x | n) = psi(x)^2 / Z_n`` for each length ``n``. As a result
    (:class:`~tnc.fitting.result.Result`): ``history`` one record per Adam step
    (``loss``: training NLL), ``iterations``, ``converged``, ``wall_time``, ``info``."""

    core: np.ndarray
    alpha: np.ndarray
    omega: np.ndarray
    history: list = field(default_factory=list)
    converged: bool = False
    wall_time: float = 0.0
    info: dict = field(default_factory=dict)

    def title(self) -> str:
        return f"uniform MPS, d {self.d}, rank {len(self.alpha)}"

    @classmethod
    def random(cls, d: int, rank: int, seed=0) -> "UniformMPS":
        rng = np.random.default_rng(seed)
        core = rng.standard_normal((rank, d, rank)) / np.sqrt(rank * d)
        return cls(core, rng.standard_normal(rank), rng.standard_normal(rank))

    @property
    def d(self) -> int:
        return self.core.shape[1]

    def network(self, length: int):
        """``(network, tensors)``: ``psi`` over sequences of ``length`` as a tnc network,
        the core tied across positions (:data:`UNIFORM_MPS`), with this model's tensors.

        >>> net, tensors = UniformMPS.random(2, 3).network(4)
        >>> net.contract(tensors).shape, sorted(net.params)
        ((2, 2, 2, 2), ['A', 'alpha', 'omega'])
        """
        from tnc.lang.compiler import compile as compile_text
        network = compile_text(UNIFORM_MPS, allow_path=False, n=length, d=self.d,
                               r=len(self.alpha))
        return network, {"A": self.core, "alpha": self.alpha, "omega": self.omega}

    def log_z(self, n: int) -> float:
        """``log Z_n``: ``alpha^T E^n omega`` with ``E = sum_s A[s] (x) A[s]`` (rescaled steps)."""
        env, logs = np.outer(self.omega, self.omega), 0.0
        for _ in range(n):
            env, log = _transfer(env, self.core, False)
            logs += log
        return logs + float(np.log(self.alpha @ env @ self.alpha))

    def log_prob(self, sequences) -> np.ndarray:
        """``log p(x | len(x))`` of each sequence (a list of 1-d symbol arrays, or a 2-d array)."""
        out = np.empty(len(sequences))
        for rows, x in _by_length(sequences, self.d):
            out[rows] = 2 * _uniform_log_psi(self, x)[2] - self.log_z(x.shape[1])
        return out

    def nll(self, sequences) -> float:
        """Mean ``-log p(x | len(x))`` over ``sequences``."""
        return float(-np.mean(self.log_prob(sequences)))

    def probabilities(self, n: int, memory_limit="auto") -> np.ndarray:
        """All ``d**n`` probabilities of length-``n`` sequences, dense ``(d,) * n``."""
        check_allocation(8 * self.d ** n, f"a dense {self.d}**{n} probability table",
                         memory_limit)
        psi = self.alpha[None, :]
        for _ in range(n):
            psi = np.tensordot(psi, self.core, axes=(-1, 0)).reshape(-1, len(self.omega))
        psi = psi @ self.omega
        return (psi ** 2 / np.sum(psi ** 2)).reshape((self.d,) * n)

    def sample(self, n: int, length: int, seed=None) -> np.ndarray:
        """``n`` exact samples ``(n, length)`` from ``p(x | length)``."""
        check_arguments(UniformMPS.sample, {"n": n, "length": length},
                        {"n": {"min": 1}, "length": {"min": 1}})
        rng = np.random.default_rng(seed)
        tails = [np.outer(self.omega, self.omega)]          # tails[m]: E^m omega omega^T
        for _ in range(length - 1):
            tails.append(_transfer(tails[-1], self.core, False)[0])
        out = np.empty((n, length), dtype=np.intp)
        vectors = np.tile(self.alpha, (n, 1))
        for k in range(length):
            branches = np.einsum("na,asb->nsb", vectors, self.core)
            weights = np.einsum("nsb,bc,nsc->ns", branches, tails[length - 1 - k], branches)
            out[:, k] = _draw(weights, rng)
            vectors = branches[np.arange(n), out[:, k]]
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return out

    def save(self, path) -> None:
        """An ``.npz`` archive; read with :func:`load_born`."""
        meta = BornMachine._meta(self, "uniform_born")
        write_archive(path, meta, {"core": {"A": self.core, "alpha": self.alpha,
                                            "omega": self.omega}})


# the uniform MPS in the tnc language: one tensor name used at every position is tied
UNIFORM_MPS = """network umps(n = 4, d = 2, r = 2) {
    index p[k]: d   for k in 1..n
    index b[k]: r   for k in 0..n
    tensor alpha(b[0])
    tensor A(b[k-1], p[k], b[k])   for k in 1..n
    tensor omega(b[n])
    output p[1..n]
}"""


def _by_length(sequences, d: int):
    """``(rows, (m, n) symbols)`` per length ``n`` present; each entry checked."""
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        sequences = list(sequences)
    lengths: dict[int, list[int]] = {}
    for number, seq in enumerate(sequences):
        seq = np.asarray(seq)
        if seq.ndim != 1 or len(seq) == 0:
            raise TncError(f"sequence {number} must be a non-empty 1-d array of symbols, got "
                           f"shape {seq.shape}")
        lengths.setdefault(len(seq), []).append(number)
    if not lengths:
        raise TncError("no sequences given")
    for n, rows in sorted(lengths.items()):
        x = np.array([np.asarray(sequences[r]) for r in rows])
        try:
            x = check_symbols(x, d, "sequence")
        except TncError:
            for r in rows:                  # name the first bad entry by its sequence
                check_symbols(sequences[r], d, f"sequence {r}")
            raise
        yield np.array(rows), x


def uniform_nll_and_grad(model: UniformMPS, groups) -> tuple[float, dict]:
    """Mean ``-log p(x | len(x))`` over the ``groups`` of :func:`_by_length` and its gradient
    with respect to ``A``, ``alpha`` and ``omega`` (the tied core's: a sum over positions)."""
    core, alpha, omega = model.core, model.alpha, model.omega
    total = sum(len(rows) for rows, _ in groups)
    loss, grads = 0.0, {"A": np.zeros_like(core), "alpha": np.zeros_like(alpha),
                        "omega": np.zeros_like(omega)}
    for rows, x in groups:
        m, n = x.shape
        weight = m / total
        data_grad, log_psi = _uniform_data(core, alpha, omega, x)
        z_grad, log_z = _uniform_z(core, alpha, omega, n)
        loss += weight * (-2 * np.mean(log_psi) + log_z)
        for key in grads:
            grads[key] += weight * (-(2 / m) * data_grad[key] + z_grad[key])
    return float(loss), grads


def _uniform_log_psi(model: UniformMPS, x):
    """Left environments (unit rows, log norms), ``psi`` of the unit rows and
    ``log|psi(x_i)|`` of the ``(m, n)`` sequences ``x``."""
    lefts = [_normalised(np.tile(model.alpha, (len(x), 1)), np.zeros(len(x)))]
    for j in range(x.shape[1]):
        lefts.append(_normalised(_push(lefts[-1][0], model.core, x[:, j], True), lefts[-1][1]))
    end, logs = lefts[-1]
    last = end @ model.omega
    with np.errstate(divide="ignore"):
        return lefts, last, logs + np.log(np.abs(last))


def _uniform_data(core, alpha, omega, x):
    """``sum_i d log|psi(x_i)|`` for ``A``, ``alpha``, ``omega`` and each ``log|psi(x_i)|``."""
    m, n = x.shape
    lefts, last, log_psi = _uniform_log_psi(UniformMPS(core, alpha, omega), x)
    right, grad = np.tile(omega, (m, 1)), np.zeros_like(core)
    right = right / np.linalg.norm(right, axis=1, keepdims=True)
    for j in range(n - 1, -1, -1):
        left = lefts[j][0]
        psi = np.sum(_push(left, core, x[:, j], True) * right, axis=1)
        grad += outer_by_symbol(left, right / psi[:, None], x[:, j], core.shape[1])
        right = _normalised(_push(right, core, x[:, j], False), np.zeros(m))[0]
    end = lefts[-1][0]
    return {"A": grad, "alpha": np.sum(right / (right @ alpha)[:, None], axis=0),
            "omega": np.sum(end / last[:, None], axis=0)}, log_psi


def _uniform_z(core, alpha, omega, n):
    """``d log Z_n`` for ``A``, ``alpha``, ``omega`` and ``log Z_n`` (transfer environments)."""
    heads, logs = [np.outer(alpha, alpha)], [0.0]
    for _ in range(n):
        env, log = _transfer(heads[-1], core, True)
        heads.append(env)
        logs.append(logs[-1] + log)
    tail, grad = np.outer(omega, omega), np.zeros_like(core)
    for j in range(n - 1, -1, -1):
        dz = _z_pull(heads[j], core, tail)
        grad += dz / (np.sum(dz * core) / 2)
        tail, _ = _transfer(tail, core, False)
    z_alpha = alpha @ tail @ alpha
    end = heads[-1]
    return ({"A": grad, "alpha": 2 * tail @ alpha / z_alpha,
             "omega": 2 * end @ omega / (omega @ end @ omega)},
            logs[-1] + float(np.log(omega @ end @ omega)))


@dataclass
class UniformOptions:
    """``rank``: bond size; ``lr``: Adam step; ``max_iter``: full-batch steps (``iterations``
    before 0.2);
    ``tol``: stop when a step changes the NLL by less than this (nats)."""

    rank: int = field(default=8, metadata={"min": 1})
    lr: float = field(default=0.02, metadata={"above": 0})
    max_iter: int = field(default=300, metadata={"min": 1})
    tol: float = 0.0
    seed: int = 0
    progress: bool = True
    callback: object = None


def train_uniform(sequences, d: int = 2, start: UniformMPS | None = None,
                  **options) -> UniformMPS:
    """A :class:`UniformMPS` fitted by Adam to ``sequences`` of any lengths (1-d arrays of
    symbols ``0..d-1``; see :func:`encode` for strings). History: one record per step
    (``iteration`` from 1, ``loss``: the NLL, ``time``); ``iterations=`` is the old name of
    ``max_iter=`` (deprecated)."""
    check_arguments(train_uniform, {"d": d}, {"d": {"min": 2}})
    opts = born_options(UniformOptions, options, "train_uniform")
    groups = list(_by_length(sequences, d))
    model = start if start is not None else UniformMPS.random(d, opts.rank, opts.seed)
    tensors = {"A": model.core.copy(), "alpha": model.alpha.copy(), "omega": model.omega.copy()}
    adam, history, converged, begin = Adam(tensors, None), [], False, time.perf_counter()
    with Progress(opts.max_iter, desc="umps", enabled=opts.progress) as bar:
        for number in range(1, opts.max_iter + 1):
            current = UniformMPS(tensors["A"], tensors["alpha"], tensors["omega"])
            loss, grads = uniform_nll_and_grad(current, groups)
            adam.step(tensors, grads, opts.lr)
            _rescale(tensors, groups[-1][1].shape[1])
            history.append(record(number, loss, None, time.perf_counter() - begin))
            bar.update(nll=loss)
            converged = number > 1 and abs(history[-2]["loss"] - loss) <= opts.tol
            if wants_stop(opts.callback, history[-1]) or converged:
                break
    return UniformMPS(tensors["A"], tensors["alpha"], tensors["omega"], history, converged,
                      time.perf_counter() - begin)


def _rescale(tensors: dict, length: int) -> None:
    """Scale the core so that ``Z_length`` is about 1 and ``alpha``, ``omega`` to unit norm
    (``p`` is unchanged: ``Z_n`` absorbs it), so long sequences neither under- nor overflow."""
    for key in ("alpha", "omega"):
        tensors[key] /= np.linalg.norm(tensors[key])
    log_z = UniformMPS(tensors["A"], tensors["alpha"], tensors["omega"]).log_z(length)
    if np.isfinite(log_z):
        tensors["A"] *= np.exp(-log_z / (2 * length))


def uniform_arrays(path, arrays: dict) -> tuple:
    """``A``, ``alpha``, ``omega`` of an archive, shapes checked (``damaged`` names ``path``)."""
    core, alpha, omega = (arrays.get(k) for k in ("A", "alpha", "omega"))
    if core is None or alpha is None or omega is None or core.ndim != 3 or (
            core.shape[0] != core.shape[2] or alpha.shape != (core.shape[0],)
            or omega.shape != alpha.shape):
        raise damaged(path, "a uniform MPS needs A (r, d, r), alpha (r,) and omega (r,), got "
                            + str({k: v.shape for k, v in arrays.items()}))
    return core.astype(float), alpha.astype(float), omega.astype(float)
