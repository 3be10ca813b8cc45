"""One pairwise contraction laid out as one matrix product with the fewest copies.

Every pairwise step of the engine (the forward and reverse sweeps of
:mod:`tnc.engine.grad`, the cached trees of :mod:`tnc.engine.trees` that ALS,
coupled models and the decompositions run) is planned here, once, by
:func:`pairwise`. Legs carried by one operand only and not kept are summed
first; legs shared and kept are batch legs (a batched product). Otherwise each
operand becomes a matrix (free legs x contracted legs, or its transposed view
when its legs already lie the other way round), in either operand order and with
the contracted legs in either operand's order, and the layout transposing the
fewest elements wins. Where the contracted legs form one run in the middle of
the bigger operand, a batched product over its leading legs reads it in place;
and a big float operand streams through the compiled kernel of
:mod:`tnc.engine.kernels` (``Y[p, r, q] = sum_s big[p, s, q] small[s, r]``).

A recipe runs on any array library: numpy arrays take numpy (and the kernels)
directly; torch, jax and cupy arrays the same sums, permutes, reshapes and one
``@`` (a kernel step becomes the batched product ``small.T @ big``), operands of
two dtypes cast to their numpy promotion first (torch refuses a float32 by
float64 product). Nothing branches on values and nothing is written in place,
so a recipe traces under ``jax.jit``.

    >>> import numpy as np
    >>> sizes = {"i": 20, "j": 64, "k": 64, "r": 2}
    >>> p = pairwise(("i", "j", "k"), ("j", "r"), {"i", "k", "r"}, sizes)
    >>> p.out, p.copied        # X(i,j,k) x B(j,r): kernel or batched over i, X read in place
    (('i', 'r', 'k'), 0)
    >>> X, B = np.ones((20, 64, 64)), np.ones((64, 2))
    >>> np.allclose(p(X, B), np.einsum("ijk,jr->irk", X, B))
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tnc.engine import kernels
from tnc.engine.backend import promote, transpose

Indices = tuple           # leg labels: ints (grad) or index names (trees)
SKINNY = 64               # products with this many more big-operand rows than columns
BATCHED_GEMM_MIN = 4096   # batch matrices this large beat copying the operand for one GEMM


@dataclass(frozen=True)
class Operand:
    """How to lay one operand out as a (batched) matrix: optional transpose, reshape, swap."""

    sum_axes: tuple[int, ...]       # legs summed away first (carried by this operand only)
    perm: tuple[int, ...] | None    # transpose to the matrix layout (None: already there)
    shape: tuple[int, ...]          # 2-d (rows, cols) or 3-d (batch, rows, cols)
    swap: bool                      # reshape gave (cols, rows): use the transposed view

    def __call__(self, x):
        if type(x) is not np.ndarray:
            return self._any(x)
        if self.sum_axes:
            x = x.sum(axis=self.sum_axes)
        if self.perm is not None:
            x = x.transpose(self.perm)
        x = x.reshape(self.shape)
        return x.swapaxes(-1, -2) if self.swap else x

    def _any(self, x):
        """The same layout on a torch, jax or cupy array (a reshape only where the shape
        changes: each torch call costs microseconds of dispatch)."""
        if self.sum_axes:
            x = x.sum(axis=self.sum_axes)
        if self.perm is not None:
            x = transpose(x, self.perm)
        if x.shape != self.shape:
            x = x.reshape(self.shape)
        return x.swapaxes(-1, -2) if self.swap else x


@dataclass(frozen=True)
class Pairwise:
    """``out = a (legs ia) * b (legs ib)`` as one matrix product (or one kernel call).

    ``a``/``b`` lay out the first/second argument; ``a_left``: whether ``a`` is the
    left factor (``"kernel"`` mode: the big operand); ``out`` the result's legs;
    ``flops`` multiply-adds; ``copied`` elements transposed before the product.

        >>> p = pairwise((0, 1), (1, 2), keep={0, 2}, sizes=[2, 3, 4])
        >>> p.out, p(np.ones((2, 3)), np.ones((3, 4))).shape, p.flops
        ((0, 2), (2, 4), 24)
    """

    a: Operand
    b: Operand
    out: Indices
    out_shape: tuple[int, ...]
    flops: int
    a_left: bool = True
    kernel: bool = False
    copied: int = 0

    def __call__(self, a, b):
        x, y = self.a(a), self.b(b)
        first, second = (x, y) if self.a_left else (y, x)
        if type(first) is not np.ndarray or type(second) is not np.ndarray:
            result = _product(first, second, self.kernel)
            return result if result.shape == self.out_shape else result.reshape(self.out_shape)
        if self.kernel:
            return kernels.mode_product(first, second).reshape(self.out_shape)
        return np.matmul(first, second).reshape(self.out_shape)

    @property
    def copies(self) -> int:
        """How many operands must be transposed (copied) before the product."""
        return (self.a.perm is not None) + (self.b.perm is not None)


def _product(first, second, kernel: bool):
    """The matrix product of a recipe on any array library: ``first @ second``, or for
    a kernel step (``first (P, S, Q)``, ``second (S, R)``) ``second.T @ first`` broadcast
    over ``P`` (torch, 1 thread: 37 ms at 200^3 rank 10, against 215 ms for einsum and
    246 ms for a transposed copy), or one ``(P, S) @ (S, R)`` when ``Q`` is 1 (0.8 ms
    against 23 ms broadcast at P = S = 1000)."""
    if first.dtype != second.dtype:
        first, second = promote(first, second)
    if kernel:
        if first.shape[2] == 1:         # Q = 1: one plain product, (P, S) @ (S, R)
            return first.reshape(first.shape[:2]) @ second
        return transpose(second, (1, 0)) @ first     # (R, S) @ (P, S, Q), broadcast
    return first @ second


def pairwise(ia: Indices, ib: Indices, keep, sizes, prefer: Indices | None = None) -> Pairwise:
    """Plan ``a * b`` keeping the legs in ``keep``; every other leg is summed.

    ``sizes[leg]`` is a leg's length (a list for int legs, a dict for names).
    Each operand's legs must be distinct. ``prefer``: a leg order for the result that
    wins among 2-d layouts copying as much (a network's output order, so that its
    last product is laid out as the output, not a transposed view of it).
    """
    sum_a = tuple(k for k, i in enumerate(ia) if i not in ib and i not in keep)
    sum_b = tuple(k for k, i in enumerate(ib) if i not in ia and i not in keep)
    ia = tuple(i for i in ia if i in ib or i in keep)
    ib = tuple(i for i in ib if i in ia or i in keep)
    flops = _size(set(ia) | set(ib), sizes)
    batch = [i for i in ia if i in ib and i in keep]
    if batch:
        return _batched(ia, ib, batch, keep, sum_a, sum_b, flops, sizes)
    sides = ((ia, sum_a, True), (ib, sum_b, False))
    size_a, size_b = _size(ia, sizes), _size(ib, sizes)
    big, small = sides if size_a >= size_b else sides[::-1]
    options = [*_plain(big, small, sizes, prefer), *_in_place(big, small, sizes, prefer)]
    return min(options, key=lambda o: o[0])[1](flops)


def _batched(ia, ib, batch, keep, sum_a, sum_b, flops, sizes) -> Pairwise:
    """Shared kept legs: one batched product ``(batch, free_a, con) @ (batch, con, free_b)``."""
    free_a = [i for i in ia if i not in ib]
    free_b = [i for i in ib if i not in ia]
    con = [i for i in ia if i in ib and i not in keep]
    nb = _size(batch, sizes)
    op_a = Operand(sum_a, _perm(ia, batch + free_a + con),
                   (nb, _size(free_a, sizes), _size(con, sizes)), False)
    op_b = Operand(sum_b, _perm(ib, batch + con + free_b),
                   (nb, _size(con, sizes), _size(free_b, sizes)), False)
    out = tuple(batch + free_a + free_b)
    copied = _size(ia, sizes) * (op_a.perm is not None) + _size(ib, sizes) * (op_b.perm is not None)
    return Pairwise(op_a, op_b, out, _shape(out, sizes), flops, copied=copied)


def _plain(big, small, sizes, prefer=None):
    """``(key, make)`` per 2-d layout: either operand on the left, contracted legs in
    either operand's order. Ties go to a result in the order ``prefer``, then to the
    big operand read unswapped, or, for a skinny product, to the small operand's legs
    leading the result (faster for BLAS)."""
    (lb, sum_big, big_is_a), (ls, sum_small, _) = big, small
    free_big = [i for i in lb if i not in ls]
    free_small = [i for i in ls if i not in lb]
    skinny = _size(free_small, sizes) * SKINNY <= _size(free_big, sizes)
    for order in (lb, ls):
        con = [i for i in order if i in lb and i in ls]
        for big_left in (True, False):
            if big_left:
                lay_big, lay_small = _layout(lb, free_big, con, sizes), _layout(ls, con, free_small, sizes)
                out = tuple(free_big + free_small)
            else:
                lay_small, lay_big = _layout(ls, free_small, con, sizes), _layout(lb, con, free_big, sizes)
                out = tuple(free_small + free_big)
            copied = _size(lb, sizes) * (lay_big[0] is not None) + \
                _size(ls, sizes) * (lay_small[0] is not None)
            preferred = (not big_left) if skinny else not lay_big[2]
            ops = (Operand(sum_big, *lay_big), Operand(sum_small, *lay_small))
            yield (1, copied, _unordered(out, prefer), not preferred), _maker(
                ops, big_is_a, big_left, out, sizes, copied)


def _in_place(big, small, sizes, prefer=None):
    """Layouts reading the big operand in place as ``(pre, con, post)`` around a run of
    its contracted legs: the compiled kernel when it is worth it, else a batched product
    over ``pre`` when that run is strictly inside and the batch matrices are large."""
    (lb, sum_big, big_is_a), (ls, sum_small, _) = big, small
    con = [i for i in lb if i in ls]
    n = len(con)
    if len(lb) < 2 or not con or not any(lb[k:k + n] == tuple(con) for k in range(len(lb) - n + 1)):
        return
    start = next(k for k in range(len(lb) - n + 1) if lb[k:k + n] == tuple(con))
    pre, post = list(lb[:start]), list(lb[start + n:])
    free_small = [i for i in ls if i not in lb]
    out = tuple(pre + free_small + post)
    view = Operand(sum_big, None, (_size(pre, sizes), _size(con, sizes), _size(post, sizes)), False)
    if kernels.worth_it(_shape(lb, sizes), np.float64):
        lay = _layout(ls, con, free_small, sizes)
        copied = _size(ls, sizes) * (lay[0] is not None)
        yield (0, copied, False, False), _maker((view, Operand(sum_small, *lay)), big_is_a,
                                                True, out, sizes, copied, kernel=True)
    elif pre and post and _size(con, sizes) * _size(post, sizes) >= BATCHED_GEMM_MIN:
        lay = _layout(ls, free_small, con, sizes)
        copied = _size(ls, sizes) * (lay[0] is not None)
        key = (1, copied, _unordered(out, prefer), False)
        yield key, _maker((view, Operand(sum_small, *lay)), big_is_a, False, out, sizes, copied)


def _unordered(out, prefer) -> bool:
    """Whether a layout's result legs ``out`` miss the preferred order (a tie-breaker)."""
    return prefer is not None and tuple(out) != tuple(prefer)


