"""Size parameters solved from an output shape, without compiling the network.

Each output leg's size is an expression of the header's size parameters (and
the loop variables at its declaration). A leg whose size is one unknown
parameter times known integers plus known integers (``N``, ``2*N``, ``N+1``,
``K*N`` with ``K`` known) gives that parameter by exact integer division, as
einops infers unknown axis lengths; parameters shared by several legs must
agree; what cannot be solved is a :class:`TncError` naming the index and its
size expression. Only the index declarations and the output are unrolled,
never the tensors::

    >>> from tnc.lang.parser import parse
    >>> net = parse("network w(N, K = 3) { index i: 2*N, j: K*N + 1  tensor A(i, j)"
    ...             "  output i, j }").networks[0]
    >>> solve_sizes(net, (10, 16))      # N from axis 0, then K (a default) from axis 1
    {'N': 5, 'K': 3}
    >>> solve_sizes(net, (10, 21), given={"K": 3})
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: size parameter `N` of network `w` would be both 5 and no integer (read off axes 0 and 1 of the data): output index `j` has size `K*N + 1` and axis 1 of the data has 21, not 16
    >>> solve_sizes(net, (11, 16))
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: cannot read size parameter `N` of network `w` off the data: output index `i` has size `2*N` and axis 0 of the data has 11, which is not 2*N for any integer N
"""
from __future__ import annotations

from dataclasses import dataclass

from tnc.lang import ast
from tnc.errors import TncError, TncSemanticError
from tnc.lang.expand import (IndexInfo, _apply, _checked_value, _Expander, _Scope, _is_single,
                             evaluate, expansion_budget, fold, member_name, unroll_statement)


@dataclass(frozen=True)
class Affine:
    """``sum(coefs[p] * p) + const`` over unknown parameters ``p``."""

    coefs: dict
    const: int

    def scaled(self, k: int) -> "Affine":
        return Affine({p: k * c for p, c in self.coefs.items() if k * c}, k * self.const)


@dataclass(frozen=True)
class Opaque:
    """A value depending on the unknowns ``names`` in a way no division undoes."""

    names: frozenset


def solve_sizes(definition: ast.NetworkDef, shape, given=None, defaults=None) -> dict[str, int]:
    """The size parameters of ``definition`` read off ``shape`` (its output's shape).

    ``given``: values that are never read off the data (names of other networks
    are ignored). ``defaults``: values standing in for the header defaults (a
    compiled network's sizes); a parameter with a default is read off the data
    when an output leg fixes it and keeps its default otherwise. Parameters that
    set loop ranges or subscripts are never read. Returns only the values read.
    Shape mismatches that no read value causes are left to the compile.
    """
    given = {k: v for k, v in (given or {}).items() if k in {p.name for p in definition.params}}
    defaults = dict(defaults or {})
    header = {p.name: p for p in definition.params}
    fixed = _structural_values(definition, given, defaults)
    readable = [p for p in header if p not in given and p not in fixed]
    legs = output_sizes(definition, fixed)
    if len(legs) != len(shape):
        raise TncError(f"network `{definition.name}` has {len(legs)} output legs but the data "
                       f"has {len(shape)} dimensions (shape {tuple(shape)})")
    has_default = {p for p in readable if p in defaults or header[p].default is not None}
    solver = _Solver(definition, legs, tuple(int(s) for s in shape), {**given, **fixed})
    solver.run(set(readable), has_default, defaults)
    missing = [p for p in readable if p not in has_default and p not in solver.solved]
    if missing:
        raise solver.unsolved(missing)
    return solver.solved


def output_sizes(definition: ast.NetworkDef, sizes: dict[str, int]):
    """``[(index, size expression, loop variables), ...]``, one per output leg, unrolled
    with the structural ``sizes`` (those setting loop ranges and subscripts)."""
    table = _SizeTable(definition, sizes, expansion_budget())
    for stmt in definition.statements:
        if isinstance(stmt, ast.IndexStmt):
            table.declare_indices(stmt)
    outputs = [s for s in definition.statements if isinstance(s, ast.OutputStmt)]
    names = [n for leg in (outputs[0].legs if outputs else ())
             for n in table.legs((leg,), table.scope)]
    return [(n, *table.size_of[n]) for n in names]


