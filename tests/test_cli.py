"""The ``tnc`` command line, run in-process through ``tnc.cli.main``."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc.cli import COMMANDS, main
from tnc.lang.compiler import library_source

TWO = """\
network x(I = 2, J = 3, R = 2) {
    index i: I, j: J, r: R
    tensor A(i, r), B(j, r)
    output i, j
}
network y(I = 2, K = 4, R = 2) {
    index i: I, k: K, r: R
    tensor A(i, r), C(k, r)
    output i, k
}
"""


@pytest.fixture
def two(tmp_path):
    path = tmp_path / "two.tn"
    path.write_text(TWO)
    return path


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``tnc argv...``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# -- help ---------------------------------------------------------------------------------
def test_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in COMMANDS:
        assert name in out
    assert "tnc show" in out and "Run `tnc COMMAND --help`" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_useful_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: tnc {command}" in out and "example:" in out and "--size" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and tnc.__version__ in out


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "usage: tnc" in err


# -- show -----------------------------------------------------------------------------------
def test_show_prints_every_network(capsys, two):
    code, out, _ = run(capsys, "show", two)
    assert code == 0
    assert "network x(I=2, J=3, R=2)" in out and "network y(I=2, K=4, R=2)" in out
    assert "equation  ac,bc->ab" in out and "path      (0,1)" in out and "flops" in out


def test_show_sizes_and_name(capsys, two):
    code, out, _ = run(capsys, "show", two, "--name", "y", "--size", "K=7", "-s", "R=5")
    assert code == 0
    assert "network y(I=2, K=7, R=5)" in out and "network x" not in out
    assert "C  param  (7, 5)  (k, r)" in out


def test_show_library_peps(capsys, tmp_path):
    path = tmp_path / "peps.tn"
    path.write_text(library_source("peps"))
    code, out, _ = run(capsys, "show", path, "--size", "Lx=2", "--optimize", "greedy", "--steps")
    assert code == 0
    assert "A[2,2]  param  (2, 3, 3, 3)  (p[2,2], h[1,2], v[2,1], v[2,2])" in out
    assert "p[1,1]  2  open" in out and "optimizer greedy" in out
    assert "Complete contraction" in out          # opt_einsum's table from --steps


def test_show_of_a_cost_past_the_float_range(capsys, tmp_path):
    """A 150-core train with d=200 has 200**150 = 1.4e345 outputs: formatting its cost
    (flops, peak) raised OverflowError, in tnc show and in contract's memory error."""
    path = tmp_path / "tt.tn"
    path.write_text(library_source("tt"))
    code, out, _ = run(capsys, "show", path, "--size", "N=150", "--size", "d=200",
                       "--optimize", "greedy")
    assert code == 0
    from decimal import Decimal
    shown = Decimal(out.split("cost      flops ")[1].split(",")[0])
    net = tnc.library("tt", N=150, d=200, r=8)
    exact = Decimal(net.plan("greedy").cost.flops)
    assert exact > Decimal(10) ** 345 and abs(shown - exact) / exact < Decimal("1e-3")
    net = tnc.library("tt", N=150, d=200, r=1)
    with pytest.raises(tnc.MemoryLimitError, match=r"e\+3\d\d"):
        net.contract(net.random(seed=0), optimize="greedy")


def test_show_does_not_plan_networks_of_thousands_of_tensors(capsys, tmp_path):
    """Planning 30,000 tensors ran for minutes (10 s at 1000): tnc show says why not."""
    from tnc.cli.show import SHOW_PLAN_MAX_TENSORS
    path = tmp_path / "tt.tn"
    path.write_text(library_source("tt"))
    code, out, _ = run(capsys, "show", path, "--size", f"N={SHOW_PLAN_MAX_TENSORS + 1}",
                       "--size", "d=2")
    assert code == 0
    assert f"path      not planned: {SHOW_PLAN_MAX_TENSORS + 1} tensor uses" in out
    assert "equation  " in out and "cost" not in out


def test_show_marks_hyperedges_and_tied_tensors(capsys, tmp_path):
    path = tmp_path / "sym.tn"
    path.write_text(library_source("sym_cp"))
    code, out, _ = run(capsys, "show", path, "--size", "n=3")
    assert code == 0
    assert "used 3x" in out and "hyperedge (3 legs)" in out


def test_show_fit_result(capsys, tmp_path):
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    path = tmp_path / "fit.npz"
    tnc.FitResult(net, net.random(), "als", [{"loss": 0.5, "rel_error": 0.1}], True, 3,
                  0.2).save(path)
    code, out, _ = run(capsys, "show", path)
    assert code == 0
    assert "als fit of network `cp`" in out and "converged" in out