def _maker(ops, big_is_a: bool, big_left: bool, out, sizes, copied: int,
           kernel: bool = False):
    """A function of ``flops`` building the :class:`Pairwise` (built only for the winner)."""
    op_big, op_small = ops

    def make(flops) -> Pairwise:
        op_a, op_b = (op_big, op_small) if big_is_a else (op_small, op_big)
        return Pairwise(op_a, op_b, out, _shape(out, sizes), flops,
                        a_left=big_left == big_is_a, kernel=kernel, copied=copied)
    return make


def _layout(indices: Indices, first: list, second: list, sizes) -> tuple:
    """``(perm, shape, swap)`` putting ``indices`` as the matrix ``first x second``."""
    rows, cols = _size(first, sizes), _size(second, sizes)
    if list(indices) == first + second:
        return None, (rows, cols), False
    if list(indices) == second + first:
        return None, (cols, rows), True
    return tuple(indices.index(i) for i in first + second), (rows, cols), False


def _size(indices, sizes) -> int:
    return math.prod(sizes[i] for i in indices)


def _perm(indices: Indices, order: list) -> tuple[int, ...] | None:
    perm = tuple(indices.index(i) for i in order)
    return None if perm == tuple(range(len(perm))) else perm


def _shape(indices, sizes) -> tuple[int, ...]:
    return tuple(sizes[i] for i in indices)