class _SizeTable(_Expander):
    """Declares indices like :class:`_Expander`, keeping each one's size expression and
    loop variables instead of its value (the value may need unknown parameters)."""

    def __init__(self, network, sizes, budget):
        super().__init__(network, sizes, budget)
        self.size_of: dict[str, tuple[ast.Expr, dict[str, int]]] = {}

    def declare_indices(self, stmt: ast.IndexStmt) -> None:
        for scope in unroll_statement(stmt, self.scope, self.budget):
            for decl in stmt.decls:
                members = ([tuple(evaluate(s, scope) for s in decl.ref.subscripts)]
                           if _is_single(decl.ref)
                           else self.subscript_values(decl.ref, scope, wildcard_ok=False))
                for subs in members:
                    self.record(decl, subs, scope)

    def record(self, decl: ast.IndexDecl, subs: tuple[int, ...], scope: _Scope) -> None:
        name = member_name(decl.ref.name, subs)
        if name in self.size_of:
            return                      # declared twice: the compile reports it
        info = IndexInfo(name, decl.ref.name, subs, 0, decl.span)
        self.indices[name] = info
        self.families.setdefault((decl.ref.name, len(subs)), []).append(info)
        self.size_of[name] = (decl.size, dict(scope.loop_vars))


def _structural_values(definition, given, defaults) -> dict[str, int]:
    """Values of the parameters that set loop ranges or subscripts (or the defaults of
    such parameters): given, else default; never read off the data."""
    header = {p.name: p for p in definition.params}
    wanted = _names_in(_structural_exprs(definition)) & set(header)
    for param in reversed(definition.params):      # defaults use earlier parameters
        if param.name in wanted and param.name not in given and param.name not in defaults \
                and param.default is not None:
            wanted |= _names_in([param.default]) & set(header)
    values: dict[str, int] = {}
    for param in definition.params:
        if param.name not in wanted:
            continue
        if param.name in given or param.name in defaults:
            values[param.name] = int({**defaults, **given}[param.name])
        elif param.default is not None:
            values[param.name] = evaluate(param.default, _Scope({**given, **values}))
        else:
            raise TncError(f"size parameter `{param.name}` of network `{definition.name}` "
                           "sets loop ranges or subscripts, so the data cannot fix it; pass it, "
                           f"e.g. sizes={{'{param.name}': ...}}")
    return values


def _structural_exprs(definition):
    """Every expression of a network that is not an index size: loop ends, subscripts."""
    for stmt in definition.statements:
        for loop in getattr(stmt, "loops", ()):
            yield from (loop.start, loop.stop)
        refs = ([d.ref for d in stmt.decls] if isinstance(stmt, ast.IndexStmt) else
                [r for use in stmt.uses for r in (use.ref, *(leg.ref for leg in use.legs))]
                if isinstance(stmt, ast.TensorStmt) else [leg.ref for leg in stmt.legs])
        for ref in refs:
            for sub in ref.subscripts:
                yield from ((sub.start, sub.stop) if isinstance(sub, ast.Range) else
                            () if isinstance(sub, ast.Wildcard) else (sub,))


def _names_in(exprs) -> set[str]:
    names, stack = set(), list(exprs)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Var):
            names.add(node.name)
        elif isinstance(node, ast.BinOp):
            stack.extend((node.left, node.right))
        elif isinstance(node, ast.Neg):
            stack.append(node.operand)
    return names


