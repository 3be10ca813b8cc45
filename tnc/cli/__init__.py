"""The ``tnc`` command line: one module per subcommand.

Each name in :data:`COMMANDS` is a module ``tnc/cli/<name>.py`` exposing
``register(subparsers)``, which adds its parser and sets ``run=function(args) -> int``,
and a one-line ``HELP`` (copied into :data:`COMMANDS`, so that ``tnc --help`` and
``tnc`` alone list the commands without importing them: no numpy, no lark). Only the
command named on the line is imported. Adding a subcommand is adding a module and its
line here.

    >>> main(["show", "--help"]) == 0   # doctest: +ELLIPSIS
    usage: tnc show ...
    True
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tnc.errors import TncError

COMMANDS = {
    "show": "print networks: tensors, indices, einsum equation, contraction path and cost",
    "draw": "draw a network as a diagram (tensors as nodes, legs as edges)",
    "contract": "contract a network with arrays saved in an .npz file",
    "fit": "fit a network to a data tensor (ALS, GCP, ...) and save the result",
}

DESCRIPTION = """\
tnc: a tensor-network expression compiler.

Write a network in the tnc language (a .tn file), then inspect, draw,
contract or fit it from the shell:

  tnc show peps.tn --size Lx=4 --size Ly=4     tensors, indices, equation, path, cost
  tnc draw tt.tn -o tt.png                     a diagram of the network
  tnc contract cp.tn --tensors t.npz -o x.npy  contract saved arrays
  tnc fit cp.tn x.npy --size R=5 -o fit.npz    fit a network to a data tensor
  tnc fit m.tn --data T1=a.npy --data T2=b.npy fit a model block (shared tensors)
  tnc show fit.npz                             summarise a saved fit result
"""


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser with the full options of the command ``argv`` names (its module imported)
    and a one-line entry for every other command; ``argv=None``: all commands in full."""
    chosen = set(COMMANDS) if argv is None else {command_named(argv)}
    parser = argparse.ArgumentParser(
        prog="tnc", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `tnc COMMAND --help` for the options of one command.")
    from tnc import __version__
    parser.add_argument("--version", action="version", version=f"tnc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        if name in chosen:
            importlib.import_module(f"{__name__}.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=text)
    return parser


def command_named(argv) -> str | None:
    """The subcommand in ``argv``: its first word not starting with ``-`` (the top-level
    options, --help and --version, take no value).

    >>> command_named(["--version"]), command_named(["fit", "cp.tn", "-o", "x.npz"])
    (None, 'fit')
    """
    return next((word for word in argv if not word.startswith("-")), None)


def parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, except that a command's optional last positional
    (named by its ``late_positional`` default) may also come after the options:
    argparse gives an optional positional nothing once an option follows the first one
    (``tnc fit cp.tn --size R=5 x.npy``)."""
    args, extra = parser.parse_known_args(argv)
    late = getattr(args, "late_positional", None)
    if extra and late and getattr(args, late) is None and len(extra) == 1 \
            and not extra[0].startswith("-"):
        setattr(args, late, extra[0])
    elif extra:
        parser.parse_args(argv)            # argparse's own message for what is left over
    return args


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Errors in the user's input print a message on stderr and return 2.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parse(parser, argv)
        return int(args.run(args) or 0)
    except SystemExit as stop:          # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    except TncError as error:
        print(f"tnc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:             # `tnc show ... | head`
        return 0
    except OSError as error:            # unreadable input, unwritable output
        print(f"tnc {args.command}: error: {error}", file=sys.stderr)
        return 2
