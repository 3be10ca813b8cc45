"""Every kind of bad input gives tnc's own exception, located, with a caret and a helpful phrase."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tnc
import tnc.lang.expand
from tnc import MemoryLimitError, TensorError, TncError, TncSemanticError, TncSyntaxError


def network(body: str, header: str = "n()") -> str:
    """A network whose statements are ``body`` (one per line, from line 2)."""
    return f"network {header} {{\n{body}\n}}\n"


def raised(text: str, **sizes) -> TncError:
    with pytest.raises(TncError) as info:
        tnc.compile_all(text, filename="bad.tn", **sizes)
    return info.value


def assert_located(error: TncError, line: int, column: int, phrase: str) -> None:
    assert (error.line, error.column) == (line, column), str(error)
    text = str(error)
    assert text.startswith(f"bad.tn:{line}:{column}: ")
    assert phrase in text
    shown, caret = text.splitlines()[-2:]
    assert caret.strip().startswith("^")
    assert caret.index("^") - 4 == column - 1          # the caret sits under the column


# (name, text, exception class, line, column, phrase)
CASES = [
    ("syntax: missing colon", network("  index i 2"), TncSyntaxError, 2, 11,
     "expected `:`"),
    ("syntax: unexpected character", network("  index i: 2 $"), TncSyntaxError, 2, 14,
     "unexpected character `$`"),
    ("syntax: end of text", "network n() {\n  index i: 2\n", TncSyntaxError, 2, 13,
     "unexpected end of text"),
    ("syntax: legs in brackets", network("  tensor A[i, j]\n  output"), TncSyntaxError, 3, 3,
     "legs go in parentheses"),
    ("syntax: no network name", "network { }\n", TncSyntaxError, 1, 9,
     "a network starts with"),
    ("undeclared index", network("  index i: 2\n  tensor A(i, j)\n  output i"),
     TncSemanticError, 3, 15, "index `j` is not declared"),
    ("index with two sizes", network("  index i: 2\n  index i: 3\n  tensor A(i)\n  output i"),
     TncSemanticError, 3, 9, "declared with two sizes: 2 (line 2) and 3"),
    ("tied tensor shapes", network("  index i: 2, j: 3\n  tensor A(i), A(j)\n  output i, j"),
     TncSemanticError, 3, 16, "every use of a tied tensor must have the same shape"),
    ("tied tensor leg count", network("  index i: 2\n  tensor A(i)\n  tensor A(i, i)\n  output"),
     TncSemanticError, 4, 10, "has shape (2,) on line 3 but (2, 2) here"),
    ("output carried by no tensor", network("  index i: 2, j: 3\n  tensor A(i)\n  output i, j"),
     TncSemanticError, 4, 13, "output index `j` is carried by no tensor"),
    ("output not declared", network("  index i: 2\n  tensor A(i)\n  output k"),
     TncSemanticError, 4, 10, "index `k` is not declared"),
    ("output twice", network("  index i: 2\n  tensor A(i)\n  output i, i"),
     TncSemanticError, 4, 13, "appears twice in the output"),
    ("empty loop range", network("  index p[n]: 2   for n in 1..N\n  tensor A(p[1])\n  output",
                                 "n(N = 0)"),
     TncSemanticError, 2, 23, "the loop range `n in 1..0` is empty (N = 0)"),
    ("negative loop range", network("  index p[n]: 2   for n in 1..-3\n  tensor A(p[1])\n  output"),
     TncSemanticError, 2, 23, "the loop range `n in 1..-3` is empty"),
    ("empty subscript range", network("  index p[n]: 2 for n in 1..3\n  tensor A(p[3..1])\n  output"),
     TncSemanticError, 3, 14, "the range `3..1` is empty"),
    ("unknown size parameter in text", network("  index i: M\n  tensor A(i)\n  output i"),
     TncSemanticError, 2, 12, "unknown name `M`"),
    ("size zero", network("  index i: N\n  tensor A(i)\n  output i", "n(N = 0)"),
     TncSemanticError, 2, 12, "sizes must be positive integers (N = 0)"),
    ("negative size", network("  index i: -2\n  tensor A(i)\n  output i"),
     TncSemanticError, 2, 12, "has size -2; sizes must be positive integers"),
    ("division by zero", network("  index i: 2 // 0\n  tensor A(i)\n  output"),
     TncSemanticError, 2, 12, "division by zero"),
    ("duplicate index", network("  index i: 2, i: 2\n  tensor A(i)\n  output i"),
     TncSemanticError, 2, 15, "index `i` is declared twice (first on line 2)"),
    ("duplicate size parameter", network("  index i: N\n  tensor A(i)\n  output i",
                                         "n(N = 2, N = 3)"),
     TncSemanticError, 1, 18, "size parameter `N` is declared twice"),
    ("duplicate network", network("  index i: 2\n  tensor A(i)\n  output") * 2,
     TncSemanticError, 6, 1, "network `n` is declared twice"),
    ("duplicate output", network("  index i: 2\n  tensor A(i)\n  output i\n  output"),
     TncSemanticError, 5, 3, "one output statement"),
    ("missing default", network("  index i: N\n  tensor A(i)\n  output i", "n(N)"),
     TncSemanticError, 1, 11, "has no default; pass it, e.g. N=10"),
    ("param and data under one name", network("  index i: 2\n  tensor A(i)\n  data A(i)\n  output"),
     TncSemanticError, 4, 8, "one name is one kind of tensor"),
    ("shared tensor with two shapes",
     network("  index i: 2\n  tensor A(i)\n  output", "a()")
     + network("  index i: 3\n  tensor A(i)\n  output", "b()"),
     TncSemanticError, 8, 10, "a shared name is one tensor"),
    ("no tensors", network("  index i: 2\n  output"), TncSemanticError, 1, 1, "has no tensors"),
    ("no output", network("  index i: 2\n  tensor A(i)"), TncSemanticError, 1, 1,
     "has no output statement"),
    ("wildcard in a declaration", network("  index i[*]: 2\n  tensor A(i[1])\n  output"),
     TncSemanticError, 2, 11, "`*` can only stand in a leg or the output"),
    ("range in a tensor name", network("  index i: 2\n  tensor A[1..2](i)\n  output"),
     TncSemanticError, 3, 12, "a tensor name takes single subscripts"),
    ("loop variable hides a size", network("  index i[N]: 2 for N in 1..2\n  tensor A(i[1])\n"
                                           "  output", "n(N = 2)"),
     TncSemanticError, 2, 21, "hides a size parameter"),
    ("wildcard over nothing", network("  index i: 2\n  tensor A(i)\n  output q[*]"),
     TncSemanticError, 4, 10, "no declared members"),
]


@pytest.mark.parametrize("name, text, kind, line, column, phrase", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_text_is_located(name, text, kind, line, column, phrase):
    error = raised(text)
    assert isinstance(error, kind)
    assert_located(error, line, column, phrase)


def test_syntax_error_lists_what_was_expected():
    error = raised(network("  tensor A(i,)\n  output"))
    assert isinstance(error, TncSyntaxError)
    assert "expected" in error.message and "a name" in error.message


def test_errors_share_one_root_class():
    for kind in (TncSyntaxError, TncSemanticError, TensorError, MemoryLimitError):
        assert issubclass(kind, TncError)


def test_parse_error_names_the_file(tmp_path):
    path = tmp_path / "net.tn"
    path.write_text(network("  index i: 2\n  tensor A(i j)\n  output"))
    with pytest.raises(TncSyntaxError) as info:
        tnc.compile(path)
    assert str(info.value).startswith(f"{path}:3:")


def test_missing_file_is_a_tnc_error(tmp_path):
    with pytest.raises(TncError, match="cannot read tnc file"):
        tnc.compile(tmp_path / "missing.tn")


# -- errors from Python arguments --------------------------------------------------------
TEXT = network("  index i: N\n  tensor A(i)\n  output i", "n(N = 2)")


def test_unknown_size_parameter_from_python():
    error = raised(TEXT, M=3)
    assert isinstance(error, TncSemanticError)
    assert_located(error, 1, 1, "unknown size parameter(s) M passed to compile; the networks "
                                "take N")


def test_unknown_size_parameter_in_with_sizes():
    with pytest.raises(TncError, match="unknown size parameter"):
        tnc.library("cp").with_sizes(Q=2)


@pytest.mark.parametrize("value", [2.5, "3", True, None, np.float64(2.0)])
def test_size_must_be_an_integer(value):
    error = raised(TEXT, N=value)
    assert_located(error, 1, 11, f"size parameter `N` must be an integer, got {value!r}")


def test_numpy_integer_sizes_are_accepted():
    assert tnc.compile(TEXT, N=np.int64(4)).params == {"A": (4,)}


@pytest.mark.parametrize("value", [0, -1])
def test_size_must_be_positive(value):
    error = raised(TEXT, N=value)
    assert_located(error, 2, 12, "sizes must be positive integers")


def test_missing_default_passed_from_python_compiles():
    text = network("  index i: N\n  tensor A(i)\n  output i", "n(N)")
    assert tnc.compile(text, N=3).params == {"A": (3,)}


def test_unknown_network_name():
    with pytest.raises(TncError, match="no network `zz`; the text declares n"):
        tnc.compile(TEXT, name="zz")


def test_several_networks_need_a_name():
    text = network("  index i: 2\n  tensor A(i)\n  output", "a()") + \
        network("  index i: 2\n  tensor B(i)\n  output", "b()")
    with pytest.raises(TncError, match="pick one with name="):
        tnc.compile(text)


def test_unknown_library_network():
    with pytest.raises(TncError, match="no built-in network `nope`; the library has"):
        tnc.library("nope")


def test_unknown_optimizer():
    net = tnc.library("cp", R=2)
    with pytest.raises(TncError, match="unknown path optimizer 'fastest'"):
        net.contract(net.random(), optimize="fastest")


# -- errors from arrays --------------------------------------------------------------------
@pytest.fixture
def cp():
    return tnc.library("cp", I=3, J=4, K=5, R=2)


def test_missing_tensor(cp):
    tensors = cp.random()
    del tensors["B"]
    with pytest.raises(TensorError, match="missing `B`"):
        cp.contract(tensors)


def test_unknown_tensor(cp):
    with pytest.raises(TensorError, match="unknown `Z`"):
        cp.contract({**cp.random(), "Z": np.zeros(3)})


def test_wrong_shape(cp):
    tensors = {**cp.random(), "A": np.zeros((3, 3))}
    with pytest.raises(TensorError, match=r"tensor `A` of network `cp` must have shape \(3, 2\), "
                                          r"got \(3, 3\)"):
        cp.contract(tensors)


def test_not_an_array(cp):
    with pytest.raises(TensorError, match="must have shape"):
        cp.contract({**cp.random(), "A": [[1.0, 2.0]] * 3})


def test_tensors_not_a_dict(cp):
    with pytest.raises(TensorError, match="tensors must be a dict"):
        cp.contract(list(cp.random().values()))


def test_memory_limit(cp):
    big = tnc.library("cp", I=1000, J=1000, K=1000, R=2)
    with pytest.raises(MemoryLimitError, match="memory limit") as info:
        big.contract({"A": np.zeros((1000, 2)), "B": np.zeros((1000, 2)),
                      "C": np.zeros((1000, 2))}, memory_limit=10 ** 6)
    assert "raise memory_limit" in str(info.value)
    assert cp.contract(cp.random(), memory_limit=10 ** 6).shape == (3, 4, 5)


def test_text_without_braces_is_parsed_not_opened():
    error = raised("index i: 2\n")
    assert isinstance(error, TncSyntaxError)
    assert_located(error, 1, 1, "a network starts with `network NAME(")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_text_without_networks(text):
    with pytest.raises(TncError, match="declares no network"):
        tnc.compile(text)


def test_nested_loops_are_capped(monkeypatch):
    monkeypatch.setattr(tnc.lang.expand, "MAX_UNROLLED", 1000)
    text = network("  index p[x, y]: 2  for x in 1..L, y in 1..L\n  tensor A(p[1, 1])\n  output",
                   "n(L = 40)")
    assert_located(raised(text), 2, 25, "repeats this statement more than 1000 times")
    assert tnc.compile(text, L=30).params == {"A": (2,)}


# -- issue 12: text vs path, huge numbers, deep nesting, expansion caps, carets --------------
def test_a_device_is_never_read():
    for source in ["/dev/zero", Path("/dev/zero")]:
        with pytest.raises(TncError, match="not a regular file"):
            tnc.compile(source)


def test_a_missing_file_says_so():
    with pytest.raises(TncError, match="'cp.tn': it does not exist"):
        tnc.compile("cp.tn")


def test_files_over_the_size_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tnc.lang.compiler, "MAX_SOURCE_BYTES", 100)
    path = tmp_path / "big.tn"
    path.write_text("# padding\n" * 20 + network("  index i: 2\n  tensor A(i)\n  output i"))
    with pytest.raises(TncError, match="larger than the 100 bytes") as info:
        tnc.compile(path)
    assert str(info.value).startswith(f"{path}:1:1: ")
    path.write_text(network("  index i: 2\n  tensor A(i)\n  output i"))
    assert tnc.compile(str(path)).params == {"A": (2,)}       # an existing file, by str


def test_allow_path_false_takes_the_argument_as_text(tmp_path):
    path = tmp_path / "n.tn"
    path.write_text(network("  index i: 2\n  tensor A(i)\n  output i"))
    assert tnc.compile(str(path)).params == {"A": (2,)}
    error = None
    with pytest.raises(TncSyntaxError) as info:
        tnc.compile(str(path), allow_path=False)
    error = info.value
    assert (error.line, error.column) == (1, 1)
    with pytest.raises(TncError, match="expected tnc text, got the path"):
        tnc.compile_all(path, allow_path=False)
    with pytest.raises(TncError, match="does not exist"):
        tnc.lang.compiler.read_source("/etc/passwd-nope")
    assert tnc.lang.compiler.read_source("/etc/passwd", allow_path=False) == ("/etc/passwd", None)


MODEL = "network X() { index i: 4, j: 3, r: 2  tensor A(i, r), B(j, r)  output i, j }\n"


@pytest.mark.parametrize("tail, column", [("loss huber(1e999)", 35), ("weight 1e999", 31),
                                          ("weight " + "9" * 400, 31)])
def test_float_overflow_is_located(tail, column):
    with pytest.raises(TncSyntaxError, match="too large: it overflows a float") as info:
        tnc.compile_model(MODEL + "model m() { fit X to T " + tail + " }", filename="bad.tn")
    assert_located(info.value, 2, column, "is too large")


def test_integer_literals_over_the_digit_limit_are_located():
    from tnc.lang.parser import MAX_INT_DIGITS
    ok = network("  index i: 2\n  tensor A(i)\n  output i", f"n(N = {'0' * (MAX_INT_DIGITS - 1)}2)")
    assert tnc.compile(ok).params == {"A": (2,)}
    text = network("  index i: " + "9" * 5000 + "\n  tensor A(i)\n  output i")
    assert_located(raised(text), 2, 12, "has 5000 digits")


def test_expression_values_are_bounded():
    text = network("  index i: N * N * N - N * N * N + 2\n  tensor A(i)\n  output i",
                   "n(N = " + "9" * 4000 + ")")
    assert_located(raised(text), 2, 12, "more than 14000 bits")


@pytest.mark.parametrize("depth", [245, 490, 10_000])
def test_deep_sums_and_negations_parse(depth):
    terms = network("  index i: " + " + ".join(["1"] * depth) + "\n  tensor A(i)\n  output i")
    assert tnc.compile(terms).params == {"A": (depth,)}
    negations = network("  index i: " + "-" * (2 * depth) + "2\n  tensor A(i)\n  output i")
    assert tnc.compile(negations).params == {"A": (2,)}
    mixed = network("  index i: 1" + " - (1 - 1)" * depth + "\n  tensor A(i)\n  output i")
    assert tnc.compile(mixed).params == {"A": (1,)}


@pytest.mark.parametrize("body, line, column", [
    ("  index p[1..100000, 1..100000]: 2\n  tensor A(p[1, 1])\n  output", 2, 3),
    ("  index i: 2\n  tensor A(i, q[1..1000000, 1..1000000]?)\n  output", 3, 3),
    ("  index p[n, m]: 2  for n in 1..N, m in 1..N\n  tensor A(p[1, 1])\n  output", 2, 3),
    ("  index p[n]: 2  for n in 1..N\n  index b[n]: 2  for n in 1..N\n  tensor A(p[1])\n"
     "  output", 2, 3),                  # 600000 indices and as many loop steps: the first
])
def test_the_expansion_cap_is_global_and_checked_first(body, line, column):
    import time
    start = time.process_time()
    error = raised(network(body, "n(N = 600000)"))
    assert time.process_time() - start < 1.0                 # refused before unrolling
    assert_located(error, line, column, "expands to more than 1000000 loop steps")


def test_the_expansion_cap_is_settable(monkeypatch):
    text = network("  index p[n]: 2  for n in 1..N\n  tensor A(p[1..N])\n  output", "n(N = 100)")
    assert tnc.compile(text).params == {"A": (2,) * 100}
    assert_located(raised(text, max_expansion=300), 3, 3, "more than 300 loop steps")
    monkeypatch.setattr(tnc.lang.expand, "MAX_EXPANSION", 300)
    assert_located(raised(text), 3, 3, "more than 300 loop steps")
    assert tnc.compile(text, max_expansion=10**4).params == {"A": (2,) * 100}
    with pytest.raises(TncError, match="max_expansion must be a positive integer"):
        tnc.compile(text, max_expansion=0)


def test_index_symbols_are_checked_against_einsum(monkeypatch):
    from tnc.lang.expand import einsum_symbol
    einsum_symbol(tnc.lang.expand.MAX_INDICES - 1)                     # the last symbol exists
    with pytest.raises(ValueError):
        einsum_symbol(tnc.lang.expand.MAX_INDICES)
    monkeypatch.setattr(tnc.lang.expand, "MAX_INDICES", 5)
    text = network("  index p[n]: 2  for n in 1..N\n  tensor A[n](p[n])  for n in 1..N\n"
                   "  output", "n(N = 5)")
    assert tnc.compile(text).equation == "a,b,c,d,e->"
    assert_located(raised(text, N=6), 1, 1, "has 6 indices; an einsum equation has symbols "
                                            "for at most 5")


def test_index_symbols_are_distinct_and_never_surrogates():
    """opt_einsum's get_symbol(k) is a surrogate for 55156 <= k < 55296: a network with
    that many indices could not print its equation (UnicodeEncodeError in tnc show)."""
    from tnc.lang.expand import einsum_symbol
    ks = list(range(55000, 55500)) + list(range(tnc.lang.expand.MAX_INDICES - 300, tnc.lang.expand.MAX_INDICES))
    symbols = [einsum_symbol(k) for k in range(300)] + [einsum_symbol(k) for k in ks]
    assert len(set(symbols)) == len(symbols)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in symbols)
    "".join(symbols).encode("utf-8")
    net = tnc.library("tt", N=60000, d=2, r=1)
    net.equation.encode("utf-8")


def test_long_trains_expand_in_linear_time():
    """Growing N five times grows the expansion about five times, not 25 (quadratic).

    The fastest of three runs with the collector off, so that a busy shared machine
    or a collection landing in the large case does not decide it."""
    import gc
    import time

    def seconds(n):
        best = float("inf")
        for _ in range(3):
            gc.collect()
            gc.disable()
            try:
                start = time.process_time()
                net = tnc.library("tt", N=n)
                best = min(best, time.process_time() - start)
            finally:
                gc.enable()
            assert len(net.output) == n and net.params[f"G[{n // 2}]"] == (8, 4, 8)
        return best

    small, large = seconds(20_000), seconds(100_000)
    assert large < 15 * small           # linear: about 5 times; quadratic would be 25


@pytest.mark.parametrize("breaker", ["\f", "\r", "\v", "\x1c", "\x1d", "\x1e", "\x85",
                                     "\u2028", "\r\n"])
def test_carets_sit_on_the_line_the_parser_counts(breaker):
    text = "network n() {" + breaker + " index i: 2\n  tensor A(j)\n  output\n}\n"
    error = raised(text)
    lines = str(error).splitlines()
    shown, caret = lines[-2], lines[-1]
    assert shown[4:] in [line.replace("\t", " ") for line in text.replace("\r\n", "\n")
                         .replace(breaker, " ").split("\n")]
    assert caret.index("^") - 4 == error.column - 1
    assert shown[4 + error.column - 1] == ("j" if error.line > 1 else " ")


def test_huge_sizes_from_python_are_located():
    text = network("  index i: N\n  tensor A(i)\n  output i", "n(N = 2)")
    assert_located(raised(text, N=10**5000), 1, 11, "`N` has more than 14000 bits")


def test_a_lower_python_digit_limit_is_honoured(monkeypatch):
    import sys
    monkeypatch.setattr(sys, "get_int_max_str_digits", lambda: 640, raising=False)
    text = network("  index i: " + "1" * 700 + "\n  tensor A(i)\n  output i")
    assert_located(raised(text), 2, 12, "has 700 digits; tnc integers have at most 640")


def test_the_expansion_cap_covers_all_networks_of_a_text():
    one = "network a(N = 300000) {\n  index p[n]: 2  for n in 1..N\n  tensor A(p[1])\n  output\n}\n"
    assert list(tnc.compile_all(one)) == ["a"]
    error = raised(one + one.replace("network a", "network b").replace("A(", "B("))
    assert_located(error, 7, 3, "expands to more than 1000000 loop steps, indices, tensors "
                                "and legs (its networks together)")


def test_the_precheck_never_refuses_what_fits():
    text = ("network n(N = 1400) {\n  index p[n]: 2  for n in 1..N\n"
            "  tensor A[n](p[n..N])  for n in 1..N\n  output\n}\n")
    net = tnc.compile(text)             # about 985,000 units: a shrinking range, not N * N
    assert len(net.occurrences) == 1400 and net.params["A[1]"] == (2,) * 1400
    assert_located(raised(text, N=1500), 3, 15, "expands to more than 1000000")  # while unrolling
