"""Two-site DMRG for ground states: minimise <psi|H|psi> / <psi|psi> over an MPS.

The network is a scalar *energy* network in which every parameter core appears
twice (ket and bra) and data tensors (the MPO ``H[n]``) hang off the sites, as
in ``tnc.library("energy")``. Nothing is specific to that file: the chain, the
ket/bra pairing and which data tensor belongs to which site are read off the
network's occurrences.

The chain is kept in mixed canonical form, so the local problem for the merged
tensor ``theta`` of cores ``k, k+1`` is an ordinary Hermitian eigenproblem
``H_eff theta = E theta`` solved matrix-free (scipy's ``eigsh`` for numpy arrays, the
restarted Lanczos of :mod:`tnc.mps.lanczos` in the arrays' own library for torch)
with the cached environments::

    +---      ---G[k]--G[k+1]---      ---+
    |            |       |               |
    L[k]  ---- H[k] -- H[k+1] ----    R[k+2]        H_eff theta
    |            |       |               |
    +---                              ---+

``L[k]`` holds every tensor of sites ``0..k-1`` (ket, MPO, bra), ``R[k]`` every
tensor of sites ``k..N-1``; they are updated one site at a time as the sweep
moves (see :class:`Environments`).

    >>> import tnc
    >>> net = tnc.library("energy", N=6, D=8)
    >>> result = ground_state(net, tnc.heisenberg_mpo(6), progress=False)
    >>> round(result.info["energy"], 8), result.converged
    (-2.49357713, True)
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from tnc.mps.chain import (Chain, canonicalize, einsum_by_name, find_chain, merge, pad_to,
                           random_cores, ranks, split)
from tnc.engine import kernels
from tnc.mps import environments
from tnc.mps.environments import MovingEnvironment
from tnc.engine import backend
from tnc.fitting.decompositions import _ldexp, exponent_of, linalg, working_dtype
from tnc.mps import lanczos
from tnc.errors import ConvergenceWarning, TncError
from tnc.fitting.front import check_finite, register_method
from tnc.options import validated
from tnc.fitting import records
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.result import FitResult

DENSE_LIMIT = 32         # local problems this small are solved with a dense eigh
NCV = 12                 # Lanczos vectors of the local eigensolver


# -- the site structure of an energy network ---------------------------------------------
@dataclass(frozen=True)
class Term:
    """One tensor of a site group: legs, and where its array comes from."""

    indices: tuple[str, ...]
    role: str            # "ket", "bra" or "data"
    name: str


@dataclass(frozen=True)
class Sites:
    """An energy network cut into one group of tensors per chain core.

    ``groups[k]`` holds core ``k``'s ket and bra uses and the data tensors
    attached to it; ``cuts[k]`` are the indices joining sites ``< k`` to sites
    ``>= k``; ``bra_of`` maps each ket leg to the matching bra leg.
    """

    chain: Chain
    groups: tuple[tuple[Term, ...], ...]
    cuts: tuple[tuple[str, ...], ...]
    bra_of: dict

    def pair_out(self, k: int) -> tuple[str, ...]:
        """Bra legs of the merged tensor of cores ``k, k+1`` (the output of ``H_eff``)."""
        return tuple(self.bra_of[i] for i in self.chain.pair_legs(k))


def energy_sites(network) -> Sites:
    """Read the chain, ket/bra pairs and site data tensors off an energy network."""
    if network.output:
        raise TncError(f"ground_state needs a scalar network <psi|H|psi> (no output legs); "
                       f"network `{network.name}` has output {', '.join(network.output)}")
    chain = find_chain(network)
    if chain.closed:
        raise TncError("ground_state supports open chains (MPS); network "
                       f"`{network.name}` closes its cores into a ring")
    site_of = {core.name: k for k, core in enumerate(chain.cores)}
    uses: dict[str, list] = {}
    for occ in network.occurrences:
        if occ.kind == "param":
            uses.setdefault(occ.name, []).append(occ.indices)
    bra_of = _pair_ket_bra(network.name, uses)
    groups = [[Term(uses[c.name][0], "ket", c.name), Term(uses[c.name][1], "bra", c.name)]
              for c in chain.cores]
    for occ in network.occurrences:
        if occ.kind == "data":
            groups[_site_of_data(network.name, occ, uses, site_of)].append(
                Term(occ.indices, "data", occ.name))
    return Sites(chain, tuple(tuple(g) for g in groups), _cuts(groups), bra_of)


def _pair_ket_bra(name, uses) -> dict:
    bad = [t for t, u in uses.items() if len(u) != 2]
    if bad:
        raise TncError(f"ground_state needs every core used twice (ket and bra) in network "
                       f"`{name}`; `{bad[0]}` is used {len(uses[bad[0]])} time(s)")
    return {ket: bra for first, second in uses.values() for ket, bra in zip(first, second)}


def _site_of_data(name, occ, uses, site_of) -> int:
    touched = {site_of[t] for t, u in uses.items() for legs in u if set(legs) & set(occ.indices)}
    if len(touched) != 1:
        raise TncError(f"data tensor `{occ.name}` of network `{name}` touches "
                       f"{len(touched)} cores; ground_state needs each data tensor (MPO "
                       "site) attached to exactly one core")
    return touched.pop()


def _cuts(groups) -> tuple[tuple[str, ...], ...]:
    legs = [set(i for t in g for i in t.indices) for g in groups]
    cuts = []
    for k in range(len(groups) + 1):
        before, after = set().union(*legs[:k]), set().union(*legs[k:])
        cuts.append(tuple(sorted(before & after)))
    return tuple(cuts)


# -- environments ---------------------------------------------------------------------------
class Environments:
    """Left and right environments of the energy network: a
    :class:`~tnc.mps.environments.MovingEnvironment` whose blocks are::

        L[k]:  +-- G[0] ... G[k-1] -- a        R[k]:  a -- G[k] ... G[N-1] --+
               |    |         |                            |          |        |
               +-- H[0] ... H[k-1] -- w               w -- H[k] ... H[N-1] --+
               |    |         |                            |          |        |
               +-- G[0] ... G[k-1] -- c               c -- G[k] ... G[N-1] --+

    ``L[0]`` and ``R[N]`` are the scalar 1; a block grows by one site group
    (ket, MPO tensors, bra) at a time.
    """

    def __init__(self, sites: Sites, cores: dict, inputs: dict):
        self.sites, self.cores, self.inputs = sites, cores, inputs
        first = next(iter(inputs.values()), next(iter(cores.values())))
        one = backend.ones((), like=first, dtype=backend.result_dtype(*cores.values(),
                                                                       *inputs.values()))
        self.moving = MovingEnvironment(len(sites.groups), self._grow_left, self._grow_right,
                                        one, one)

    def _arrays(self, k: int, roles=("ket", "bra", "data")) -> tuple[list, list]:
        terms = [t for t in self.sites.groups[k] if t.role in roles]
        return ([t.indices for t in terms], [self._array(t) for t in terms])

    def _array(self, term: Term):
        """A term's array: the MPO tensor, the core (ket) or its conjugate (bra)."""
        if term.role == "data":
            return self.inputs[term.name]
        core = self.cores[term.name]
        return backend.conj(core) if term.role == "bra" else core

    def _grow_left(self, block, k: int):
        terms, arrays = self._arrays(k)
        cuts = self.sites.cuts
        return einsum_by_name([cuts[k]] + terms, cuts[k + 1], [block] + arrays)

    def _grow_right(self, block, k: int):
        terms, arrays = self._arrays(k)
        cuts = self.sites.cuts
        return einsum_by_name(terms + [cuts[k + 1]], cuts[k], arrays + [block])

    def local_operator(self, k: int):
        """``(terms, arrays)`` of ``H_eff`` for cores ``k, k+1``: ``L[k]``, the pair's data, ``R[k+2]``.

        The data tensors of both sites (the two MPO tensors) are contracted
        together once per local problem (a tiny block), so each matrix-vector
        product is three contractions::

            +-- a             b --+
            L[k] -- H[k]H[k+1] -- R[k+2]
            +-- c             d --+
        """
        cuts = self.sites.cuts
        left, right = self.moving.pair(k)
        t1, a1 = self._arrays(k, ("data",))
        t2, a2 = self._arrays(k + 1, ("data",))
        if not t1 + t2:
            return [cuts[k], cuts[k + 2]], [left, right]
        edges = [cuts[k], cuts[k + 2]]
        block_legs = _open_legs(t1 + t2, edges)
        block = einsum_by_name(t1 + t2, block_legs, a1 + a2)
        return [cuts[k], block_legs, cuts[k + 2]], [left, block, right]


