"""Contraction trees with intermediates cached by the set of leaves they contain.

A *leaf* is one operand of a scalar network (a data tensor, a tensor use, a primed
copy); a :class:`Node` is a pairwise (or unary) contraction over its children,
keyed by the leaves below it, so :func:`evaluate` computes each intermediate
once and a caller drops the keys holding a leaf when that leaf changes. Each
pairwise node runs as one matrix product laid out by
:func:`tnc.engine.pairwise.pairwise` (the routine the gradient sweeps use too: the
big operand never copied where a layout allows, or streamed through the
compiled kernel). ALS (:mod:`tnc.fitting.als`), coupled models and the
decompositions build their right-hand sides and Grams from these trees.

    >>> import numpy as np
    >>> legs = {"X": ("i", "j"), "A": ("i", "r"), "B": ("j", "r")}     # <X, A Bᵀ>
    >>> leaves = Leaves("t", legs, {"i": 3, "j": 4, "r": 2}, {"i": 0, "j": 1, "r": 2})
    >>> tree = path_tree(leaves, ["X", "A"], "auto")    # B's environment: legs j, r
    >>> X, A = np.arange(12.0).reshape(3, 4), np.arange(6.0).reshape(3, 2)
    >>> value = arrange(evaluate(tree, {"X": X, "A": A}, {}), tree.indices, ("j", "r"))
    >>> sorted(tree.indices), np.allclose(value, X.T @ A)
    (['j', 'r'], True)
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import opt_einsum as oe

from tnc.engine import backend
from tnc.engine.pairwise import pairwise
from tnc.engine.plan import resolve_optimizer
from tnc.lang.expand import einsum_symbol

@dataclass
class Node:
    """A pairwise (or unary) contraction over ``children``; a leaf when it has none.

    ``indices`` are the legs the node keeps: those any leaf outside it carries.
    """

    leaves: frozenset
    indices: tuple
    children: tuple = ()
    key: tuple = ()
    expression: object = None
    flops: int = 0


class Leaves:
    """The leaves of one scalar network (labels -> legs) and the symbols of their indices."""

    def __init__(self, tag: str, legs: dict, sizes: dict, rank: dict):
        self.tag = tag
        self.legs = legs
        self.sizes = sizes
        self.rank = rank
        self.symbols = {ix: einsum_symbol(k) for k, ix in enumerate(sorted(rank, key=rank.get))}
        self.count = Counter(ix for legs_ in legs.values() for ix in legs_)

    def kept(self, members: frozenset, indices) -> tuple:
        """Legs of ``members`` that some leaf outside them carries, in canonical order."""
        inside = Counter(ix for label in members for ix in self.legs[label])
        keep = {ix for ix in indices if self.count[ix] > inside[ix]}
        return tuple(sorted(keep, key=self.rank.get))

    def leaf(self, label) -> Node:
        return Node(frozenset([label]), tuple(self.legs[label]))

    def join(self, *children: Node) -> Node:
        members = frozenset().union(*(c.leaves for c in children))
        union = {ix for c in children for ix in c.indices}
        kept = self.kept(members, union)
        flops = math.prod(self.sizes[ix] for ix in union) + sum(c.flops for c in children)
        if len(children) == 2 and all(len(set(c.indices)) == len(c.indices) for c in children):
            function = pairwise(children[0].indices, children[1].indices, set(kept), self.sizes)
            kept = function.out
        else:
            term = lambda ixs: "".join(self.symbols[ix] for ix in ixs)  # noqa: E731
            equation = ",".join(term(c.indices) for c in children) + "->" + term(kept)
            shapes = [tuple(self.sizes[ix] for ix in c.indices) for c in children]
            function = oe.contract_expression(equation, *shapes)
        return Node(members, kept, children, (self.tag, members, kept), function, flops)


def evaluate(node: Node, values: dict, cache: dict):
    """Value of ``node``: leaves from ``values``, intermediates from/into ``cache``."""
    if not node.children:
        return values[next(iter(node.leaves))]
    hit = cache.get(node.key)
    if hit is None:
        hit = node.expression(*(evaluate(c, values, cache) for c in node.children))
        cache[node.key] = hit
    return hit


def chain_tree(leaves: Leaves, start, groups) -> Node:
    """``start`` absorbs ``groups`` in turn: each group contracted on its own first and
    then joined (one product over X), or its leaves absorbed one by one, whichever
    costs fewer flops (ties go to the group, the BLAS-friendlier form)."""
    node = leaves.leaf(start)
    for group in groups:
        if not group:
            continue
        whole = leaves.join(node, path_tree(leaves, list(group), "auto"))
        one_by_one = node
        todo = list(group)
        while todo:
            step = [(math.prod(leaves.sizes[ix] for ix in set(one_by_one.indices) | set(
                leaves.legs[label])), not at_an_end(one_by_one.indices, leaves.legs[label]), k)
                for k, label in enumerate(todo)]
            one_by_one = leaves.join(one_by_one, leaves.leaf(todo.pop(min(step)[-1])))
        node = whole if whole.flops <= one_by_one.flops else one_by_one
    return node


def at_an_end(indices: tuple, legs) -> bool:
    """Whether the legs ``indices`` shares with ``legs`` lead or trail it (no copy for BLAS).

    >>> at_an_end(("i", "j", "k"), ("k", "r")), at_an_end(("i", "j", "k"), ("j", "r"))
    (True, False)
    """
    shared = set(indices) & set(legs)
    n = len(shared)
    return bool(n) and (set(indices[:n]) == shared or set(indices[len(indices) - n:]) == shared)


def path_tree(leaves: Leaves, labels: list, optimize) -> Node:
    """The tree of opt_einsum's best path over ``labels``."""
    nodes = [leaves.leaf(label) for label in labels]
    if len(nodes) == 1:
        return nodes[0]
    members = frozenset(labels)
    output = leaves.kept(members, {ix for label in labels for ix in leaves.legs[label]})
    term = lambda ixs: "".join(leaves.symbols[ix] for ix in ixs)  # noqa: E731
    equation = ",".join(term(leaves.legs[label]) for label in labels) + "->" + term(output)
    shapes = [tuple(leaves.sizes[ix] for ix in leaves.legs[label]) for label in labels]
    # ALS plans three trees per tensor: "auto" here is opt_einsum's quick choice
    optimizer = "auto" if optimize == "auto" else resolve_optimizer(optimize, len(labels))
    path, _ = oe.contract_path(equation, *shapes, shapes=True, optimize=optimizer)
    for positions in path:
        picked = [nodes.pop(p) for p in sorted(positions, reverse=True)]
        nodes.append(leaves.join(*picked))
    while len(nodes) > 1:
        nodes.append(leaves.join(nodes.pop(0), nodes.pop(0)))
    return nodes[0]