# -- errors ---------------------------------------------------------------------------------
def test_missing_file(capsys, tmp_path):
    code, out, err = run(capsys, "show", tmp_path / "none.tn")
    assert code == 2 and out == ""
    assert err.startswith("tnc show: error: cannot read tnc file")


def test_syntax_error_shows_the_caret(capsys, tmp_path):
    path = tmp_path / "bad.tn"
    path.write_text("network n() {\n  index i 2\n}\n")
    code, _, err = run(capsys, "show", path)
    assert code == 2
    assert f"{path}:2:11: unexpected `2`" in err and "          ^" in err


@pytest.mark.parametrize("options, phrase", [
    (["--name", "z"], "has no network `z`; it declares x, y"),
    (["--size", "Q=3"], "unknown size parameter(s) Q"),
    (["--size", "N"], "is not NAME=INTEGER"),
    (["--size", "N=x"], "is not NAME=INTEGER"),
    (["--size", "=3"], "is not NAME=INTEGER"),
    (["--size", "N=1.5"], "is not NAME=INTEGER"),
    (["--size", "I=0"], "sizes must be positive integers"),
    (["--optimize", "fastest"], "invalid choice"),
])
def test_bad_options(capsys, two, options, phrase):
    code, _, err = run(capsys, "show", two, *options)
    assert code == 2 and phrase in err


# -- contract ---------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    tensors = net.random(seed=3)
    path = tmp_path / "t.npz"
    np.savez(path, **tensors)
    tn = tmp_path / "cp.tn"
    tn.write_text(library_source("cp"))
    return tn, path, net.contract(tensors)


def test_contract_to_file(capsys, saved, tmp_path):
    tn, npz, want = saved
    out_path = tmp_path / "x.npy"
    code, out, _ = run(capsys, "contract", tn, "--tensors", npz, "-o", out_path,
                       "--size", "I=3", "--size", "J=4", "--size", "K=5", "--size", "R=2")
    assert code == 0 and "shape (3, 4, 5)" in out
    np.testing.assert_allclose(np.load(out_path), want)


def test_contract_prints(capsys, saved):
    tn, npz, _ = saved
    code, out, _ = run(capsys, "contract", tn, "-t", npz, "-s", "I=3", "-s", "J=4", "-s", "K=5",
                       "-s", "R=2", "-O", "greedy")
    assert code == 0 and "network cp: output (i, j, k) shape (3, 4, 5)" in out


def test_contract_fit_result_arrays(capsys, tmp_path):
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    tensors = net.random(seed=4)
    path = tmp_path / "fit.npz"
    tnc.FitResult(net, tensors, "als", [], True, 1, 0.1).save(path)
    tn = tmp_path / "cp.tn"
    tn.write_text(library_source("cp"))
    out_path = tmp_path / "x.npy"
    code, _, _ = run(capsys, "contract", tn, "-t", path, "-o", out_path,
                     "-s", "I=3", "-s", "J=4", "-s", "K=5", "-s", "R=2")
    assert code == 0
    np.testing.assert_allclose(np.load(out_path), net.contract(tensors))


def test_contract_shape_mismatch(capsys, saved):
    tn, npz, _ = saved
    code, _, err = run(capsys, "contract", tn, "--tensors", npz)      # default sizes
    assert code == 2 and "tensor `A` of network `cp` must have shape (30, 5)" in err


def test_contract_missing_tensors_file(capsys, saved, tmp_path):
    tn, _, _ = saved
    code, _, err = run(capsys, "contract", tn, "--tensors", tmp_path / "none.npz")
    assert code == 2 and "cannot read tensors" in err


def test_contract_single_array_file(capsys, saved, tmp_path):
    tn, _, _ = saved
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(3))
    code, _, err = run(capsys, "contract", tn, "--tensors", path)
    assert code == 2 and "holds a single array" in err


def test_contract_needs_a_network_name(capsys, two, tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, A=np.zeros((2, 2)))
    code, _, err = run(capsys, "contract", two, "--tensors", path)
    assert code == 2 and "pick one with --name" in err


def test_contract_unwritable_output(capsys, saved, tmp_path):
    tn, npz, _ = saved
    code, _, err = run(capsys, "contract", tn, "-t", npz, "-s", "I=3", "-s", "J=4", "-s", "K=5",
                       "-s", "R=2", "-o", tmp_path / "no" / "dir" / "x.npy")
    assert code == 2 and "error" in err


# -- draw -----------------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n"


