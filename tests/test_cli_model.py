"""``tnc fit`` of a model block (``--data NAME=FILE``, ``--model``, ``--set``) and ``tnc show``
of saved coupled and Stratified-NTF results, run in-process through ``tnc.cli.main``."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc.cli import main

LINKED = """\
network X1(I = 6, J = 5, K = 4, R = 2) {
    index i: I, j: J, k: K, r: R
    tensor A(i, r), B(j, r), C(k, r)
    output i, j, k
}
network X2(I = 6, L = 7, R = 2) {
    index i: I, l: L, r: R
    tensor A(i, r), D(l, r)
    output i, l
}
model linked(lambda = 0.0) {
    fit X1 to T1
    fit X2 to T2 weight 0.5
    penalty l2(lambda) A
}
model smooth { fit X1 to T1  fit X2 to T2  penalty tv(0.5) D along l  penalty l2(0.05) A, B, C, D }
"""


def run(capsys, *argv):
    """(exit code, stdout, stderr) of ``tnc argv...``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def planted(tmp_path):
    """The model file, the planted data sets saved as T1.npy / T2.npy, and the data."""
    path = tmp_path / "linked.tn"
    path.write_text(LINKED)
    model = tnc.compile_model(LINKED, name="linked")
    data = model.contract(model.random(seed=3))
    for name, array in data.items():
        np.save(tmp_path / f"{name}.npy", array)
    return path, data


def data_options(tmp_path):
    return ["--data", f"T1={tmp_path / 'T1.npy'}", "--data", f"T2={tmp_path / 'T2.npy'}"]


@pytest.mark.parametrize("method, tol", [("als", 1e-6), ("gcp", 1e-3)])
def test_planted_model_fitted_from_the_shell(capsys, tmp_path, planted, method, tol):
    path, data = planted
    out_path = tmp_path / "fit.npz"
    code, out, _ = run(capsys, "fit", path, "--model", "linked", *data_options(tmp_path),
                       "--method", method, "-x", "max_iter=3000", "-q", "-o", out_path)
    assert code == 0, out
    assert f"{method} fit of coupled model `linked`" in out and "T2: relative error" in out
    result = tnc.load_coupled(out_path)
    assert result.rel_error < tol and result.model.terms[1].weight == 0.5
    for name, array in data.items():        # the saved tensors reproduce the data sets
        np.testing.assert_allclose(result.reconstruct(name), array,
                                   atol=10 * tol * np.abs(array).max())


def test_set_sizes_masks_and_the_shown_result(capsys, tmp_path, planted):
    path, data = planted
    hidden = data["T2"].copy()
    hidden[2] = np.nan                                # one sample missing from T2
    np.save(tmp_path / "T2.npy", hidden)
    out_path = tmp_path / "fit.npz"
    code, out, err = run(capsys, "fit", path, "--model", "linked", *data_options(tmp_path),
                         "--set", "lambda=1e-9", "--size", "R=2", "--mask", "T2=nan",
                         "-x", "max_iter=3000", "-q", "-o", out_path)
    assert code == 0, err
    result = tnc.load_coupled(out_path)
    assert result.model.l2 == {"A": 1e-9} and result.model.settings == {"lambda": 1e-9}
    filled = result.reconstruct("T2")[2]              # carried over by the shared A
    assert np.linalg.norm(filled - data["T2"][2]) < 1e-3 * np.linalg.norm(data["T2"][2])
    code, out, _ = run(capsys, "show", out_path)
    assert code == 0
    assert "als fit of coupled model `linked`" in out and "penalty l2(1e-09) A" in out
    assert "fit X2 to T2  loss gaussian  weight 0.5  rel error" in out
    assert "network X1(I=6, J=5, K=4, R=2)" in out and "fitted tensors: A (6, 2)" in out


def test_wls_and_restarts_from_the_shell(capsys, tmp_path, planted):
    path, data = planted
    hidden = {k: v.copy() for k, v in data.items()}
    hidden["T1"][np.random.default_rng(0).random(data["T1"].shape) < 0.3] = np.nan
    hidden["T2"][2] = np.nan                          # one sample missing from T2
    for name, array in hidden.items():
        np.save(tmp_path / f"{name}.npy", array)
    out_path = tmp_path / "fit.npz"
    code, out, err = run(capsys, "fit", path, "--model", "linked", *data_options(tmp_path),
                         "--mask", "T1=nan", "--mask", "T2=nan", "-x", "missing=wls",
                         "-x", "restarts=3", "-x", "max_iter=1000", "-q", "-o", out_path)
    assert code == 0, err
    result = tnc.load_coupled(out_path)
    assert result.info["missing"] == {"T1": "wls", "T2": "wls"} and result.info["restarts"] == 3
    assert result.loss == min(result.info["restart_objectives"])
    filled = result.reconstruct("T2")[2]              # carried over by the shared A
    assert np.linalg.norm(filled - data["T2"][2]) < 1e-3 * np.linalg.norm(data["T2"][2])


