"""Options and helpers shared by the subcommands (sizes, network choice, loading).

    >>> parse_size("N=6")
    ('N', 6)
"""
from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

from tnc.lang.compiler import compile_all, library_names, library_source
from tnc.errors import TncError


def parse_size(text: str) -> tuple[str, int]:
    """``"N=6"`` -> ``("N", 6)``; argparse turns the error into a usage message."""
    name, sep, value = text.partition("=")
    name = name.strip()
    try:
        number = int(value)
    except ValueError:
        number = None
    if not sep or not name.isidentifier() or number is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=INTEGER (for example --size N=6)")
    return name, number


def add_network_options(parser: argparse.ArgumentParser, file_help: str = "") -> None:
    parser.add_argument("file", metavar="FILE", help=file_help or "a .tn file, or the name of "
                        "a built-in network (" + ", ".join(library_names()) + ")")
    parser.add_argument("--size", "-s", metavar="NAME=N", type=parse_size, action="append",
                        default=[], help="override a size parameter of the header; repeat "
                        "for several (--size N=6 --size r=4)")
    parser.add_argument("--name", "-n", metavar="NETWORK",
                        help="use only this network of the file")


def add_optimize_option(parser: argparse.ArgumentParser) -> None:
    from tnc.engine.plan import OPTIMIZERS
    parser.add_argument("--optimize", "-O", default="auto", choices=OPTIMIZERS,
                        metavar="OPTIMIZER", help="contraction path optimizer: "
                        + ", ".join(OPTIMIZERS) + " (default: auto)")


def load_networks(args) -> dict:
    """The networks of ``args.file`` with ``--size`` applied, narrowed by ``--name``."""
    source = args.file
    if not Path(source).exists() and source in library_names():
        source = library_source(source)
    networks = compile_all(source, filename=args.file, **dict(args.size))
    if args.name is None:
        return networks
    if args.name not in networks:
        raise TncError(f"{args.file} has no network `{args.name}`; it declares "
                       + ", ".join(networks))
    return {args.name: networks[args.name]}


def load_one(args):
    """The single network the command works on (``--name`` when the file has several)."""
    networks = load_networks(args)
    if len(networks) > 1:
        raise TncError(f"{args.file} declares networks {', '.join(networks)}; "
                       "pick one with --name")
    return next(iter(networks.values()))


def read_arrays(path, what: str):
    """The array of an ``.npy``, or name -> array of an ``.npz``, read whole; any file numpy
    cannot read (empty, cut short, not numpy, pickled) is one :class:`TncError`,
    ``cannot read {what} {path}: ...`` (``what``: "the data", "tensors from")."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except EOFError:
        raise TncError(f"cannot read {what} {str(path)!r}: the file is empty or cut "
                       "short") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise TncError(f"cannot read {what} {str(path)!r}: {error}") from None


def open_on_disk(path, dataset: str | None = None, stack=None):
    """The array of a file kept on disk, for fits that stream it: an ``.npy`` memory-mapped
    (``np.load(mmap_mode="r")``), a zarr array (or the array ``dataset`` of a zarr group),
    an HDF5 file's dataset ``dataset`` (or its only one; the file closed by the
    ``contextlib.ExitStack`` ``stack`` when given). A missing or wrong ``dataset`` is a
    :class:`TncError` naming the arrays the file holds."""
    lower = str(path).lower().rstrip("/")
    if not Path(path).exists():
        raise TncError(f"cannot read the data {str(path)!r}: no such file or directory")
    if lower.endswith(".npy"):
        if dataset is not None:
            raise TncError(f"--dataset names an array of a .h5 file or zarr group; "
                           f"{path} is one .npy array")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except EOFError:
            raise TncError(f"cannot read the data {str(path)!r}: the file is empty or cut "
                           "short") from None
        except (OSError, ValueError) as error:
            raise TncError(f"cannot read the data {str(path)!r}: {error}") from None
    if lower.endswith(".zarr"):
        return _zarr_array(path, dataset)
    return _h5_dataset(path, dataset, stack)


def _zarr_array(path, dataset):
    zarr = _optional("zarr", path)
    try:
        opened = zarr.open(str(path), mode="r")
    except Exception as error:     # zarr raises its own errors for a store it cannot read
        raise TncError(f"cannot read the zarr data {str(path)!r}: {error}") from None
    if not hasattr(opened, "shape"):
        names = sorted(name for name, item in opened.members() if hasattr(item, "shape"))
        return _pick_member(path, dataset, names, lambda name: opened[name], "a zarr group")
    if dataset is not None:
        raise TncError(f"{path} is one zarr array; drop --dataset {dataset}")
    return opened


def _h5_dataset(path, dataset, stack):
    h5py = _optional("h5py", path)
    try:
        file = h5py.File(str(path), "r")
    except OSError as error:
        raise TncError(f"cannot read the HDF5 data {str(path)!r}: {error}") from None
    if stack is not None:
        stack.callback(file.close)
    names = []
    file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset)
                    else None)
    return _pick_member(path, dataset, sorted(names), lambda name: file[name], "an HDF5 file")


def _pick_member(path, dataset, names: list, get, what: str):
    listed = ", ".join(names) or "none"
    if dataset is None:
        if len(names) == 1:
            return get(names[0])
        raise TncError(f"{path} is {what} holding {len(names)} arrays ({listed}); pick one "
                       "with --dataset NAME")
    if dataset not in names:
        raise TncError(f"{path} has no dataset {dataset!r}; the {what.split(' ', 1)[1]} holds: "
                       f"{listed}")
    return get(dataset)


def _optional(package: str, path):
    import importlib
    try:
        return importlib.import_module(package)
    except ImportError:
        raise TncError(f"reading {path} needs the optional {package} package: pip install "
                       f"'tnc[scale]'") from None
