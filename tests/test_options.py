"""Every option of every front end is checked at the boundary, with a message naming it;
data handed to a fit (targets and ``inputs=``) is checked before any method runs."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tnc
from tnc.cli import main
from tnc.options import check_value

CP = dict(I=3, J=4, K=5, R=2)


@pytest.fixture(scope="module")
def cp_data():
    net = tnc.library("cp", **CP)
    return net, net.contract(net.random(seed=1))


@pytest.mark.parametrize("method, options, phrase", [
    ("als", {"max_iter": "10"}, "option max_iter must be an integer >= 1, got '10' (str)"),
    ("als", {"max_iter": 2.0}, "option max_iter must be an integer"),
    ("als", {"max_iter": True}, "option max_iter must be an integer"),   # bool is no int
    ("als", {"max_iter": 0}, "option max_iter must be an integer >= 1"),
    ("als", {"tol": None}, "option tol must be a finite number >= 0, got None"),
    ("als", {"tol": math.nan}, "option tol must be a finite number"),
    ("als", {"tol": -1e-3}, "option tol must be a finite number >= 0"),
    ("als", {"l2": math.nan}, "option l2 must be a finite number >= 0 or a dict"),
    ("als", {"l2": {"A": math.inf}}, "each entry a finite number >= 0"),
    ("als", {"seed": -1}, "option seed must be an integer >= 0 or None"),
    ("als", {"seed": "0"}, "option seed must be"),
    ("als", {"normalize": 1}, "option normalize must be a bool"),
    ("als", {"restarts": 0}, "option restarts must be an integer >= 1"),
    ("als", {"holdout": 1.0}, "option holdout must be a finite number >= 0 and < 1"),
    ("als", {"optimize": "bogus"}, "option optimize must be one of 'auto'"),
    ("als", {"callback": 3}, "option callback must be a function or None"),
    ("gcp", {"lr": math.nan, "optimizer": "adam"}, "option lr must be a finite number > 0"),
    ("gcp", {"lr": 0.0, "optimizer": "adam"}, "option lr must be a finite number > 0"),
    ("gcp", {"max_iter": 1e3}, "option max_iter must be an integer >= 1"),
    ("gcp", {"loss": 3}, "option loss must be a str or a Loss"),
    ("gcp", {"batch_size": 0}, "option batch_size must be an integer >= 1 or None"),
    ("gcp", {"gtol": math.inf}, "option gtol must be a finite number"),
    ("als", {"sweeps": 3}, "unknown option(s) sweeps for method 'als'"),
])
def test_fit_options_are_checked_with_their_name(cp_data, method, options, phrase):
    net, X = cp_data
    with pytest.raises(tnc.TncError) as caught:
        tnc.fit(net, X, method=method, progress=False, **options)
    assert phrase in str(caught.value)
    assert f"method {method!r}" in str(caught.value)


def test_good_options_still_pass_and_numpy_scalars_count(cp_data):
    net, X = cp_data
    result = tnc.fit(net, X, progress=False, max_iter=np.int64(3), tol=np.float32(0),
                     seed=None, l2={"A": 0.5}, nonneg=["A"], optimize="greedy")
    assert result.iterations == 3
    assert np.isfinite(result.loss)


@pytest.mark.parametrize("options, phrase", [
    ({"max_rank": 1.5}, "option max_rank must be an integer >= 1 or None, got 1.5"),
    ({"max_rank": 0}, "option max_rank must be an integer >= 1"),
    ({"max_rank": -1}, "option max_rank must be an integer >= 1"),
    ({"cutoff": 1.0}, "option cutoff must be a finite number >= 0 and < 1"),
    ({"init_rank": 0}, "option init_rank must be an integer >= 1"),
])
def test_dmrg_fit_options(options, phrase):
    tt = tnc.library("tt", N=3, d=3, r=2)
    with pytest.raises(tnc.TncError, match="method 'dmrg'") as caught:
        tnc.fit(tt, np.ones((3, 3, 3)), method="dmrg", progress=False, **options)
    assert phrase in str(caught.value)


@pytest.mark.parametrize("options, phrase", [
    ({"max_rank": 1.5}, "option max_rank must be an integer >= 1 or a list or None, got 1.5"),
    ({"max_rank": [4, 0]}, "each entry an integer >= 1"),
    ({"max_iter": "3"}, "option max_iter must be an integer >= 1"),
    ({"tol": math.nan}, "option tol must be a finite number"),
    ({"eig_tol": -1.0}, "option eig_tol must be a finite number >= 0 or None"),
])
def test_ground_state_options(options, phrase):
    net = tnc.library("energy", N=4, D=4)
    with pytest.raises(tnc.TncError, match="ground_state") as caught:
        tnc.ground_state(net, tnc.heisenberg_mpo(4), progress=False, **options)
    assert phrase in str(caught.value)


@pytest.mark.parametrize("options, phrase", [
    ({"max_iter": "5"}, "option max_iter must be an integer >= 1"),
    ({"tol": None}, "option tol must be a finite number >= 0"),
    ({"tv_smoothing": math.inf}, "option tv_smoothing must be a finite number"),
    ({"restarts": -1}, "option restarts must be an integer >= 0"),
    ({"restarts": 1.0}, "option restarts must be an integer"),
    ({"sweeps": 3}, "unknown option(s) sweeps for fit_model"),
])
def test_fit_model_options(options, phrase):
    net = tnc.library("cp", **CP)
    X = net.contract(net.random(seed=2))
    model = tnc.coupled_model([(net, "T")])
    with pytest.raises(tnc.TncError, match="fit_model") as caught:
        tnc.fit_model(model, {"T": X}, progress=False, **options)
    assert phrase in str(caught.value)


@pytest.mark.parametrize("options, phrase", [
    ({"tol": None}, "stratified_ntf: option tol must be a finite number >= 0"),
    ({"seed": 1.5}, "stratified_ntf: option seed must be an integer >= 0 or None"),
    ({"tv": math.nan}, "option tv must be a finite number >= 0"),
    ({"n_topics": True}, "option n_topics must be an integer >= 1"),
    ({"progress": "yes"}, "option progress must be a bool"),
])
def test_stratified_options(options, phrase):
    strata = [np.ones((3, 4, 5)), np.ones((2, 4, 5))]
    with pytest.raises(tnc.TncError) as caught:
        tnc.stratified_ntf(strata, **options)
    assert phrase in str(caught.value)


def test_classifier_options():
    from tnc.mps.mps_classifier import train_classifier
    phi = np.ones((4, 3, 2))
    with pytest.raises(tnc.TncError, match="train_classifier: option max_rank must be an "
                                           "integer >= 1, got 2.5"):
        train_classifier(phi, np.array([0, 1, 0, 1]), max_rank=2.5)
    with pytest.raises(tnc.TncError, match="unknown option"):
        train_classifier(phi, np.array([0, 1, 0, 1]), rank=2)


def test_check_value_describes_unions_and_allows_what_the_rule_says():
    check_value("x", math.inf, float, {"finite": False})
    check_value("x", None, int, {}, default_is_none=True)
    with pytest.raises(tnc.TncError, match=r"^demo: option x must be a finite number > 0 and "
                                           r"<= 1, got 2"):
        check_value("x", 2, float, {"above": 0, "max": 1}, "demo")
    with pytest.raises(tnc.TncError, match="option mode must be one of 'a', 'b', got 'c'"):
        check_value("mode", "c", str, {"choices": ("a", "b")})


# -- data at the boundary ------------------------------------------------------------------
REGRESSION = "network r(I = 4, J = 3) { index i: I, j: J  data H(i, j)  tensor a(j)  output i }"


@pytest.mark.parametrize("data, phrase", [
    ([[1.0, 2.0], [3.0]], "data must be an array, got nested sequences of unequal lengths"),
    ("x.npy", "data must be an array, got str"),
    (np.ones((3, 4, 5), np.float16), "method 'als' cannot compute data of dtype float16"),
    (np.array([["a"]]), "method 'als' cannot compute data of dtype str32"),
])
def test_bad_data_is_a_tnc_error(cp_data, data, phrase):
    net, _ = cp_data
    with pytest.raises(tnc.TncError) as caught:
        tnc.fit(net, data, progress=False)
    assert phrase in str(caught.value)


@pytest.mark.parametrize("inputs, phrase", [
    ("H.npy", "inputs must be a dict data tensor name -> array, got str"),
    ({"H": np.ones((4, 3)).astype(object)}, "data tensor `H` (inputs=) must be a numeric "
                                            "array, got dtype object"),
    ({"H": [[1.0, 2.0, 3.0], [1.0]]}, "data tensor `H` (inputs=) must be an array, got nested"),
    ({"H": np.where(np.eye(4, 3) > 0, np.nan, 1.0)}, "data tensor `H` (inputs=) has 3 NaN or "
                                                     "infinite entries"),
    ({"H": np.full((4, 3), np.inf)}, "has 12 NaN or infinite entries"),
    ({"H": np.ones((3, 4))}, "tensor `H` of network `r` must have shape (4, 3)"),
])
def test_bad_inputs_are_tnc_errors(inputs, phrase):
    net = tnc.compile(REGRESSION)
    with pytest.raises(tnc.TncError) as caught:
        tnc.fit(net, np.ones(4), method="gcp", inputs=inputs, progress=False)
    assert phrase in str(caught.value)


def test_good_inputs_fit_the_regression_exactly():
    rng = np.random.default_rng(0)
    H, a = rng.random((4, 3)), rng.random(3)
    net = tnc.compile(REGRESSION)
    result = tnc.fit(net, H @ a, method="gcp", inputs={"H": H.tolist()}, progress=False,
                     gtol=1e-12)
    np.testing.assert_allclose(result.tensors["a"], np.linalg.lstsq(H, H @ a, rcond=None)[0],
                               atol=1e-6)


# -- the command line ----------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((3, 4, 5)))
    return path


@pytest.mark.parametrize("option, phrase", [
    ("max_iter=abc", "option max_iter must be an integer >= 1, got 'abc' (str)"),
    ("tol=None", "option tol must be a finite number >= 0, got None"),
    ("l2=nan", "option l2 must be a finite number >= 0 or a dict, got 'nan'"),
])
def test_cli_option_errors_are_one_line_exit_2(capsys, data_file, option, phrase):
    code, out, err = run_cli(capsys, "fit", "cp", str(data_file), "--size", "R=2", "-q",
                             "--option", option)
    assert code == 2 and out == ""
    assert err.startswith("tnc fit: error: ") and len(err.strip().splitlines()) == 1, err
    assert phrase in err


@pytest.mark.parametrize("content, phrase", [
    (b"", "the file is empty or cut short"),
    (b"\x93NUMPY\x01\x00", "cannot read the data"),
])
def test_cli_empty_or_cut_npy_is_one_line(capsys, tmp_path, content, phrase):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    code, out, err = run_cli(capsys, "fit", "cp", str(path), "--size", "R=2", "-q")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and phrase in err, err


# -- weights and penalties of coupled models -------------------------------------------------
CP_TEXT = ("network cp(I = 3, J = 4, K = 5, R = 2) { index i: I, j: J, k: K, r: R\n"
           "    tensor A(i, r), B(j, r), C(k, r)  output i, j, k }\n")


@pytest.mark.parametrize("block, settings", [
    ("model m(lam = 0.1) { fit cp to T  penalty l2(lam) A }", {"lam": math.nan}),
    ("model m(lam = 0.1) { fit cp to T weight lam }", {"lam": math.inf}),
    ("model m(lam = 0.1) { fit cp to T weight lam }", {"lam": -1.0}),
    ("model m(lam = 0.1) { fit cp to T  penalty tv(lam) A along i }", {"lam": math.nan}),
])
def test_block_weights_and_penalties_are_finite(block, settings):
    with pytest.raises(tnc.TncSemanticError) as caught:
        tnc.compile_model(CP_TEXT + block, settings=settings)
    error = caught.value
    assert "weights and penalties must be finite numbers >= 0, got `lam` = " in str(error)
    assert error.line == 3 and block[error.column - 1:error.column + 2] == "lam"


@pytest.mark.parametrize("kwargs, phrase", [
    ({"l2": math.nan}, "the penalty on `A` must be a finite number >= 0"),
    ({"l2": {"B": math.inf}}, "the penalty on `B` must be a finite number >= 0"),
    ({"tv": {"A": (math.nan, 0)}}, "the penalty on `A` must be a finite number >= 0"),
])
def test_python_model_penalties_are_finite(kwargs, phrase):
    with pytest.raises(tnc.TncError, match=phrase):
        tnc.coupled_model([(tnc.library("cp", **CP), "T")], **kwargs)


@pytest.mark.parametrize("weight", [math.inf, math.nan, -0.5])
def test_python_model_weights_are_finite(weight):
    with pytest.raises(tnc.TncError, match="the weight of data set `T` must be a finite number"):
        tnc.coupled_model([(tnc.library("cp", **CP), "T", "gaussian", weight)])


def test_cli_set_nan_is_one_line(capsys, tmp_path):
    path = tmp_path / "m.tn"
    path.write_text(CP_TEXT + "model m(lam = 0.1) { fit cp to T  penalty l2(lam) A }\n")
    np.save(tmp_path / "T.npy", np.ones((3, 4, 5)))
    code, out, err = run_cli(capsys, "fit", str(path), "--data", f"T={tmp_path / 'T.npy'}",
                             "--set", "lam=nan", "-q")
    assert code == 2 and out == ""
    assert "weights and penalties must be finite numbers >= 0, got `lam` = nan" in err


# -- pinned sizes ----------------------------------------------------------------------------
def test_explicit_sizes_are_pinned_and_a_mismatch_names_both_shapes():
    net = tnc.library("cp", I=4, J=5, K=6, R=2)
    assert net.pinned_sizes == {"I": 4, "J": 5, "K": 6, "R": 2}
    with pytest.raises(tnc.TncError) as caught:
        tnc.fit(net, np.ones((9, 9, 9)), progress=False)
    message = str(caught.value)
    assert "(4, 5, 6)" in message and "(9, 9, 9)" in message and "pinned" in message
    with pytest.raises(tnc.TncError, match=r"\(4, 9, 9\).*\(9, 9, 9\)"):
        tnc.fit(tnc.library("cp", R=2).with_sizes(I=4), np.ones((9, 9, 9)), progress=False)


def test_sizes_left_open_are_read_off_the_data_and_pinned_ones_kept():
    rng = np.random.default_rng(3)
    X = rng.random((7, 8, 9))
    result = tnc.fit(tnc.library("cp", I=7, R=3), X, progress=False, max_iter=2)
    assert result.network.sizes == {"I": 7, "J": 8, "K": 9, "R": 3}
    assert result.network.pinned_sizes == {"I": 7, "R": 3}
    truth = tnc.library("cp", I=7, J=8, K=9, R=3)        # the same fit, sizes given
    again = tnc.fit(truth, X, progress=False, max_iter=2)
    np.testing.assert_allclose(result.reconstruct(), again.reconstruct(), rtol=1e-12)
    bigger = tnc.fit(tnc.library("cp", I=4, J=5, K=6, R=2), X, sizes={"I": 7, "J": 8, "K": 9},
                     progress=False, max_iter=1)     # sizes= is the caller's word too
    assert bigger.network.output_shape == X.shape


def test_text_header_defaults_are_not_pinned(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 4, 5)))
    code, out, err = run_cli(capsys, "fit", "cp", str(tmp_path / "x.npy"), "--size", "R=2",
                             "-q", "-x", "max_iter=2")
    assert code == 0, err
    header = tnc.library("cp")                  # header defaults only: nothing pinned
    assert header.pinned_sizes == {}
    assert tnc.fit(header.with_sizes(R=2), np.ones((3, 4, 5)), progress=False,
                   max_iter=1).network.output_shape == (3, 4, 5)


def test_empty_data_dimension_is_a_tnc_error():
    with pytest.raises(tnc.TncError, match=r"shape \(0, 3, 3\), with an empty dimension"):
        tnc.fit(tnc.library("cp", R=2), np.zeros((0, 3, 3)), progress=False)


@pytest.mark.parametrize("damage", ["empty", "cut", "flipped"])
def test_cli_damaged_npz_is_one_line_for_fit_and_contract(capsys, tmp_path, damage):
    path = tmp_path / "t.npz"
    np.savez(path, coords=np.array([[0, 0, 0]]), values=np.array([1.0]), shape=np.array([3, 4, 5]))
    whole = bytearray(path.read_bytes())
    if damage == "flipped":
        whole[60] ^= 0xFF                      # inside the first member's data: bad CRC
    path.write_bytes(b"" if damage == "empty" else
                     bytes(whole[:len(whole) // 2]) if damage == "cut" else bytes(whole))
    for argv in (["fit", "cp", str(path), "-s", "R=2", "-q"], ["contract", "cp", "--tensors",
                                                                str(path)]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "", err
        assert len(err.strip().splitlines()) == 1 and "cannot read " in err, err


@pytest.mark.parametrize("method", ["als", "gcp"])
def test_a_non_finite_init_names_its_tensor(method):
    """GCP from a NaN start returned NaN tensors (loss nan), ALS ignored it silently."""
    net = tnc.library("cp", I=4, J=5, K=6, R=2)
    start = net.random(seed=3)
    start["B"] = start["B"].copy()
    start["B"][1, 0] = np.inf
    with pytest.raises(tnc.TncError, match=r"init: `B` has 1 NaN or infinite entries"):
        tnc.fit(net, net.contract(net.random(seed=1)), init=start, method=method, progress=False)


@pytest.mark.parametrize("method", ["als", "gcp"])
def test_a_non_finite_init_of_a_coupled_model_names_its_tensor(method):
    """fit_model took a NaN start silently (ALS reported converged, GCP returned NaN)."""
    net = "network X() { index i: 4, j: 3, r: 2  tensor A(i, r), B(j, r)  output i, j }"
    model = tnc.compile_model(net + " model m() { fit X to T }")
    start = model.random(seed=3)
    start["A"] = start["A"].copy()
    start["A"][0, 1] = np.nan
    data = {"T": np.random.default_rng(0).normal(size=(4, 3))}
    with pytest.raises(tnc.TncError, match=r"init: `A` has 1 NaN or infinite entries"):
        tnc.fit_model(model, data, method=method, init=start, progress=False)