def test_draw_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    tn = tmp_path / "peps.tn"
    tn.write_text(library_source("peps"))
    out_path = tmp_path / "peps.png"
    code, out, _ = run(capsys, "draw", tn, "-o", out_path, "--size", "Lx=2")
    assert code == 0 and f"wrote {out_path}" in out
    assert out_path.read_bytes()[:8] == PNG


def test_draw_every_network_of_a_file(capsys, two, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, _ = run(capsys, "draw", two, "-o", tmp_path / "net.svg", "--layout", "spring")
    assert code == 0
    assert (tmp_path / "net-x.svg").exists() and (tmp_path / "net-y.svg").exists()


def test_draw_bad_layout_for_network(capsys, two, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, err = run(capsys, "draw", two, "--name", "x", "-o", tmp_path / "x.png",
                       "--layout", "grid")
    assert code == 2 and "layout='grid' needs tensors named like" in err


# -- tnc.engine.draw as a library -----------------------------------------------------------------
def test_scene_of_cp_has_a_hub_and_open_legs():
    from tnc.engine.draw import layout_scene
    scene = layout_scene(tnc.library("cp", R=2))
    assert scene.hubs == [("hub", "r")]
    assert sorted(m[1] for m in scene.open_markers) == ["i", "j", "k"]
    assert sum(1 for u, v, _ in scene.edges if ("hub", "r") in (u, v)) == 3


def test_scene_of_a_trace_and_a_bond():
    from tnc.engine.draw import layout_scene
    net = tnc.compile("network t() { index i: 2, j: 3  tensor A(i, i, j), B(j)  output }")
    scene = layout_scene(net)
    assert scene.hubs == [("hub", "i")] and scene.open_markers == []
    assert (("tensor", 0), ("tensor", 1), "j:3") in scene.edges


@pytest.mark.parametrize("name, layout", [("peps", "grid"), ("energy", "chain"),
                                          ("ring", "auto"), ("ht", "kamada_kawai"),
                                          ("sym_cp", "circular")])
def test_draw_on_given_axes(name, layout):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from tnc.engine.draw import draw
    ax = Figure().add_subplot()
    net = tnc.library(name, **({"N": 3} if name in ("energy", "ring") else {}))
    assert draw(net, ax=ax, layout=layout) is ax
    labels = {text.get_text() for text in ax.texts}
    assert {occ.name for occ in net.occurrences} <= labels


def test_draw_positions_from_a_dict(tmp_path):
    pytest.importorskip("matplotlib")
    from tnc.engine.draw import draw
    net = tnc.library("tt", N=3)
    where = {"G[1]": (0, 0), "G[2]": (1, 0), "G[3]": (2, 0)}
    draw(net, tmp_path / "tt.png", layout=where)
    assert (tmp_path / "tt.png").read_bytes()[:8] == PNG


def test_draw_without_matplotlib_says_how_to_install(monkeypatch):
    import builtins

    from tnc.engine.draw import draw
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(tnc.TncError, match=r"pip install 'tnc\[draw\]'"):
        draw(tnc.library("cp"))


def test_unknown_layout():
    from tnc.engine.draw import draw
    with pytest.raises(tnc.TncError, match="unknown layout 'tree'"):
        draw(tnc.library("cp"), layout="tree")


def test_library_network_by_name(capsys):
    code, out, _ = run(capsys, "show", "tt", "--size", "N=3")
    assert code == 0 and "network tt(N=3, d=4, r=8)" in out
    code, _, err = run(capsys, "show", "nope")
    assert code == 2 and "cannot read tnc file 'nope'" in err


@pytest.mark.parametrize("eq, shapes", [(",i->i", [(), (3,)]), ("->", [()]),
                                        ("ij,jk,ki->", [(2, 2)] * 3), ("ab,ab,ab->", [(2, 2)] * 3),
                                        ("aab,b->a", [(2, 2, 3), (3,)])])
def test_draw_odd_networks(tmp_path, eq, shapes):
    pytest.importorskip("matplotlib")
    from tnc.engine.draw import draw, layout_scene
    net = tnc.compile(tnc.from_einsum(eq, *shapes))
    scene = layout_scene(net)
    legs = sum(len(occ.indices) for occ in net.occurrences)
    hub_outputs = sum(1 for m in scene.open_markers if ("hub", m[1]) in scene.hubs)
    direct = sum(1 for u, v, _ in scene.edges if u[0] == v[0] == "tensor")
    assert len(scene.edges) == legs - direct + hub_outputs
    draw(net, tmp_path / "odd.png")


def test_network_draw_method_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    import tnc
    out = tmp_path / "tt.png"
    tnc.library("tt", N=3).draw(out)
    assert out.stat().st_size > 1000
