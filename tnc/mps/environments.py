"""One moving environment and one sweep driver for the three DMRG uses.

A two-site step on the pair of sites ``(k, k+1)`` of an ``n``-site chain needs
everything to the left of the pair and everything to the right of it, each
contracted into one block::

    L[k]: sites 0 .. k-1        pair k, k+1        R[k+2]: sites k+2 .. n-1

:class:`MovingEnvironment` keeps these blocks (modelled on quimb's
``MovingEnvironment``): ``L[0]`` and ``R[n]`` are given, the right blocks are
built once from the end, and after each update :meth:`~MovingEnvironment.move`
adds one block, made from its neighbour and one site, so a sweep touches each
site once. What a block *is* belongs to the client:

- ground states (:mod:`tnc.mps.dmrg`): ket, MPO and bra of the sites contracted;
- DMRG fitting (:mod:`tnc.mps.dmrg_fit`, :class:`DataEnvironment`): products of
  cores on the short side, the data tensor contracted with the cores on the
  long side, so a sweep reads the data once;
- the MPS classifier (:mod:`tnc.mps.mps_classifier`): per-sample features
  contracted with the cores.

    >>> grow = lambda block, k: block + [k]
    >>> env = MovingEnvironment(4, grow, lambda block, k: [k] + block, [], [])
    >>> env.pair(0)
    ([], [2, 3])
    >>> worst, last = sweep(env, True, lambda k: 0.1 * k)
    >>> env.pair(2), worst, last
    (([0, 1], []), 0.2, 2)
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np


class MovingEnvironment:
    """Left blocks ``L[k]`` (sites ``< k``) and right blocks ``R[k]`` (sites ``>= k``).

    ``grow_left(L[k], k) -> L[k+1]`` adds site ``k`` on the right of a left
    block; ``grow_right(R[k+1], k) -> R[k]`` adds site ``k`` on the left of a
    right block. The constructor builds ``R[n-1] .. R[2]``, the blocks a
    rightward sweep from pair 0 uses.
    """

    def __init__(self, n: int, grow_left: Callable, grow_right: Callable, first, last):
        self.n = n
        self._grow_left, self._grow_right = grow_left, grow_right
        self.left = {0: first}
        self.right = {n: last}
        for k in range(n - 1, 1, -1):
            self.right[k] = grow_right(self.right[k + 1], k)

    def pair(self, k: int) -> tuple:
        """``(L[k], R[k+2])``: the environment of the pair ``(k, k+1)``."""
        return self.left[k], self.right[k + 2]

    def move(self, k: int, to_right: bool) -> None:
        """After pair ``(k, k+1)`` was updated: make ``L[k+1]`` (moving right) or ``R[k+1]``."""
        if to_right:
            self.left[k + 1] = self._grow_left(self.left[k], k)
        else:
            self.right[k + 1] = self._grow_right(self.right[k + 2], k + 1)


class NoBlocks:
    """The environment of sweeps whose local problems contract everything themselves
    (DMRG fits of rings and of masked data): :func:`sweep` moves it for nothing."""

    def __init__(self, n: int):
        self.n = n

    def move(self, k: int, to_right: bool) -> None:
        pass


def pairs(n_pairs: int, to_right: bool, stop: int | None = None) -> list[int]:
    """Pairs a sweep visits in order, ending at pair ``stop`` if given.

    >>> pairs(4, False), pairs(4, True, stop=1)
    ([3, 2, 1, 0], [0, 1])
    """
    order = list(range(n_pairs) if to_right else range(n_pairs - 1, -1, -1))
    return order if stop is None else order[:order.index(stop) + 1]


def sweep(env: MovingEnvironment, to_right: bool, update: Callable[[int], float],
          stop: int | None = None, n_pairs: int | None = None) -> tuple[float, int]:
    """One pass of two-site updates: ``update(k)`` per pair, then the environment moves.

    ``update(k)`` solves and splits pair ``k`` and returns its truncation error.
    The environment does not move past the last pair: the next sweep starts
    there, from the blocks it already has. Returns ``(largest error, last pair)``.
    """
    order = pairs(env.n - 1 if n_pairs is None else n_pairs, to_right, stop)
    worst = 0.0
    for k in order:
        worst = max(worst, update(k))
        if k != order[-1]:
            env.move(k, to_right)
    return worst, order[-1]


# -- data-tensor environments of DMRG fitting ----------------------------------------------
def standard_core(core, array) -> np.ndarray:
    """A core in the standard layout ``(left bond, physical legs merged, right bond)``.

    A missing bond (the ends of an open chain) becomes a leg of size 1.

    >>> import tnc
    >>> from tnc.mps.chain import find_chain
    >>> end = find_chain(tnc.library("tt", N=3, d=2, r=4)).cores[0]
    >>> standard_core(end, np.ones((2, 4))).shape
    (1, 2, 4)
    """
    legs = [core.left] * (core.left is not None) + list(core.physical) + (
        [core.right] * (core.right is not None))
    moved = np.transpose(array, [core.axis(i) for i in legs])
    r_left = moved.shape[0] if core.left is not None else 1
    r_right = moved.shape[-1] if core.right is not None else 1
    return moved.reshape(r_left, -1, r_right)


def _project(basis: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``basis.T @ data`` (no conjugation): ``basis (m, r)``, ``data (m, n)`` -> ``(r, n)``;
    real data streams through the compiled kernels (:func:`tnc.engine.streams.project`:
    0.63 ms against BLAS's 1.1 ms for 1024 x 1024 by 8 columns, measured), complex data
    takes BLAS."""
    if np.iscomplexobj(data) or np.iscomplexobj(basis):
        return basis.T @ data
    from tnc.engine import streams
    return streams.project(basis, data)


