"""FROSTT ``.tns`` files: sparse tensors as text, one nonzero a line.

Each line holds the nonzero's 1-based coordinates, then its value, separated by
whitespace; ``#`` starts a comment, blank lines are skipped. The shape is the
largest coordinate along each mode unless given::

    >>> import io
    >>> x = read_tns(io.StringIO("1 1 2 3.5\\n# a comment\\n2 3 1 -1\\n"))
    >>> x.shape, x.coords.tolist(), x.values.tolist()
    ((2, 3, 2), [[0, 0, 1], [1, 2, 0]], [3.5, -1.0])
    >>> out = io.StringIO(); write_tns(out, x); out.getvalue()
    '1 1 2 3.5\\n2 3 1 -1\\n'
"""
from __future__ import annotations

import os

import numpy as np

from tnc.errors import TncError
from tnc.engine.sparse import SparseTensor


def read_tns(source, shape=None) -> SparseTensor:
    """The :class:`SparseTensor` of a ``.tns`` file (a path or a text stream).

    ``shape``: the tensor's shape (default: the largest coordinate per mode). A line
    whose number of fields differs from the first line's, a field that is not a
    number, or a coordinate below 1 is a :class:`TncError` naming the line.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<stream>"
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, encoding="utf-8") as handle:
                return _parse(handle, name, shape)
        except OSError as error:
            raise TncError(f"cannot read the .tns file {name!r}: {error}") from None
    return _parse(source, name, shape)


def _parse(lines, name: str, shape) -> SparseTensor:
    width, coords, values = None, [], []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if width is None:
            width = len(fields)
            if width < 2:
                raise TncError(f"{name} line {number}: a nonzero needs coordinates and a "
                               f"value, got {len(fields)} field")
        if len(fields) != width:
            raise TncError(f"{name} line {number}: {len(fields)} fields, but line 1 of the "
                           f"data has {width} ({width - 1} coordinates and a value)")
        try:
            point = [int(f) for f in fields[:-1]]
            values.append(float(fields[-1]))
        except ValueError:
            raise TncError(f"{name} line {number}: not integer coordinates and a number: "
                           f"{line.strip()!r}") from None
        if min(point) < 1:
            raise TncError(f"{name} line {number}: coordinates are 1-based, got {point}")
        coords.append(point)
    if width is None:
        raise TncError(f"{name} holds no nonzeros")
    coords = np.array(coords, dtype=np.int64) - 1
    found = tuple(int(s) for s in coords.max(axis=0) + 1)
    if shape is not None and len(tuple(shape)) != len(found):
        raise TncError(f"{name}: shape {tuple(shape)} has {len(tuple(shape))} modes, the "
                       f"file's coordinates {len(found)}")
    return SparseTensor.from_coo(coords, np.array(values), found if shape is None else shape)


def write_tns(target, data: SparseTensor) -> None:
    """Write ``data`` (a :class:`SparseTensor`) as ``.tns`` text to a path or a stream:
    1-based coordinates, then the value in the shortest form that reads back exactly."""
    lines = "".join(" ".join(str(int(c) + 1) for c in point) + f" {float(value)!r}\n"
                    for point, value in zip(data.coords, data.values))
    lines = lines.replace(".0\n", "\n")
    if isinstance(target, (str, os.PathLike)):
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        target.write(lines)

