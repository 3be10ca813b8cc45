"""Elementwise losses between a model tensor ``m`` and data ``x``, in one registry.

A :class:`Loss` gives the value and the derivative (with respect to ``m``) of
``f(m, x)`` entry by entry; fitting sums it over the observed entries. More
losses (the GCP family) register themselves here too::

    >>> import numpy as np
    >>> gaussian = get_loss("gaussian")
    >>> gaussian.value(np.array([1.0, 2.0]), np.array([1.5, 2.0]))
    array([0.25, 0.  ])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import TncError


@dataclass(frozen=True)
class Loss:
    """An elementwise loss ``f(m, x)`` with its derivative ``df/dm``.

    ``check_data(x)`` raises a :class:`TncError` naming the loss and the offending
    entries when ``x`` is outside the loss's domain; ``model_lower_bound`` is the
    smallest value the model may take (e.g. 0 for Poisson with identity link),
    None when unbounded.
    """

    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]
    check_data: Callable[[np.ndarray], None] = lambda x: None
    model_lower_bound: float | None = None
    description: str = ""


LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss, overwrite: bool = False) -> Loss:
    """Add ``loss`` to the registry under ``loss.name`` and return it."""
    if loss.name in LOSSES and not overwrite:
        raise TncError(f"a loss named `{loss.name}` is already registered; "
                       "pass overwrite=True to replace it")
    LOSSES[loss.name] = loss
    return loss


def get_loss(loss: str | Loss) -> Loss:
    """The registered loss of that name (a :class:`Loss` passes through)."""
    if isinstance(loss, Loss):
        return loss
    if loss not in LOSSES:
        raise TncError(f"unknown loss {loss!r}; registered losses: " + ", ".join(sorted(LOSSES)))
    return LOSSES[loss]


def offending_entries(bad: np.ndarray, x: np.ndarray, limit: int = 5) -> str:
    """``"(0, 3)=-1.0, (2, 1)=-4.0 and 7 more"`` for the first entries where ``bad``."""
    where = np.argwhere(bad)
    shown = ", ".join(f"{tuple(int(i) for i in w)}={x[tuple(w)]!r}" for w in where[:limit])
    more = len(where) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def require_finite(x: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise TncError(f"{name}: data has non-finite entries {offending_entries(bad, x)}; "
                       "mark missing entries with a mask")


register_loss(Loss(
    "gaussian",
    value=lambda m, x: (m - x) ** 2,
    derivative=lambda m, x: 2.0 * (m - x),
    check_data=lambda x: require_finite(x, "loss 'gaussian'"),
    description="least squares, (m - x)^2: real-valued data with Gaussian noise",
))
