"""``tnc.fit(..., method="dmrg")``: two-site sweeps fitting a chain (TT, TT-matrix, ring) to data.

For the merged tensor ``theta`` of cores ``k, k+1`` the least-squares problem
``min ||X - M(theta)||`` has the normal equations ``Gram theta = B`` with
``B = <X, M>`` with ``theta`` removed (the projected data) and ``Gram`` = ``<M, M>``
with both copies of ``theta`` removed::

    B:   X ==================================          Gram (ring only):
         |    |    |     |     |     |    |            rest of the ring, ket
         G1 - G2 - ..  (  theta  )  .. - GN            rest of the ring, bra
                         k     k+1

On an open chain in mixed canonical form (left cores left-orthonormal, right
cores right-orthonormal) the Gram operator is the identity, so ``theta = B``;
the truncated SVD that splits ``theta`` moves the orthogonality centre and
picks the rank from the singular values (largest ``max_rank``, discarded
relative weight at most ``cutoff``). A ring solves with its (small,
``r^2 x r^2``) Gram. Missing entries: on an open chain each local problem is a
weighted least-squares problem (one ``r^2 x r^2`` system per physical entry of
``theta``, see :func:`solve_masked`); on a ring, EM (each sweep fits the data with
the missing entries imputed from the current model).

    >>> import numpy as np, tnc
    >>> true = tnc.library("tt", N=5, d=3, r=2)
    >>> x = true.contract(true.random(seed=1))
    >>> result = tnc.fit(tnc.library("tt", N=5, d=3, r=6), x, method="dmrg", progress=False)
    >>> result.info["ranks"], result.rel_error < 1e-10
    ([2, 2, 2, 2], True)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from tnc.mps.chain import (Chain, canonicalize, einsum_by_name, find_chain, pad_to, random_cores,
                           ranks, split)
from tnc.mps.environments import DataEnvironment, NoBlocks, sweep
from tnc.errors import TncError
from tnc.fitting.decompositions import conj
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record


@dataclass
class DMRGOptions:
    """Options of ``tnc.fit(..., method="dmrg")``.

    ``max_rank``: largest bond size (default and cap: the network's declared
    sizes); ``cutoff``: relative discarded weight allowed per split; ``tol``:
    stop when the loss drops by less than this fraction in a sweep (or the
    relative error falls below ``tol``); ``init_rank``: bond size of the random
    start (ranks then grow where the data needs them). With missing entries
    the ranks do not grow: a local solution that interpolates the observed
    entries has full rank, so its SVD would overfit. The fit then starts at
    ``max_rank`` and ``cutoff`` can only lower it, so pass ``max_rank``.
    :func:`tnc.fit` fits the data rescaled to unit RMS and scales the cores
    back (:mod:`tnc.fitting.rescale`), so ``c * X`` gives ``c`` times the fit of ``X``.
    """

    least_squares: ClassVar[bool] = True
    max_rank: int | None = field(default=None, metadata={"min": 1})
    cutoff: float = field(default=1e-12, metadata={"below": 1})
    tol: float = 1e-10
    max_iter: int = field(default=30, metadata={"min": 1})
    init_rank: int = field(default=1, metadata={"min": 1})
    seed: int = 0
    progress: bool = True
    callback: object = None
    init: object = None             # starting cores: a TensorTrain, FitResult or dict


def fit_chain(network) -> Chain:
    """The chain of ``network`` after checking it can be fitted to a dense tensor."""
    chain = find_chain(network)
    if network.data:
        raise TncError(f"method='dmrg' fits networks without data tensors; network "
                       f"`{network.name}` has {', '.join(network.data)} (for the ground "
                       "state of an energy network <psi|H|psi> use tnc.ground_state)")
    physical = [i for c in chain.cores for i in c.physical]
    hidden = [i for i in physical if i not in network.output]
    if hidden or len(set(physical)) != len(physical):
        raise TncError(f"method='dmrg' needs every non-bond leg of a core to be an output "
                       f"index used once; network `{network.name}` has "
                       f"{', '.join(hidden) or 'a shared physical leg'}")
    return chain


def projected_data(chain: Chain, cores: dict, x: np.ndarray, output, k: int) -> np.ndarray:
    """``B``: the data contracted with the conjugate of every core but ``k, k+1``; legs
    ``pair_legs(k)``."""
    pair = {k, (k + 1) % len(chain)}
    rest = [c for j, c in enumerate(chain.cores) if j not in pair]
    return einsum_by_name([tuple(output)] + [c.indices for c in rest], chain.pair_legs(k),
                          [x] + [conj(cores[c.name]) for c in rest])


def solve_ring(chain: Chain, cores: dict, k: int, b: np.ndarray) -> np.ndarray:
    """Solve ``Gram theta = B`` for a pair on a ring (the rest of the ring is not orthonormal)."""
    n = len(chain)
    pair = {k, (k + 1) % n}
    rest = [c for j, c in enumerate(chain.cores) if j not in pair]
    bonds = (chain.cores[k].left, chain.cores[(k + 1) % n].right)
    primed = {c_index: c_index + "'" for c in rest for c_index in (c.left, c.right)}
    terms = [c.indices for c in rest] + [tuple(primed.get(i, i) for i in c.indices) for c in rest]
    gram = einsum_by_name(terms, bonds + tuple(primed[i] for i in bonds),   # rows conjugate
                          [conj(cores[c.name]) for c in rest] + [cores[c.name] for c in rest])
    legs = chain.pair_legs(k)
    axes = [legs.index(i) for i in bonds]
    moved = np.moveaxis(b, axes, [0, 1])
    side = gram.shape[0] * gram.shape[1]
    solution, *_ = np.linalg.lstsq(gram.reshape(side, side), moved.reshape(side, -1),
                                   rcond=1e-12)
    return np.moveaxis(solution.reshape(moved.shape), [0, 1], axes)


def _side(chain: Chain, cores: dict, members, bond):
    """Cores ``members`` contracted to a matrix with legs (their physical legs..., ``bond``)."""
    terms = [chain.cores[j].indices for j in members]
    legs = tuple(i for j in members for i in chain.cores[j].physical) + (bond,)
    return legs, einsum_by_name(terms, legs, [cores[chain.cores[j].name] for j in members])


def solve_masked(chain: Chain, cores: dict, weights: np.ndarray, output, k: int,
                 b: np.ndarray) -> np.ndarray:
    """Weighted local least squares on an open chain: one small system per physical entry.

    ``Gram[p, (a, b), (a', b')] = sum over observed entries of L[a] L[a'] R[b] R[b']``
    (``L``, ``R``: the left and right cores contracted to matrices), solved
    against ``B`` (the zero-filled data projected as usual) with the minimum-norm
    solution, so directions no observed entry sees stay zero (and do not inflate
    the ranks the split picks).
    """
    n, legs = len(chain), chain.pair_legs(k)
    terms, arrays, bonds = [tuple(output)], [weights], []
    for members, bond in ((range(k), chain.cores[k].left),
                          (range(k + 2, n), chain.cores[k + 1].right)):
        if bond is None:
            continue
        side_legs, matrix = _side(chain, cores, members, bond)
        terms += [side_legs, side_legs[:-1] + (bond + "'",)]
        arrays += [conj(matrix), matrix]                     # rows (a, b) conjugate
        bonds.append(bond)
    physical = tuple(i for i in legs if i not in bonds)
    gram = einsum_by_name(terms, physical + tuple(bonds) + tuple(i + "'" for i in bonds), arrays)
    order = [legs.index(i) for i in physical + tuple(bonds)]
    rhs = np.transpose(b, order)
    p, nb = int(np.prod(rhs.shape[:len(physical)])), int(np.prod(rhs.shape[len(physical):]))
    gram = gram.reshape(p, nb, nb)
    solution = np.linalg.pinv(gram, rcond=1e-10, hermitian=True) @ rhs.reshape(p, nb, 1)
    return np.transpose(solution.reshape(rhs.shape), np.argsort(order))


def fit_sweep(chain, cores, x, output, max_rank, cutoff, to_right, weights=None,
              env=None) -> float:
    """One pass of two-site least-squares updates; returns the largest truncation error.

    ``env``: the :class:`~tnc.mps.environments.DataEnvironment` of an open chain
    fitted to every entry (then ``B`` comes from its blocks and the sweep reads
    the data once); without it every pair contracts the whole data. ``weights``
    (1.0 observed, 0.0 missing) switches an open chain to weighted local solves;
    ``x`` then holds the data with missing entries zeroed.
    """
    n = len(chain)

    def update(k: int) -> float:
        if env is not None:
            theta = env.projected(k)
        else:
            theta = projected_data(chain, cores, x, output, k)
            if chain.closed:
                theta = solve_ring(chain, cores, k, theta)
            elif weights is not None:
                theta = solve_masked(chain, cores, weights, output, k, theta)
        return split(chain, cores, k, theta, max_rank, cutoff, to_right).error

    moving = env.moving if env is not None else NoBlocks(n)
    return sweep(moving, to_right, update, n_pairs=n if chain.closed else n - 1)[0]


def model_of(chain: Chain, cores: dict, output) -> np.ndarray:
    return einsum_by_name([c.indices for c in chain.cores], tuple(output),
                          [cores[c.name] for c in chain.cores])


def run_dmrg(problem, options: DMRGOptions):
    """Fit ``problem.network`` (a chain) to ``problem.target`` by two-site DMRG sweeps."""
    from tnc.fitting.result import FitResult
    network, target, mask = problem.network, problem.target, problem.mask
    chain = fit_chain(network)
    declared = max(network.spec.index_sizes[i] for i in _bond_names(chain))
    max_rank = min(options.max_rank or declared, declared)
    start_rank = options.init_rank if mask is None else max_rank   # see DMRGOptions
    if options.init is not None:
        from tnc.mps.tt import chain_init      # a TensorTrain, FitResult or dict of cores
        cores = chain_init(network, chain, options.init, "fit(method='dmrg')", target.dtype)
    else:
        cores = random_cores(chain, network.spec.index_sizes, start_rank,
                             np.random.default_rng(options.seed))
        cores = {k: v.astype(target.dtype) for k, v in cores.items()}
    canonicalize(chain, cores, 0)
    weighted = mask is not None and not chain.closed       # else EM (imputation)
    weights = mask.astype(target.real.dtype) if weighted else None
    x = target if mask is None or weighted else np.where(mask, target, target[mask].mean())
    norm = float(np.linalg.norm(target if mask is None else target[mask]))
    env = None if chain.closed or mask is not None else DataEnvironment(
        chain, cores, target, network.output)
    floor = 10 * float(np.finfo(target.dtype).eps)     # what the dtype resolves: 1.2e-6 in
    tol = max(options.tol, floor) if options.tol > 0 else 0.0    # float32; 0: run every sweep
    history, converged, start = [], False, time.perf_counter()
    with Progress(options.max_iter, desc="dmrg", enabled=options.progress) as bar:
        for number in range(options.max_iter):
            to_right = number % 2 == 0
            error = fit_sweep(chain, cores, x, network.output, max_rank, options.cutoff,
                              to_right, weights, env)
            loss = None if env is None else canonical_loss(cores[centre(chain, to_right)], norm)
            model = model_of(chain, cores, network.output) if loss is None else None
            record = _record(number + 1, target, mask, model, norm, error, ranks(chain, cores),
                             start, loss)
            history.append(record)
            bar.update(loss=record["loss"], max_rank=record["max_rank"])
            if mask is not None and not weighted:
                x = np.where(mask, target, model)
            converged = _converged(history, tol)
            if wants_stop(options.callback, record) or converged:
                break
    info = {"ranks": ranks(chain, cores), "chain": [c.name for c in chain.cores],
            "scale_carrier": centre(chain, len(history) % 2 == 1)}
    return FitResult(network, pad_to(network, chain, cores), "dmrg", history, converged,
                     len(history), time.perf_counter() - start, problem.inputs, info)


def centre(chain: Chain, to_right: bool) -> str:
    """The core holding the singular values after a sweep (the others are orthonormal
    factors, so it alone carries the model's scale): the last core of a rightward
    sweep of an open chain, else the first."""
    return chain.cores[-1 if to_right and not chain.closed else 0].name


def _bond_names(chain: Chain) -> list[str]:
    return [chain.bond(k) for k in range(len(chain) if chain.closed else len(chain) - 1)]


def canonical_loss(centre_core: np.ndarray, norm: float) -> float | None:
    """``||X - M||^2`` of an open chain in mixed canonical form fitted by :func:`fit_sweep`.

    The last split kept the leading singular values of ``B`` (the projected
    data), all in the centre core, so ``<X, M> = ||M||^2 = ||centre||^2`` and
    the loss is ``||X||^2 - ||centre||^2``: no reconstruction. That difference
    loses digits when the fit is close to exact, so below ``1e-6 ||X||^2``
    (relative error ``1e-3``) it returns None and the caller computes the
    residual of the reconstructed model.

    >>> canonical_loss(np.array([3.0, 0.0]), 5.0), canonical_loss(np.array([5.0]), 5.0)
    (16.0, None)
    """
    loss = norm ** 2 - squared(centre_core)
    return loss if loss > 1e-6 * norm ** 2 else None


def _record(iteration, target, mask, model, norm, error, bond_sizes, start,
            loss=None) -> dict:
    if loss is None:
        residual = target - model if mask is None else (target - model)[mask]
        loss = squared(residual)
    return record(iteration, loss, float(np.sqrt(loss)) / norm if norm > 0 else 0.0,
                  time.perf_counter() - start, truncation_error=error,
                  max_rank=max(bond_sizes), ranks=bond_sizes)


def squared(array) -> float:
    """``sum |a|^2`` of a real or complex array."""
    return float(np.vdot(array, array).real)


def _converged(history, tol) -> bool:
    if history[-1]["rel_error"] < tol:
        return True
    if len(history) < 2:
        return False
    before, now = history[-2]["loss"], history[-1]["loss"]
    steady = history[-1]["ranks"] == history[-2]["ranks"]
    # |change|: the canonical loss ||X||^2 - ||centre||^2 carries round-off of about
    # eps ||X||^2, so a stationary fit can show a tiny rise; a rise above tol is no stop
    return steady and abs(before - now) <= tol * before