def _open_legs(terms, others) -> tuple[str, ...]:
    """Legs of ``terms`` that appear once among them or also in ``others`` (in order)."""
    counts: dict[str, int] = {}
    for term in terms:
        for index in term:
            counts[index] = counts.get(index, 0) + 1
    elsewhere = {i for term in others for i in term}
    return tuple(i for i in counts if counts[i] == 1 or i in elsewhere)


# -- the local eigenproblem -----------------------------------------------------------------
def lowest_eigenpair(envs: Environments, k: int, theta: np.ndarray, tol: float):
    """Lowest eigenvalue and unit eigenvector of ``H_eff`` at bond ``k``, warm-started at ``theta``."""
    sites = envs.sites
    legs, out = sites.chain.pair_legs(k), sites.pair_out(k)
    terms, arrays = envs.local_operator(k)
    n = math.prod(theta.shape)
    numpy = type(theta) is np.ndarray
    if n <= DENSE_LIMIT:
        h = einsum_by_name(terms, out + legs, arrays).reshape(n, n)
        values, vectors = linalg("eigh", 0.5 * (h + backend.conj(h).T))
        return float(values[0]), vectors[:, 0].reshape(theta.shape)

    steps = _matvec_steps(terms, arrays, legs, out) if numpy else None

    def matvec(x):
        if steps is None:
            return einsum_by_name(terms + [legs], out, arrays + [x.reshape(theta.shape)]).ravel()
        return _apply_steps(steps, x.reshape(theta.shape)).ravel()

    if not numpy:                        # torch, ...: Lanczos in its own operations
        value, vector = lanczos.lowest_eigenpair(matvec, theta.reshape(-1), tol, ncv=2 * NCV)
        return value, vector.reshape(theta.shape)
    import scipy.sparse.linalg as sla    # the Lanczos path only
    operator = sla.LinearOperator((n, n), matvec=matvec, dtype=theta.dtype)
    values, vectors = sla.eigsh(operator, k=1, which="SA", v0=theta.ravel(), tol=tol,
                                ncv=min(n, NCV))
    return float(values[0]), vectors[:, 0].reshape(theta.shape)