def test_tv_model_with_als_from_the_shell(capsys, tmp_path, planted):
    path, _ = planted
    out_path = tmp_path / "smooth.npz"
    code, out, err = run(capsys, "fit", path, "--model", "smooth", *data_options(tmp_path),
                         "-x", "max_iter=50", "-q", "-o", out_path)
    assert code == 0, err
    assert "als fit of coupled model `smooth`" in out
    code, out, _ = run(capsys, "show", out_path)
    assert "penalty l2(0.05) A, B, C, D" in out and "penalty tv(0.5) D along l" in out


def test_show_stratified_result(capsys, tmp_path):
    rng = np.random.default_rng(0)
    result = tnc.stratified_ntf([rng.random((5, 4, 3)), rng.random((6, 4, 3))], 1, 2,
                                max_iter=3, progress=False)
    result.save(tmp_path / "s.npz")
    code, out, _ = run(capsys, "show", tmp_path / "s.npz")
    assert code == 0
    assert "stratified-NTF of 2 strata, 2 topics" in out and "topics: H1 (4, 2), H2 (3, 2)" in out


@pytest.mark.parametrize("argv, phrase", [
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=none.npy"],
     "cannot read the data 'none.npy'"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=T2.npy", "--data", "T9=T2.npy"],
     "the model fits data sets T1, T2; unknown T9"),
    (["--model", "linked", "--data", "T1=T1.npy"], "the model fits data sets T1, T2; missing T2"),
    (["--model", "nope", "--data", "T1=T1.npy"],
     "has no model block `nope`; it declares linked, smooth"),
    (["--data", "T1=T1.npy", "--data", "T2=T2.npy"], "pick one with --model"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=T2.npy", "--set", "mu=1"],
     "model `linked` has no parameter `mu`; its parameters are lambda"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=T2.npy", "--method", "cg"],
     "method must be one of als, gcp"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T1=T2.npy"], "given twice"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=T2.npy", "-x", "sweeps=3"],
     "unknown option(s) sweeps"),
    (["--model", "linked", "--data", "T1=T1.npy", "--data", "T2=T2.npy", "-x", "missing=x"],
     "missing must be one of 'em', 'wls', 'auto', got 'x'"),
    (["--model", "linked", "T1.npy"], "drop DATA"),
    ([], "give the data: DATA for a network, or --data NAME=FILE"),
])
def test_model_errors_are_one_line(capsys, tmp_path, planted, monkeypatch, argv, phrase):
    path, _ = planted
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "fit", path, *argv, "-q")
    assert code == 2 and out == ""
    assert err.startswith("tnc fit: error: ") and len(err.strip().splitlines()) == 1, err
    assert phrase in err


@pytest.mark.parametrize("argv, phrase", [
    (["--model", "linked", "--data", "T1"], "argument --data/-d: 'T1' is not NAME=FILE"),
    (["--model", "linked", "--set", "lambda=big"], "'lambda=big' is not PARAM=NUMBER"),
    (["--model", "linked", "a.npy", "b.npy"], "unrecognized arguments: a.npy b.npy"),
])
def test_model_usage_errors(capsys, tmp_path, planted, argv, phrase):
    path, _ = planted
    code, out, err = run(capsys, "fit", path, *argv, "-q")
    assert code == 2 and out == "" and "usage: tnc" in err and phrase in err


def test_data_may_follow_the_options(capsys, tmp_path):
    """DATA is optional now (model blocks take --data), yet may still come last."""
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    np.save(tmp_path / "x.npy", net.contract(net.random(seed=1)))
    code, out, err = run(capsys, "fit", "cp", "--size", "R=2", "-x", "max_iter=5", "-q",
                         tmp_path / "x.npy")
    assert code == 0 and "als fit of network `cp`" in out, err


def test_a_file_without_model_blocks(capsys, tmp_path):
    path = tmp_path / "cp.tn"
    path.write_text(tnc.lang.compiler.library_source("cp"))
    np.save(tmp_path / "x.npy", np.zeros((2, 2, 2)))
    code, _, err = run(capsys, "fit", path, "--data", f"X={tmp_path / 'x.npy'}", "-q")
    assert code == 2 and "declares no model block" in err
