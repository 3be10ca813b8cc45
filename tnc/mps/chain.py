"""Chains of cores found in a network, and the two-site moves DMRG makes on them.

A *chain* is a set of parameter tensors linked in a path (TT/MPS, TT-matrix/MPO)
or a cycle (tensor ring) by bond indices that each join exactly two consecutive
cores. Everything else a core carries is *site* structure (physical legs)::

    left bond      right bond
       a[k-1] ── G[k] ── a[k]          core k in its declared layout;
                  │                    the bond axes sit where the text put them
                p[k]  (physical legs)

Cores are kept as arrays in the layout of their first use in the network text,
but their bond sizes change during DMRG: the declared bond sizes are only the
starting / largest sizes.

    >>> import tnc
    >>> chain = find_chain(tnc.library("tt", N=4, d=2, r=3))
    >>> [c.name for c in chain.cores], chain.closed, chain.bond(0)
    (['G[1]', 'G[2]', 'G[3]', 'G[4]'], False, 'b[1]')
    >>> chain.cores[1].physical
    ('p[2]',)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import opt_einsum as oe

from tnc.errors import TncError
from tnc.engine.graph import bond_graph
from tnc.lang.expand import einsum_symbol


@dataclass(frozen=True)
class Core:
    """One core: its legs (first use in the text) and the bonds to its neighbours."""

    name: str
    indices: tuple[str, ...]
    left: str | None
    right: str | None

    @property
    def physical(self) -> tuple[str, ...]:
        return tuple(i for i in self.indices if i not in (self.left, self.right))

    def axis(self, index: str) -> int:
        return self.indices.index(index)


@dataclass(frozen=True)
class Chain:
    """Cores in chain order; ``closed`` for a ring (core N-1 bonds back to core 0)."""

    cores: tuple[Core, ...]
    closed: bool

    def __len__(self) -> int:
        return len(self.cores)

    def bond(self, k: int) -> str:
        """The bond index between core ``k`` and core ``k + 1`` (mod N on a ring)."""
        return self.cores[k].right

    def pair_legs(self, k: int) -> tuple[str, ...]:
        """Legs of the merged tensor of cores ``k`` and ``k + 1`` (the shared bond removed)."""
        bond = self.bond(k)
        left, right = self.cores[k], self.cores[(k + 1) % len(self)]
        return (tuple(i for i in left.indices if i != bond)
                + tuple(i for i in right.indices if i != bond))


def _first_uses(network) -> dict[str, tuple[str, ...]]:
    first: dict[str, tuple[str, ...]] = {}
    for occ in network.occurrences:
        if occ.kind == "param":
            first.setdefault(occ.name, occ.indices)
    return first


def _bond_graph(network):
    """Params (first uses) as nodes; an edge per bond joining two of them (see
    :func:`tnc.engine.graph.bond_graph`), one bond per pair."""
    graph = bond_graph(network.graph)
    for a, b, indices in graph.edges(data="indices"):
        if len(indices) > 1:
            raise TncError(f"tensors `{a}` and `{b}` share two bond indices "
                           f"({indices[0]}, {indices[1]}); DMRG needs one bond "
                           "between neighbouring cores")
    return graph


def find_chain(network) -> Chain:
    """The chain (path or ring) formed by ``network``'s parameter tensors.

    Raises :class:`TncError` naming the problem when the params do not form one
    path or one cycle of at least two cores.
    """
    first = _first_uses(network)
    if len(first) < 2:
        raise TncError(f"DMRG needs a chain of at least two parameter tensors; network "
                       f"`{network.name}` has {len(first)}")
    graph = _bond_graph(network)
    _check_chain_shape(network.name, graph)
    closed = graph.number_of_edges() == graph.number_of_nodes()
    order = _walk(graph, list(first), closed)
    cores = []
    for k, name in enumerate(order):
        prev = order[k - 1] if (k > 0 or closed) else None
        nxt = order[(k + 1) % len(order)] if (k + 1 < len(order) or closed) else None
        cores.append(Core(name, first[name],
                          graph.edges[prev, name]["index"] if prev else None,
                          graph.edges[name, nxt]["index"] if nxt else None))
    return Chain(tuple(cores), closed)


def _check_chain_shape(name, graph) -> None:
    import networkx as nx                # loaded when a chain is found, not when tnc.fit loads
    degrees = dict(graph.degree())
    if not nx.is_connected(graph):
        parts = [sorted(c) for c in nx.connected_components(graph)]
        raise TncError(f"the parameter tensors of network `{name}` are not linked into one "
                       f"chain by bond indices (separate groups: {parts}); DMRG needs a "
                       "TT/MPS, TT-matrix/MPO or ring")
    branching = [n for n, d in degrees.items() if d > 2]
    if branching:
        raise TncError(f"network `{name}` is not a chain: tensor `{branching[0]}` has "
                       f"{degrees[branching[0]]} bond neighbours (DMRG supports paths and "
                       "rings; use method='als' for trees, grids and other topologies)")


def _walk(graph, declared: list[str], closed: bool) -> list[str]:
    """Cores in chain order, starting at the first-declared end (first core on a ring)."""
    ends = [n for n in declared if graph.degree(n) == 1]
    start = declared[0] if closed else ends[0]
    order, previous = [start], None
    while len(order) < graph.number_of_nodes():
        step = [n for n in graph.neighbors(order[-1]) if n != previous and n not in order]
        if closed and len(order) == 1:
            step = sorted(step, key=declared.index)[:1]
        previous = order[-1]
        order.append(step[0])
    return order


# -- contractions with changing shapes --------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _expression(equation: str, shapes: tuple):
    return oe.contract_expression(equation, *shapes, optimize="optimal"
                                  if len(shapes) <= 6 else "auto")


def einsum_by_name(terms, out, arrays):
    """Contract ``arrays`` whose legs are named by ``terms`` (tuples of index names).

    Paths are searched once per (equation, shapes) and cached, since bond sizes
    change from sweep to sweep.

    >>> a, b = np.ones((2, 3)), np.ones((3, 4))
    >>> einsum_by_name([("i", "j"), ("j", "k")], ("k", "i"), [a, b]).shape
    (4, 2)
    """
    equation = _equation(tuple(map(tuple, terms)), tuple(out))
    return _expression(equation, tuple(a.shape for a in arrays))(*arrays)


@functools.lru_cache(maxsize=4096)
def _equation(terms: tuple, out: tuple) -> str:
    symbols: dict[str, str] = {}
    for term in terms + (out,):
        for index in term:
            symbols.setdefault(index, einsum_symbol(len(symbols)))
    return ",".join("".join(symbols[i] for i in t) for t in terms) + "->" + "".join(
        symbols[i] for i in out)


# -- two-site moves -----------------------------------------------------------------------
def merge(chain: Chain, arrays: dict, k: int) -> np.ndarray:
    """Cores ``k`` and ``k + 1`` contracted over their bond; legs :meth:`Chain.pair_legs`."""
    left, right = chain.cores[k], chain.cores[(k + 1) % len(chain)]
    bond = chain.bond(k)
    return _tensordot(arrays[left.name], arrays[right.name], (left.axis(bond), right.axis(bond)))


def truncation_rank(s: np.ndarray, max_rank: int, cutoff: float) -> int:
    """Smallest rank whose discarded weight ``sum(s[r:]**2)`` is at most ``cutoff * sum(s**2)``.

    >>> truncation_rank(np.array([1.0, 0.1, 1e-8]), max_rank=5, cutoff=1e-12)
    2
    """
    weight = s ** 2
    total = weight.sum()
    if total == 0:
        return 1
    tail = np.cumsum(weight[::-1])[::-1] / total      # tail[r] = discarded weight at rank r
    keep = int(np.count_nonzero(tail > cutoff))
    return max(1, min(keep, max_rank))


def truncated_svd(matrix: np.ndarray, max_rank: int, cutoff: float):
    """``(u, s, vt, error)``: the SVD of ``matrix`` ``(m, n)`` cut at :func:`truncation_rank`.

    ``u`` is ``(m, rank)``, ``s`` ``(rank,)``, ``vt`` ``(rank, n)``; ``error`` is the
    discarded relative weight ``sum(s[rank:]**2) / sum(s**2)``. The one split of
    every two-site sweep (ground states, DMRG fits, the MPS classifier, Born machines).

    >>> u, s, vt, error = truncated_svd(np.diag([2.0, 1.0, 1e-9]), 3, 1e-12)
    >>> u.shape, s.tolist(), round(error * 5e18)
    ((3, 2), [2.0, 1.0], 1)
    """
    if type(matrix) is np.ndarray:
        import scipy.linalg
        u, s, vt = scipy.linalg.svd(matrix, full_matrices=False, check_finite=False)
        values = s
    else:                                   # torch, ...: its own SVD, on its device
        from tnc.engine.backend import do, to_numpy
        u, s, vt = do("linalg.svd", matrix, full_matrices=False)
        values = to_numpy(s)
    rank = truncation_rank(values, max_rank, cutoff)
    total = float(np.sum(values ** 2))
    error = float(np.sum(values[rank:] ** 2) / total) if total > 0 else 0.0
    return u[:, :rank], s[:rank], vt[:rank], error


@dataclass
class Split:
    """Result of :func:`split`: the new rank and the relative discarded weight."""

    rank: int
    error: float


def split(chain: Chain, arrays: dict, k: int, theta: np.ndarray, max_rank: int,
          cutoff: float, centre_right: bool) -> Split:
    """Truncated-SVD split of ``theta`` back into cores ``k`` and ``k + 1`` (in place).

    ``theta`` has legs :meth:`Chain.pair_legs` ``(k)``. The singular values go to
    core ``k + 1`` when ``centre_right`` (core ``k`` becomes left-orthonormal),
    else to core ``k``.
    """
    left, right = chain.cores[k], chain.cores[(k + 1) % len(chain)]
    n_left = len(left.indices) - 1
    rows = theta.shape[:n_left]
    u, s, vt, error = truncated_svd(theta.reshape(math.prod(rows), -1), max_rank, cutoff)
    rank = s.shape[0]
    if centre_right:
        vt = s[:, None] * vt
    else:
        u = u * s
    bond = chain.bond(k)
    arrays[left.name] = _moveaxis(u.reshape(tuple(rows) + (rank,)), -1, left.axis(bond))
    arrays[right.name] = _moveaxis(vt.reshape((rank,) + tuple(theta.shape[n_left:])), 0,
                                   right.axis(bond))
    return Split(rank, error)


def move_centre(chain: Chain, arrays: dict, k: int, to_right: bool) -> None:
    """QR step: make core ``k`` orthonormal and push its remainder into the neighbour."""
    core = chain.cores[k]
    bond = core.right if to_right else core.left
    other = chain.cores[(k + 1) % len(chain) if to_right else k - 1]
    a = _moveaxis(arrays[core.name], core.axis(bond), -1)
    if type(a) is np.ndarray:
        q, r = np.linalg.qr(a.reshape(-1, a.shape[-1]))
    else:
        from tnc.engine.backend import do
        q, r = do("linalg.qr", a.reshape(-1, a.shape[-1]))
    arrays[core.name] = _moveaxis(q.reshape(tuple(a.shape[:-1]) + (q.shape[1],)), -1,
                                  core.axis(bond))
    b = _tensordot(r, arrays[other.name], (1, other.axis(bond)))
    arrays[other.name] = _moveaxis(b, 0, other.axis(bond))


def _moveaxis(array, source: int, destination: int):
    """``numpy.moveaxis`` for numpy arrays, the library's own (``torch.movedim``) else."""
    if type(array) is np.ndarray:
        return np.moveaxis(array, source, destination)
    from tnc.engine.backend import do
    return do("moveaxis", array, source, destination)