def _matvec_steps(terms, arrays, legs, out):
    """``H_eff x`` as one matrix product per operator term, applied to ``x`` in turn.

    Step ``j`` multiplies the running tensor by term ``j`` (``L[k]``, the MPO
    block, ``R[k+2]``), laid out once per local problem as a contiguous matrix
    (shared legs x its other legs), so a product costs one transpose of the
    running tensor and one GEMM (about 5x faster than a contraction path
    re-dispatched per product at bond 64). Returns the steps (transpose of the
    running tensor, its number of kept legs, the matrix, the shape of the legs
    the matrix adds) and the final transpose to ``out``, or None where a leg is shared by
    more than two of the tensors (then :func:`einsum_by_name` contracts).
    """
    current, steps = list(legs), []
    for j, (term, array) in enumerate(zip(terms, arrays)):
        if not term:                      # L[0] or R[N]: the scalar 1 of an open end
            steps.append((None, 0, array, ()))
            continue
        later = {i for t in terms[j + 1:] for i in t} | set(out)
        shared = [i for i in current if i in term]
        if not shared or any(i in later for i in shared):
            return None
        rest = [i for i in current if i not in shared]
        other = [i for i in term if i not in shared]
        sizes = dict(zip(term, array.shape))
        matrix = np.ascontiguousarray(np.transpose(array, [term.index(i) for i in shared + other])
                                      ).reshape(math.prod(sizes[i] for i in shared), -1)
        steps.append(([current.index(i) for i in rest + shared], len(rest), matrix,
                      tuple(sizes[i] for i in other)))
        current = rest + other
    if sorted(current) != sorted(out):
        return None
    return steps, [current.index(i) for i in out]


def _apply_steps(plan, x: np.ndarray) -> np.ndarray:
    steps, final = plan
    for perm, n_rest, matrix, other in steps:
        if perm is None:
            x = x * matrix
            continue
        moved = np.transpose(x, perm)
        rest = moved.shape[:n_rest]
        x = (moved.reshape(math.prod(rest), matrix.shape[0]) @ matrix).reshape(rest + other)
    return np.transpose(x, final)


