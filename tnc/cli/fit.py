"""``tnc fit MODEL DATA.npy --method als [--size R=5] [--option key=value] -o result.npz``.

Method-agnostic: ``--method`` is passed to :func:`tnc.fit` and every
``--option KEY=VALUE`` (VALUE a Python literal) becomes one of that method's
options. Progress goes to stderr, the summary to stdout.

    >>> parse_option("max_sweeps=50"), parse_option("nonneg=['A']"), parse_option("init=svd")
    (('max_sweeps', 50), ('nonneg', ['A']), ('init', 'svd'))
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from ..compiler import library_names, library_source
from ..errors import TncError
from ._common import parse_size

HELP = "fit a network to a data tensor (ALS, GCP, ...) and save the result"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit", help=HELP, description=HELP.capitalize() + ". Size parameters the data fixes "
        "(the output sizes) are read off its shape; give the others with --size.",
        epilog="example: tnc fit cp.tn x.npy --method als --size R=5 "
               "--option max_sweeps=200 -o fit.npz")
    parser.add_argument("model", metavar="MODEL",
                        help="a .tn file or a built-in network (" + ", ".join(library_names())
                        + ")")
    parser.add_argument("data", metavar="DATA", help="the data tensor (.npy, or .npz with one "
                        "array, or sparse: .npz with arrays coords (nnz x ndim), values, shape)")
    parser.add_argument("--method", "-m", default="als", help="fitting method (default: als)")
    parser.add_argument("--size", "-s", metavar="NAME=N", type=parse_size, action="append",
                        default=[], help="a size parameter, e.g. the rank (--size R=5)")
    parser.add_argument("--name", "-n", metavar="NETWORK", help="the network of the file to fit")
    parser.add_argument("--loss", metavar="LOSS", help="elementwise loss of --method gcp: "
                        "gaussian, poisson, bernoulli_logit, huber(0.25), "
                        "negative_binomial(r=5), ... (the same as --option loss=LOSS)")
    parser.add_argument("--mask", metavar="MASK", help="boolean .npy (True = observed), or "
                        "'nan' to treat NaN entries as missing")
    parser.add_argument("--option", "-x", metavar="KEY=VALUE", type=parse_option,
                        action="append", default=[], help="a method option as a Python "
                        "literal; repeat for several (--option max_sweeps=100 --option tol=1e-8)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--output", "-o", metavar="NPZ", help="save the result here (.npz)")
    parser.set_defaults(run=run)


def parse_option(text: str) -> tuple[str, object]:
    """``"tol=1e-8"`` -> ``("tol", 1e-08)``; a value that is not a literal stays a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (for example max_sweeps=100)")
    try:
        return key, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key, value.strip()


def load_array(path: str, what: str) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise TncError(f"cannot read the {what} {path!r}: {error}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if len(loaded.files) != 1:
                raise TncError(f"{path} holds {len(loaded.files)} arrays "
                               f"({', '.join(loaded.files)}); save the {what} alone (np.save)")
            loaded = loaded[loaded.files[0]]
    return loaded


def load_data(path: str):
    """The data array, or a :class:`~tnc.sparse.SparseTensor` from an .npz of coords/values/shape."""
    if zipfile.is_zipfile(path):
        with np.load(path, allow_pickle=False) as loaded:
            if set(loaded.files) == {"coords", "values", "shape"}:
                from ..sparse import SparseTensor
                return SparseTensor.from_coo(loaded["coords"], loaded["values"], loaded["shape"])
    return load_array(path, "data")


def run(args) -> int:
    from .. import fit, fit_options
    model = args.model
    if not Path(model).exists() and model in library_names():
        model = library_source(model)
    data = load_data(args.data)
    mask = args.mask if args.mask in (None, "nan") else load_array(args.mask, "mask")
    options = dict(args.option)
    if args.loss is not None:
        options["loss"] = args.loss
    fields = {f.name for f in dataclasses.fields(fit_options(args.method))}
    if "progress" in fields:
        options.setdefault("progress", not args.quiet)
    result = fit(model, data, method=args.method, mask=mask, name=args.name,
                 sizes=dict(args.size), **options)
    print(result.summary())
    last = result.history[-1] if result.history else {}
    if last.get("rel_error") is not None:
        print(f"final relative error {last['rel_error']:.6g} after {result.iterations} sweeps "
              f"in {result.wall_time:.3g} s")
    if args.output:
        result.save(args.output)
        print(f"wrote {args.output}")
    return 0
