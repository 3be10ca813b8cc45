"""``tnc fit MODEL DATA.npy --method als [--size R=5] [--option key=value] -o result.npz``.

Method-agnostic: ``--method`` is passed to :func:`tnc.fit` and every
``--option KEY=VALUE`` (VALUE a Python literal) becomes one of that method's
options. Progress goes to stderr, the summary to stdout.

A ``model`` block (several networks sharing tensors, each fitted to its own
data set) is fitted by :func:`tnc.fit_model` when its data sets are given by
name: ``tnc fit MODEL.tn [--model NAME] --data T1=a.npy --data T2=b.npy
[--method als|gcp] [--set lambda=0.5] -o result.npz``.

    >>> parse_option("max_iter=50"), parse_option("nonneg=['A']"), parse_option("init=svd")
    (('max_iter', 50), ('nonneg', ['A']), ('init', 'svd'))
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
from pathlib import Path

import numpy as np

from tnc.lang.compiler import library_names, library_source
from tnc.errors import TncError
from tnc.cli._common import open_on_disk, parse_size, read_arrays

HELP = "fit a network to a data tensor (ALS, GCP, ...) and save the result"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fit", help=HELP, description=HELP.capitalize() + ". Size parameters the data fixes "
        "(the output sizes) are read off its shape; give the others with --size.",
        epilog="example: tnc fit cp.tn x.npy --method als --size R=5 "
               "--option max_iter=200 -o fit.npz; of a model block: tnc fit linked.tn "
               "--model linked --data T1=x1.npy --data T2=x2.npy --set lambda=0.5 "
               "-o linked.npz")
    parser.add_argument("model", metavar="MODEL",
                        help="a .tn file or a built-in network (" + ", ".join(library_names())
                        + ")")
    parser.add_argument("data", metavar="DATA", nargs="?", help="the data tensor (.npy, read "
                        "memory-mapped so ALS streams it; .npz with one array; a zarr array "
                        "(.zarr); an HDF5 file (.h5, .hdf5) with --dataset; or sparse: .npz with "
                        "arrays coords (nnz x ndim), values, shape, or a FROSTT .tns text file)")
    parser.add_argument("--dataset", metavar="NAME", help="the array of a .h5 file or a zarr "
                        "group to fit (needed when it holds several)")
    model = parser.add_argument_group(
        "model blocks", "fit a `model` block of the file (networks sharing tensors, each fitted "
        "to its own data set) instead of one network; --method als or gcp, --option takes "
        "tnc.fitting.coupled.CoupledOptions (max_iter, tol, tv_smoothing, ...)")
    model.add_argument("--model", dest="model_block", metavar="BLOCK",
                       help="the model block to fit (needed when the file has several)")
    model.add_argument("--data", "-d", dest="named_data", metavar="NAME=FILE",
                       type=parse_named, action="append", default=[],
                       help="the data set NAME of the model (a file as for DATA); one per "
                       "`fit NETWORK to NAME` of the block")
    model.add_argument("--set", dest="settings", metavar="PARAM=VALUE", type=parse_setting,
                       action="append", default=[], help="a value for a parameter of the "
                       "block's header, e.g. --set lambda=0.5 for `model m(lambda = 0.1)`")
    parser.add_argument("--method", "-m", default="als", help="fitting method (default: als)")
    parser.add_argument("--size", "-s", metavar="NAME=N", type=parse_size, action="append",
                        default=[], help="a size parameter, e.g. the rank (--size R=5)")
    parser.add_argument("--name", "-n", metavar="NETWORK", help="the network of the file to fit")
    parser.add_argument("--loss", metavar="LOSS", help="elementwise loss of --method gcp: "
                        "gaussian, poisson, bernoulli_logit, huber(0.25), "
                        "negative_binomial(r=5), ... (the same as --option loss=LOSS)")
    parser.add_argument("--mask", metavar="MASK", action="append", default=[],
                        help="boolean .npy (True = observed), or 'nan' to treat NaN entries as "
                        "missing; for a model, NAME=MASK per data set (or 'nan' for all)")
    parser.add_argument("--option", "-x", metavar="KEY=VALUE", type=parse_option,
                        action="append", default=[], help="a method option as a Python "
                        "literal; repeat for several (--option max_iter=100 --option tol=1e-8)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--output", "-o", metavar="NPZ", help="save the result here (.npz)")
    parser.set_defaults(run=run, late_positional="data")


def parse_option(text: str) -> tuple[str, object]:
    """``"tol=1e-8"`` -> ``("tol", 1e-08)``; a value that is not a literal stays a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (for example max_iter=100)")
    try:
        return key, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key, value.strip()


