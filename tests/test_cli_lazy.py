"""`tnc --help` and `tnc` alone list the commands without importing numpy or lark."""
import importlib
import subprocess
import sys

import pytest

from tnc.cli import COMMANDS

PROBE = ("import sys\nfrom tnc.cli import main\ncode = main({argv!r})\n"
         "print(code, sorted(m for m in ('numpy', 'lark', 'opt_einsum') if m in sys.modules))")


@pytest.mark.parametrize("argv", [["--help"], [], ["--version"]])
def test_top_level_help_imports_no_numpy_or_lark(argv):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                          text=True, timeout=60)
    code, heavy = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert heavy == "[]", f"tnc {' '.join(argv)} imported {heavy}"
    assert int(code) == (2 if not argv else 0)


def test_python_dash_m_tnc_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "tnc", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_the_help_table_matches_each_command_module(name):
    assert COMMANDS[name] == importlib.import_module(f"tnc.cli.{name}").HELP


def test_a_command_still_gets_its_full_options(capsys):
    from tnc.cli import main
    assert main(["fit", "--help"]) == 0
    assert "--size" in capsys.readouterr().out
