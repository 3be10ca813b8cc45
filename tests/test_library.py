"""Every library network and every shared sketch contracts like numpy.einsum of its equation,
and the equations of the classic formats are the ones written by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tnc
from tnc.lang.compiler import library_source
from tnc.lang.parser import parse

SHARED = Path(__file__).resolve().parent / "dsl"      # copied from ../shared/dsl
SKETCHES = sorted(SHARED.glob("*.tn"))


def small_sizes(text: str, name: str) -> dict[str, int]:
    """Size parameters capped at 3, 2 where there is no default (expression defaults kept)."""
    definition = next(n for n in parse(text).networks if n.name == name)
    sizes = {}
    for param in definition.params:
        if param.default is None:
            sizes[param.name] = 2
        elif getattr(param.default, "value", None) is not None:
            sizes[param.name] = min(param.default.value, 3)
    return sizes


def check_against_einsum(net: tnc.Network, seed: int = 0) -> None:
    tensors = net.random(seed=seed, include_data=True)
    operands = [tensors[occ.name] for occ in net.occurrences]
    want = np.einsum(net.equation, *operands, optimize="greedy")   # numpy's own path
    got = net.contract(tensors)
    assert got.shape == net.output_shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", tnc.library_names())
def test_library_network_matches_einsum(name):
    net = tnc.library(name, **small_sizes(library_source(name), name))
    check_against_einsum(net)


@pytest.mark.parametrize("name", tnc.library_names())
def test_library_network_compiles_at_default_sizes(name):
    net = tnc.library(name)
    assert len(net.equation.split("->")[0].split(",")) == len(net.occurrences)
    assert net.cost("greedy").flops > 0


def test_the_sketches_ship_with_the_tests():
    # an empty folder would turn the sketch tests below into silent skips
    assert {"cp", "tt", "tucker", "ring", "peps", "energy"} <= {p.stem for p in SKETCHES}


@pytest.mark.parametrize("path", SKETCHES, ids=[p.stem for p in SKETCHES])
def test_sketch_matches_einsum(path):
    text = path.read_text()
    for name in tnc.compile_all(path):
        net = tnc.compile(path, name=name, **small_sizes(text, name))
        check_against_einsum(net)


# -- hand-written equations ------------------------------------------------------------------
def same_as(net: tnc.Network, hand: str, order: list[str], seed: int = 1) -> None:
    """``net`` contracts like the hand-written einsum ``hand`` over tensors in ``order``."""
    tensors = net.random(seed=seed, include_data=True)
    want = np.einsum(hand, *[tensors[name] for name in order])
    np.testing.assert_allclose(net.contract(tensors), want, rtol=1e-10, atol=1e-12)


def test_cp_equation():
    net = tnc.library("cp", I=2, J=3, K=4, R=2)
    assert net.equation == "ad,bd,cd->abc"
    assert net.params == {"A": (2, 2), "B": (3, 2), "C": (4, 2)}
    same_as(net, "ir,jr,kr->ijk", ["A", "B", "C"])


def test_tt_equation():
    net = tnc.library("tt", N=4, d=2, r=3)
    assert [occ.indices for occ in net.occurrences] == [
        ("p[1]", "b[1]"), ("b[1]", "p[2]", "b[2]"), ("b[2]", "p[3]", "b[3]"), ("b[3]", "p[4]")]
    assert net.output == ("p[1]", "p[2]", "p[3]", "p[4]")
    same_as(net, "ia,ajb,bkc,cl->ijkl", ["G[1]", "G[2]", "G[3]", "G[4]"])


def test_ring_equation():
    net = tnc.library("ring", N=3, d=2, r=3)
    assert [occ.indices for occ in net.occurrences] == [
        ("b[1]", "p[1]", "b[2]"), ("b[2]", "p[2]", "b[3]"), ("b[3]", "p[3]", "b[1]")]
    same_as(net, "aib,bjc,cka->ijk", ["G[1]", "G[2]", "G[3]"])


def test_peps_equation():
    net = tnc.library("peps", Lx=2, Ly=2, d=2, D=3)
    assert [occ.name for occ in net.occurrences] == ["A[1,1]", "A[1,2]", "A[2,1]", "A[2,2]"]
    assert [occ.indices for occ in net.occurrences] == [
        ("p[1,1]", "h[1,1]", "v[1,1]"), ("p[1,2]", "h[1,2]", "v[1,1]"),
        ("p[2,1]", "h[1,1]", "v[2,1]"), ("p[2,2]", "h[1,2]", "v[2,1]")]
    assert net.output == ("p[1,1]", "p[1,2]", "p[2,1]", "p[2,2]")
    same_as(net, "ahv,bgv,chw,dgw->abcd", ["A[1,1]", "A[1,2]", "A[2,1]", "A[2,2]"])


def test_peps_3x3_centre_has_four_bonds():
    net = tnc.library("peps", Lx=3, Ly=3, d=2, D=3)
    centre = next(occ for occ in net.occurrences if occ.name == "A[2,2]")
    assert centre.indices == ("p[2,2]", "h[1,2]", "h[2,2]", "v[2,1]", "v[2,2]")
    assert net.params["A[2,2]"] == (2, 3, 3, 3, 3) and net.params["A[1,1]"] == (2, 3, 3)


def test_sym_cp_ties_one_parameter():
    net = tnc.library("sym_cp", n=3, R=2)
    assert net.params == {"A": (3, 2)}
    same_as(net, "ir,jr,kr->ijk", ["A", "A", "A"])


def test_tucker_equation():
    net = tnc.library("tucker", I=2, J=3, K=4, R1=2, R2=3, R3=2)
    same_as(net, "abc,ia,jb,kc->ijk", ["G", "U1", "U2", "U3"])


def test_energy_is_a_scalar_with_data():
    net = tnc.library("energy", N=3, D=2)
    assert net.output_shape == ()
    assert set(net.data) == {"H[1]", "H[2]", "H[3]"} and net.data["H[2]"] == (5, 2, 2, 5)
    same_as(net, "pa,aqb,br,PA,AQB,BR,pPw,wqQW,WrR->",
            ["G[1]", "G[2]", "G[3]", "G[1]", "G[2]", "G[3]", "H[1]", "H[2]", "H[3]"])


def test_coupled_networks_share_a_tensor():
    text = """
    network x(I = 2, J = 3, R = 2) { index i: I, j: J, r: R  tensor A(i, r), B(j, r) output i, j }
    network y(I = 2, K = 4, R = 2) { index i: I, k: K, r: R  tensor A(i, r), C(k, r) output i, k }
    """
    nets = tnc.compile_all(text)
    tensors = {**nets["x"].random(seed=0), **nets["y"].random(seed=1)}
    tensors["A"] = nets["x"].random(seed=0)["A"]
    np.testing.assert_allclose(nets["x"].contract({k: tensors[k] for k in "AB"}),
                               tensors["A"] @ tensors["B"].T)
    np.testing.assert_allclose(nets["y"].contract({k: tensors[k] for k in "AC"}),
                               tensors["A"] @ tensors["C"].T)
