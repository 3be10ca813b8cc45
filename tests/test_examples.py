"""Smoke tests: each research example runs in quick mode, writes its plot and prints sane numbers."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))   # the examples import their _shared helper


def run_example(name: str, out: Path, capsys, *extra) -> tuple[dict, str]:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--out", str(out), *extra])
    assert Path(result["png"]).is_file() and Path(result["png"]).stat().st_size > 1000
    return result, capsys.readouterr().out


def test_stratified_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    result, printed = run_example("stratified_digits", tmp_path, capsys)
    (row,) = result["rows"]
    assert row["ntf_params"] >= row["stratified_params"]          # NTF is not handicapped
    assert row["stratified_sse"] > 0 and row["ntf_sse"] > 0
    lower = "Stratified-NTF" if row["stratified_sse"] < row["ntf_sse"] else "NTF"
    assert f"lower loss: {lower}" in printed
    assert result["tv"]["penalised"] < result["tv"]["plain"]


def test_overparameterized_als(tmp_path, capsys):
    result, printed = run_example("overparameterized_als", tmp_path, capsys)
    assert result["k"] == [3, 6, 9]
    for variant in ("sequential", "parallel"):
        assert all(0.0 <= rate <= 1.0 for rate in result[variant])
    # the paper's theorem: at k = r^2 the parallel variant fits exactly from a random start
    assert result["parallel"][-1] == 1.0 and result["sequential"][-1] == 1.0
    assert "success = relative error < 1e-06" in printed


def test_method_of_moments(tmp_path, capsys):
    result, printed = run_example("method_of_moments", tmp_path, capsys)
    assert np.all(result["relative_errors"] < 0.1)
    assert np.abs(result["found_weights"] - result["weights"]).max() < 0.05
    assert abs(result["sigma2"] - 1.0) < 0.05
    assert "max relative centre error" in printed


def test_born_bars_stripes(tmp_path, capsys):
    result, printed = run_example("born_bars_stripes", tmp_path, capsys)
    full = result["rows"]["all"]
    assert abs(full["train"] - np.log(30)) < 0.02 < full["baseline_train"] - full["train"]
    assert result["valid"] > 0.98
    assert "NLL floor ln 30 = 3.401" in printed and "independent pixels" in printed


def test_born_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    result, printed = run_example("born_digits", tmp_path, capsys)
    row = result["row"]
    assert row["train"] < row["baseline_train"] and row["test"] < row["baseline_test"]
    assert "test NLL" in printed


def test_born_parentheses(tmp_path, capsys):
    result, printed = run_example("born_parentheses", tmp_path, capsys)
    shares = result["shares"]
    assert min(shares[n] for n in (2, 4, 6, 8)) > 0.7     # chance at length 8: 14 / 256
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert "unseen length" in printed


def test_tt_layer_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    result, printed = run_example("tt_layer_digits", tmp_path, capsys)
    tt, dense = result["rows"]["TT-matrix"], result["rows"]["dense"]
    assert tt["hidden_params"] * 6 < dense["hidden_params"]
    assert tt["accuracy"] > 0.93 and dense["accuracy"] > 0.93   # measured 0.976-0.980 (seeds 0-2)
    assert "compression 6.7x" in printed and "fewer hidden-layer parameters" in printed
