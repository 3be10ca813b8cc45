"""FitResult: what a fit returns, saved and loaded with its network's source.

    >>> import numpy as np, tnc, tempfile, os
    >>> net = tnc.library("cp", I=3, J=4, K=5, R=2)
    >>> result = FitResult(net, net.random(), "als", [{"loss": 1.0}], True, 1, 0.1)
    >>> path = os.path.join(tempfile.mkdtemp(), "fit.npz")
    >>> result.save(path)
    >>> load_result(path).reconstruct().shape
    (3, 4, 5)
"""
from __future__ import annotations

import json
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from tnc.errors import TncError
from tnc.engine.network import Network
from tnc.engine.plan import check_allocation
from tnc.fitting.records import records

FORMAT_VERSION = 1


@dataclass
class Result:
    """The base of every result tnc's fronts return: :class:`FitResult` (:func:`tnc.fit`),
    :class:`~tnc.fitting.coupled.CoupledResult`, :class:`~tnc.models.stratified.StratifiedResult`,
    the Born machines and the MPS classifier.

    Each subclass (a dataclass) holds ``history`` (one :func:`~tnc.fitting.records.record`
    per iteration: ``iteration`` from 1, ``loss``, ``rel_error``, ``time``, then its own),
    ``converged``, ``iterations``, ``wall_time`` and ``info`` (a dict of details); the base
    reads ``loss`` and ``rel_error`` off the last record (None without one), writes
    :meth:`summary` and the repr from them, and asks :meth:`save` of every subclass.
    Subclasses are declared ``@dataclass(repr=False)`` so that the repr stays the summary.

        >>> import tnc
        >>> net = tnc.library("cp", I=3, J=4, K=5, R=2)
        >>> r = FitResult(net, net.random(), "als", [{"loss": 2.0, "rel_error": 0.5}], True, 1, 0.1)
        >>> isinstance(r, Result), r.loss, r.rel_error
        (True, 2.0, 0.5)
        >>> r.summary()
        'als fit of network `cp`, 1 iterations, 0.1 s, converged, rel error 0.5, loss 2'
    """

    def __post_init__(self):
        self.history = records(self.history)

    @property
    def loss(self) -> float | None:
        """The last record's ``loss`` (the method's objective), None without records."""
        return self.history[-1].get("loss") if self.history else None

    @property
    def rel_error(self) -> float | None:
        """The last record's ``rel_error`` (over the observed entries), None without one."""
        return self.history[-1].get("rel_error") if self.history else None

    def title(self) -> str:
        """What was fitted, the summary's first part (subclasses say more)."""
        return type(self).__name__

    def details(self) -> list[str]:
        """The summary's parts after the common ones (subclasses add theirs)."""
        return []

    def summary(self) -> str:
        """One line: what was fitted, iterations, seconds, converged, rel error, loss."""
        parts = [self.title(), f"{self.iterations} iterations", f"{self.wall_time:.3g} s",
                 "converged" if self.converged else "not converged"]
        for key in ("rel_error", "loss"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key.replace('_', ' ')} {value:.4g}")
        return ", ".join(parts + self.details())

    def __repr__(self) -> str:
        return f"<tnc.{type(self).__name__} {self.summary()}>"

    def save(self, path) -> None:
        """Write the result to an ``.npz`` archive (:func:`tnc.load` reads it back)."""
        raise TncError(f"a {type(self).__name__} cannot be saved")


LastSweep = Result     # the base's name before the result family (tnc < 0.2)


@dataclass(repr=False)
class TrainedModel(Result):
    """A result that is itself the trained model (the Born machines, the MPS classifier):
    ``iterations`` counts its history's records."""

    @property
    def iterations(self) -> int:
        """Sweeps or steps made (one history record each)."""
        return len(self.history)


