"""tnc's exceptions: one root class, every language error located in the source.

Every error that bad input can cause is a :class:`TncError`. Errors about a
place in a ``.tn`` text carry a :class:`~tnc.lang.ast.Span` and render the file name,
line, column, the offending line and a caret under it::

    >>> from tnc import compile
    >>> compile("network n() { index i: 0 output i }")
    Traceback (most recent call last):
    ...
    tnc.errors.TncSemanticError: <string>:1:24: index `i` has size 0; sizes must be positive integers
        network n() { index i: 0 output i }
                               ^
"""
from __future__ import annotations


class TncError(Exception):
    """Root of every exception tnc raises on purpose.

    ``message`` says what is wrong; ``span``, ``source`` and ``filename`` (all
    optional) locate it, and ``str(error)`` shows the source line with a caret.
    """

    def __init__(self, message: str, span=None, source: str | None = None,
                 filename: str | None = None):
        self.message = message
        self.span = span
        self.source = source
        self.filename = filename
        super().__init__(message)

    @property
    def line(self) -> int | None:
        return None if self.span is None else self.span.line

    @property
    def column(self) -> int | None:
        return None if self.span is None else self.span.column

    def located(self, source: str, filename: str | None) -> "TncError":
        """Attach the source text (once, at the public boundary) and return self."""
        if self.source is None:
            self.source = source
        if self.filename is None:
            self.filename = filename
        return self

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        where = f"{self.filename or '<string>'}:{self.span.line}:{self.span.column}"
        text = f"{where}: {self.message}"
        if self.source is not None:
            lines = source_lines(self.source)
            if 1 <= self.span.line <= len(lines):
                shown = printable(lines[self.span.line - 1])
                width = 1
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                caret = " " * (self.span.column - 1) + "^" * width
                text += f"\n    {shown}\n    {caret}"
        return text


def source_lines(text: str) -> list[str]:
    """The lines of a text as the parser counts them: split at ``\\n`` only (a lone
    ``\\r``, ``\\f``, ``\\x85`` or ``\\u2028`` does not end a line), ``\\r\\n`` as one.

    >>> source_lines("a\\fb\\r\\nc")
    ['a\\x0cb', 'c']
    """
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def printable(line: str) -> str:
    """``line`` with each unprintable character (tab, form feed, ...) shown as one blank,
    so a caret counted in characters stays under its column."""
    return "".join(c if c.isprintable() else " " for c in line)


class TncSyntaxError(TncError):
    """The text is not in the tnc language (a parse error)."""


class TncSemanticError(TncError):
    """The text parses but does not describe a valid network."""


class TensorError(TncError):
    """Arrays passed to a network do not match it (names, shapes, values)."""


class MemoryLimitError(TncError):
    """A contraction would allocate more than the memory limit allows."""


class ConvergenceWarning(UserWarning):
    """A fit stopped without meeting its stopping rule honestly: it diverged, returned its
    start, or a limit (such as DMRG's bond dimension) rather than the tolerance decided it."""