class _Solver:
    """Reads unknown parameters off the axes they alone size, round after round."""

    def __init__(self, definition, legs, shape, known):
        self.definition, self.legs, self.shape = definition, legs, shape
        self.known = dict(known)
        self.solved: dict[str, int] = {}
        self.read_at: dict[str, int] = {}       # parameter -> the axis it was read off

    def run(self, unknown: set, has_default: set, defaults: dict) -> None:
        self.derived: dict[str, object] = {}
        while True:
            self.rounds(unknown)
            left = [p for p in unknown if p in has_default and p not in self.solved]
            if not left:
                break
            for param in left:             # unread defaults keep their values; read on
                self.derived[param] = defaults.get(param, self.header(param).default)
                unknown = unknown - {param}
        self.check_agreement()

    def header(self, name: str) -> ast.Param:
        return next(p for p in self.definition.params if p.name == name)

    def rounds(self, unknown: set) -> None:
        progress = True
        while progress:
            progress = False
            for axis, (index, expr, loop_vars) in enumerate(self.legs):
                value = self.value(expr, loop_vars, unknown)
                if isinstance(value, Affine) and len(value.coefs) == 1:
                    (param, coef), = value.coefs.items()
                    self.solved[param] = self.divide(index, expr, axis, param, coef,
                                                     value.const, loop_vars)
                    self.read_at[param] = axis
                    progress = True

    def value(self, expr, loop_vars, unknown):
        return symbolic(expr, {**self.known, **self.solved, **loop_vars},
                        unknown - set(self.solved) - set(loop_vars), self.derived)

    def divide(self, index, expr, axis, param, coef, const, loop_vars) -> int:
        length = self.shape[axis]
        quotient, remainder = divmod(length - const, coef)
        if remainder:
            raise TncError(f"cannot read size parameter `{param}` of network "
                           f"`{self.definition.name}` off the data: {self.where(index, expr, axis, loop_vars)}"
                           f", which is not {_linear_text(param, coef, const)} for any integer "
                           f"{param}")
        return quotient

    def where(self, index, expr, axis, loop_vars) -> str:
        env = ", ".join(f"{k} = {v}" for k, v in loop_vars.items())
        return (f"output index `{index}` has size `{expression_text(expr)}`"
                + (f" ({env})" if env else "")
                + f" and axis {axis} of the data has {self.shape[axis]}")

    def check_agreement(self) -> None:
        """Every leg sized by a read parameter has its axis's length."""
        for axis, (index, expr, loop_vars) in enumerate(self.legs):
            used = _names_in([expr]) & set(self.solved)
            if not used:
                continue
            value = self.value(expr, loop_vars, set())
            if value != self.shape[axis]:
                param = min(used, key=self.read_at.get)
                raise TncError(f"size parameter `{param}` of network `{self.definition.name}` "
                               f"would be both {self.solved[param]} and "
                               f"{self.other_value(param, expr, axis, loop_vars)} (read off "
                               f"axes {self.read_at[param]} and {axis} of the data): "
                               f"{self.where(index, expr, axis, loop_vars)}, not {value}")

    def other_value(self, param, expr, axis, loop_vars) -> str:
        """What ``param`` alone would be to give ``axis`` its length, as text."""
        kept = self.solved.pop(param)
        try:
            form = self.value(expr, loop_vars, {param})
        finally:
            self.solved[param] = kept
        if isinstance(form, Affine) and set(form.coefs) == {param}:
            quotient, remainder = divmod(self.shape[axis] - form.const, form.coefs[param])
            if not remainder:
                return str(quotient)
        return "no integer"

    def unsolved(self, missing) -> TncError:
        """The error for parameters without defaults that no output leg gave."""
        for axis, (index, expr, loop_vars) in enumerate(self.legs):
            value = self.value(expr, loop_vars, set(missing))
            names = sorted(value.names if isinstance(value, Opaque) else
                           value.coefs if isinstance(value, Affine) else ())
            if names:
                return TncError(
                    f"cannot read size parameter(s) {', '.join(names)} of network "
                    f"`{self.definition.name}` off the data: {self.where(index, expr, axis, loop_vars)}"
                    ", and only a size of one unknown parameter times known integers plus "
                    f"known integers can be solved; pass them, e.g. sizes={{'{names[0]}': ...}}")
        return TncError(f"size parameter(s) {', '.join(missing)} of network "
                        f"`{self.definition.name}` size no output index, so the data cannot "
                        f"fix them; pass them, e.g. sizes={{'{missing[0]}': ...}}")


