"""Sizes read off the data by solving the output legs' size expressions (tnc.lang.sizes),
checked against a brute-force search that compiles every candidate value."""
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

import tnc
import tnc.fitting.front as front
import tnc.lang.compiler as compiler
from tnc.lang.parser import parse
from tnc.lang.sizes import expression_text, solve_sizes


def brute_force(text, shape, param, given=(), values=range(-5, 60)):
    """Every value of ``param`` whose compiled network has output shape ``shape``."""
    found = []
    for value in values:
        try:
            net = tnc.compile(text, **dict(given), **{param: value})
        except tnc.TncError:
            continue
        if net.output_shape == tuple(shape):
            found.append(value)
    return found


FORMS = [
    ("network f(N) { index i: N  tensor A(i)  output i }", (7,), {}),
    ("network f(N) { index i: 2*N  tensor A(i)  output i }", (10,), {}),
    ("network f(N) { index i: N+1  tensor A(i)  output i }", (9,), {}),
    ("network f(N, K) { index i: K*N  tensor A(i)  output i }", (12,), {"K": 3}),
    ("network f(N) { index i: 3*(N+1) - 1, j: 4  tensor A(i, j)  output j, i }", (4, 14), {}),
    ("network f(N) { index i: 20 - 2*N  tensor A(i)  output i }", (6,), {}),
    ("network f(N) { index p[n]: n*N + 1  for n in 1..3  tensor A(p[1..3])  output p[1..3] }",
     (5, 9, 13), {}),
]


@pytest.mark.parametrize("text, shape, given", FORMS)
def test_solved_size_is_the_one_brute_force_finds(text, shape, given):
    definition = parse(text).networks[0]
    solved = solve_sizes(definition, shape, given)
    assert [solved["N"]] == brute_force(text, shape, "N", given.items())
    net = front.model_for_data(text, shape, **given)
    assert net.output_shape == shape and net.sizes["N"] == solved["N"]


def test_two_n_rows_give_n_and_an_odd_count_names_the_index():
    text = "network w(N) { index i: 2*N, r: 3  tensor A(i, r), B(r)  output i }"
    assert front.model_for_data(text, (10,)).sizes == {"N": 5}
    with pytest.raises(tnc.TncError) as error:
        front.model_for_data(text, (11,))
    message = str(error.value)
    assert "`i`" in message and "`2*N`" in message and "11" in message and "`N`" in message
    assert brute_force(text, (11,), "N") == []        # no value exists indeed


def test_a_parameter_shared_by_two_legs_must_agree():
    text = "network s(N) { index i: N, j: 2*N  tensor A(i, j)  output i, j }"
    assert front.model_for_data(text, (3, 6)).sizes == {"N": 3}
    with pytest.raises(tnc.TncError, match=r"`N`.*both 3 and 4 \(read off axes 0 and 1.*"
                                           r"index `j` has size `2\*N`.*8, not 6"):
        front.model_for_data(text, (3, 8))
    with pytest.raises(tnc.TncError, match=r"both 3 and no integer .*`2\*N`.*7, not 6"):
        front.model_for_data(text, (3, 7))


@pytest.mark.parametrize("text, words", [
    ("network q(N, M) { index i: N*M  tensor A(i)  output i }", ["`i`", "`N*M`", "M, N"]),
    ("network q(N) { index i: N // 2  tensor A(i)  output i }", ["`i`", "`N//2`"]),
    ("network q(N, M) { index i: N, j: M  tensor A(i, j)  output i }", ["M", "no output index"]),
    ("network q(N) { index i[n]: 2  for n in 1..N  tensor A(i[1..N])  output i[1..N] }",
     ["`N`", "loop ranges or subscripts"]),
])
def test_what_cannot_be_solved_is_an_error_naming_it(text, words):
    with pytest.raises(tnc.TncError) as error:
        front.model_for_data(text, (6,) if "i[" not in text else (2, 2))
    for word in words:
        assert word in str(error.value)


def test_a_default_is_read_when_a_leg_fixes_it_and_kept_otherwise():
    text = "network d(N, K = 2) { index p[n]: n*N + K  for n in 1..3  tensor A(p[1..3])  " \
           "output p[1..3] }"
    net = front.model_for_data(text, (7, 12, 17))   # N + K, 2N + K: both unknown, K keeps 2
    assert net.sizes == {"N": 5, "K": 2}
    assert net.output_shape == tnc.compile(text, N=5).output_shape
    cp = front.model_for_data(tnc.library("cp", R=3), (4, 5, 6))
    assert cp.sizes == {"I": 4, "J": 5, "K": 6, "R": 3} and cp.pinned_sizes == {"R": 3}


