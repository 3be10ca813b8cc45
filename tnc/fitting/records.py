"""What every fitting front shares: its keyword names, its history records, one loader.

Every front (:func:`tnc.fit`, :func:`tnc.fit_model`, :func:`tnc.stratified_ntf`,
:func:`tnc.mps.mps_classifier.train_classifier`, :func:`tnc.ground_state`) spells
the same things the same way: ``data``, ``mask``, ``init``, ``max_iter``, ``tol``,
``seed``, ``progress``, ``callback``, ``memory_limit``. The names they used before
still work for one release, with a :class:`DeprecationWarning` (:func:`renamed`)::

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     renamed({"max_sweeps": 5, "tol": 0.0}, "demo", {"max_sweeps": "max_iter"})
    {'max_iter': 5, 'tol': 0.0}
    >>> str(caught[0].message)
    'demo: max_sweeps= is deprecated, use max_iter='

Every history entry is a :func:`record` with the same first keys (``iteration``
counting from 1, ``loss``, ``rel_error``, ``time``), then the method's own; the
callback gets the same record (plus ``tensors`` where the method has them).
:func:`load` reads any result archive tnc writes, whatever its kind.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings

from tnc.errors import TncError

# old keyword -> new keyword, for the fronts that used the old one
MAX_SWEEPS = {"max_sweeps": "max_iter"}
FIT_ALIASES = {"target": "data", **MAX_SWEEPS}
MODEL_ALIASES = {"masks": "mask"}
GROUND_STATE_ALIASES = {**MAX_SWEEPS, "initial": "init"}
CLASSIFIER_ALIASES = {"phi": "data", "sweeps": "max_iter"}
STRATIFIED_ALIASES = {"strata": "data"}
NTF_ALIASES = {"tensor": "data"}

RECORD_KEYS = ("iteration", "loss", "rel_error", "time")
OLD_KEYS = {"sweep": "iteration", "epoch": "iteration"}   # history keys before 0.2


class Record(dict):
    """A history entry (a plain dict, saved as JSON) where the keys used before the
    common names still read, with a :class:`DeprecationWarning`: ``entry["sweep"]`` and
    ``entry["epoch"]`` are ``entry["iteration"]``.

        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     Record(iteration=3, loss=1.0)["sweep"]
        3
    """

    def __missing__(self, key):
        if key in OLD_KEYS and OLD_KEYS[key] in self:
            warnings.warn(f"history key {key!r} is now {OLD_KEYS[key]!r}", DeprecationWarning,
                          stacklevel=2)
            return self[OLD_KEYS[key]]
        raise KeyError(key)


def records(history) -> list:
    """``history`` (dicts, e.g. read from an archive) as :class:`Record` entries; an
    entry made before ``iteration`` existed gets it, first, from its ``sweep`` or
    ``epoch`` (which then still reads through :class:`Record`).

        >>> records([{"sweep": 2, "loss": 1.0}])
        [{'iteration': 2, 'loss': 1.0}]
    """
    out = []
    for entry in history:
        old = next((key for key in OLD_KEYS if key in entry), None)
        if "iteration" not in entry and old is not None:
            entry = {"iteration": entry[old], **{k: v for k, v in entry.items() if k != old}}
        out.append(Record(entry))
    return out


def renamed(keywords: dict, what: str, aliases: dict) -> dict:
    """``keywords`` with each old name in ``aliases`` (old -> new) replaced by its new
    name, warning (:class:`DeprecationWarning`) once per old name used.

    Giving both spellings is a :class:`~tnc.errors.TncError` naming them. The
    warning points at the first caller outside tnc: the user's call of the front.
    """
    out = {}
    for key, value in keywords.items():
        new = aliases.get(key)
        if new is None:
            out[key] = value
            continue
        if new in keywords:
            raise TncError(f"{what}: {key}= and {new}= name the same thing; pass only {new}=")
        warnings.warn(f"{what}: {key}= is deprecated, use {new}=", DeprecationWarning,
                      stacklevel=_outside_tnc())
        out[new] = value
    return out


def _outside_tnc() -> int:
    """The ``stacklevel`` (as seen from the caller of this function) of the first frame
    whose code is not in the tnc package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def budgeted(front):
    """``front`` with a ``memory_limit=`` keyword (bytes, ``"auto"`` or None): every
    memory check the fit makes (each one's ``"auto"``) uses it
    (:func:`tnc.engine.plan.memory_budget`)."""
    @functools.wraps(front)
    def run(*args, memory_limit="auto", **keywords):
        from tnc.engine.plan import memory_budget
        with memory_budget(memory_limit):
            return front(*args, **keywords)
    return run