@dataclass(repr=False)     # the repr is the base's: the summary
class FitResult(Result):
    """A fitted network.

    ``tensors``: fitted parameter arrays by name; ``history``: one record per
    iteration (ALS or DMRG sweep, L-BFGS iteration, Adam epoch: ``iteration``
    from 1, ``loss``, ``rel_error`` over the observed entries, ``time``, then
    method-specific entries such as bond dimensions; :mod:`tnc.fitting.records`);
    ``converged``: whether the stopping test was met (not just
    the sweep budget spent); ``inputs``: the network's data tensors used in the fit;
    ``info``: method-specific details (JSON-serialisable).
    """

    network: Network
    tensors: dict[str, np.ndarray]
    method: str
    history: list[dict]
    converged: bool
    iterations: int
    wall_time: float
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def reconstruct(self, optimize="auto") -> np.ndarray:
        """The fitted network contracted to a dense array of the output's shape."""
        return self.network.contract({**self.tensors, **self.inputs}, optimize=optimize)

    def title(self) -> str:
        return f"{self.method} fit of network `{self.network.name}`"

    def details(self) -> list[str]:
        screened = self.info.get("screened")    # ALS init="auto": iterations after the screen
        parts = [f"after the best of {len(screened)} screened starts"] if screened else []
        degenerate = self.info.get("degenerate")     # cancelling CP terms (fitting.degenerate)
        if degenerate:
            parts.append("degenerate: terms {} and {} cancel (congruence {:.3f})".format(
                *degenerate["terms"], degenerate["congruence"]))
        if self.info.get("max_truncation_error") is None:
            return parts
        return parts + [f"truncation error {self.info['max_truncation_error']:.3g}"   # DMRG
                        + (" (bond-limited)" if self.info.get("bond_limited") else "")]

    def save(self, path) -> None:
        """Write an ``.npz`` holding the arrays and, as JSON, the network source and history."""
        if self.network.source is None:
            raise TncError("this network was not compiled from text, so it cannot be saved")
        meta = {"format": FORMAT_VERSION, "source": self.network.source,
                "filename": self.network.filename, "name": self.network.name,
                "sizes": self.network.sizes, "method": self.method,
                "history": self.history, "converged": self.converged,
                "iterations": self.iterations, "wall_time": self.wall_time, "info": self.info}
        write_archive(path, meta, {"tensor": self.tensors, "input": self.inputs})


def write_archive(path, meta: dict, groups: dict[str, dict]) -> None:
    """An ``.npz`` with ``meta`` as JSON and each group's arrays under ``"group:name"``."""
    arrays = {f"{group}:{name}": np.asarray(value)
              for group, named in groups.items() for name, value in named.items()}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, __meta__=np.array(json.dumps(_jsonable(meta))), **arrays)


# what reading a damaged or foreign file can raise, from zipfile, zlib, numpy's .npy
# reader and json: each one means "not a tnc result archive"
_DAMAGE = (zipfile.BadZipFile, zlib.error, struct.error, tokenize.TokenError, EOFError,
           ValueError, KeyError, IndexError, TypeError, OverflowError, NotImplementedError,
           MemoryError, SyntaxError, RuntimeError)   # RuntimeError: "encrypted" zip flags


def read_archive(path, kind: str | None = None, fields: dict | None = None,
                 arrays: bool = True) -> tuple[dict, dict[str, dict]]:
    """``(meta, {group: {name: array}})`` of a file written by :func:`write_archive`.

    Data only: arrays without pickles, meta as JSON. Any file that is not such an
    archive (truncated, bit-flipped, foreign, not a zip) is a :class:`TncError`
    "not a tnc result archive: <why>". ``meta`` is checked to be an object with a
    known ``format`` and a string ``kind``; with ``kind`` it must be of that kind
    (:func:`expect_kind`) and hold the fields every result has plus ``fields``
    (name -> :class:`Field`), each of its type. ``arrays=False`` reads the meta
    only (the groups come back empty), e.g. to learn an archive's kind.
    """
    try:
        handle = open(Path(path), "rb")
    except OSError as error:
        raise TncError(f"{path}: cannot read ({error.strerror or error})") from None
    with handle:
        if handle.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise damaged(path, "not an .npz (zip) file")
        handle.seek(0)
        try:
            with np.load(handle, allow_pickle=False) as archive:
                check_allocation(sum(item.file_size for item in archive.zip.infolist()),
                                 f"reading {path}")         # a zip bomb stops here
                meta, groups = _meta(archive), _groups(archive) if arrays else {}
        except (OSError, *_DAMAGE) as error:    # OSError here: seeks a broken zip asks for
            raise damaged(path, f"{type(error).__name__}: {error}") from None
    check_fields(meta, {"format": FORMAT, "kind": Field(_is_text, "a string", optional=True)},
                 path)
    if kind is not None:
        expect_kind(meta, path, kind)
        check_fields(meta, {**RESULT_FIELDS, **(fields or {})}, path)
    return meta, groups


