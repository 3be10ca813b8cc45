"""Translate an einsum expression into tnc text.

Each operand becomes a tensor ``T1, T2, ...``, each letter an index of the size
read off the shapes; implicit mode (no ``->``) keeps the letters used once, in
alphabetical order, as numpy does::

    >>> print(from_einsum("ij,jk->ik", (2, 3), (3, 4), name="mm"), end="")
    network mm() {
        index i: 2, j: 3, k: 4
        tensor T1(i, j), T2(j, k)
        output i, k
    }

Repeated letters on one operand (traces, diagonals), hyperedges (a letter on
three or more operands) and scalar outputs (``ij,ij->``) all translate.
"""
from __future__ import annotations

import numbers
import re
from collections import Counter

from tnc.errors import TncError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = {"network", "index", "tensor", "data", "output", "for", "in"}


def parse_einsum(eq: str, num_operands: int) -> tuple[list[str], str]:
    """Split ``eq`` into operand terms and the output term (implicit mode resolved).

    >>> parse_einsum("ij,jk", 2)
    (['ij', 'jk'], 'ik')
    """
    if not isinstance(eq, str):
        raise TncError(f"an einsum equation is a string, got {type(eq).__name__}")
    text = eq.replace(" ", "")
    if "." in text:
        raise TncError(f"einsum equation {eq!r}: ellipses (`...`) are not supported; "
                       "write every index as a letter")
    lhs, arrow, rhs = text.partition("->")
    if "->" in rhs or "-" in lhs or ">" in lhs:
        raise TncError(f"einsum equation {eq!r}: write at most one `->`")
    terms = lhs.split(",")
    for letter in text.replace(",", "").replace("->", ""):
        if not letter.isascii() or not letter.isalpha():
            raise TncError(f"einsum equation {eq!r}: `{letter}` is not a letter; "
                           "indices are the letters a-z and A-Z")
    if len(terms) != num_operands:
        raise TncError(f"einsum equation {eq!r} has {len(terms)} operand(s) but "
                       f"{num_operands} shape(s) were given")
    if not arrow:
        counts = Counter("".join(terms))
        rhs = "".join(sorted(c for c, n in counts.items() if n == 1))
    return terms, rhs


def _sizes(eq: str, terms: list[str], shapes) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for k, (term, shape) in enumerate(zip(terms, shapes), start=1):
        shape = _as_shape(shape, k)
        if len(shape) != len(term):
            raise TncError(f"einsum equation {eq!r}: operand {k} `{term}` has {len(term)} "
                           f"indices but its shape {shape} has {len(shape)} dimensions")
        for letter, size in zip(term, shape):
            if size < 1:
                raise TncError(f"einsum equation {eq!r}: index `{letter}` of operand {k} "
                               f"has size {size}; sizes must be positive")
            if sizes.setdefault(letter, size) != size:
                raise TncError(f"einsum equation {eq!r}: index `{letter}` has two sizes, "
                               f"{sizes[letter]} and {size} (operand {k})")
    return sizes


def _as_shape(shape, k: int) -> tuple[int, ...]:
    shape = getattr(shape, "shape", shape)     # an array stands for its shape
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                               for d in dims):
        raise TncError(f"shape of operand {k} must be a tuple of integers, got {shape!r}")
    return tuple(int(d) for d in dims)


def _check_output(eq: str, terms: list[str], output: str) -> None:
    carried = set("".join(terms))
    for letter in output:
        if letter not in carried:
            raise TncError(f"einsum equation {eq!r}: output index `{letter}` is on no operand")
        if output.count(letter) > 1:
            raise TncError(f"einsum equation {eq!r}: output index `{letter}` appears twice")


def from_einsum(eq: str, *shapes, name: str = "einsum") -> str:
    """tnc text for the einsum ``eq`` over operands of ``shapes`` (tuples or arrays).

    The network's tensors are ``T1, T2, ...`` in operand order; compile the
    text with :func:`tnc.compile` and pass ``{"T1": a, "T2": b}`` to contract.

    >>> print(from_einsum("ii", (3, 3)), end="")
    network einsum() {
        index i: 3
        tensor T1(i, i)
        output
    }
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in _KEYWORDS:
        raise TncError(f"network name {name!r} is not a valid tnc name")
    terms, output = parse_einsum(eq, len(shapes))
    sizes = _sizes(eq, terms, shapes)
    _check_output(eq, terms, output)
    index_line = ", ".join(f"{letter}: {size}" for letter, size in sizes.items())
    uses = ", ".join(f"T{k}({', '.join(term)})" for k, term in enumerate(terms, start=1))
    lines = [f"network {name}() {{"]
    if sizes:
        lines.append(f"    index {index_line}")
    lines += [f"    tensor {uses}", f"    output {', '.join(output)}".rstrip(), "}"]
    return "\n".join(lines) + "\n"