class DataEnvironment:
    """The data tensor projected onto pairs of an open chain, a sweep reading the data once.

    With the chain cut in the middle at site ``h = n // 2``, the blocks of the
    :class:`MovingEnvironment` are (``A``: merged physical legs, ``r``: bond)::

        L[k], k <  h:  cores 0..k-1 multiplied out          (A[0..k-1], r_k)
        L[k], k >= h:  the data with cores 0..k-1 contracted (r_k, A[k..n-1])
        R[k], k >  h+1: cores k..n-1 multiplied out          (r_k, A[k..n-1])
        R[k], k <= h+1: the data with cores k..n-1 contracted (A[0..k-1], r_k)

    so for every pair exactly one side holds the data, and only ``L[h]`` and
    ``R[h+1]`` read the whole data tensor (one matrix product each, made once
    per rightward resp. leftward sweep). The multiplied-out blocks hold at
    most ``r * A**(n/2)`` numbers. ``x`` has the legs ``output``.
    """

    def __init__(self, chain, cores: dict, x: np.ndarray, output):
        self.chain, self.cores = chain, cores
        physical = [i for c in chain.cores for i in c.physical]
        self.x = np.ascontiguousarray(np.transpose(x, [list(output).index(i) for i in physical]))
        n = len(chain)
        self.h = n // 2
        one = np.ones((1, 1), dtype=self.x.dtype)
        first = self.x.reshape(1, -1) if self.h == 0 else one
        last = one if n > self.h + 1 else self.x.reshape(-1, 1)
        self.moving = MovingEnvironment(n, self._grow_left, self._grow_right, first, last)

    def _core(self, k: int) -> np.ndarray:
        """Core ``k`` in the standard layout, conjugated (the blocks project the data
        onto the conjugate cores: ``B = <M without theta, X>``)."""
        core = self.chain.cores[k]
        array = standard_core(core, self.cores[core.name])
        return array.conj() if np.iscomplexobj(array) else array

    def _grow_left(self, block: np.ndarray, k: int) -> np.ndarray:
        core = self._core(k)
        r_left, a, r_right = core.shape
        if k >= self.h:                                    # data side: (r_k, A_k * rest)
            flat = block.reshape(r_left * a, -1)
            return core.reshape(r_left * a, r_right).T @ flat
        product = (block @ core.reshape(r_left, a * r_right)).reshape(-1, r_right)
        if k + 1 < self.h:
            return product
        return _project(product, self.x.reshape(product.shape[0], -1))   # the pass over the data

    def _grow_right(self, block: np.ndarray, k: int) -> np.ndarray:
        core = self._core(k)
        r_left, a, r_right = core.shape
        if k <= self.h:                                    # data side: (A_0..k-1, r_k)
            flat = block.reshape(-1, a * r_right)
            return flat @ core.reshape(r_left, a * r_right).T
        product = (core.reshape(r_left * a, r_right) @ block).reshape(r_left, -1)
        if k > self.h + 1:
            return product
        return self.x.reshape(-1, product.shape[1]) @ product.T   # the pass over the data

    def projected(self, k: int) -> np.ndarray:
        """``B``: the data contracted with every core but ``k, k+1``; legs ``pair_legs(k)``."""
        left, right = self.moving.pair(k)
        if k < self.h:                        # left: cores (A, r_k); right: data (A P P', r)
            b = left.T @ right.reshape(left.shape[0], -1)
        else:                                 # left: data (r_k, P P' Q); right: cores (r, Q)
            b = left.reshape(-1, right.shape[1]) @ right.T
        return self._to_pair_legs(k, b)

    def _to_pair_legs(self, k: int, b: np.ndarray) -> np.ndarray:
        one, two = self.chain.cores[k], self.chain.cores[k + 1]
        size = {**dict(zip(one.indices, self.cores[one.name].shape)),
                **dict(zip(two.indices, self.cores[two.name].shape))}
        legs = [one.left] * (one.left is not None) + list(one.physical) + list(two.physical) + (
            [two.right] * (two.right is not None))
        order = [legs.index(i) for i in self.chain.pair_legs(k)]
        return np.transpose(b.reshape([size[i] for i in legs]), order)