def damaged(path, why: str) -> TncError:
    """The error for a file that is not (or no longer) a tnc result archive, on one line."""
    why = " ".join(str(why).split())
    return TncError(f"{path}: not a tnc result archive: {why[:300]}")


def _meta(archive) -> dict:
    if "__meta__" not in archive.files:
        raise KeyError("no __meta__ entry")
    raw = archive["__meta__"]
    if raw.dtype.kind != "U" or raw.shape != ():
        raise ValueError(f"__meta__ is a {raw.dtype} array of shape {raw.shape}, not text")
    meta = json.loads(str(raw))
    if not isinstance(meta, dict):
        raise ValueError(f"meta is {_shown(meta)}, not an object")
    return meta


def _groups(archive) -> dict[str, dict]:
    groups: dict[str, dict] = {}
    for key in archive.files:
        if key == "__meta__":
            continue
        if ":" not in key:
            raise ValueError(f"array {key!r} is not named group:name")
        array = archive[key]
        if array.dtype.kind not in "biufc":
            raise ValueError(f"array {key!r} holds {array.dtype}, not numbers")
        group, name = key.split(":", 1)
        groups.setdefault(group, {})[name] = array
    return groups


# -- what the meta of a result archive must hold ------------------------------------

class Field(NamedTuple):
    """A meta field's rule: ``test(value)`` says whether it is ``what``."""

    test: Callable
    what: str
    optional: bool = False


def _is_text(value) -> bool:
    return isinstance(value, str)


def is_int(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_at(record: dict, keys) -> bool:
    """Whether each of ``keys`` in ``record`` is absent, null or a number."""
    return all(record.get(key) is None or is_number(record[key]) for key in keys)


def _sweep_ok(entry) -> bool:
    errors = entry.get("rel_errors") if isinstance(entry, dict) else None
    return (isinstance(entry, dict) and _numbers_at(entry, ("loss", "rel_error", "sse", "tv"))
            and (errors is None or isinstance(errors, dict) and _numbers_at(errors, errors)))


TEXT = Field(_is_text, "a string")
TEXT_OR_NULL = Field(lambda v: v is None or _is_text(v), "a string or null")
FLAG = Field(lambda v: isinstance(v, bool), "true or false")
COUNT = Field(lambda v: is_int(v) and v >= 0, "a non-negative integer")
NUMBER = Field(is_number, "a number")
TEXTS = Field(lambda v: isinstance(v, list) and all(map(_is_text, v)), "a list of strings")
SIZES = Field(lambda v: isinstance(v, dict) and all(is_int(n) and n > 0 for n in v.values()),
              "an object of positive integers")
NUMBERS = Field(lambda v: isinstance(v, dict) and all(map(is_number, v.values())),
                "an object of numbers")
OBJECT = Field(lambda v: isinstance(v, dict), "an object", optional=True)
FORMAT = Field(lambda v: is_int(v) and 1 <= v <= FORMAT_VERSION,
               f"a format number this tnc reads (1 to {FORMAT_VERSION})")
HISTORY = Field(lambda v: isinstance(v, list) and all(map(_sweep_ok, v)),
                "a list of objects whose loss and errors are numbers")
INFO = Field(lambda v: isinstance(v, dict) and _numbers_at(
    v, ("max_truncation_error", "rank_specific", "tv")), "an object", optional=True)

# the fields of every kind of result
RESULT_FIELDS = {"history": HISTORY, "converged": FLAG, "iterations": COUNT,
                 "wall_time": NUMBER, "info": INFO}


def records_of(fields: dict, what: str) -> Field:
    """A field holding a non-empty list of objects, each with ``fields``."""
    return Field(lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(item, dict) and _fields_ok(item, fields) for item in v), what)


