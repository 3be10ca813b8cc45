"""Expand a parsed network into concrete tensors and indices, checking meaning.

Loops are unrolled, size parameters bound, subscripts evaluated, optional legs
(``?``) dropped where their index is not declared, ranges and wildcards spread
into several legs. The result is a :class:`NetworkSpec`, with every size known::

    >>> from tnc.lang.parser import parse
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

import contextlib
import gc
import itertools
import operator
import numbers
from dataclasses import dataclass, field

import opt_einsum as oe

from tnc.lang import ast
from tnc.errors import TncError, TncSemanticError

MAX_UNROLLED = 1_000_000      # loop iterations per statement
#: Default cap on a network's expanded size: loop steps, indices, tensors and legs
#: together (``tnc.compile(..., max_expansion=N)`` overrides it for one call).
MAX_EXPANSION = 1_000_000
#: opt_einsum's ``get_symbol(k)`` is ``chr(k + 140)`` below 55296, which for k >= 55156
#: are surrogates (U+D800..): unprintable, unencodable. :func:`einsum_symbol` shifts
#: every index from there past them.
_SURROGATE_START = 0xD800 - 140
#: Most indices a network may have: :func:`einsum_symbol` names indices
#: 0 .. 0x10FFFF - 2188 (Unicode's last code point, less the skipped surrogates).
MAX_INDICES = 0x10FFFF - 2048 - 140 + 1


def einsum_symbol(k: int) -> str:
    """The einsum symbol of index number ``k``: opt_einsum's ``get_symbol`` (letters,
    then from U+00C0), but never a surrogate.

    >>> einsum_symbol(0), einsum_symbol(52), hex(ord(einsum_symbol(55156)))
    ('a', 'À', '0xe000')
    """
    if k < _SURROGATE_START:
        return oe.get_symbol(k)
    return chr(k + 140 + 2048)
MAX_INDEX_SIZE = 2 ** 40
MAX_INT_BITS = 14_000         # |value| of any expression; its decimal form fits Python's 4300 digits


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
    if len(subscripts) == 1:
        return f"{family}[{subscripts[0]}]"
    return f"{family}[{','.join(map(str, subscripts))}]"


class _Scope:
    """Names visible to expressions: size parameters and loop variables."""

    def __init__(self, sizes: dict[str, int], loop_vars: dict[str, int] | None = None):
        self.sizes = sizes
        self.loop_vars = loop_vars or {}
        self.values = {**sizes, **self.loop_vars}       # loop variables win

    def with_var(self, name: str, value: int) -> "_Scope":
        scope = _Scope.__new__(_Scope)          # no __init__: it runs once per loop step
        scope.sizes, scope.loop_vars = self.sizes, {**self.loop_vars, name: value}
        scope.values = {**self.values, name: value}
        return scope

    def lookup(self, var: ast.Var) -> int:
        try:
            return self.values[var.name]
        except KeyError:
            pass
        known = sorted(self.sizes) + sorted(self.loop_vars)
        listing = ", ".join(f"`{k}`" for k in known) or "none"
        raise TncSemanticError(
            f"unknown name `{var.name}` in an expression; the names in scope are {listing}",
            var.span)


def evaluate(expr: ast.Expr, scope: _Scope) -> int:
    """Integer value of an expression (``n % N + 1`` and friends).

    Evaluated with an explicit stack, so any nesting depth works; every value
    stays below ``2 ** MAX_INT_BITS`` in magnitude (a located error otherwise).
    """
    kind = type(expr)
    if kind is ast.Int:
        return expr.value
    if kind is ast.Var:
        value = scope.values.get(expr.name)
        return scope.lookup(expr) if value is None else value
    if kind is ast.BinOp and type(expr.left) in _LEAVES and type(expr.right) in _LEAVES:
        fast = expr.__dict__.get("_fast") or _compile_leaf_op(expr)
        try:                                        # `n - 1`: the common case, compiled once
            value = fast(scope.values)
        except (KeyError, ZeroDivisionError):       # an unknown name, a zero divisor: located
            return _checked_value(_apply(expr, _leaf(expr.left, scope),
                                         _leaf(expr.right, scope)), expr)
        return value if -_LIMIT < value < _LIMIT else _checked_value(value, expr)
    return fold(expr, scope.lookup, operator.neg,
                lambda node, left, right: _checked_value(_apply(node, left, right), node))


def fold(expr: ast.Expr, var, neg, binop):
    """``expr`` folded bottom-up with an explicit stack (any nesting depth): integers
    as themselves, ``var(node)`` for names, ``neg(value)``, ``binop(node, left, right)``.

    >>> fold(ast.Neg(ast.Int(2, None), None), None, lambda v: -v, None)
    -2
    """
    values: list = []
    stack: list = [(expr, False)]
    while stack:
        node, operands_done = stack.pop()
        if isinstance(node, ast.Int):
            values.append(node.value)
        elif isinstance(node, ast.Var):
            values.append(var(node))
        elif not operands_done:
            stack.append((node, True))
            if isinstance(node, ast.Neg):
                stack.append((node.operand, False))
            else:
                stack.extend(((node.right, False), (node.left, False)))
        elif isinstance(node, ast.Neg):
            values.append(neg(values.pop()))
        else:
            right, left = values.pop(), values.pop()
            values.append(binop(node, left, right))
    return values[0]


_LEAVES = (ast.Int, ast.Var)
_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul,
              "//": operator.floordiv, "%": operator.mod}
_LIMIT = 2 ** MAX_INT_BITS


def _compile_leaf_op(expr: ast.BinOp):
    """``values -> int`` for ``a OP b`` with leaf operands, kept on the node (its
    ``__dict__``: the frozen dataclass's fields are untouched)."""
    op = _OPERATORS[expr.op]
    left, right = expr.left, expr.right
    if type(left) is ast.Int and type(right) is ast.Int:
        a, b = left.value, right.value
        fast = lambda values: op(a, b)                          # noqa: E731
    elif type(left) is ast.Int:
        a, name = left.value, right.name
        fast = lambda values: op(a, values[name])               # noqa: E731
    elif type(right) is ast.Int:
        name, b = left.name, right.value
        fast = lambda values: op(values[name], b)               # noqa: E731
    else:
        first, second = left.name, right.name
        fast = lambda values: op(values[first], values[second])  # noqa: E731
    expr.__dict__["_fast"] = fast
    return fast


def _leaf(expr, scope: _Scope) -> int:
    return expr.value if type(expr) is ast.Int else scope.lookup(expr)


def _apply(node: ast.BinOp, left: int, right: int) -> int:
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        raise TncSemanticError(f"division by zero in `{node.op}`", node.span)
    return left // right if node.op == "//" else left % right


def _checked_value(value: int, node: ast.BinOp) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise TncSemanticError(f"the value of this expression has more than {MAX_INT_BITS} "
                               "bits; tnc integers stay below 2**" f"{MAX_INT_BITS}", node.span)
    return value


def _format_env(scope: _Scope) -> str:
    values = {**scope.sizes, **scope.loop_vars}
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def unroll(loops: tuple[ast.Loop, ...], scope: _Scope):
    """Yield one scope per iteration of nested ``for`` loops (later loops may use earlier vars)."""
    if not loops:
        yield scope
        return
    loop, rest = loops[0], loops[1:]
    start, stop = _loop_range(loop, scope)
    if not rest:                                # the innermost loop: no nested generator
        for value in range(start, stop + 1):
            yield scope.with_var(loop.var, value)
        return
    for value in range(start, stop + 1):
        yield from unroll(rest, scope.with_var(loop.var, value))


def _loop_range(loop: ast.Loop, scope: _Scope) -> tuple[int, int]:
    """``(start, stop)`` of a loop in ``scope``, checked: not empty, hiding no name."""
    if loop.var in scope.sizes or loop.var in scope.loop_vars:
        raise TncSemanticError(f"loop variable `{loop.var}` hides a size parameter or an outer "
                               "loop variable of the same name; rename it", loop.span)
    start, stop = evaluate(loop.start, scope), evaluate(loop.stop, scope)
    if stop < start:
        raise TncSemanticError(
            f"the loop range `{loop.var} in {start}..{stop}` is empty "
            f"({_format_env(scope) or 'no sizes'}); ranges run from start up to stop inclusive",
            loop.span)
    return start, stop


def _one_loop(stmt, scope: _Scope, budget: "Budget", limit: int):
    """The scopes of a statement with a single ``for`` loop, charged up front; one scope
    object is updated in place, so each yielded scope holds only until the next one."""
    loop = stmt.loops[0]
    start, stop = _loop_range(loop, scope)
    if stop - start + 1 > limit:
        _too_many_steps(stmt, limit)
    budget.charge(stop - start + 1, stmt.span)
    inner = scope.with_var(loop.var, start)
    values, loop_vars, var = inner.values, inner.loop_vars, loop.var
    for value in range(start, stop + 1):
        values[var] = loop_vars[var] = value
        yield inner


def unroll_statement(stmt, scope: _Scope, budget: "Budget | None" = None):
    """:func:`unroll` over a statement's loops, at most ``MAX_UNROLLED`` iterations in all
    (or the budget's ``steps``), each charged to ``budget``; a clause sure to repeat
    more is refused before unrolling."""
    limit = MAX_UNROLLED if budget is None else budget.steps
    if len(stmt.loops) == 1 and budget is not None:
        yield from _one_loop(stmt, scope, budget, limit)
        return
    if stmt.loops and loop_steps(stmt.loops, scope) > limit:
        _too_many_steps(stmt, limit)
    for count, inner in enumerate(unroll(stmt.loops, scope), start=1):
        if count > limit:
            _too_many_steps(stmt, limit)
        if budget is not None:
            budget.charge(1, stmt.span)
        yield inner


def _too_many_steps(stmt, limit: int):
    raise TncSemanticError(f"the `for` clause repeats this statement more than "
                           f"{limit} times; use smaller sizes", stmt.loops[0].span)


def loop_steps(loops: tuple[ast.Loop, ...], scope: _Scope) -> int:
    """A lower bound on the iterations of nested loops, found without unrolling them.

    Each range's length is taken at the outer loops' first and at their last
    values, the smaller of the two (exact for constant ranges, a lower bound
    for ranges that move linearly with the outer variables); a range that
    cannot be evaluated counts one (the unrolling reports it).
    """
    steps, first, last = 1, scope, scope
    for loop in loops:
        ends = [_quiet_range(loop.start, loop.stop, s) for s in (first, last)]
        if None in ends:
            return steps
        steps *= min(max(0, stop - start + 1) for start, stop in ends)
        if steps == 0:
            return 0
        first = first.with_var(loop.var, ends[0][0])
        last = last.with_var(loop.var, ends[1][1])
    return steps


def _quiet_range(start: ast.Expr, stop: ast.Expr, scope: _Scope) -> tuple[int, int] | None:
    """``(start, stop)`` evaluated, or None when that raises (reported later, in order)."""
    try:
        return evaluate(start, scope), evaluate(stop, scope)
    except TncSemanticError:
        return None


def _spread(ref: ast.Ref, scope: _Scope) -> int:
    """How many members a reference with ranges stands for (``*`` counts one)."""
    count = 1
    for sub in ref.subscripts:
        if isinstance(sub, ast.Range):
            ends = _quiet_range(sub.start, sub.stop, scope)
            count *= 1 if ends is None else max(0, ends[1] - ends[0] + 1)
    return count


class Budget:
    """The expanded size left to a text's networks: loop steps, indices, tensors and
    legs (one budget is shared by every network of a :func:`tnc.compile_all` call)."""

    def __init__(self, cap: int, steps: int = MAX_UNROLLED):
        self.cap, self.used, self.steps = cap, 0, steps

    def charge(self, units: int, span: ast.Span) -> None:
        self.used += units
        if self.used > self.cap:
            raise TncSemanticError(
                f"the text expands to more than {self.cap} loop steps, indices, tensors "
                "and legs (its networks together); use smaller sizes, or raise the cap with "
                "tnc.compile(..., max_expansion=N) or tnc.lang.expand.MAX_EXPANSION", span)


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
    if int(value).bit_length() > MAX_INT_BITS:
        raise TncSemanticError(f"size parameter `{param.name}` has more than {MAX_INT_BITS} "
                               f"bits; tnc integers stay below 2**{MAX_INT_BITS}", param.span)
    return int(value)


def _is_single(ref: ast.Ref) -> bool:
    """Whether a reference names one member (``b[n-1]``: no ranges, no ``*``)."""
    return not any(isinstance(s, (ast.Range, ast.Wildcard)) for s in ref.subscripts)


def _namer(ref: ast.Ref):
    """``scope -> name`` of the one member a reference without ranges or ``*`` stands
    for (``b[n-1]`` gives ``"b[4]"`` at n = 5), made once per statement; None when
    the reference spreads."""
    if not _is_single(ref):
        return None
    family, subs = ref.name, ref.subscripts
    if not subs:
        return lambda scope: family
    if len(subs) > 1:
        return lambda scope: member_name(family, tuple(evaluate(s, scope) for s in subs))
    sub = subs[0]
    if type(sub) is not ast.Var:
        return lambda scope: f"{family}[{evaluate(sub, scope)}]"
    var = sub.name

    def name_of(scope):                         # `p[n]`: the commonest leg of all
        value = scope.values.get(var)
        return f"{family}[{evaluate(sub, scope) if value is None else value}]"
    return name_of


class _Expander:
    """Unrolls one network's statements into indices, occurrences and output."""

    def __init__(self, network: ast.NetworkDef, sizes: dict[str, int], budget: "Budget"):
        self.network = network
        self.scope = _Scope(sizes)
        self.budget = budget
        self.indices: dict[str, IndexInfo] = {}
        self.families: dict[tuple[str, int], list[IndexInfo]] = {}
        self.occurrences: list[Occurrence] = []
        self.first_use: dict[str, Occurrence] = {}

    def run(self) -> NetworkSpec:
        statements = self.network.statements
        self.check_estimate(statements)
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
        if len(index_sizes) > MAX_INDICES:
            raise TncSemanticError(
                f"network `{self.network.name}` has {len(index_sizes)} indices; an einsum "
                f"equation has symbols for at most {MAX_INDICES}", self.network.span)
        return NetworkSpec(self.network.name, dict(self.scope.sizes), index_sizes,
                           tuple(self.occurrences), output, self.network.span)

    def check_estimate(self, statements) -> None:
        """Refuse a network sure to exceed the budget before unrolling any of it."""
        estimate = Budget(self.budget.cap, self.budget.steps)
        estimate.used = self.budget.used
        for stmt in statements:
            estimate.charge(self.estimate(stmt), stmt.span)

    def estimate(self, stmt) -> int:
        """A lower bound on what a statement charges (:func:`loop_steps` per member)."""
        loops = getattr(stmt, "loops", ())
        steps = loop_steps(loops, self.scope)
        return steps * (1 + min(self.members(stmt, self.loop_scope(loops, end))
                                for end in (0, 1)))     # at the first and the last step

    def loop_scope(self, loops, end: int) -> _Scope:
        """The scope of the first (``end=0``) or the last (``end=1``) step of ``loops``."""
        scope = self.scope
        for loop in loops:
            ends = _quiet_range(loop.start, loop.stop, scope)
            scope = scope.with_var(loop.var, 0 if ends is None else ends[end])
        return scope

    @staticmethod
    def members(stmt, scope: _Scope) -> int:
        """What one step of a statement charges, ``*`` counting one."""
        if isinstance(stmt, ast.IndexStmt):
            return sum(_spread(d.ref, scope) for d in stmt.decls)
        if isinstance(stmt, ast.TensorStmt):
            return sum(1 + sum(_spread(leg.ref, scope) for leg in use.legs)
                       for use in stmt.uses)
        return sum(_spread(leg.ref, scope) for leg in stmt.legs)

    # -- indices -----------------------------------------------------------------
    def declare_indices(self, stmt: ast.IndexStmt) -> None:
        decls = [(decl, _is_single(decl.ref)) for decl in stmt.decls]
        singles = sum(single for _, single in decls)
        for scope in unroll_statement(stmt, self.scope, self.budget):
            for decl, single in decls:
                size = evaluate(decl.size, scope)
                if single:                      # `p[n]`: one member, charged below
                    subs = tuple([evaluate(s, scope) for s in decl.ref.subscripts])
                    self.declare(decl, subs, size, scope)
                    continue
                for subs in self.subscript_values(decl.ref, scope, wildcard_ok=False):
                    self.declare(decl, subs, size, scope)
            if singles:
                self.budget.charge(singles, stmt.span)

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
        """All subscript tuples a spreading reference stands for (ranges and ``*`` spread
        out); references to one member take :func:`_namer`'s fast path instead."""
        choices, count = [], 1
        for position, sub in enumerate(ref.subscripts):
            if isinstance(sub, ast.Range):
                start, stop = evaluate(sub.start, scope), evaluate(sub.stop, scope)
                if stop < start:
                    raise TncSemanticError(f"the range `{start}..{stop}` is empty", sub.span)
                if stop - start + 1 > self.budget.steps:
                    raise TncSemanticError(f"the range `{start}..{stop}` is too long", sub.span)
                choices.append(range(start, stop + 1))
                count *= len(choices[-1])
            elif isinstance(sub, ast.Wildcard):
                if not wildcard_ok:
                    raise TncSemanticError("`*` can only stand in a leg or the output, where it "
                                           "means every declared member", sub.span)
                choices.append(self.wildcard_values(ref, position))
            else:
                choices.append((evaluate(sub, scope),))
        self.budget.charge(count, ref.span)     # before spreading: `p[1..10**6, 1..10**6]`
        return itertools.product(*choices)

    def wildcard_values(self, ref: ast.Ref, position: int) -> list[int]:
        members = self.families.get((ref.name, len(ref.subscripts)), [])
        values = sorted({m.subscripts[position] for m in members})
        if not values:
            raise TncSemanticError(
                f"`{ref.name}` has no declared members with {len(ref.subscripts)} "
                "subscript(s) for `*` to stand for", ref.span)
        return values

    def legs(self, legs: tuple[ast.Leg, ...], scope: _Scope, namers=None) -> list[str]:
        """The index names of ``legs`` (``namers``: their :func:`_namer` s, when the
        caller made them once for many steps)."""
        names, indices = [], self.indices
        for leg, name_of in zip(legs, namers or [_namer(leg.ref) for leg in legs]):
            if name_of is not None:             # the fast path: one member
                name = name_of(scope)
                if name in indices:
                    names.append(name)
                elif not leg.optional:
                    self._undeclared(name, leg)
                continue
            for subs in self.subscript_values(leg.ref, scope, wildcard_ok=True):
                name = member_name(leg.ref.name, subs)
                if name in self.indices:
                    names.append(name)
                elif not leg.optional and not self._wildcard_gap(leg.ref):
                    self._undeclared(name, leg)
        return names                # single legs are charged by the caller, spreads here

    @staticmethod
    def _undeclared(name: str, leg: ast.Leg):
        raise TncSemanticError(f"index `{name}` is not declared; declare it with "
                               f"`index {name}: SIZE` or mark the leg optional with `?`", leg.span)

    @staticmethod
    def _wildcard_gap(ref: ast.Ref) -> bool:
        """A ``*`` leg skips combinations that were never declared (ragged families)."""
        return any(isinstance(s, ast.Wildcard) for s in ref.subscripts)

    # -- tensors -----------------------------------------------------------------
    def use_tensors(self, stmt: ast.TensorStmt) -> None:
        for use in stmt.uses:
            for sub in use.ref.subscripts:
                if isinstance(sub, (ast.Range, ast.Wildcard)):
                    raise TncSemanticError("a tensor name takes single subscripts such as "
                                           "`G[n]`; use a `for` clause to declare several",
                                           sub.span)
        units = sum(1 + len(use.legs) for use in stmt.uses)     # occurrences and legs
        plans = [(use, _namer(use.ref), [_namer(leg.ref) for leg in use.legs])
                 for use in stmt.uses]
        for scope in unroll_statement(stmt, self.scope, self.budget):
            self.budget.charge(units, stmt.span)
            for use, name_of, namers in plans:
                self.add_occurrence(stmt.kind, use, name_of(scope), namers, scope)

    def add_occurrence(self, kind: str, use: ast.TensorUse, name: str, namers,
                       scope: _Scope) -> None:
        occ = Occurrence(name, kind, tuple(self.legs(use.legs, scope, namers)), use.span)
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
        names: dict[str, None] = {}         # ordered, with a linear duplicate check
        self.budget.charge(len(stmt.legs), stmt.span)
        for leg in stmt.legs:
            for name in self.legs((leg,), self.scope):
                if name not in carried:
                    raise TncSemanticError(f"output index `{name}` is carried by no tensor",
                                           leg.span)
                if name in names:
                    raise TncSemanticError(f"index `{name}` appears twice in the output",
                                           leg.span)
                names[name] = None
        return tuple(names)


def expand(network: ast.NetworkDef, max_expansion: "int | Budget | None" = None,
           **sizes) -> NetworkSpec:
    """Bind ``sizes`` (overriding header defaults) and unroll ``network``.

    ``max_expansion`` caps the loop steps, indices, tensors and legs it may
    unroll to (default :data:`MAX_EXPANSION`), or is a :class:`Budget` shared with
    other calls; a network sure to exceed it is refused before any unrolling,
    with the statement at fault located.
    """
    budget = max_expansion if isinstance(max_expansion, Budget) else expansion_budget(
        max_expansion)
    expander = _Expander(network, bind_sizes(network, sizes), budget)
    with _collector_paused():
        return expander.run()


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while expanding: a large network builds
    millions of small acyclic objects, and the collector's passes over them cost a
    fifth of the time. Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def expansion_budget(max_expansion: int | None = None) -> Budget:
    """A budget of ``max_expansion`` (default :data:`MAX_EXPANSION`) to share between
    :func:`expand` calls; a raised cap also lifts the per-statement ``MAX_UNROLLED``
    limit on loop steps and range lengths."""
    if max_expansion is None:
        return Budget(MAX_EXPANSION, MAX_UNROLLED)
    if (isinstance(max_expansion, bool) or not isinstance(max_expansion, numbers.Integral)
            or max_expansion < 1):
        raise TncError(f"max_expansion must be a positive integer, got {max_expansion!r}")
    return Budget(int(max_expansion), max(MAX_UNROLLED, int(max_expansion)))