def symbolic(expr: ast.Expr, known: dict[str, int], unknown: set, derived=None):
    """``expr`` as an int, an :class:`Affine` form of the ``unknown`` names, or an
    :class:`Opaque` value; ``derived`` maps names to the expressions (or ints) that
    stand for them.

    >>> from tnc.lang.parser import parse
    >>> size = parse("network n(N) { index i: 3*(N+1) - 1  output }").networks[0]
    >>> symbolic(size.statements[0].decls[0].size, {}, {"N"})
    Affine(coefs={'N': 3}, const=2)
    """
    derived = derived or {}
    return fold(expr, lambda node: _leaf_value(node, known, unknown, derived), _negated,
                lambda node, left, right: _combine(node.op, left, right, node))


def _negated(value):
    return -value if isinstance(value, int) else (
        value.scaled(-1) if isinstance(value, Affine) else value)


def _leaf_value(node: ast.Var, known, unknown, derived):
    if node.name in known:
        return known[node.name]
    if node.name in unknown:
        return Affine({node.name: 1}, 0)
    if node.name in derived:
        stand_in = derived[node.name]
        return stand_in if isinstance(stand_in, int) else symbolic(
            stand_in, known, unknown, {k: v for k, v in derived.items() if k != node.name})
    raise TncSemanticError(f"unknown name `{node.name}` in a size expression", node.span)


def _combine(op: str, left, right, node):
    if isinstance(left, int) and isinstance(right, int):
        return _checked_value(_apply(node, left, right), node)
    if isinstance(left, Opaque) or isinstance(right, Opaque) or op in ("//", "%"):
        return Opaque(_unknowns(left) | _unknowns(right))
    if op == "*":
        if isinstance(left, int) or isinstance(right, int):
            return (right.scaled(left) if isinstance(left, int) else left.scaled(right))
        return Opaque(_unknowns(left) | _unknowns(right))
    a, b = _affine(left), _affine(right).scaled(-1 if op == "-" else 1)
    coefs = {p: a.coefs.get(p, 0) + b.coefs.get(p, 0) for p in {**a.coefs, **b.coefs}}
    return Affine({p: c for p, c in coefs.items() if c}, a.const + b.const)


def _affine(value) -> Affine:
    return Affine({}, value) if isinstance(value, int) else value


def _unknowns(value) -> frozenset:
    return (value.names if isinstance(value, Opaque) else frozenset(value.coefs)
            if isinstance(value, Affine) else frozenset())


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2}


def expression_text(expr: ast.Expr) -> str:
    """``expr`` written back as tnc text (parentheses only where needed).

    >>> from tnc.lang.parser import parse
    >>> expression_text(parse("network n(N) { index i: 2*(N+1)  output }")
    ...                 .networks[0].statements[0].decls[0].size)
    '2*(N + 1)'
    """
    def text(node, outer: int, right_side: bool = False) -> str:
        if isinstance(node, ast.Int):
            return str(node.value)
        if isinstance(node, ast.Var):
            return node.name
        if isinstance(node, ast.Neg):
            return "-" + text(node.operand, 3)
        level = _PRECEDENCE[node.op]
        sep = f" {node.op} " if level == 1 else node.op
        body = text(node.left, level) + sep + text(node.right, level, True)
        return f"({body})" if level < outer or (right_side and level == outer) else body
    return text(expr, 0)


def _linear_text(param: str, coef: int, const: int) -> str:
    body = param if coef == 1 else f"{coef}*{param}"
    return body if not const else f"{body} {'+' if const > 0 else '-'} {abs(const)}"
