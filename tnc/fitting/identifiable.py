"""Data checks before a least-squares fit: ranks the data cannot identify, empty slices.

* A rank index shared by several tensors (CP's ``r``) larger than the data can
  use: a tensor carrying it with output legs of ``n`` entries meets the rest of
  the output in ``total / n`` entries, and a rank beyond that many columns
  (the rank of the unfolding) adds nothing the data can pin down. The model is
  not identifiable; the fit still runs (a :class:`UnidentifiableWarning`).
* A slice of the data with no observed entry (every entry missing): the
  model's values there are not determined by the data, and the error names the
  slice.

    >>> import warnings, numpy as np, tnc
    >>> net = tnc.library("cp", I=2, J=2, K=5, R=5)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_identifiable(net)
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    rank 5 of index `r` is larger than the data can identify: ...
    >>> mask = np.ones((2, 2, 5), bool); mask[:, :, 3] = False
    >>> check_slices(net, mask)
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: data: slice 3 of axis 2 (index `k`) has no observed entry, so the model there is not determined by the data; drop that slice or observe some of it
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from tnc.errors import TncError


class UnidentifiableWarning(UserWarning):
    """The model has more parameters along a rank than the data can determine."""


def check_identifiable(net) -> None:
    """Warn when a hyperedge rank (an index shared by three or more tensor uses, not in
    the output) is larger than some carrier's complement of the output."""
    sizes, total = net.spec.index_sizes, math.prod(net.output_shape)
    for ix, size in sizes.items():
        carriers = [occ for occ in net.occurrences if ix in occ.indices]
        if ix in net.output or len(carriers) < 3:
            continue
        bound = min(total // max(1, math.prod(sizes[o] for o in occ.indices if o in net.output))
                    for occ in carriers)
        if size > bound:
            warnings.warn(f"rank {size} of index `{ix}` is larger than the data can identify: "
                          f"the output has at most {bound} entries beside a carrier's own legs, "
                          "so the model is not identifiable (many fits are equally good); a "
                          f"rank of at most {bound} fits as well", UnidentifiableWarning,
                          stacklevel=4)


def check_slices(net, mask) -> None:
    """A :class:`TncError` naming the first slice (axis, position) with no observed entry."""
    if mask is None:
        return
    check_seen(net, [np.any(mask, axis=tuple(k for k in range(mask.ndim) if k != axis))
                     if mask.ndim > 1 else mask for axis in range(mask.ndim)])


def check_seen(net, seen: list) -> None:
    """:func:`check_slices` from ``seen[axis]``, a boolean vector per axis: True where the
    slice has an observed entry (streamed data gather these block by block)."""
    for axis, ix in enumerate(net.output):
        empty = np.flatnonzero(~np.asarray(seen[axis]))
        if empty.size:
            raise TncError(f"data: slice {int(empty[0])} of axis {axis} (index `{ix}`) has no "
                           "observed entry, so the model there is not determined by the data; "
                           "drop that slice or observe some of it")
