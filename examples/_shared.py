"""What the research examples share: the tnc import from a checkout, flags, and pyplot.

Each example runs as ``python examples/<name>.py [--quick] [--out DIR]``; the
smoke tests call ``main(["--quick", "--out", tmpdir])`` instead.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import tnc  # noqa: F401
except ImportError:   # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def example_parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """A parser with the flags every example takes: ``--quick``, ``--out``, ``--seed``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", type=Path, default=Path("tnc_examples_out"),
                        help="folder for the plot (default ./tnc_examples_out)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
