"""tnc.from_einsum writes .tn text that contracts like numpy.einsum."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tnc
from tnc import TncError


def contract_both(eq: str, *shapes, seed: int = 0):
    """(tnc result, numpy.einsum result) on the same random arrays."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(rng.standard_normal(shape)) for shape in shapes]
    net = tnc.compile(tnc.from_einsum(eq, *shapes))
    tensors = {f"T{k}": a for k, a in enumerate(arrays, start=1)}
    return net.contract(tensors), np.einsum(eq, *arrays)


CASES = [
    ("ij,jk->ik", (2, 3), (3, 4)),                    # matrix product
    ("ij,jk", (2, 3), (3, 4)),                        # implicit output
    ("ij,ij->", (2, 3), (2, 3)),                      # scalar output
    ("i,i", (5,), (5,)),                              # implicit scalar
    ("ii", (3, 3)),                                   # trace
    ("ii->i", (3, 3)),                                # diagonal
    ("iij->j", (2, 2, 4)),                            # partial trace
    ("iii->", (2, 2, 2)),                             # triple repetition
    ("ij->ji", (2, 3)),                               # transpose
    ("ij->", (2, 3)),                                 # full sum
    ("i->i", (4,)),                                   # identity
    ("ai,bi,ci->abc", (2, 3), (4, 3), (5, 3)),        # CP: a hyperedge
    ("ai,bi,ci,di->", (2, 3), (2, 3), (2, 3), (2, 3)),  # hyperedge, scalar
    ("ai,bi,ci->abci", (2, 3), (4, 3), (5, 3)),       # open hyperedge (batch)
    ("i,i,i->i", (4,), (4,), (4,)),                   # elementwise product
    ("ab,bc,ca->", (2, 3), (3, 4), (4, 2)),           # ring closes
    ("abc,ad,be,cf->def", (2, 3, 4), (2, 3), (3, 4), (4, 5)),   # Tucker
    ("Ab,bC->AC", (2, 3), (3, 4)),                    # upper case
    ("aA,Aa->", (3, 4), (4, 3)),                      # a and A are different
    ("Ba,aC", (2, 3), (3, 4)),                        # implicit with upper case
    (",i->i", (), (3,)),                              # scalar operand
    ("->", ()),                                       # scalar to scalar
    (" ij , jk -> ik ", (2, 3), (3, 4)),              # spaces
    ("ij,jk,kl,lm,mn,no,op->ip", *[(2, 2)] * 7),       # long chain
    ("abcdefghijklm->mlkjihgfedcba", *[(1,) * 13]),   # many letters, size 1
]


@pytest.mark.parametrize("eq, shapes", [(c[0], c[1:]) for c in CASES],
                         ids=[c[0].strip() or "empty" for c in CASES])
def test_explicit_cases_match_numpy(eq, shapes):
    got, want = contract_both(eq, *shapes)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_text_is_readable_and_named():
    text = tnc.from_einsum("ai,bi->ab", (2, 3), (4, 3), name="pair")
    assert text.splitlines() == ["network pair() {", "    index a: 2, i: 3, b: 4",
                                 "    tensor T1(a, i), T2(b, i)", "    output a, b", "}"]


def test_equation_round_trips():
    net = tnc.compile(tnc.from_einsum("ij,jk->ki", (2, 3), (3, 4)))
    assert net.equation == "ab,bc->ca"


def test_arrays_stand_for_their_shapes():
    text = tnc.from_einsum("ij->i", np.zeros((2, 5)))
    assert "index i: 2, j: 5" in text


@pytest.mark.parametrize("eq, shapes, phrase", [
    ("ij,jk->ik", [(2, 3), (4, 5)], "index `j` has two sizes, 3 and 4"),
    ("ij->i", [(2, 3, 4)], "has 2 indices but its shape (2, 3, 4) has 3 dimensions"),
    ("ij,jk->ik", [(2, 3)], "has 2 operand(s) but 1 shape(s) were given"),
    ("ij->k", [(2, 3)], "output index `k` is on no operand"),
    ("ij->ii", [(2, 2)], "output index `i` appears twice"),
    ("...i->i", [(2, 3)], "ellipses"),
    ("i1->i", [(2, 3)], "`1` is not a letter"),
    ("ij->i->j", [(2, 3)], "at most one `->`"),
    ("i->", [(0,)], "has size 0"),
    ("i->", ["x"], "must be a tuple of integers"),
    ("ij->", [(2.5, 2)], "must be a tuple of integers"),          # not truncated to 2
    ("ij->", [(True, 2)], "must be a tuple of integers"),
    ("i->", [5], "must be a tuple of integers"),
    (3, [(2,)], "is a string"),
])
def test_bad_einsum_is_a_tnc_error(eq, shapes, phrase):
    with pytest.raises(TncError) as info:
        tnc.from_einsum(eq, *shapes)
    assert phrase in str(info.value)


@pytest.mark.parametrize("name", ["network", "1x", "a-b", ""])
def test_bad_network_name(name):
    with pytest.raises(TncError, match="not a valid tnc name"):
        tnc.from_einsum("i->i", (2,), name=name)


# -- hypothesis: arbitrary einsum expressions ---------------------------------------------
LETTERS = "abcdefAB"


@st.composite
def einsum_case(draw):
    """A random valid einsum: 1-4 operands, repeated letters, hyperedges, any output."""
    sizes = {letter: draw(st.integers(1, 3)) for letter in LETTERS}
    terms = draw(st.lists(st.text(alphabet=LETTERS, max_size=4), min_size=1, max_size=4))
    used = sorted(set("".join(terms)))
    if draw(st.booleans()):
        eq = ",".join(terms)                              # implicit mode
    else:
        output = draw(st.permutations(used).map(lambda p: p[:draw(st.integers(0, len(p)))]))
        eq = ",".join(terms) + "->" + "".join(output)
    shapes = [tuple(sizes[c] for c in term) for term in terms]
    return eq, shapes


@settings(max_examples=200, deadline=None)
@given(einsum_case(), st.integers(0, 2 ** 16))
def test_random_einsum_expressions_match_numpy(case, seed):
    eq, shapes = case
    got, want = contract_both(eq, *shapes, seed=seed)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abAB,->. 1", max_size=12), st.lists(
    st.lists(st.integers(0, 3), max_size=3).map(tuple), max_size=3))
def test_random_equations_never_crash(eq, shapes):
    try:
        text = tnc.from_einsum(eq, *shapes)
    except TncError:
        return
    net = tnc.compile(text)                  # what from_einsum accepts compiles, operand by operand
    assert net.shapes == tuple(shapes)