def given_once(value, keywords: dict, name: str, what: str):
    """``value``, a front's own parameter ``name``, or ``keywords.pop(name)`` when the
    caller passed it under its old keyword (already :func:`renamed`); a
    :class:`~tnc.errors.TncError` when both are given."""
    if name not in keywords:
        return value
    alias_value = keywords.pop(name)
    if value is not None and alias_value is not None:
        raise TncError(f"{what}: {name} is given twice (once under its old name)")
    return value if value is not None else alias_value


def spelled(keywords: dict, aliases: dict) -> dict:
    """new name -> the old name the caller wrote, for error messages (see
    :func:`tnc.options.validated`'s ``spelled``)."""
    return {new: old for old, new in aliases.items() if old in keywords}


def record(iteration: int, loss, rel_error, time: float, **own) -> dict:
    """One history entry: ``iteration`` (from 1), ``loss``, ``rel_error`` (over the
    observed entries, None where a method has no data to compare with), ``time``
    (seconds since the fit began), then the method's own keys.

        >>> record(1, 0.5, 0.1, 0.02, max_rank=4)
        {'iteration': 1, 'loss': 0.5, 'rel_error': 0.1, 'time': 0.02, 'max_rank': 4}
    """
    return Record(iteration=int(iteration), loss=None if loss is None else float(loss),
                  rel_error=None if rel_error is None else float(rel_error),
                  time=float(time), **own)


def state(entry: dict, **extra) -> dict:
    """What a callback gets: a copy of the history ``entry`` plus ``extra``
    (e.g. ``tensors``), so the callback cannot change the history."""
    return Record(entry, **extra)


# archive kind (meta["kind"]; plain fits have none, i.e. "network") -> "module:loader"
LOADERS = {"network": "tnc.fitting.result:load_result",
           "coupled": "tnc.fitting.coupled:load_coupled",
           "stratified": "tnc.models.stratified:load_stratified",
           "born": "tnc.mps.born:load_born", "uniform_born": "tnc.mps.born:load_born"}


def load(path):
    """Any result archive tnc writes (``result.save(path)``), read by the loader of the
    kind it records: a :class:`~tnc.fitting.result.FitResult`,
    :class:`~tnc.fitting.coupled.CoupledResult`,
    :class:`~tnc.models.stratified.StratifiedResult`, :class:`~tnc.mps.born.BornMachine`
    or :class:`~tnc.mps.born.UniformMPS`. A file that is no archive, or of a kind this
    tnc does not know, is a :class:`~tnc.errors.TncError`.

        >>> import tnc, tempfile, os
        >>> net = tnc.library("cp", I=3, J=4, K=5, R=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.npz")
        >>> tnc.fit(net, net.contract(net.random(seed=1)), max_iter=2, progress=False).save(path)
        >>> type(load(path)).__name__, load(path).network.output_shape
        ('FitResult', (3, 4, 5))
    """
    from tnc.fitting.result import read_archive
    meta, _ = read_archive(path, arrays=False)
    kind = meta.get("kind", "network")
    if kind not in LOADERS:
        raise TncError(f"{path}: a result archive of kind {kind!r}, which this tnc cannot "
                       f"read (it reads {', '.join(sorted(LOADERS))}); a newer tnc wrote it?")
    module, name = LOADERS[kind].split(":")
    return getattr(importlib.import_module(module), name)(path)