def test_structural_sizes_keep_their_value_and_a_wrong_leg_count_says_so():
    tt = compiler.library_source("tt")
    net = front.model_for_data(tt, (3,) * 6)
    assert net.sizes == {"N": 6, "d": 3, "r": 8}
    with pytest.raises(tnc.TncError, match="6 output legs but the data has 5 dimensions"):
        front.model_for_data(tt, (3,) * 5)


def counting(module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)
    return calls, mock.patch.object(module, name, counted)


@pytest.mark.parametrize("model", ["text", "network"])
def test_one_compile_per_fit_of_cp(model):
    source = compiler.library_source("cp")
    cp = source if model == "text" else tnc.library("cp")
    data = np.random.default_rng(0).random((3, 4, 5))
    compiles, compile_patch = counting(front, "compile_text")
    expansions, expand_patch = counting(compiler, "expand")
    with compile_patch, expand_patch:
        result = tnc.fit(cp, data, method="als", max_iter=2, progress=False)
    assert result.network.output_shape == (3, 4, 5)
    assert len(compiles) == 1 and len(expansions) == 1


def test_compile_takes_pinned():
    text = "network v(n = 3, m = 2) { index i: n, j: m  tensor x(i, j)  output i, j }"
    assert tnc.compile(text, n=4).pinned_sizes == {"n": 4}
    assert tnc.compile(text, n=4, pinned=()).pinned_sizes == {}
    assert tnc.compile(text, n=4, pinned=("n", "m")).pinned_sizes == {"n": 4, "m": 2}
    free = tnc.compile(text, n=4, pinned=())
    assert front.model_for_data(free, (5, 2)).sizes == {"n": 5, "m": 2}


def test_with_sizes_expands_one_network_without_the_compiler():
    text = ("network a(n = 2) { index i: n  tensor x(i)  output i } "
            "network b(n = 2, k) { index i: n, j: k  tensor y(i, j)  output i }")
    code = f"""
import sys
from tnc.engine.network import Network
from tnc.lang.expand import expand
from tnc.lang.parser import parse
net = Network(expand(parse({text!r}).networks[0]), {text!r})
wider = net.with_sizes(n=5)
assert "tnc.lang.compiler" not in sys.modules, "with_sizes imported the compiler"
print(wider.params, sorted(wider.pinned_sizes.items()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    reference = tnc.compile(text, name="a", n=5, k=1)   # b needs k from a whole-text compile
    assert out.stdout.split()[:2] == str(reference.params).split()
    assert "[('n', 5)]" in out.stdout


def test_expression_text_round_trips_through_the_parser():
    for size in ["2*(N + 1)", "N - (K - 1)", "N*M//2", "-N + 3", "(N + 1)%K"]:
        expr = parse(f"network n(N, K, M) {{ index i: {size}  output }}") \
            .networks[0].statements[0].decls[0].size
        again = parse(f"network n(N, K, M) {{ index i: {expression_text(expr)}  output }}") \
            .networks[0].statements[0].decls[0].size
        values = dict(N=7, K=3, M=5)
        assert eval(expression_text(expr), {}, values) == eval(size, {}, values)
        assert expression_text(again) == expression_text(expr)


def test_random_affine_sizes_solve_like_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(12):
        a, b = int(rng.choice([-3, -2, -1, 1, 2, 3])), int(rng.integers(-4, 5))
        length = int(rng.integers(1, 25))
        text = f"network r(N) {{ index i: {a}*N + {b}  tensor A(i)  output i }}"
        want = brute_force(text, (length,), "N", values=range(-40, 40))
        try:
            got = [front.model_for_data(text, (length,)).sizes["N"]]
        except tnc.TncError as error:
            assert "`i`" in str(error)
            got = []
        assert got == want, (a, b, length)


def test_one_network_of_a_text_fits_while_another_leaves_a_size_open():
    text = ("network a(n) { index i: 2*n  tensor x(i)  output i }\n"
            "network b(k) { index j: k  tensor y(j)  output j }")
    expansions, expand_patch = counting(compiler, "expand")
    with expand_patch:
        net = front.model_for_data(text, (6,), name="a")
    assert net.sizes == {"n": 3} and len(expansions) == 1       # b is never expanded
    assert net.equation == tnc.compile_all(text, n=3, k=1)["a"].equation
    with pytest.raises(tnc.TncError, match="no network `zz`; the text declares a, b"):
        tnc.compile(text, name="zz")
    with pytest.raises(tnc.TncError, match="unknown size parameter"):
        tnc.compile(text, name="a", n=2, q=1)
