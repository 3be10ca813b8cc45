"""Parse tnc text into the typed syntax tree of :mod:`tnc.lang.ast`.

The grammar lives in ``grammar/tnc.lark`` (installed as ``tnc/grammar/tnc.lark``).
Parse errors become :class:`~tnc.errors.TncSyntaxError` with line, column and a
readable list of what was expected; common mistakes get a tailored hint::

    >>> from tnc.lang.parser import parse
    >>> [n.name for n in parse("network a() { output } network b() { output }").networks]
    ['a', 'b']
"""
from __future__ import annotations

import functools
import math
import sys
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from tnc.lang import ast
from tnc.errors import TncError, TncSyntaxError, source_lines

GRAMMAR_NAME = "tnc.lark"

# Short hints for frequent mistakes, matched by parser state (Lark's match_examples).
MISTAKE_EXAMPLES = {
    "a tensor's legs go in parentheses and subscripts in brackets: write `A(i, r)` or `G[n](p[n])`": [
        "network n() { tensor A[i, r] output }",
        "network n() { tensor A[i] output }",
        "network n() { data A[i, r] output }",
    ],
    "an index declaration needs a size after a colon: `index i: 10`": [
        "network n() { index i }",
        "network n() { index i, j: 2 }",
        "network n() { index i = 3 }",
    ],
    "a loop range is written `start..stop`, e.g. `for n in 1..N`": [
        "network n() { index i[n]: 2 for n in 1 }",
        "network n() { index i[n]: 2 for n in 1:3 }",
        "network n() { index i[n]: 2 for n = 1..3 }",
    ],
    "a network starts with `network NAME(SIZE = default, ...) {`": [
        "tensor A(i)",
        "index i: 2",
        "network { }",
        "network n { }",
    ],
}

_TERMINAL_WORDS = {"NAME": "a name", "INT": "an integer", "$END": "the end of the text"}


def grammar_text() -> str:
    """The grammar source: the installed copy, else the checkout's ``grammar/``."""
    installed = resources.files("tnc").joinpath("grammar", GRAMMAR_NAME)
    if installed.is_file():
        return installed.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "grammar" / GRAMMAR_NAME
    return checkout.read_text(encoding="utf-8")


LARK_OPTIONS = dict(parser="lalr", propagate_positions=True, maybe_placeholders=False)


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    """The LALR parser of the grammar, loaded from :func:`parser_cache_path` when a
    build of this grammar (and Lark and Python version) is kept there, else built
    (0.1-0.25 s) and kept there for the next process."""
    text = grammar_text()
    path = parser_cache_path(text)
    if path is not None:
        try:
            with open(path, "rb") as f:
                return Lark.load(f)
        except Exception:          # missing, or damaged (a full disk): build it again
            pass
    parser = Lark(text, **LARK_OPTIONS)
    if path is not None:
        _save(parser, path)
    return parser


def parser_cache_path(text: str) -> Path | None:
    """Where the built parser of grammar ``text`` is kept: a file named by a hash of
    the grammar, options, Lark and Python versions in tnc's private cache directory
    (:func:`tnc.engine.kernels.cache_dir`: this user's, mode 0700, so no other user
    can plant a pickle there); None when there is no such directory."""
    import hashlib
    from tnc.engine.kernels import cache_dir
    key = "\n".join([text, repr(sorted(LARK_OPTIONS.items())), lark.__version__,
                      repr(sys.version_info[:2])])
    try:
        return cache_dir() / f"parser-{hashlib.sha256(key.encode()).hexdigest()[:32]}.lark"
    except OSError:
        return None


def _save(parser: Lark, path: Path) -> None:
    """Write ``parser`` to ``path`` through a temporary file renamed into place, so a
    process reading it at the same time sees the whole file or none; a cache that
    cannot be written is skipped."""
    import os
    import tempfile
    from contextlib import suppress
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            parser.save(f)
        os.replace(temporary, path)
    except OSError:
        with suppress(OSError):
            os.unlink(temporary)


def _span(meta_or_token) -> ast.Span:
    if getattr(meta_or_token, "empty", False):
        return ast.Span(1, 1, 1, 1)
    return ast.Span(meta_or_token.line, meta_or_token.column,
                    meta_or_token.end_line, meta_or_token.end_column)


def _of(kind, children):
    return tuple(c for c in children if isinstance(c, kind))


#: Longest integer literal, in digits (Python's int-from-str limit is 4300); every value
#: in an expression stays below ``2 ** MAX_INT_BITS`` (see :func:`tnc.lang.expand.evaluate`).
MAX_INT_DIGITS = 4200