def dimension_tree_groups(order: list, position: int) -> list:
    """Groups of params absorbed into X, outermost first, for the update at ``position``.

    >>> dimension_tree_groups(["A", "B", "C"], 0), dimension_tree_groups(["A", "B", "C"], 2)
    ([['B', 'C']], [['A'], ['B']])
    """
    groups, lo, hi = [], 0, len(order)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if position < mid:
            groups.append(order[mid:hi])
            hi = mid
        else:
            groups.append(order[lo:mid])
            lo = mid
    return groups


def _nodes(node: Node):
    """``node`` and every node below it."""
    yield node
    for child in node.children:
        yield from _nodes(child)


def window_key(step: int, n: int) -> tuple[int, int]:
    """``(window start, position)`` of update number ``step`` of the cyclic sequence of
    ``n`` parameters cut into windows of ``n - 1``.

    >>> [window_key(t, 3) for t in range(6)]
    [(0, 0), (0, 1), (2, 0), (2, 1), (1, 0), (1, 1)]
    """
    width = n - 1
    return (step // width) * width % n, step % width


def replay_flops(labels: list, trees: list, rounds: int = 2) -> int:
    """Flops of evaluating ``trees`` in turn with a cache, where after each tree the
    cached intermediates containing leaf ``labels[t]`` (the updated tensor) are
    dropped; ``rounds`` repetitions, the first only warming the cache."""
    cached, total = set(), 0
    for round_ in range(rounds):
        for label, tree in zip(labels, trees):
            flops = _uncached_flops(tree, cached)
            total += flops if round_ else 0
            cached = {key for key in cached if label not in key[1]}
    return total


def _uncached_flops(node: Node, cached: set) -> int:
    if not node.children or node.key in cached:
        return 0
    cached.add(node.key)
    own = node.flops - sum(c.flops for c in node.children)
    return own + sum(_uncached_flops(c, cached) for c in node.children)


def arrange(array, have: tuple, want: tuple):
    """Transpose ``array`` (any backend: numpy, torch, jax) with axes named ``have`` into
    the order ``want``."""
    if have == want:
        return array
    perm = [have.index(ix) for ix in want]
    return np.transpose(array, perm) if type(array) is np.ndarray else backend.transpose(
        array, perm)