# -- sweeps ---------------------------------------------------------------------------------
@dataclass
class GroundStateOptions:
    """Options of :func:`ground_state`.

    ``max_rank``: largest bond dimension, an int or a per-sweep schedule (the
    last entry repeats; capped by the network's declared bond sizes);
    ``cutoff``: discarded relative weight allowed per split; ``tol``: stop when
    the energy changes by less than this between sweeps, relative to
    ``|energy|`` (so a Hamiltonian's scale does not matter); ``max_iter``: sweeps at
    most (``max_sweeps`` before 0.2); ``init``: starting cores, name -> array, a
    FitResult or a :class:`~tnc.mps.tt.TensorTrain` (``initial`` before 0.2); ``init_rank``: bond
    size of the random start; ``eig_tol``: tolerance of the local eigensolver
    (default ``1e-2 * sqrt(tol)``, see :func:`_eig_tol`).
    """

    max_rank: int | list | None = field(default=None, metadata={"min": 1})
    cutoff: float = field(default=1e-12, metadata={"below": 1})
    tol: float = 1e-10
    max_iter: int = field(default=30, metadata={"min": 1})
    init_rank: int = field(default=4, metadata={"min": 1})
    eig_tol: float | None = None
    seed: int = 0
    progress: bool = True
    callback: object = None
    init: object = None


def _schedule(max_rank, declared: int, sweeps: int) -> list[int]:
    values = [declared] if max_rank is None else (
        [max_rank] if isinstance(max_rank, int) else list(max_rank))
    if not values or any(int(v) < 1 for v in values):
        raise TncError(f"max_rank must be a positive int or a list of them, got {max_rank!r}")
    values = values + [values[-1]] * max(0, sweeps - len(values))
    return [min(int(v), declared) for v in values]


def sweep(envs: Environments, max_rank: int, cutoff: float, eig_tol: float,
          to_right: bool) -> dict:
    """One pass of two-site updates along the chain; returns the sweep's record."""
    chain, cores = envs.sites.chain, envs.cores
    energy = [math.nan]

    def update(k: int) -> float:
        energy[0], theta = lowest_eigenpair(envs, k, merge(chain, cores, k), eig_tol)
        return split(chain, cores, k, theta, max_rank, cutoff, to_right).error

    worst, _ = environments.sweep(envs.moving, to_right, update)
    bond_sizes = ranks(chain, cores)
    return {"energy": energy[0], "truncation_error": worst, "max_rank": max(bond_sizes),
            "ranks": bond_sizes}


@records.budgeted
def ground_state(network, inputs: dict, **options) -> FitResult:
    """Lowest eigenvalue of the MPO in ``inputs`` over the MPS cores of ``network``.

    ``network``: a scalar network <psi|H|psi> (e.g. ``tnc.library("energy", N=L,
    D=chi, W=5)``); ``inputs``: its data tensors (e.g. :func:`tnc.heisenberg_mpo`).
    Options: see :class:`GroundStateOptions`; ``memory_limit`` (bytes, ``"auto"``
    or None) bounds every allocation the sweeps check. Returns a :class:`FitResult` whose
    tensors are the normalised cores zero-padded to the declared bond sizes
    (so ``result.reconstruct()`` is the energy); ``info["energy"]`` is the
    final energy, ``info["ranks"]`` the bond sizes actually used, ``history``
    one record per sweep (``iteration`` from 1, ``loss`` = ``energy``,
    ``rel_error`` None: there is no data, ``time``, ``truncation_error``,
    ``max_rank``, ``ranks``, ``bond_limit``); the callback gets the same record.
    ``info["max_truncation_error"]`` is
    the largest truncation error at the final bond limit; when it exceeds
    ``cutoff`` the bond limit decided the answer, ``info["bond_limited"]`` is
    True, ``converged`` False and a warning says so (see :func:`bond_limited`).

    dtypes and backends: the sweeps run in the MPO's dtype joined with the start's
    (:func:`run_dtype`: float32, float64, complex64, complex128; a complex Hermitian
    MPO such as :func:`tnc.mps.mpo.xy_dm_mpo` gives complex cores) and on its backend
    (torch MPO tensors give torch cores on their device). For complex cores the
    network's plain contraction ``result.reconstruct()`` is ``psi^T H psi``, not the
    energy: read ``info["energy"]`` (the cores are psi with ``<psi|H|psi> = energy``
    for H the matrix with rows the ket legs ``p``, see :func:`_conjugated`).
    """
    opts = validated(GroundStateOptions, records.renamed(
        options, "ground_state", records.GROUND_STATE_ALIASES), "ground_state",
        records.spelled(options, records.GROUND_STATE_ALIASES))
    network.check_tensors({**{k: np.broadcast_to(0.0, s) for k, s in network.params.items()},
                           **inputs})      # shapes only: nothing the size of a core is made
    sites = energy_sites(network)
    declared = max(network.spec.index_sizes[c.right] for c in sites.chain.cores[:-1])
    schedule = _schedule(opts.max_rank, declared, opts.max_iter)
    check_sweep_memory(network, sites.chain, max(schedule))
    scaled, exponent = scaled_inputs(network, inputs)
    dtype = run_dtype(scaled, opts.init)
    like = next(iter(scaled.values()))         # the MPO's backend (and device): the sweeps'
    cores = _initial_cores(network, sites.chain, opts, dtype, like)
    envs = Environments(sites, cores, {k: backend.astype(v, dtype) for k, v in scaled.items()})
    floor = 10 * float(np.finfo(dtype).eps)    # what the dtype resolves (see run_dtype)
    eig_tol = max(opts.eig_tol if opts.eig_tol is not None else _eig_tol(opts.tol), floor)
    tol = max(opts.tol, floor) if opts.tol > 0 else opts.tol     # 0: run every sweep
    history, converged, start = [], False, time.perf_counter()
    sizes = [math.prod(v.shape) for v in scaled.values()]     # small blocks: serial BLAS
    with Progress(opts.max_iter, desc="dmrg", enabled=opts.progress) as bar, \
            kernels.blas_serial(*sizes):
        for number in range(opts.max_iter):
            own = sweep(envs, schedule[number], opts.cutoff, eig_tol, number % 2 == 0)
            energy = float(np.ldexp(own.pop("energy"), exponent))
            record = records.record(number + 1, energy, None, time.perf_counter() - start,
                                    energy=energy, **own, bond_limit=schedule[number])
            history.append(record)
            bar.update(energy=record["energy"], max_rank=record["max_rank"])
            converged = _converged(history, tol, schedule, number)
            if wants_stop(opts.callback, record) or converged:
                break
    result = _result(network, sites.chain, _conjugated(cores), inputs, history, converged,
                     start)
    return bond_limited(result, opts.cutoff)