def _digit_limit() -> int:
    """:data:`MAX_INT_DIGITS`, or Python's own int-from-str limit when set lower."""
    python = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    return min(MAX_INT_DIGITS, python) if python else MAX_INT_DIGITS


class ToAst:
    """Lark tree -> :mod:`tnc.lang.ast`; one method ``rule(meta, children)`` per rule or alias.

    :meth:`transform` walks the tree with an explicit stack, so any nesting depth
    (10,000 unary minuses, a 10,000-term sum) builds without recursion.
    """

    def transform(self, tree: lark.Tree):
        """The AST of ``tree``, built bottom-up: children before their parent."""
        results: list = []
        stack: list = [(tree, False)]
        while stack:
            node, children_done = stack.pop()
            if not isinstance(node, lark.Tree):
                results.append(node)
            elif children_done:
                count = len(node.children)
                children = results[len(results) - count:]
                del results[len(results) - count:]
                results.append(self.rule(node.data, node.meta, children))
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))
        return results[0]

    def rule(self, data: str, meta, children):
        method = getattr(self, str(data), None)
        if method is None or data in ("transform", "rule") or data.startswith("_"):
            raise TncError(f"internal: the grammar rule `{data}` has no transformer")
        return method(meta, children)

    def start(self, meta, children):
        return tuple(children)

    def network(self, meta, children):
        name = children[0]
        return ast.NetworkDef(str(name), _of(ast.Param, children),
                              tuple(c for c in children[1:] if not isinstance(c, ast.Param)),
                              _span(meta))

    def param(self, meta, children):
        default = children[1] if len(children) > 1 else None
        return ast.Param(str(children[0]), default, _span(meta))

    def index_stmt(self, meta, children):
        return ast.IndexStmt(_of(ast.IndexDecl, children), self._loops(children), _span(meta))

    def index_decl(self, meta, children):
        return ast.IndexDecl(children[0], children[1], _span(meta))

    def tensor_stmt(self, meta, children):
        return ast.TensorStmt("param", _of(ast.TensorUse, children), self._loops(children), _span(meta))

    def data_stmt(self, meta, children):
        return ast.TensorStmt("data", _of(ast.TensorUse, children), self._loops(children), _span(meta))

    def tensor_use(self, meta, children):
        return ast.TensorUse(children[0], _of(ast.Leg, children[1:]), _span(meta))

    def output_stmt(self, meta, children):
        return ast.OutputStmt(_of(ast.Leg, children), _span(meta))

    def leg(self, meta, children):
        return ast.Leg(children[0], len(children) > 1, _span(meta))

    @staticmethod
    def _loops(children):
        for child in children:
            if isinstance(child, tuple) and all(isinstance(c, ast.Loop) for c in child):
                return child
        return ()

    def loops(self, meta, children):
        return tuple(children)

    def loop(self, meta, children):
        return ast.Loop(str(children[0]), children[1], children[2], _span(meta))

    def ref(self, meta, children):
        return ast.Ref(str(children[0]), tuple(children[1:]), _span(meta))

    def range(self, meta, children):
        return ast.Range(children[0], children[1], _span(meta))

    def wildcard(self, meta, children):
        return ast.Wildcard(_span(meta))

    def _binop(self, op, meta, children):
        return ast.BinOp(op, children[0], children[1], _span(meta))

    def add(self, meta, children):
        return self._binop("+", meta, children)

    def sub(self, meta, children):
        return self._binop("-", meta, children)

    def mul(self, meta, children):
        return self._binop("*", meta, children)

    def floordiv(self, meta, children):
        return self._binop("//", meta, children)

    def mod(self, meta, children):
        return self._binop("%", meta, children)

    def neg(self, meta, children):
        return ast.Neg(children[0], _span(meta))

    def int(self, meta, children):
        token, limit = children[0], _digit_limit()
        if len(token) > limit:
            raise TncSyntaxError(f"the integer literal has {len(token)} digits; tnc integers "
                                 f"have at most {limit}", _span(token))
        return ast.Int(int(token), _span(token))

    def var(self, meta, children):
        return ast.Var(str(children[0]), _span(children[0]))

    # -- model blocks ------------------------------------------------------------------
    def model(self, meta, children):
        return ast.ModelDef(str(children[0]), _of(ast.ModelParam, children),
                            tuple(c for c in children[1:] if not isinstance(c, ast.ModelParam)),
                            _span(meta))

    def model_param(self, meta, children):
        return ast.ModelParam(str(children[0]), children[1], _span(meta))

    def fit_stmt(self, meta, children):
        loss = next((c for c in children[2:] if isinstance(c, str) and not isinstance(c, Token)),
                    "gaussian")
        weight = next((c for c in children[2:] if isinstance(c, (ast.Number, ast.Name))), None)
        return ast.FitStmt(str(children[0]), str(children[1]), loss, weight, _span(meta),
                           _span(children[0]))

    def loss_spec(self, meta, children):
        name, args = str(children[0]), children[1:]
        return f"{name}({', '.join(args)})" if args else name

    def loss_arg(self, meta, children):
        number = children[-1]
        text = repr(number.value) if number.value != int(number.value) else str(int(number.value))
        return f"{children[0]}={text}" if len(children) > 1 else text

    def penalty_stmt(self, meta, children):
        along = next((c[1] for c in children if isinstance(c, tuple)), None)
        return ast.PenaltyStmt(str(children[0]), children[1], _of(ast.Ref, children), along,
                               _span(meta))

    def along(self, meta, children):
        return ("along", children[0])

    def nonneg_stmt(self, meta, children):
        return ast.NonnegStmt(_of(ast.Ref, children), _span(meta))

    def number(self, meta, children):
        token = children[0]
        value = float(token)
        if not math.isfinite(value):
            shown = token if len(token) <= 40 else f"{token[:20]}...({len(token)} characters)"
            raise TncSyntaxError(f"the number {shown} is too large: it overflows a float "
                                 "(at most about 1.8e308)", _span(token))
        return ast.Number(value, _span(token))

    def amount_name(self, meta, children):
        return ast.Name(str(children[0]), _span(children[0]))