def _tensordot(a, b, axes):
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.tensordot(a, b, axes=axes)
    from tnc.engine.backend import do
    axes = tuple([x] if isinstance(x, int) else list(x) for x in axes)   # torch wants lists
    return do("tensordot", a, b, axes=axes)


def canonicalize(chain: Chain, arrays: dict, centre: int) -> None:
    """Mixed canonical form: cores left of ``centre`` left-, right of it right-orthonormal.

    On a ring the closing bond is left alone (no gauge makes a ring canonical).
    """
    for k in range(centre):
        move_centre(chain, arrays, k, to_right=True)
    for k in range(len(chain) - 1, centre, -1):
        move_centre(chain, arrays, k, to_right=False)


def random_cores(chain: Chain, sizes: dict, rank: int, rng) -> dict:
    """Gaussian cores with every bond of size ``min(rank, declared size)``."""
    arrays = {}
    for core in chain.cores:
        shape = tuple(min(rank, sizes[i]) if i in (core.left, core.right) else sizes[i]
                      for i in core.indices)
        arrays[core.name] = rng.standard_normal(shape)
    return arrays


def ranks(chain: Chain, arrays: dict) -> list[int]:
    """Current bond sizes, bond ``k`` joining cores ``k`` and ``k + 1``."""
    n = len(chain) if chain.closed else len(chain) - 1
    return [arrays[chain.cores[k].name].shape[chain.cores[k].axis(chain.bond(k))]
            for k in range(n)]


def pad_to(network, chain: Chain, cores: dict) -> dict:
    """Cores zero-padded to the network's declared bond sizes (exact: zeros add nothing)."""
    sizes = network.spec.index_sizes
    padded = {}
    for core in chain.cores:
        array = cores[core.name]
        target = tuple(sizes[i] for i in core.indices)
        if any(a > t for a, t in zip(array.shape, target)):
            raise TncError(f"core `{core.name}` has shape {array.shape}, larger than the "
                           f"declared {target}")
        if type(array) is np.ndarray:
            padded[core.name] = np.pad(array, [(0, t - a) for a, t in zip(array.shape, target)])
            continue
        from tnc.engine.backend import zeros
        padded[core.name] = zeros(target, like=array)
        padded[core.name][tuple(slice(0, a) for a in array.shape)] = array
    return padded
