"""The parser on every construct, and on random and mutated text (hypothesis).

Whatever text comes in, parsing and compiling raise nothing but :class:`tnc.TncError`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tnc
from tnc.lang import ast
from tnc.lang.compiler import library_source
from tnc.lang.parser import parse

SHARED = Path(__file__).resolve().parent / "dsl"     # copied from ../shared/dsl

EVERY_CONSTRUCT = """\
# comment line
network all(N = 3, M = N + 1, K) {   # trailing comment
    index i: 2, j: M * 2 - 1, k: (N + 1) // 2, m: 7 % 4, z: -(-2)
    index p[n]: N   for n in 1..N
    index g[x, y]: 2   for x in 1..2, y in x..2
    tensor A(i, j), B[1](j, k?)
    tensor C[n](p[n], q[n]?)   for n in 1..N
    data   X(i, p[1..N])
    tensor D(g[*, *])
    output i, k, p[*]
}
network second() { index a: 2 tensor S(a) output }
"""


def seeds() -> list[str]:
    texts = [library_source(name) for name in tnc.library_names()]
    texts += [p.read_text() for p in sorted(SHARED.glob("*.tn"))]
    return texts + [EVERY_CONSTRUCT]


SEEDS = seeds()


# -- every construct -----------------------------------------------------------------------
def test_every_construct_parses_to_the_ast():
    module = parse(EVERY_CONSTRUCT, "all.tn")
    first, second = module.networks
    assert (first.name, second.name) == ("all", "second")
    assert [p.name for p in first.params] == ["N", "M", "K"]
    assert first.params[2].default is None
    assert isinstance(first.params[1].default, ast.BinOp) and first.params[1].default.op == "+"
    kinds = [type(s).__name__ for s in first.statements]
    assert kinds == ["IndexStmt"] * 3 + ["TensorStmt"] * 2 + ["TensorStmt", "TensorStmt",
                                                              "OutputStmt"]
    assert first.statements[5].kind == "data"
    grid = first.statements[2]
    assert [loop.var for loop in grid.loops] == ["x", "y"]
    legs = first.statements[3].uses[1].legs
    assert [leg.optional for leg in legs] == [False, True]
    wildcard = first.statements[6].uses[0].legs[0].ref.subscripts
    assert all(isinstance(s, ast.Wildcard) for s in wildcard)
    assert isinstance(first.statements[5].uses[0].legs[1].ref.subscripts[0], ast.Range)
    assert module.filename == "all.tn" and module.source == EVERY_CONSTRUCT


def test_every_construct_expands():
    net = tnc.compile(EVERY_CONSTRUCT, name="all", K=1)
    assert net.spec.index_sizes["j"] == 7 and net.spec.index_sizes["k"] == 2
    assert tnc.compile(EVERY_CONSTRUCT.replace("tensor D(", "tensor D(m, z, "),
                       name="all", K=1).params["D"][:2] == (3, 2)
    assert [o.name for o in net.occurrences] == ["A", "B[1]", "C[1]", "C[2]", "C[3]", "X", "D"]
    assert net.occurrences[1].indices == ("j", "k")                 # k? is declared
    assert net.occurrences[2].indices == ("p[1]",)                  # q[1]? is not
    assert net.occurrences[5].indices == ("i", "p[1]", "p[2]", "p[3]")
    assert net.occurrences[6].indices == ("g[1,1]", "g[1,2]", "g[2,2]")   # ragged family
    assert net.output == ("i", "k", "p[1]", "p[2]", "p[3]")
    assert net.data == {"X": (2, 3, 3, 3)}


def test_expression_precedence():
    net = tnc.compile("network n() { index i: 2 + 3 * 4 - 10 // 3 % 2, j: -2 + 5 "
                      "tensor A(i, j) output i, j }")
    assert net.shapes == ((2 + 3 * 4 - 10 // 3 % 2, 3),)


def test_positions_are_one_based():
    module = parse("network n() {\n    index i: 2\n    tensor A(i)\n    output i\n}")
    use = module.networks[0].statements[1].uses[0]
    assert (use.span.line, use.span.column) == (3, 12)
    assert (use.legs[0].span.line, use.legs[0].span.column) == (3, 14)


def test_a_keyword_may_name_an_index_where_no_keyword_fits():
    net = tnc.compile("network n() { index for: 2 tensor A(for) output for }")
    assert net.output == ("for",)


@pytest.mark.parametrize("text", ["network n() { tensor network", "network n() { tensor network network"])
def test_syntax_errors_lark_cannot_match_to_a_hint(text):
    with pytest.raises(tnc.TncSyntaxError, match="unexpected"):
        parse(text)


def test_empty_text_has_no_networks():
    assert parse("").networks == ()
    assert parse("# just a comment\n").networks == ()


@pytest.mark.parametrize("text", SEEDS[:-1], ids=lambda t: re.search(r"network (\w+)", t)[1])
def test_library_and_sketches_parse(text):
    assert parse(text).networks


def test_deep_nesting():
    parens = "network n() { index i: " + "(" * 5000 + "1" + ")" * 5000 + " tensor A(i) output }"
    assert tnc.compile(parens).shapes == ((1,),)
    negations = "network n() { index i: " + "-" * 10000 + "3 tensor A(i) output }"
    assert tnc.compile(negations).shapes == ((3,),)          # no recursion: any depth parses
    with pytest.raises(tnc.TncSemanticError, match="has size -3"):
        tnc.compile("network n() { index i: " + "-" * 10001 + "3 tensor A(i) output }")


# -- random and mutated text (hypothesis) ---------------------------------------------------
TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|\.\.|//|\S")
ALPHABET = "network index tensor data output for in (){}[],:?*+-/%=.#\n 0123456789 Nnijpr"
VOCABULARY = ["network", "index", "tensor", "data", "output", "for", "in", "..", "//", "(",
              ")", "{", "}", "[", "]", ",", ":", "?", "*", "+", "-", "%", "=", "#", "\n",
              "0", "1", "-1", "99", "N", "n", "i", "p", "G", "A", "x"]
FAST = settings(max_examples=int(os.environ.get("TNC_FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def compile_or_tnc_error(text: str) -> None:
    """Parse and expand ``text``; anything but success or a TncError fails the test."""
    try:
        networks = tnc.compile_all(text)
    except tnc.TncError as error:
        assert str(error)                 # rendering the message never fails either
        return
    for net in networks.values():
        assert net.equation.count("->") == 1


@FAST
@given(st.text(max_size=200))
def test_random_text(text):
    compile_or_tnc_error(text)


@FAST
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_random_text_over_the_language_alphabet(text):
    compile_or_tnc_error(text)


@FAST
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60))
def test_random_token_sequences(tokens):
    compile_or_tnc_error("network n() { " + " ".join(tokens))


@st.composite
def char_mutation(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        action = draw(st.sampled_from(["delete", "insert", "swap", "replace"]))
        char = draw(st.sampled_from(ALPHABET))
        if action == "delete":
            text = text[:pos] + text[pos + 1:]
        elif action == "insert":
            text = text[:pos] + char + text[pos:]
        elif action == "replace":
            text = text[:pos] + char + text[pos + 1:]
        elif pos + 1 < len(text):
            text = text[:pos] + text[pos + 1] + text[pos] + text[pos + 2:]
    return text


@st.composite
def token_mutation(draw):
    tokens = TOKEN.findall(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(tokens) - 1))
        action = draw(st.sampled_from(["delete", "insert", "swap", "duplicate"]))
        if action == "delete":
            del tokens[pos]
        elif action == "insert":
            tokens.insert(pos, draw(st.sampled_from(VOCABULARY)))
        elif action == "duplicate":
            tokens.insert(pos, tokens[pos])
        else:
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[pos], tokens[other] = tokens[other], tokens[pos]
    return " ".join(tokens)


@FAST
@given(char_mutation())
def test_character_mutations_of_valid_programs(text):
    compile_or_tnc_error(text)


@FAST
@given(token_mutation())
def test_token_mutations_of_valid_programs(text):
    compile_or_tnc_error(text)


# -- generated valid programs ----------------------------------------------------------------
@st.composite
def valid_program(draw):
    """A random valid network: plain and family indices, loops, optional legs, data, comments."""
    n_plain = draw(st.integers(1, 4))
    plain = [f"i{k}" for k in range(n_plain)]
    length = draw(st.integers(2, 4))        # 1..L-1 must not be empty
    sizes = {name: draw(st.integers(1, 4)) for name in plain}
    sep = draw(st.sampled_from([" ", "\n    ", "  # note\n    "]))
    lines = [f"network g(L = {length}, d = {draw(st.integers(1, 3))}) {{"]
    lines.append("index " + ", ".join(f"{n}: {s}" for n, s in sizes.items()))
    lines.append("index p[n]: d   for n in 1..L")
    lines.append("index b[n]: n + 1   for n in 1..L-1")
    uses = []
    for k in range(draw(st.integers(1, 4))):
        legs = draw(st.lists(st.sampled_from(plain), max_size=3))
        kind = draw(st.sampled_from(["tensor", "data"]))
        uses.append(f"{kind} T{k}({', '.join(legs)})")
    lines += uses
    lines.append("tensor G[n](b[n-1]?, p[n], b[n]?)   for n in 1..L")
    carried = sorted({leg for use in uses for leg in re.findall(r"i\d", use)})
    out = draw(st.lists(st.sampled_from(carried), unique=True)) if carried else []
    lines.append("output " + ", ".join(out + ["p[1..L]"]))
    return sep.join(lines) + sep + "}\n", out, length


@FAST
@given(valid_program())
def test_generated_valid_programs_parse_and_expand(case):
    text, out, length = case
    assert len(parse(text).networks) == 1
    net = tnc.compile(text)
    assert net.output == tuple(out) + tuple(f"p[{n}]" for n in range(1, length + 1))
    assert set(net.params) >= {f"G[{n}]" for n in range(1, length + 1)}
