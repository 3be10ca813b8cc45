"""Smoothed total variation along one axis of a tensor, and its quadratic majoriser.

The smoothed total variation of ``G`` along ``axis`` is ``sum sqrt(d^2 + eps^2)``
over the differences ``d = diff(G, axis)`` (coupled models subtract ``eps`` per
difference so that a constant tensor has none). ``sqrt`` is concave, so at any
point ``G0`` with differences ``d0``::

    sqrt(d^2 + eps^2)  <=  sqrt(d0^2 + eps^2) + (d^2 - d0^2) * w / 2,   w = 1 / sqrt(d0^2 + eps^2)

and the total variation is below the quadratic ``const + sum w d^2 / 2``, equal
to it at ``G0`` (a majoriser). Minimising the quadratic cannot increase the
total variation; its Hessian is the weighted path Laplacian ``D - A`` along
``axis`` (``D``: the degrees ``w_left + w_right``, ``A``: the weighted neighbours),
one path per fibre, each with its own weights. Coupled ALS
(:mod:`tnc.fitting.coupled`) and Stratified-NTF (:mod:`tnc.models.stratified`) both use it.

    >>> import numpy as np
    >>> g = np.array([0.0, 1.0, 3.0])
    >>> majoriser_weights(g, 0, 0.0)
    array([1. , 0.5])
    >>> degree, neighbours = majoriser(g, 0, 0.0)
    >>> degree - neighbours                      # (D - A) g: the majoriser's gradient
    array([-1.,  0.,  1.])
"""
from __future__ import annotations

import numpy as np


def total_variation(array, axis: int, smoothing: float = 0.0):
    """``(sum sqrt(d^2 + eps^2) - eps, gradient)`` with ``d`` the differences along ``axis``.

    >>> value, grad = total_variation(np.array([0.0, 1.0, 3.0]), 0)
    >>> value, grad
    (3.0, array([-1.,  0.,  1.]))
    """
    d = np.diff(array, axis=axis)
    root = np.sqrt(d * d + smoothing * smoothing)
    slope = d / np.where(root > 0, root, 1.0)
    pad = [(0, 0)] * array.ndim
    before, after = list(pad), list(pad)
    before[axis], after[axis] = (1, 0), (0, 1)
    grad = np.pad(slope, before) - np.pad(slope, after)
    return float(np.sum(root - smoothing)), grad


def majoriser_weights(array, axis: int, smoothing: float) -> np.ndarray:
    """``w = 1 / sqrt(d^2 + eps^2)`` per difference along ``axis`` (shape of ``np.diff``)."""
    d = np.diff(array, axis=axis)
    return 1.0 / np.sqrt(d * d + smoothing * smoothing)


def along(axis: int, ndim: int, part: slice) -> tuple:
    """An index taking ``part`` of ``axis`` and everything of the other axes.

    >>> along(1, 3, slice(1, None))
    (slice(None, None, None), slice(1, None, None), slice(None, None, None))
    """
    index = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def majoriser(array, axis: int, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """``(D g, A g)`` of the weighted path Laplacian ``D - A`` that majorises the
    smoothed total variation at ``g = array`` along ``axis``: ``sum w d^2 / 2`` has
    gradient ``(D - A) g`` (both arrays shaped like ``array``)."""
    weights = majoriser_weights(array, axis, smoothing)
    head, tail = along(axis, array.ndim, slice(None, -1)), along(axis, array.ndim, slice(1, None))
    degree = np.zeros_like(array, dtype=float)
    degree[head] += weights
    degree[tail] += weights
    neighbours = np.zeros_like(array, dtype=float)
    neighbours[head] += weights * array[tail]
    neighbours[tail] += weights * array[head]
    return degree * array, neighbours
