"""Public entry points: text or file in, :class:`~tnc.network.Network` out.

    >>> import tnc
    >>> net = tnc.compile("network v(n = 3) { index i: n  tensor x(i), x(i)  output }")
    >>> net.equation
    'a,a->'
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import TncError
from .expand import expand
from .network import Network
from .parser import parse


def read_source(text_or_path) -> tuple[str, str | None]:
    """``(text, filename)`` from tnc text or a path to a ``.tn`` file."""
    if isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str) and text_or_path.strip()
            and not any(c in text_or_path for c in "{\n")):
        path = Path(text_or_path)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError, ValueError) as error:   # ValueError: NUL in path
            raise TncError(f"cannot read tnc file {str(path)!r}: {error}") from None
    if not isinstance(text_or_path, str):
        raise TncError("expected tnc text or a path to a .tn file, got "
                       f"{type(text_or_path).__name__}")
    return text_or_path, None


def compile_all(text_or_path, filename: str | None = None, **sizes) -> dict[str, Network]:
    """Every network of a text, by name; ``sizes`` apply to each network that has them.

    Tensors shared by name between networks must have one shape everywhere
    (they are one parameter of a coupled model).
    """
    text, path = read_source(text_or_path)
    filename = filename or path
    module = parse(text, filename)
    if not module.networks:
        raise TncError(f"{filename or 'the text'} declares no network")
    networks: dict[str, Network] = {}
    try:
        for definition in module.networks:
            if definition.name in networks:
                from .errors import TncSemanticError
                raise TncSemanticError(f"network `{definition.name}` is declared twice",
                                       definition.span)
            own = {k: v for k, v in sizes.items() if k in {p.name for p in definition.params}}
            networks[definition.name] = Network(expand(definition, **own), text, filename)
        _check_sizes_used(module, sizes)
        check_shared_tensors(networks)
    except TncError as error:
        raise error.located(text, filename) from None
    return networks


def _check_sizes_used(module, sizes) -> None:
    known = {p.name for n in module.networks for p in n.params}
    unknown = [k for k in sizes if k not in known]
    if unknown:
        from .errors import TncSemanticError
        raise TncSemanticError(f"unknown size parameter(s) {', '.join(unknown)} passed to "
                               "compile; the networks take " + (", ".join(sorted(known)) or "none"),
                               module.networks[0].span)     # point at the first header


def check_shared_tensors(networks: dict[str, Network]) -> None:
    """A tensor name used in several networks must be one tensor: same kind and shape."""
    from .errors import TncSemanticError
    seen: dict[str, tuple[str, str, tuple]] = {}
    for net in networks.values():
        for occ in net.occurrences:
            shape = net.spec.shape_of(occ)
            first = seen.setdefault(occ.name, (net.name, occ.kind, shape))
            if first[1:] != (occ.kind, shape):
                raise TncSemanticError(
                    f"`{occ.name}` is shared with network `{first[0]}` ({first[1]}, shape "
                    f"{first[2]}) but is {occ.kind} with shape {shape} in `{net.name}`; "
                    "a shared name is one tensor", occ.span)


def compile(text_or_path, name: str | None = None, filename: str | None = None,
            **sizes) -> Network:
    """Compile tnc text (or a ``.tn`` path) to a :class:`Network`.

    ``name`` picks one network of a text holding several; ``sizes`` override
    the header defaults (``tnc.compile(text, N=8, r=4)``).
    """
    return pick_named(compile_all(text_or_path, filename=filename, **sizes), name, "network")


def pick_named(items: dict, name: str | None, kind: str):
    """The item called ``name`` of a text, or its only item when ``name`` is None.

    >>> pick_named({"a": 1}, None, "network")
    1
    """
    if not items:
        raise TncError(f"the text declares no {kind}")
    if name is None:
        if len(items) > 1:
            raise TncError(f"the text declares {kind}s " + ", ".join(items)
                           + "; pick one with name=...")
        return next(iter(items.values()))
    if name not in items:
        raise TncError(f"no {kind} `{name}`; the text declares " + ", ".join(items))
    return items[name]


def library_names() -> list[str]:
    """Names of the built-in networks shipped with tnc."""
    folder = resources.files("tnc").joinpath("networks")
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".tn"))


def library_source(name: str) -> str:
    names = library_names()
    if name not in names:
        raise TncError(f"no built-in network `{name}`; the library has " + ", ".join(names))
    return resources.files("tnc").joinpath("networks", f"{name}.tn").read_text(encoding="utf-8")


def library(name: str, **sizes) -> Network:
    """A built-in network (``cp``, ``tucker``, ``tt``, ``ttm``, ``ring``, ``peps``, ``ht``, ...).

    >>> library("tt", N=4).params["G[2]"]
    (8, 4, 8)
    """
    return compile(library_source(name), name=name, filename=f"<library:{name}>", **sizes)