def _fields_ok(record: dict, fields: dict) -> bool:
    return all(rule.test(record[key]) if key in record else rule.optional
               for key, rule in fields.items())


def check_fields(meta: dict, fields: dict, path) -> None:
    """Raise :func:`damaged`, naming the field, unless each of ``fields`` is in ``meta``
    (or optional) and passes its test."""
    for key, rule in fields.items():
        if key not in meta:
            if not rule.optional:
                raise damaged(path, f"meta field {key!r} is missing")
        elif not rule.test(meta[key]):
            raise damaged(path, f"meta field {key!r} must be {rule.what}, got "
                                f"{_shown(meta[key])}")


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rebuilt(path, make, what: str):
    """``make()``, a part of a saved result rebuilt; its TncError becomes :func:`damaged`
    (``what`` failed), on one line."""
    try:
        return make()
    except TncError as error:
        first = (str(error).splitlines() or [""])[0]
        raise damaged(path, f"{what}: {first}") from None


def compile_saved(path, source: str, **options) -> Network:
    """A network compiled from an archive's ``source`` as text, never as a path."""
    from tnc.lang.compiler import compile as compile_text
    return rebuilt(path, lambda: compile_text(source, allow_path=False, **options),
                   "its network source does not compile")


def check_shapes(path, expected: dict, arrays: dict) -> None:
    """Raise :func:`damaged` unless ``arrays`` are exactly the ``expected`` ones
    (name -> shape), each of its shape."""
    missing = [name for name in expected if name not in arrays]
    unknown = [name for name in arrays if name not in expected]
    if missing or unknown:
        parts = ([f"tensor(s) {', '.join(missing)} missing"] if missing else []) + (
            [f"tensor(s) {', '.join(unknown)} not in the saved model"] if unknown else [])
        raise damaged(path, "; ".join(parts))
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise damaged(path, f"tensor {name} has shape {tuple(arrays[name].shape)}, but "
                                f"the saved model needs {tuple(shape)}")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def load_result(path) -> FitResult:
    """Read a result written by :meth:`FitResult.save`; its tensors are checked against
    the network compiled from its saved source."""
    meta, groups = read_archive(path, "network", FIT_FIELDS)
    network = compile_saved(path, meta["source"], name=meta["name"], filename=meta["filename"],
                            **meta["sizes"])
    tensors, inputs = groups.get("tensor", {}), groups.get("input", {})
    check_shapes(path, network.params, tensors)
    check_shapes(path, network.data, inputs)
    return FitResult(network, tensors, meta["method"], meta["history"], meta["converged"],
                     meta["iterations"], meta["wall_time"], inputs, meta.get("info", {}))


FIT_FIELDS = {"source": TEXT, "filename": TEXT_OR_NULL, "name": TEXT, "sizes": SIZES,
              "method": TEXT}


# the loader of each kind of result archive (``meta["kind"]``; plain fits have none)
LOADERS = {"network": "tnc.load_result", "coupled": "tnc.load_coupled",
           "stratified": "tnc.models.stratified.load_stratified", "born": "tnc.load_born",
           "uniform_born": "tnc.load_born"}


def expect_kind(meta: dict, path, kind: str) -> None:
    """Raise a :class:`TncError` naming the right loader unless ``meta`` is of ``kind``.

    >>> expect_kind({"kind": "coupled"}, "r.npz", "stratified")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tnc.errors.TncError: r.npz: not a stratified fit result but a coupled one; read it with ...
    """
    found = meta.get("kind", "network")
    loader = LOADERS[found] + " (or tnc.load)" if found in LOADERS else "a newer tnc"
    if found == "coupled" and kind == "network":     # the likeliest mix-up, said plainly
        raise TncError(f"{path}: a coupled fit result; read it with {loader}")
    if found != kind:
        raise TncError(f"{path}: not a {kind} fit result but a {found} one; read it with "
                       f"{loader}")
