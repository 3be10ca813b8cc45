"""Smoke test: the MULTIFAC simulation example runs in quick mode, writes its plot, prints sane numbers."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytest.importorskip("matplotlib")


def load_example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))     # the example imports its _shared helper
    spec = importlib.util.spec_from_file_location("example_multifac", EXAMPLES / "multifac_simulation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_multifac_simulation(tmp_path, capsys, monkeypatch):
    result = load_example(monkeypatch).main(["--quick", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert result["tuning"] == "per-replicate"
    assert Path(result["png"]).is_file() and Path(result["png"]).stat().st_size > 1000
    assert result["recovered"] >= 1                                  # quick: 2 replicates
    for row in result["rows"]:
        assert row["multifac"]["rse"] < row["unpenalised"]["rse"]
        assert row["sigma"] in (2.0, 3.0, 4.0) and row["sigma_1se"] >= row["sigma"]
        assert isinstance(row["recovered_1se"], bool)
    assert result["missing"]["rse_multifac"] < result["missing"]["rse_mean"]
    assert "recovered in" in printed and "one-standard-error choices" in printed
    # both designs run by default; the authors' N(0, 1) factors too
    designs = result["designs"]
    assert set(designs) == {"unit", "gaussian"} and designs["unit"]["png"] == result["png"]
    gaussian = designs["gaussian"]
    assert Path(gaussian["png"]).is_file() and gaussian["png"] != result["png"]
    for row in gaussian["rows"]:
        assert row["multifac"]["rse"] < row["unpenalised"]["rse"]
    assert gaussian["missing"]["rse_multifac"] < gaussian["missing"]["rse_mean"]
    assert "== gaussian factors (per-replicate tuning) ==" in printed
    assert "above the noise floor" in printed


def test_multifac_simulation_sigma_on_replicate_zero(tmp_path, capsys, monkeypatch):
    result = load_example(monkeypatch).main(["--quick", "--tuning", "sigma", "--factors", "unit",
                                             "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert result["sigma"] in result["cv"].sigmas
    assert all(row["sigma"] == result["sigma"] for row in result["rows"])   # reused
    assert "one-standard-error choice" in printed and "(sigma tuning)" in printed
    assert result["sigma"] not in result["sensitivity"]     # sigmas CV cannot tell apart
    assert all(set(v) == {"recovered", "rse"} and 0 <= v["recovered"] <= 2
               for v in result["sensitivity"].values())


def test_multifac_simulation_two_step(tmp_path, capsys, monkeypatch):
    result = load_example(monkeypatch).main(["--quick", "--tuning", "two-step", "--factors", "unit",
                          "--replicates", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert result["tuning"] == "two-step" and result["rank"] == result["cv"].rank
    assert result["rank"] in (8, 12)            # rank 4 cannot hold the 8 true components
    assert result["sigma"] == result["cv"].sigma and result["sensitivity"] == {}
    row = result["rows"][0]
    assert row["multifac"]["rse"] < row["unpenalised"]["rse"]
    assert "step 1 (sigma 2)" in printed and "two-step choices" in printed
