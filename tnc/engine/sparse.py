"""Sparse data for fitting: coordinates and values of the nonzeros, never the dense array.

``tnc.fit(model, data, method="gcp")`` accepts a :class:`SparseTensor`, a
``(coords, values, shape)`` triple through :meth:`SparseTensor.from_coo`, or a
pydata ``sparse.COO`` array (optional dependency). Every entry not listed is an
observed zero. Entries are kept sorted by their linear (C-order) index, so
membership tests are binary searches::

    >>> import numpy as np
    >>> x = SparseTensor.from_coo([[2, 0, 1], [0, 1, 0]], [3.0, 1.0], shape=(3, 2, 2))
    >>> x.nnz, x.size, x.coords.tolist()
    (2, 12, [[0, 1, 0], [2, 0, 1]])
    >>> x.lookup(np.array([[2, 0, 1], [1, 1, 1]]))
    array([3., 0.])
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tnc.errors import TncError
from tnc.engine.plan import check_allocation

MAX_LINEAR = 2 ** 62      # linear indices are int64


@dataclass(frozen=True, eq=False)
class SparseTensor:
    """A tensor of ``shape`` whose nonzeros are ``values`` at ``coords``.

    ``coords``: ``(nnz, ndim)`` int64, sorted by linear index, no duplicates;
    ``values``: ``(nnz,)`` float64. Build it with :meth:`from_coo`,
    :meth:`from_dense` or :func:`as_sparse`.
    """

    coords: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_coo(cls, coords, values, shape) -> "SparseTensor":
        """From coordinates ``(nnz, ndim)`` (or pydata's ``(ndim, nnz)``), values and shape."""
        shape = tuple(int(s) for s in shape)
        coords = np.asarray(coords)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if coords.ndim == 1 and coords.size == 0:
            coords = coords.reshape(0, len(shape))
        if coords.ndim != 2 or len(shape) not in coords.shape:
            raise TncError(f"sparse data: coords must have shape (nnz, {len(shape)}), got "
                           f"{coords.shape}")
        if coords.shape[1] != len(shape) or coords.shape[0] != len(values):
            coords = coords.T
        if coords.shape != (len(values), len(shape)):
            raise TncError(f"sparse data: {len(values)} values need coords of shape "
                           f"({len(values)}, {len(shape)}), got {coords.T.shape}")
        return cls._canonical(_integer_coords(coords), values, shape)

    @classmethod
    def from_dense(cls, array) -> "SparseTensor":
        """The nonzeros of a dense array."""
        array = np.asarray(array, dtype=np.float64)
        coords = np.argwhere(array != 0)
        return cls._canonical(coords.astype(np.int64), array[array != 0], array.shape)

    @classmethod
    def _canonical(cls, coords, values, shape) -> "SparseTensor":
        _check_shape(shape)
        if len(coords) and ((coords < 0) | (coords >= np.array(shape))).any():
            bad = np.flatnonzero(((coords < 0) | (coords >= np.array(shape))).any(axis=1))
            raise TncError(f"sparse data: {len(bad)} coordinates lie outside the shape "
                           f"{shape}, e.g. {tuple(int(c) for c in coords[bad[0]])}")
        linear = np.ravel_multi_index(tuple(coords.T), shape) if len(coords) else \
            np.zeros(0, np.int64)
        order = np.argsort(linear, kind="stable")
        linear = linear[order]
        repeated = np.flatnonzero(np.diff(linear) == 0)
        if len(repeated):
            first = tuple(int(c) for c in coords[order[repeated[0]]])
            raise TncError(f"sparse data: {len(repeated)} coordinates are listed twice, "
                           f"e.g. {first}; sum the duplicates first")
        tensor = cls(np.ascontiguousarray(coords[order]), values[order], shape)
        tensor.__dict__["linear"] = linear
        return tensor

    # -- description -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nnz(self) -> int:
        return len(self.values)

    @property
    def size(self) -> int:
        """Number of entries of the dense tensor (observed ones, zeros included)."""
        return math.prod(self.shape)

    @functools.cached_property
    def linear(self) -> np.ndarray:
        """Sorted C-order linear index of each nonzero, ``(nnz,)`` int64."""
        return np.ravel_multi_index(tuple(self.coords.T), self.shape).astype(np.int64)

    def scaled(self, factor: float) -> "SparseTensor":
        """This tensor times ``factor``: the same coordinates (and linear indices, when
        already found), the values scaled; no re-sorting.

        >>> x = SparseTensor.from_coo([[1, 0]], [3.0], shape=(2, 2)).scaled(0.5)
        >>> x.values, x.linear
        (array([1.5]), array([2]))
        """
        scaled = SparseTensor(self.coords, self.values * factor, self.shape)
        if "linear" in self.__dict__:               # the cached_property's own slot
            scaled.__dict__["linear"] = self.__dict__["linear"]
        return scaled

    def __repr__(self) -> str:
        return f"<tnc.SparseTensor shape {self.shape}, {self.nnz} nonzeros>"

    # -- access ------------------------------------------------------------------------
    def find(self, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(position, found)``: where each linear index sits among the nonzeros."""
        linear = np.asarray(linear)
        if not self.nnz:
            return np.zeros(linear.shape, np.int64), np.zeros(linear.shape, bool)
        position = np.minimum(np.searchsorted(self.linear, linear), self.nnz - 1)
        return position, self.linear[position] == linear

    def lookup(self, coords: np.ndarray) -> np.ndarray:
        """Values at ``coords`` (``(S, ndim)``), zero where nothing is stored."""
        position, found = self.find(np.ravel_multi_index(tuple(np.asarray(coords).T),
                                                         self.shape))
        return np.where(found, self.values[position] if self.nnz else 0.0, 0.0)

    def to_dense(self, memory_limit="auto") -> np.ndarray:
        """The dense array; :class:`~tnc.errors.MemoryLimitError` when it would not fit
        ``memory_limit`` (bytes, ``"auto"`` or None, as in :meth:`tnc.Network.contract`)."""
        check_allocation(8 * math.prod(self.shape), f"sparse data of shape {self.shape} "
                         f"made dense ({math.prod(self.shape):.4g} entries)", memory_limit)
        dense = np.zeros(self.shape)
        dense[tuple(self.coords.T)] = self.values
        return dense


def as_sparse(data) -> SparseTensor | None:
    """``data`` as a :class:`SparseTensor` when it is sparse (ours or pydata's), else None."""
    if isinstance(data, SparseTensor):
        return data
    module = type(data).__module__ or ""
    if module.split(".")[0] == "sparse" and hasattr(data, "coords") and hasattr(data, "data"):
        fill = getattr(data, "fill_value", 0)
        if fill != 0:
            raise TncError(f"sparse data: a pydata sparse array with fill value {fill} is "
                           "not supported; its implicit entries must be zero")
        return SparseTensor.from_coo(np.asarray(data.coords), np.asarray(data.data), data.shape)
    return None


def _integer_coords(coords: np.ndarray) -> np.ndarray:
    if coords.size and not np.issubdtype(coords.dtype, np.integer):
        if not np.issubdtype(coords.dtype, np.number) or (coords != np.round(coords)).any():
            raise TncError(f"sparse data: coords must be integers, got dtype {coords.dtype}")
    return coords.astype(np.int64)


def _check_shape(shape) -> None:
    if not shape or any(s < 1 for s in shape):
        raise TncError(f"sparse data: shape must be positive sizes, got {shape}")
    if math.prod(shape) >= MAX_LINEAR:
        raise TncError(f"sparse data: shape {shape} has more than 2^62 entries")
