"""Expand a parsed network into concrete tensors and indices, checking meaning.

Loops are unrolled, size parameters bound, subscripts evaluated, optional legs
(``?``) dropped where their index is not declared, ranges and wildcards spread
into several legs. The result is a :class:`NetworkSpec`, with every size known::

    >>> from tnc.parser import parse
    >>> spec = expand(parse('''
    ...     network tt(N = 3, d = 2, r = 4) {
    ...         index p[n]: d   for n in 1..N
    ...         index b[n]: r   for n in 1..N-1
    ...         tensor G[n](b[n-1]?, p[n], b[n]?)   for n in 1..N
    ...         output p[1..N]
    ...     }''').networks[0])
    >>> [(t.name, t.indices) for t in spec.occurrences][:2]
    [('G[1]', ('p[1]', 'b[1]')), ('G[2]', ('b[1]', 'p[2]', 'b[2]'))]
    >>> spec.output
    ('p[1]', 'p[2]', 'p[3]')
"""
from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, field

from . import ast
from .errors import TncSemanticError

MAX_UNROLLED = 1_000_000      # loop iterations per statement
MAX_INDEX_SIZE = 2 ** 40


@dataclass(frozen=True)
class Occurrence:
    """One use of a tensor in a network: a parameter (``"param"``) or ``"data"``."""

    name: str
    kind: str
    indices: tuple[str, ...]
    span: ast.Span


@dataclass(frozen=True)
class IndexInfo:
    name: str
    family: str
    subscripts: tuple[int, ...]
    size: int
    span: ast.Span


@dataclass(frozen=True)
class NetworkSpec:
    """A network with every loop unrolled and every size bound.

    ``sizes`` holds the size parameters (``{"N": 6, ...}``), ``index_sizes``
    every declared index's dimension, ``occurrences`` the tensor uses in order,
    ``output`` the open indices in order.
    """

    name: str
    sizes: dict[str, int]
    index_sizes: dict[str, int]
    occurrences: tuple[Occurrence, ...]
    output: tuple[str, ...]
    span: ast.Span = field(compare=False)

    def shape_of(self, occurrence: Occurrence) -> tuple[int, ...]:
        return tuple(self.index_sizes[i] for i in occurrence.indices)

    def tensor_shapes(self, kind: str) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each distinct tensor of one kind, in order of first use."""
        shapes: dict[str, tuple[int, ...]] = {}
        for occ in self.occurrences:
            if occ.kind == kind and occ.name not in shapes:
                shapes[occ.name] = self.shape_of(occ)
        return shapes


def member_name(family: str, subscripts: tuple[int, ...]) -> str:
    """``member_name("h", (1, 2)) == "h[1,2]"``; no subscripts gives the bare name."""
    if not subscripts:
        return family
    return f"{family}[{','.join(str(s) for s in subscripts)}]"


class _Scope:
    """Names visible to expressions: size parameters and loop variables."""

    def __init__(self, sizes: dict[str, int], loop_vars: dict[str, int] | None = None):
        self.sizes = sizes
        self.loop_vars = loop_vars or {}

    def with_var(self, name: str, value: int) -> "_Scope":
        return _Scope(self.sizes, {**self.loop_vars, name: value})

    def lookup(self, var: ast.Var) -> int:
        if var.name in self.loop_vars:
            return self.loop_vars[var.name]
        if var.name in self.sizes:
            return self.sizes[var.name]
        known = sorted(self.sizes) + sorted(self.loop_vars)
        listing = ", ".join(f"`{k}`" for k in known) or "none"
        raise TncSemanticError(
            f"unknown name `{var.name}` in an expression; the names in scope are {listing}",
            var.span)


def evaluate(expr: ast.Expr, scope: _Scope) -> int:
    """Integer value of an expression (``n % N + 1`` and friends)."""
    if isinstance(expr, ast.Int):
        return expr.value
    if isinstance(expr, ast.Var):
        return scope.lookup(expr)
    if isinstance(expr, ast.Neg):
        return -evaluate(expr.operand, scope)
    left, right = evaluate(expr.left, scope), evaluate(expr.right, scope)
    if expr.op == "+":
        return left + right
    if expr.op == "-":
        return left - right
    if expr.op == "*":
        return left * right
    if right == 0:
        raise TncSemanticError(f"division by zero in `{expr.op}`", expr.span)
    return left // right if expr.op == "//" else left % right


def _format_env(scope: _Scope) -> str:
    values = {**scope.sizes, **scope.loop_vars}
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def unroll(loops: tuple[ast.Loop, ...], scope: _Scope):
    """Yield one scope per iteration of nested ``for`` loops (later loops may use earlier vars)."""
    if not loops:
        yield scope
        return
    loop, rest = loops[0], loops[1:]
    if loop.var in scope.sizes or loop.var in scope.loop_vars:
        raise TncSemanticError(f"loop variable `{loop.var}` hides a size parameter or an outer "
                               "loop variable of the same name; rename it", loop.span)
    start, stop = evaluate(loop.start, scope), evaluate(loop.stop, scope)
    if stop < start:
        raise TncSemanticError(
            f"the loop range `{loop.var} in {start}..{stop}` is empty "
            f"({_format_env(scope) or 'no sizes'}); ranges run from start up to stop inclusive",
            loop.span)
    if stop - start + 1 > MAX_UNROLLED:
        raise TncSemanticError(f"the loop range `{start}..{stop}` has more than "
                               f"{MAX_UNROLLED} steps", loop.span)
    for value in range(start, stop + 1):
        yield from unroll(rest, scope.with_var(loop.var, value))


def unroll_statement(stmt, scope: _Scope):
    """:func:`unroll` over a statement's loops, at most ``MAX_UNROLLED`` iterations in all."""
    for count, inner in enumerate(unroll(stmt.loops, scope), start=1):
        if count > MAX_UNROLLED:
            raise TncSemanticError(f"the `for` clause repeats this statement more than "
                                   f"{MAX_UNROLLED} times; use smaller sizes", stmt.loops[0].span)
        yield inner