def scaled_inputs(network, inputs: dict) -> tuple[dict, int]:
    """The MPO tensors divided by powers of two to unit size, and ``e`` with ``H = 2**e H_scaled``.

    Exact, and it keeps the environments (products of N tensors) in range for
    Hamiltonians scaled by anything from 1e-200 to 1e200; energies are scaled
    back with ``e``. Non-finite entries are refused here, by name.
    """
    uses: dict[str, int] = {}
    for occ in network.occurrences:
        if occ.kind == "data":
            uses[occ.name] = uses.get(occ.name, 0) + 1
    scaled, total = {}, 0
    for name, value in inputs.items():
        array = value if backend.backend_name(value) == "torch" else np.asarray(value)
        array = backend.astype(array, working_dtype(backend.dtype_of(array),
                                                    f"ground_state (data tensor `{name}`)"))
        check_finite(array if type(array) is np.ndarray else backend.to_numpy(array),
                     f"ground_state: data tensor `{name}`", "; the Hamiltonian must be finite")
        exponent = exponent_of(array)
        scaled[name] = _ldexp(array, -exponent)
        total += exponent * uses.get(name, 0)
    return scaled, total


def run_dtype(inputs: dict, init) -> np.dtype:
    """The dtype the sweeps run in: the MPO tensors' and the start's joined by numpy's
    rules (float32, float64, complex64 or complex128; a complex Hermitian MPO gives
    complex cores). In float32 the energy tolerance ``tol`` and the eigensolver's are
    raised to at least ``10 eps`` (1.2e-6), what the dtype resolves.

    >>> run_dtype({"H[1]": np.ones(2, np.float32)}, None), run_dtype({"H": np.ones(2) * 1j}, None)
    (dtype('float32'), dtype('complex128'))
    """
    from tnc.fitting.rescale import given_tensors
    start = given_tensors(init) or {}
    if init is not None and hasattr(init, "cores"):              # a TensorTrain
        start = {"init": init.cores[0]}
    return working_dtype(backend.result_dtype(*inputs.values(), *start.values()), "ground_state")