def parse_named(text: str) -> tuple[str, str]:
    """``"T1=a.npy"`` -> ``("T1", "a.npy")``."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FILE (for example T1=x.npy)")
    return name, value


def parse_setting(text: str) -> tuple[str, float]:
    """``"lambda=0.5"`` -> ``("lambda", 0.5)``."""
    name, value = parse_named(text)
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not PARAM=NUMBER (for example "
                                         "lambda=0.5)") from None


def load_array(path: str, what: str, loaded=None) -> np.ndarray:
    """The one array of an ``.npy`` (or of an ``.npz`` holding one) at ``path``."""
    loaded = read_arrays(path, f"the {what}") if loaded is None else loaded
    if isinstance(loaded, dict):
        if len(loaded) != 1:
            raise TncError(f"{path} holds {len(loaded)} arrays ({', '.join(loaded)}); save the "
                           f"{what} alone (np.save)")
        loaded = next(iter(loaded.values()))
    return loaded


def load_data(path: str, dataset: str | None = None, stack=None):
    """The data array, or a :class:`~tnc.engine.sparse.SparseTensor` from an .npz of
    coords/values/shape or a FROSTT ``.tns`` text file (1-based coordinates, then the value).

    Out-of-core files stay on disk (:func:`tnc.cli._common.open_on_disk`): an ``.npy``
    memory-mapped, a zarr array, an HDF5 dataset (``dataset``: its name; the file is
    closed by the ``contextlib.ExitStack`` ``stack``)."""
    lower = str(path).lower().rstrip("/")
    if lower.endswith(".tns"):
        from tnc.engine.tns import read_tns
        return read_tns(path)
    if lower.endswith((".npy", ".zarr", ".h5", ".hdf5")):
        return open_on_disk(path, dataset, stack)
    loaded = read_arrays(path, "the data")
    if isinstance(loaded, dict) and set(loaded) == {"coords", "values", "shape"}:
        from tnc.engine.sparse import SparseTensor
        return SparseTensor.from_coo(loaded["coords"], loaded["values"], loaded["shape"])
    return load_array(path, "data", loaded)


def run(args) -> int:
    if args.model_block or args.named_data or args.settings:
        return run_model(args)
    if args.data is None:
        raise TncError("give the data: DATA for a network, or --data NAME=FILE for each data "
                       "set of a model block")
    if len(args.mask) > 1:
        raise TncError("one network takes one --mask")
    model = args.model
    if not Path(model).exists() and model in library_names():
        model = library_source(model)
    with contextlib.ExitStack() as stack:
        data = load_data(args.data, args.dataset, stack)
        result = _fit_one(args, model, data)
    return report(result, args.output, "iterations")


def _fit_one(args, model, data):
    from tnc import fit, fit_options
    mask = next(iter(args.mask), None)
    mask = mask if mask in (None, "nan") else load_array(mask, "mask")
    options = dict(args.option)
    if args.loss is not None:
        options["loss"] = args.loss
    fields = {f.name for f in dataclasses.fields(fit_options(args.method))}
    if "progress" in fields:
        options.setdefault("progress", not args.quiet)
    return fit(model, data, method=args.method, mask=mask, name=args.name,
               sizes=dict(args.size), **options)


def run_model(args) -> int:
    """Fit the model block chosen by ``--model`` to the ``--data`` sets."""
    from tnc.fitting.coupled import CoupledOptions, fit_model
    for given, what in ((args.data, "DATA"), (args.name, "--name"), (args.loss, "--loss")):
        if given is not None:
            raise TncError(f"a model block takes its data sets as --data NAME=FILE and declares "
                           f"its networks and losses itself; drop {what}")
    block = pick_block(args.model, args.model_block)
    data = dict_of(args.named_data, "--data", load_data)
    masks = model_masks(args.mask, list(data))
    options = dict(args.option)
    if "progress" in {f.name for f in dataclasses.fields(CoupledOptions)}:
        options.setdefault("progress", not args.quiet)
    result = fit_model(args.model, data, method=args.method, mask=masks, name=block,
                       sizes=dict(args.size), settings=dict(args.settings), **options)
    errors = result.history[-1].get("rel_errors", {}) if result.history else {}
    return report(result, args.output, "iterations",
                  [f"  {name}: relative error {error:.6g}" for name, error in errors.items()])


def pick_block(path: str, name: str | None) -> str:
    """The model block of the file at ``path`` to fit: ``name``, or its only one."""
    from tnc.lang.compiler import read_source
    from tnc.lang.parser import parse
    text, filename = read_source(path)
    blocks = [m.name for m in parse(text, filename).models]
    if not blocks:
        raise TncError(f"{path} declares no model block; fit one network with DATA, or add "
                       "`model NAME { fit NETWORK to DATA ... }`")
    if name is None and len(blocks) > 1:
        raise TncError(f"{path} declares model blocks {', '.join(blocks)}; pick one with --model")
    if name is not None and name not in blocks:
        raise TncError(f"{path} has no model block `{name}`; it declares {', '.join(blocks)}")
    return name or blocks[0]


def dict_of(pairs, option: str, load=None) -> dict:
    """``NAME=VALUE`` pairs of a repeated option as a dict (each name once), values loaded."""
    named: dict = {}
    for name, value in pairs:
        if name in named:
            raise TncError(f"{option} {name}=... is given twice")
        named[name] = value if load is None else load(value)
    return named


def model_masks(masks: list, names: list) -> dict:
    """``--mask`` of a model: ``nan`` for every data set, or ``NAME=nan|FILE`` each."""
    if masks == ["nan"]:
        return {name: "nan" for name in names}
    pairs = []
    for text in masks:
        try:
            pairs.append(parse_named(text))
        except argparse.ArgumentTypeError:
            raise TncError(f"--mask {text!r}: a model's masks are NAME=FILE or NAME=nan, or "
                           "one --mask nan for all its data sets") from None
    return {name: value if value == "nan" else load_array(value, "mask")
            for name, value in dict_of(pairs, "--mask").items()}


def report(result, output, steps: str, details=()) -> int:
    """Print the summary, final error and ``details`` lines of ``result``; save it to ``output``."""
    print(result.summary())
    last = result.history[-1] if result.history else {}
    if last.get("rel_error") is not None:     # (the summary says how the start was chosen)
        print(f"final relative error {last['rel_error']:.6g} after {result.iterations} {steps}"
              f" in {result.wall_time:.3g} s")
    for line in details:
        print(line)
    if output:
        result.save(output)
        print(f"wrote {output}")
    return 0
