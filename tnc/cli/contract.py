"""``tnc contract FILE --tensors t.npz [-o out.npy]``: contract saved arrays.

The ``.npz`` holds one array per tensor name (``np.savez("t.npz", **tensors)``);
the arrays of a saved fit result (``tensor:NAME`` / ``input:NAME``) work too.
"""
from __future__ import annotations

import numpy as np

from tnc.errors import TensorError
from tnc.cli._common import add_network_options, add_optimize_option, load_one, read_arrays

HELP = "contract a network with arrays saved in an .npz file"
PREFIXES = ("tensor:", "input:")


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
    value = np.asarray(net.contract(tensors, optimize=args.optimize))
    if args.output:
        np.save(args.output, value)
        print(f"wrote {args.output}: shape {value.shape}, dtype {value.dtype}")
    else:
        print(f"network {net.name}: output ({', '.join(net.output)}) shape {value.shape}")
        print(np.array2string(value, threshold=200))
    return 0
