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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TncError
from .network import Network

FORMAT_VERSION = 1


class LastSweep:
    """``loss`` and ``rel_error`` of the last entry of a result's ``history``."""

    history: list[dict]

    @property
    def loss(self) -> float | None:
        return self.history[-1].get("loss") if self.history else None

    @property
    def rel_error(self) -> float | None:
        return self.history[-1].get("rel_error") if self.history else None


@dataclass
class FitResult(LastSweep):
    """A fitted network.

    ``tensors``: fitted parameter arrays by name; ``history``: one dict per
    sweep (``loss``, ``rel_error``, ``time`` and method-specific entries such as
    bond dimensions); ``converged``: whether the stopping test was met (not just
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

    def summary(self) -> str:
        last = self.history[-1] if self.history else {}
        parts = [f"{self.method} fit of network `{self.network.name}`",
                 f"{self.iterations} sweeps", f"{self.wall_time:.3g} s",
                 "converged" if self.converged else "not converged"]
        for key in ("rel_error", "loss"):
            if last.get(key) is not None:
                parts.append(f"{key.replace('_', ' ')} {last[key]:.4g}")
        if self.info.get("max_truncation_error") is not None:       # DMRG ground states
            parts.append(f"truncation error {self.info['max_truncation_error']:.3g}"
                         + (" (bond-limited)" if self.info.get("bond_limited") else ""))
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"<tnc.FitResult {self.summary()}>"

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


def read_archive(path, what: str) -> tuple[dict, dict[str, dict]]:
    """``(meta, {group: {name: array}})`` of a file written by :func:`write_archive`."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            groups: dict[str, dict] = {}
            for key in archive.files:
                if key != "__meta__":
                    group, name = key.split(":", 1)
                    groups.setdefault(group, {})[name] = archive[key]
    except (OSError, ValueError, KeyError) as error:
        raise TncError(f"{path}: not a tnc {what} ({error})") from None
    return meta, groups


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
    """Read a result written by :meth:`FitResult.save`."""
    from .compiler import compile as compile_text
    meta, groups = read_archive(path, "fit result")
    if meta.get("kind") == "coupled":
        raise TncError(f"{path}: a coupled fit result; read it with tnc.load_coupled")
    expect_kind(meta, path, "network")
    network = compile_text(meta["source"], name=meta["name"], filename=meta["filename"],
                           **meta["sizes"])
    return FitResult(network, groups.get("tensor", {}), meta["method"], meta["history"],
                     meta["converged"], meta["iterations"], meta["wall_time"],
                     groups.get("input", {}), meta.get("info", {}))


# the loader of each kind of result archive (``meta["kind"]``; plain fits have none)
LOADERS = {"network": "tnc.load_result", "coupled": "tnc.load_coupled",
           "stratified": "tnc.stratified.load_stratified"}


def expect_kind(meta: dict, path, kind: str) -> None:
    """Raise a :class:`TncError` naming the right loader unless ``meta`` is of ``kind``.

    >>> expect_kind({"kind": "coupled"}, "r.npz", "stratified")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tnc.errors.TncError: r.npz: not a stratified fit result but a coupled one; read it with ...
    """
    found = meta.get("kind", "network")
    if found != kind:
        raise TncError(f"{path}: not a {kind} fit result but a {found} one; read it with "
                       f"{LOADERS.get(found, 'a newer tnc')}")