def _describe_expected(parser: Lark, expected) -> str:
    words = []
    for name in sorted(expected):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.append(name)
            continue
        words.append(f"`{pattern.value}`" if pattern.type == "str" else name.lower())
    return ", ".join(dict.fromkeys(words))


def _syntax_error(error: UnexpectedInput, parser: Lark, text: str) -> TncSyntaxError:
    line, column = max(error.line, 1), max(error.column, 1)
    hint = _hint(error, parser)
    expected, width = _accepted(error), 1
    if isinstance(error, UnexpectedCharacters):
        found = f"unexpected character {_shown_character(text[error.pos_in_stream])}"
    elif isinstance(error, UnexpectedEOF) or getattr(error.token, "type", "") == "$END":
        found = "unexpected end of text"
        line, column = _end_position(text)
    else:
        found = f"unexpected `{error.token}`"
        width = max(1, len(str(error.token)))
    message = found
    if expected:
        message += f"; expected {_describe_expected(parser, expected)}"
    if hint:
        message += f"\nhint: {hint}"
    return TncSyntaxError(message, ast.Span(line, column, line, column + width))


def _shown_character(char: str) -> str:
    """```$```, or ``U+000B`` for a character a terminal would not show as itself."""
    return f"`{char}`" if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"


def _hint(error: UnexpectedInput, parser: Lark) -> str | None:
    """The tailored hint for a known mistake, if the error matches one."""
    try:
        return error.match_examples(parser.parse, MISTAKE_EXAMPLES, use_accepts=True)
    except Exception:  # Lark's matcher fails on some states (e.g. `network n() { tensor network`)
        return None


def _accepted(error: UnexpectedInput) -> set[str]:
    """The terminals the parser would take at the error (exact, not LALR-merged)."""
    interactive = getattr(error, "interactive_parser", None)
    if interactive is None:
        return set()
    try:
        return set(interactive.accepts())
    except Exception:  # accepts() replays the parser; fall back to Lark's own guess
        return set(getattr(error, "expected", ()) or ())


def _end_position(text: str) -> tuple[int, int]:
    """Line and column just past the last character (a final newline ends its line)."""
    lines = source_lines(text)
    if len(lines) > 1 and not lines[-1] and text.endswith("\n"):
        lines.pop()
    return len(lines), len(lines[-1]) + 1


def parse(text: str, filename: str | None = None) -> ast.Module:
    """Parse tnc source text into an :class:`~tnc.lang.ast.Module`.

    Raises :class:`~tnc.errors.TncSyntaxError` (with line, column and a caret)
    for text that is not in the language. The last few modules are kept (the
    tree is immutable), so compiling one text's networks and model block
    parses it once.
    """
    if not isinstance(text, str):
        raise TncError(f"expected tnc text, got {type(text).__name__}")
    return _parse_cached(text, filename)


@functools.lru_cache(maxsize=4)
def _parse_cached(text: str, filename: str | None) -> ast.Module:
    parser = lark_parser()
    try:
        tree = parser.parse(text)
        definitions = ToAst().transform(tree)
    except UnexpectedInput as error:
        raise _syntax_error(error, parser, text).located(text, filename) from None
    except TncError as error:
        raise error.located(text, filename) from None
    return ast.Module(_of(ast.NetworkDef, definitions), text, filename,
                      _of(ast.ModelDef, definitions))