def bond_limited(result: FitResult, cutoff: float) -> FitResult:
    """Record the largest truncation error at the final bond limit; flag a bond-limited answer.

    ``info["max_truncation_error"]`` is the largest discarded weight of any
    split in the sweeps run at the last bond limit. Above ``cutoff``, the bond
    limit (``max_rank`` or the declared bond size), not the truncation
    tolerance, decided the answer: the energy is then only the best of that
    bond dimension, so ``converged`` is False (``info["energy_converged"]``
    keeps whether the energy stopped changing) and a
    :class:`~tnc.errors.ConvergenceWarning` says so.
    """
    history = result.history
    if not history:
        return result
    limit = history[-1]["bond_limit"]
    worst = max(h["truncation_error"] for h in history if h["bond_limit"] == limit)
    limited = worst > cutoff
    result.info.update(max_truncation_error=worst, bond_limited=limited,
                       energy_converged=result.converged)
    if limited:
        result.converged = False
        warnings.warn(f"ground_state: the bond limit {limit} decided the answer, not the "
                      f"truncation tolerance: truncation error {worst:.3g} > cutoff "
                      f"{cutoff:g}, so energy {result.info['energy']:.10g} is the best at bond "
                      f"dimension {limit} only; raise max_rank (or the network's bond size) "
                      "for the ground state", ConvergenceWarning, stacklevel=3)
    return result


def _eig_tol(tol: float) -> float:
    """Local eigensolver tolerance for a sweep tolerance ``tol``.

    The energy error of a Ritz pair is quadratic in its residual, so a residual
    of about ``sqrt(tol)`` is enough; tighter solves only cost Lanczos steps.
    """
    return float(min(1e-4, max(1e-9, 1e-2 * math.sqrt(tol))))


def _converged(history, tol, schedule, number) -> bool:
    """The energy changed by at most ``tol`` relative to its size, at the final bond limit."""
    if len(history) < 2 or schedule[number] != schedule[-1]:
        return False
    now, before = history[-1]["energy"], history[-2]["energy"]
    return abs(now - before) <= tol * max(abs(now), abs(before))


def check_sweep_memory(network, chain: Chain, bond: int) -> None:
    """:class:`~tnc.errors.MemoryLimitError` before the first sweep when the result's
    cores (padded to the declared bond sizes) and the eigensolver's ``NCV + 2``
    two-site blocks at bond size ``bond`` would not fit in memory."""
    sizes = network.spec.index_sizes
    d = max((sizes[i] for core in chain.cores for i in core.physical), default=1)
    network.check_arrays_fit({**network.params, f"{NCV + 2} two-site blocks": (
        NCV + 2, bond, d, d, bond)}, "MPS cores and eigensolver vectors of ground_state")


def _initial_cores(network, chain, opts, dtype, like) -> dict:
    """The start (``init`` or random), on ``like``'s backend in ``dtype``, canonical at
    core 0 and normalised."""
    if opts.init is not None:
        from tnc.mps.tt import chain_init      # a TensorTrain or FitResult as well as a dict
        cores = chain_init(network, chain, opts.init, "ground_state", dtype)
    else:
        cores = random_cores(chain, network.spec.index_sizes, opts.init_rank,
                             np.random.default_rng(opts.seed))
    cores = {k: backend.astype(backend.asarray(backend.to_numpy(v), like), dtype)
             for k, v in cores.items()}
    canonicalize(chain, cores, 0)
    first = chain.cores[0].name
    cores[first] = cores[first] / float(linalg("norm", cores[first]))
    return _conjugated(cores)


def _conjugated(cores: dict) -> dict:
    """The cores conjugated where complex: the sweeps hold phi = conj(psi).

    The energy network contracts the first use of each core with the MPO's row legs
    ``p`` and the second with its column legs ``q``, and the sweeps conjugate the
    second (:meth:`Environments._array`), so they minimise
    ``phi^T H conj(phi) = <conj(phi)| H |conj(phi)>`` for H the matrix with rows ``p``
    (:func:`tnc.mps.mpo.dense_hamiltonian`): the state is ``psi = conj(phi)``. A start
    goes in conjugated and the result comes out conjugated, so both are psi.
    """
    return {k: backend.conj(v) for k, v in cores.items()}


def _result(network, chain, cores, inputs, history, converged, start) -> FitResult:
    info = {"energy": history[-1]["energy"] if history else math.nan,
            "ranks": ranks(chain, cores), "chain": [c.name for c in chain.cores]}
    return FitResult(network, pad_to(network, chain, cores), "dmrg", history, converged,
                     len(history), time.perf_counter() - start, dict(inputs), info)


def _register() -> None:
    from tnc.fitting.dtypes import COMPLEX, REAL
    from tnc.mps.dmrg_fit import DMRGOptions, run_dmrg
    register_method("dmrg", DMRGOptions, run_dmrg, dtypes=REAL + COMPLEX)


_register()
