"""Public entry points: text or file in, :class:`~tnc.engine.network.Network` out.

    >>> import tnc
    >>> net = tnc.compile("network v(n = 3) { index i: n  tensor x(i), x(i)  output }")
    >>> net.equation
    'a,a->'
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from tnc.lang.ast import Span
from tnc.errors import TncError
from tnc.lang.expand import expand, expansion_budget
from tnc.engine.network import Network
from tnc.lang.parser import parse


#: Largest ``.tn`` file :func:`read_source` reads, in bytes.
MAX_SOURCE_BYTES = 16 * 2**20

_WHOLE_TEXT = Span(1, 1, 1, 2)       # where an error about a whole file points


def read_source(text_or_path, allow_path: bool = True) -> tuple[str, str | None]:
    """``(text, filename)`` from tnc text or a path to a ``.tn`` file.

    A path is read only when it is a :class:`os.PathLike`, or a str naming an
    existing regular file (never a device) of at most :data:`MAX_SOURCE_BYTES`.
    With ``allow_path=False`` (archive loaders) the argument is always text.

    >>> read_source("network n() { output }", allow_path=False)
    ('network n() { output }', None)
    """
    if isinstance(text_or_path, os.PathLike):
        if not allow_path:
            raise TncError(f"expected tnc text, got the path {os.fspath(text_or_path)!r}")
        return _read_file(Path(text_or_path))
    if not isinstance(text_or_path, str):
        raise TncError("expected tnc text or a path to a .tn file, got "
                       f"{type(text_or_path).__name__}")
    if allow_path and _may_be_path(text_or_path):
        path = Path(text_or_path)
        if _exists(path) or _looks_like_file_name(text_or_path):
            return _read_file(path)     # a missing file: tnc text has a `{` and blanks
    return text_or_path, None


def _may_be_path(text: str) -> bool:
    """A one-line str without ``{``: tnc text always has a network block."""
    return bool(text.strip()) and not any(c in text for c in "{\n\r") and "\0" not in text


def _looks_like_file_name(text: str) -> bool:
    """``cp.tn``, ``nets/x``, ``nope``: one word is a file name, never a network."""
    return not any(c.isspace() for c in text)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _read_file(path: Path) -> tuple[str, str]:
    """The text of a regular file of at most :data:`MAX_SOURCE_BYTES` bytes."""
    import stat
    name = str(path)
    shown = repr(name if len(name) <= 200 else name[:200] + "...")
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise TncError(f"cannot read tnc file {shown}: not a regular file")
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise TncError(f"cannot read tnc file {shown}: it does not exist") from None
    except (OSError, ValueError) as error:   # ValueError: NUL in path
        raise TncError(f"cannot read tnc file {shown}: "
                       f"{getattr(error, 'strerror', None) or error}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise TncError(f"tnc file is larger than the {MAX_SOURCE_BYTES} bytes "
                       "(tnc.lang.compiler.MAX_SOURCE_BYTES) a source may have",
                       _WHOLE_TEXT, "", name)
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as error:
        raise TncError(f"cannot read tnc file {shown}: not UTF-8 text ({error})") from None


def compile_all(text_or_path, filename: str | None = None, allow_path: bool = True,
                max_expansion: int | None = None, pinned=None, **sizes) -> dict[str, Network]:
    """Every network of a text, by name; ``sizes`` apply to each network that has them.

    ``allow_path=False`` takes ``text_or_path`` as text, never as a path.
    ``pinned``: the names of the sizes the caller chose (never read off data by
    :func:`tnc.fit`; :attr:`Network.pinned_sizes`), by default those in ``sizes``.
    ``max_expansion`` caps the loop steps, indices, tensors and legs of all the
    networks together (default ``tnc.lang.expand.MAX_EXPANSION``, 10**6), checked
    before unrolling.

    Tensors shared by name between networks must have one shape everywhere
    (they are one parameter of a coupled model).
    """
    text, path = read_source(text_or_path, allow_path)
    filename = filename or path
    module = parse(text, filename)
    if not module.networks:
        raise TncError(f"{filename or 'the text'} declares no network; a network starts with "
                       "`network NAME(SIZE = default, ...) {`", _WHOLE_TEXT).located(text, filename)
    networks: dict[str, Network] = {}
    try:
        budget = expansion_budget(max_expansion)        # one cap for all the networks
        for definition in module.networks:
            if definition.name in networks:
                from tnc.errors import TncSemanticError
                raise TncSemanticError(f"network `{definition.name}` is declared twice",
                                       definition.span)
            own = _own_sizes(definition, sizes)
            networks[definition.name] = Network(
                expand(definition, max_expansion=budget, **own), text, filename,
                own if pinned is None else pinned)
        _check_sizes_used(module, sizes)
        check_shared_tensors(networks)
    except TncError as error:
        raise error.located(text, filename) from None
    return networks


def _own_sizes(definition, sizes: dict) -> dict:
    """The entries of ``sizes`` that are size parameters of ``definition``."""
    return {k: v for k, v in sizes.items() if k in {p.name for p in definition.params}}


def _check_sizes_used(module, sizes) -> None:
    known = {p.name for n in module.networks for p in n.params}
    unknown = [k for k in sizes if k not in known]
    if unknown:
        from tnc.errors import TncSemanticError
        raise TncSemanticError(f"unknown size parameter(s) {', '.join(unknown)} passed to "
                               "compile; the networks take " + (", ".join(sorted(known)) or "none"),
                               module.networks[0].span)     # point at the first header


def check_shared_tensors(networks: dict[str, Network]) -> None:
    """A tensor name used in several networks must be one tensor: same kind and shape."""
    from tnc.errors import TncSemanticError
    if len(networks) < 2:
        return                  # within one network, expansion already ties every use
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
            allow_path: bool = True, max_expansion: int | None = None, pinned=None,
            **sizes) -> Network:
    """Compile tnc text (or a ``.tn`` path) to a :class:`Network`.

    ``name`` picks one network of a text holding several (only it is expanded, so
    the others may leave sizes open); ``sizes`` override
    the header defaults (``tnc.compile(text, N=8, r=4)``); ``allow_path=False``
    takes ``text_or_path`` as text, never as a path; ``max_expansion`` caps the
    expanded size (see :func:`compile_all`); ``pinned``: the sizes fitting keeps, by
    default those given here::

        >>> compile("network v(n = 3) { index i: n  tensor x(i)  output i }",
        ...         n=4, pinned=()).pinned_sizes
        {}
    """
    if name is not None:
        text, path = read_source(text_or_path, allow_path)
        module = parse(text, filename or path)
        names = [d.name for d in module.networks]
        if names and name not in names:
            pick_named(dict.fromkeys(names), name, "network")      # raises, naming them
        if names and len(set(names)) == len(names):
            return _compile_one(module, name, max_expansion, pinned, sizes)
        text_or_path, allow_path, filename = text, False, filename or path   # compile_all
        # reports what is wrong: an unknown name, a network declared twice
    return pick_named(compile_all(text_or_path, filename=filename, allow_path=allow_path,
                                  max_expansion=max_expansion, pinned=pinned, **sizes),
                      name, "network")


def _compile_one(module, name: str, max_expansion, pinned, sizes) -> Network:
    """Network ``name`` of a parsed text, expanding only it: the text's other networks
    may leave sizes open (``sizes`` must still belong to some network of the text)."""
    definition = next(d for d in module.networks if d.name == name)
    try:
        _check_sizes_used(module, sizes)
        own = _own_sizes(definition, sizes)
        spec = expand(definition, max_expansion=expansion_budget(max_expansion), **own)
    except TncError as error:
        raise error.located(module.source, module.filename) from None
    return Network(spec, module.source, module.filename, own if pinned is None else pinned)


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
    folder = resources.files("tnc.lang").joinpath("networks")
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".tn"))


def library_source(name: str) -> str:
    names = library_names()
    if name not in names:
        raise TncError(f"no built-in network `{name}`; the library has " + ", ".join(names))
    return resources.files("tnc.lang").joinpath("networks", f"{name}.tn").read_text(encoding="utf-8")


def library(name: str, **sizes) -> Network:
    """A built-in network (``cp``, ``tucker``, ``tt``, ``ttm``, ``ring``, ``peps``, ``ht``, ...).

    >>> library("tt", N=4).params["G[2]"]
    (8, 4, 8)
    """
    return compile(library_source(name), name=name, filename=f"<library:{name}>", **sizes)