def bind_sizes(network: ast.NetworkDef, overrides: dict[str, object]) -> dict[str, int]:
    """Size parameters from the header defaults and the caller's overrides."""
    names = [p.name for p in network.params]
    for name in overrides:
        if name not in names:
            listing = ", ".join(f"`{n}`" for n in names) or "none"
            raise TncSemanticError(
                f"unknown size parameter `{name}` for network `{network.name}`; "
                f"its size parameters are {listing}", network.span)
    sizes: dict[str, int] = {}
    for param in network.params:
        if param.name in sizes:
            raise TncSemanticError(f"size parameter `{param.name}` is declared twice", param.span)
        if param.name in overrides:
            sizes[param.name] = _checked_override(param, overrides[param.name])
        elif param.default is not None:
            sizes[param.name] = evaluate(param.default, _Scope(dict(sizes)))
        else:
            raise TncSemanticError(
                f"size parameter `{param.name}` of network `{network.name}` has no default; "
                f"pass it, e.g. {param.name}=10, or fit to data that fixes it", param.span)
    return sizes


def _checked_override(param: ast.Param, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TncSemanticError(
            f"size parameter `{param.name}` must be an integer, got {value!r}", param.span)
    return int(value)


class _Expander:
    """Unrolls one network's statements into indices, occurrences and output."""

    def __init__(self, network: ast.NetworkDef, sizes: dict[str, int]):
        self.network = network
        self.scope = _Scope(sizes)
        self.indices: dict[str, IndexInfo] = {}
        self.families: dict[tuple[str, int], list[IndexInfo]] = {}
        self.occurrences: list[Occurrence] = []
        self.first_use: dict[str, Occurrence] = {}

    def run(self) -> NetworkSpec:
        statements = self.network.statements
        for stmt in statements:
            if isinstance(stmt, ast.IndexStmt):
                self.declare_indices(stmt)
        for stmt in statements:
            if isinstance(stmt, ast.TensorStmt):
                self.use_tensors(stmt)
        if not self.occurrences:
            raise TncSemanticError(f"network `{self.network.name}` has no tensors; add a "
                                   "`tensor NAME(legs)` statement", self.network.span)
        output = self.output(statements)
        used = {i for occ in self.occurrences for i in occ.indices}
        index_sizes = {n: info.size for n, info in self.indices.items() if n in used}
        return NetworkSpec(self.network.name, dict(self.scope.sizes), index_sizes,
                           tuple(self.occurrences), output, self.network.span)

    # -- indices -----------------------------------------------------------------
    def declare_indices(self, stmt: ast.IndexStmt) -> None:
        for scope in unroll_statement(stmt, self.scope):
            for decl in stmt.decls:
                size = evaluate(decl.size, scope)
                for subs in self.subscript_values(decl.ref, scope, wildcard_ok=False):
                    self.declare(decl, subs, size, scope)

    def declare(self, decl: ast.IndexDecl, subs: tuple[int, ...], size: int, scope) -> None:
        name = member_name(decl.ref.name, subs)
        if not 1 <= size <= MAX_INDEX_SIZE:
            raise TncSemanticError(
                f"index `{name}` has size {size}; sizes must be positive integers"
                + (f" ({_format_env(scope)})" if scope.sizes or scope.loop_vars else ""),
                decl.size.span)
        previous = self.indices.get(name)
        if previous is not None:
            if previous.size != size:
                raise TncSemanticError(
                    f"index `{name}` is declared with two sizes: {previous.size} "
                    f"(line {previous.span.line}) and {size}", decl.span)
            raise TncSemanticError(f"index `{name}` is declared twice (first on line "
                                   f"{previous.span.line})", decl.span)
        info = IndexInfo(name, decl.ref.name, subs, size, decl.span)
        self.indices[name] = info
        self.families.setdefault((decl.ref.name, len(subs)), []).append(info)

    def subscript_values(self, ref: ast.Ref, scope: _Scope, wildcard_ok: bool):
        """All subscript tuples a reference stands for (ranges and ``*`` spread out)."""
        choices = []
        for position, sub in enumerate(ref.subscripts):
            if isinstance(sub, ast.Range):
                start, stop = evaluate(sub.start, scope), evaluate(sub.stop, scope)
                if stop < start:
                    raise TncSemanticError(f"the range `{start}..{stop}` is empty", sub.span)
                if stop - start + 1 > MAX_UNROLLED:
                    raise TncSemanticError(f"the range `{start}..{stop}` is too long", sub.span)
                choices.append(range(start, stop + 1))
            elif isinstance(sub, ast.Wildcard):
                if not wildcard_ok:
                    raise TncSemanticError("`*` can only stand in a leg or the output, where it "
                                           "means every declared member", sub.span)
                choices.append(self.wildcard_values(ref, position))
            else:
                choices.append((evaluate(sub, scope),))
        return itertools.product(*choices)

    def wildcard_values(self, ref: ast.Ref, position: int) -> list[int]:
        members = self.families.get((ref.name, len(ref.subscripts)), [])
        values = sorted({m.subscripts[position] for m in members})
        if not values:
            raise TncSemanticError(
                f"`{ref.name}` has no declared members with {len(ref.subscripts)} "
                "subscript(s) for `*` to stand for", ref.span)
        return values

    def legs(self, legs: tuple[ast.Leg, ...], scope: _Scope) -> list[str]:
        names = []
        for leg in legs:
            for subs in self.subscript_values(leg.ref, scope, wildcard_ok=True):
                name = member_name(leg.ref.name, subs)
                if name in self.indices:
                    names.append(name)
                elif not leg.optional and not self._wildcard_gap(leg.ref):
                    raise TncSemanticError(
                        f"index `{name}` is not declared; declare it with `index {name}: SIZE` "
                        "or mark the leg optional with `?`", leg.span)
        return names

    @staticmethod
    def _wildcard_gap(ref: ast.Ref) -> bool:
        """A ``*`` leg skips combinations that were never declared (ragged families)."""
        return any(isinstance(s, ast.Wildcard) for s in ref.subscripts)

    # -- tensors -----------------------------------------------------------------
    def use_tensors(self, stmt: ast.TensorStmt) -> None:
        for scope in unroll_statement(stmt, self.scope):
            for use in stmt.uses:
                self.add_occurrence(stmt.kind, use, scope)

    def add_occurrence(self, kind: str, use: ast.TensorUse, scope: _Scope) -> None:
        for sub in use.ref.subscripts:
            if isinstance(sub, (ast.Range, ast.Wildcard)):
                raise TncSemanticError("a tensor name takes single subscripts such as `G[n]`; "
                                       "use a `for` clause to declare several", sub.span)
        name = member_name(use.ref.name, tuple(evaluate(s, scope) for s in use.ref.subscripts))
        occ = Occurrence(name, kind, tuple(self.legs(use.legs, scope)), use.span)
        first = self.first_use.setdefault(name, occ)
        self.check_tied(first, occ)
        self.occurrences.append(occ)

    def check_tied(self, first: Occurrence, occ: Occurrence) -> None:
        if first is occ:
            return
        if first.kind != occ.kind:
            words = {"param": "a tensor", "data": "data"}
            raise TncSemanticError(
                f"`{occ.name}` is used as {words[first.kind]} on line {first.span.line} and as "
                f"{words[occ.kind]} here; one name is one kind of tensor", occ.span)
        shape_first = tuple(self.indices[i].size for i in first.indices)
        shape_here = tuple(self.indices[i].size for i in occ.indices)
        if shape_first != shape_here:
            raise TncSemanticError(
                f"tensor `{occ.name}` has shape {shape_first} on line {first.span.line} but "
                f"{shape_here} here; every use of a tied tensor must have the same shape",
                occ.span)

    # -- output ------------------------------------------------------------------
    def output(self, statements) -> tuple[str, ...]:
        outputs = [s for s in statements if isinstance(s, ast.OutputStmt)]
        if not outputs:
            raise TncSemanticError(
                f"network `{self.network.name}` has no output statement; write `output i, j` "
                "for open indices or a bare `output` for a scalar", self.network.span)
        if len(outputs) > 1:
            raise TncSemanticError("a network has one output statement; this is a second",
                                   outputs[1].span)
        stmt = outputs[0]
        carried = {i for occ in self.occurrences for i in occ.indices}
        names: list[str] = []
        for leg in stmt.legs:
            for name in self.legs((leg,), self.scope):
                if name not in carried:
                    raise TncSemanticError(f"output index `{name}` is carried by no tensor",
                                           leg.span)
                if name in names:
                    raise TncSemanticError(f"index `{name}` appears twice in the output",
                                           leg.span)
                names.append(name)
        return tuple(names)


def expand(network: ast.NetworkDef, **sizes) -> NetworkSpec:
    """Bind ``sizes`` (overriding header defaults) and unroll ``network``."""
    return _Expander(network, bind_sizes(network, sizes)).run()
