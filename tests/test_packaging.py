"""The built wheel carries the grammar and the library networks and works outside the checkout."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("hatchling", reason="building the wheel needs hatchling (a test extra)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)], check=True)
    (path,) = out.glob("tnc-*.whl")
    return path


def test_wheel_contains_grammar_and_networks(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "tnc/grammar/tnc.lark" in names
    assert {"tnc/lang/networks/tt.tn", "tnc/lang/networks/peps.tn", "tnc/lang/networks/ht.tn"} <= set(names)
    grammar = zipfile.ZipFile(wheel).read("tnc/grammar/tnc.lark").decode()
    assert grammar == (ROOT / "grammar" / "tnc.lark").read_text()


def test_installed_wheel_works_outside_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    script = ("import tnc, pathlib; "
              "assert pathlib.Path(tnc.__file__).is_relative_to(pathlib.Path(r'%s')); "
              "net = tnc.library('peps', Lx=2, Ly=2); "
              "print(net.contract(net.random()).shape)" % target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(2, 2, 2, 2)"
