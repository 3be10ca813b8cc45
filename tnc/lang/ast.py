"""Typed syntax tree of the tnc language: frozen dataclasses with source spans.

The Lark tree never leaves :mod:`tnc.lang.parser`; every later stage sees these.
Expressions are integer arithmetic over size parameters and loop variables::

    >>> from tnc.lang.parser import parse
    >>> module = parse("network n(N = 3) { index i: N output i }")
    >>> module.networks[0].params[0].name
    'N'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Span:
    """Where a node stands in the source: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class Int:
    value: int
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str            # one of + - * // %
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


Expr = Union[Int, Var, BinOp, Neg]


@dataclass(frozen=True)
class Range:
    """``start..stop`` inside a subscript: both ends included."""

    start: Expr
    stop: Expr
    span: Span


@dataclass(frozen=True)
class Wildcard:
    """``*`` inside a subscript: every declared member along that position."""

    span: Span


Subscript = Union[Int, Var, BinOp, Neg, Range, Wildcard]


@dataclass(frozen=True)
class Ref:
    """A name with optional subscripts: ``i``, ``p[n]``, ``h[x-1, y]``, ``p[*, 1..3]``."""

    name: str
    subscripts: tuple[Subscript, ...]
    span: Span


@dataclass(frozen=True)
class Leg:
    """One leg of a tensor (or one output entry); ``optional`` is the ``?`` mark."""

    ref: Ref
    optional: bool
    span: Span


@dataclass(frozen=True)
class Loop:
    """``var in start..stop`` of a ``for`` clause."""

    var: str
    start: Expr
    stop: Expr
    span: Span


@dataclass(frozen=True)
class IndexDecl:
    ref: Ref
    size: Expr
    span: Span


@dataclass(frozen=True)
class IndexStmt:
    decls: tuple[IndexDecl, ...]
    loops: tuple[Loop, ...]
    span: Span


@dataclass(frozen=True)
class TensorUse:
    ref: Ref
    legs: tuple[Leg, ...]
    span: Span


@dataclass(frozen=True)
class TensorStmt:
    """``tensor ...`` (kind ``"param"``) or ``data ...`` (kind ``"data"``)."""

    kind: str
    uses: tuple[TensorUse, ...]
    loops: tuple[Loop, ...]
    span: Span


@dataclass(frozen=True)
class OutputStmt:
    legs: tuple[Leg, ...]
    span: Span


Statement = Union[IndexStmt, TensorStmt, OutputStmt]


@dataclass(frozen=True)
class Param:
    """A size parameter of the network header; ``default`` is None when left open."""

    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    statements: tuple[Statement, ...]
    span: Span


# -- model blocks: networks coupled through shared tensors ----------------------------------
@dataclass(frozen=True)
class Number:
    """A literal amount in a model block (weights, penalties): ``0.5``, ``1e-3``, ``2``."""

    value: float
    span: Span


@dataclass(frozen=True)
class Name:
    """An amount given by a model parameter: ``lambda`` in ``penalty l2(lambda) A``."""

    name: str
    span: Span


Amount = Union[Number, Name]


@dataclass(frozen=True)
class ModelParam:
    name: str
    default: Number
    span: Span


@dataclass(frozen=True)
class FitStmt:
    """``fit NETWORK to DATA [loss NAME(args)] [weight AMOUNT]``; ``loss`` is text for
    :func:`tnc.fitting.losses.get_loss` (``"gaussian"`` when left out)."""

    network: str
    data: str
    loss: str
    weight: Amount | None
    span: Span
    network_span: Span


@dataclass(frozen=True)
class PenaltyStmt:
    """``penalty KIND(AMOUNT) T1, T2 [along INDEX]`` (kinds ``l2``, ``tv``)."""

    kind: str
    amount: Amount
    tensors: tuple[Ref, ...]
    along: Ref | None
    span: Span


@dataclass(frozen=True)
class NonnegStmt:
    tensors: tuple[Ref, ...]
    span: Span


ModelStatement = Union[FitStmt, PenaltyStmt, NonnegStmt]


@dataclass(frozen=True)
class ModelDef:
    name: str
    params: tuple[ModelParam, ...]
    statements: tuple[ModelStatement, ...]
    span: Span


@dataclass(frozen=True)
class Module:
    """A parsed text: its networks (and model blocks), the text itself and where it came from."""

    networks: tuple[NetworkDef, ...]
    source: str
    filename: str | None
    models: tuple[ModelDef, ...] = ()
