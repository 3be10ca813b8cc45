"""``tnc contract FILE --tensors t.npz [-o out.npy]``: contract saved arrays.

The ``.npz`` holds one array per tensor name (``np.savez("t.npz", **tensors)``);
the arrays of a saved fit result (``tensor:NAME`` / ``input:NAME``) work too.
"""
from __future__ import annotations

import numpy as np

import argparse
import re

from tnc.errors import TensorError
from tnc.cli._common import add_network_options, add_optimize_option, load_one, read_arrays

HELP = "contract a network with arrays saved in an .npz file"
PREFIXES = ("tensor:", "input:")
UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
         "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_bytes(text: str):
    """``"1GB"`` (10**9), ``"512MiB"`` (2**29), ``"4e9"``, ``"auto"`` or ``"none"`` as
    ``memory_limit`` takes it.

    >>> parse_bytes("1GB"), parse_bytes("1.5 KiB"), parse_bytes("auto"), parse_bytes("none")
    (1000000000, 1536, 'auto', None)
    """
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount of memory; write e.g. 1GB, 512MiB, 4e9, auto or none")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def add_memory_option(parser, default, what: str) -> None:
    """``--memory-limit``: over it the contraction is sliced (tnc.engine.slicing)."""
    parser.add_argument("--memory-limit", type=parse_bytes, default=default, metavar="BYTES",
                        help=f"{what} (1GB = 10**9 bytes, 1GiB = 2**30, auto: 90%% of the "
                        f"available memory, none: no limit; default {default})")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "contract", help=HELP, description=HELP.capitalize() + ". Every param and data "
        "tensor of the network must be in the file, stored under its name "
        "(np.savez('t.npz', **{'A': a, 'B': b})).",
        epilog="example: tnc contract cp.tn --size R=3 --tensors t.npz -o x.npy")
    add_network_options(parser)
    add_optimize_option(parser)
    parser.add_argument("--tensors", "-t", metavar="NPZ", required=True,
                        help=".npz file with one array per tensor name")
    parser.add_argument("--output", "-o", metavar="NPY",
                        help="write the result here (.npy); without it the result is printed")
    add_memory_option(parser, "auto", "a contraction whose intermediates would exceed this is "
                      "sliced: contracted a slice of some indices at a time and summed")
    parser.set_defaults(run=run)


def load_tensors(path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` by tensor name (fit-result prefixes removed)."""
    arrays = read_arrays(path, "tensors from")
    if not isinstance(arrays, dict):
        raise TensorError(f"{path} holds a single array; save the tensors by name with "
                          "np.savez('t.npz', A=a, B=b)")
    tensors = {}
    for key, array in arrays.items():
        name = next((key[len(p):] for p in PREFIXES if key.startswith(p)), key)
        if key != "__meta__":
            tensors[name] = array
    return tensors


def run(args) -> int:
    net = load_one(args)
    tensors = load_tensors(args.tensors)
    if args.memory_limit is not None:
        cost = net.cost(args.optimize, memory_limit=args.memory_limit)
        if getattr(cost, "sliced", ()):
            print(f"network {net.name}: {cost}")
    value = np.asarray(net.contract(tensors, optimize=args.optimize,
                                    memory_limit=args.memory_limit))
    if args.output:
        np.save(args.output, value)
        print(f"wrote {args.output}: shape {value.shape}, dtype {value.dtype}")
    else:
        print(f"network {net.name}: output ({', '.join(net.output)}) shape {value.shape}")
        print(np.array2string(value, threshold=200))
    return 0
