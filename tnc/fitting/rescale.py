"""Least-squares fits at unit scale: data rescaled once in front, results scaled back.

Fitting ``c * X`` must give ``c`` times the fit of ``X`` for any ``c`` a float can
hold: ``||X||^2`` underflows to 0 near ``X ~ 1e-170`` (ALS then reported an exact
fit of an all-zero model) and overflows near ``1e160`` (a raw LinAlgError). So the
fronts (:func:`tnc.fit` for least-squares methods, :func:`tnc.fit_model` for
coupled models) multiply the data by one factor ``s`` that brings the root mean
square of the observed entries to about 1, fit, and map back. The model is a
product of its tensors, homogeneous in them: scaling every use of parameter ``G``
by ``s ** x_G`` with ``sum of x_G over the uses = 1`` in each network scales every
model by ``s`` (``x_G = 1 / D`` for ``D`` uses of untied tensors). Penalties
keep their meaning (``l2`` is converted), squared losses come back times ``s**-2``.

``s`` is a power of two, so the rescale is exact; data whose RMS lies within
``2**±64`` are fitted untouched (``s == 1``: no copy, the common case pays
nothing), since methods whose every stopping test is relative treat them alike.
Where a method's tests are absolute at unit scale (L-BFGS-B's ``gtol``), ``s`` is
the exact reciprocal RMS, always applied:

    >>> import numpy as np
    >>> unit_scale([np.full(4, 3e-170)]) == 2.0 ** 563, 3e-170 * 2.0 ** 563
    (True, 0.905...)
    >>> unit_scale([np.full(4, 1e4)]), unit_scale([np.zeros(3)]), unit_scale([np.full(2, 4.0)], True)
    (1.0, 1.0, 0.25)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from tnc.engine.sparse import SparseTensor

MAX_EXPONENT = 1000        # 2**±1000 stays a normal float
SAFE_EXPONENT = 64         # data with RMS within 2**±64 are fitted as given: their squares,
                           # Grams and products are far from overflow and underflow


def rms(arrays, count: int | None = None, squares: float | None = None) -> float:
    """Root mean square of the entries of ``arrays`` over ``count`` entries (default:
    all of them; fewer when zeroed unobserved ones are left out), without overflow
    or underflow; ``squares``: their sum of squares when known (no pass)."""
    arrays = [np.asarray(a) for a in arrays if np.size(a)]
    count = sum(a.size for a in arrays) if count is None else count
    if squares is None:
        squares = sum(float(np.vdot(a.ravel(), a.ravel()).real) for a in arrays)  # no copy
    if 1e-280 < squares < 1e280:
        return math.sqrt(squares / count)
    largest = max((float(np.max(np.abs(a))) for a in arrays), default=0.0)
    if not largest > 0 or not math.isfinite(largest):
        return largest
    unit = math.ldexp(1.0, math.frexp(largest)[1])   # a power of two: exact, so this path
    squares = sum(float(np.vdot(a.ravel() / unit, a.ravel() / unit).real) for a in arrays)
    return unit * math.sqrt(squares / count)          # agrees bit for bit with the one above


def unit_scale(arrays, exact: bool = False, count: int | None = None,
               squares: float | None = None) -> float:
    """The factor bringing the RMS of ``arrays`` (over ``count`` entries; ``squares``:
    their sum of squares when known) to about 1: ``2**-round(log2(rms))``, or 1.0 when
    the RMS is within ``2**±SAFE_EXPONENT`` (methods whose every test is relative fit
    such data alike at any scale); ``exact``: ``1 / rms`` always. 1.0 for all-zero data."""
    value = rms(arrays, count, squares)
    if not value > 0 or not math.isfinite(value):
        return 1.0
    if exact:
        return 1.0 / value
    exponent = -round(math.log2(value))
    if abs(exponent) <= SAFE_EXPONENT:
        return 1.0
    return math.ldexp(1.0, max(-MAX_EXPONENT, min(MAX_EXPONENT, exponent)))


def exponents(networks) -> dict[str, float] | None:
    """``x_G`` per parameter with ``sum over the uses of G in each network of x_G = 1``
    (the minimum-norm solution), or None when no such split exists (then the
    networks' shared tensors cannot carry one common data scale).

    >>> import tnc
    >>> exponents([tnc.library("cp", I=3, J=4, K=5, R=2)])
    {'A': 0.333..., 'B': 0.333..., 'C': 0.333...}
    """
    names = list(dict.fromkeys(n for net in networks for n in net.params))
    uses = np.zeros((len(networks), len(names)))
    for row, net in enumerate(networks):
        for occ in net.occurrences:
            if occ.kind == "param":
                uses[row, names.index(occ.name)] += 1
    if not names or not uses.sum(axis=1).all():
        return None
    solution = np.linalg.lstsq(uses, np.ones(len(networks)), rcond=None)[0]
    if not np.allclose(uses @ solution, 1.0, rtol=0, atol=1e-12):
        return None
    return dict(zip(names, map(float, solution)))


@dataclass(frozen=True)
class Rescale:
    """Data multiplied by ``scale``; parameter ``G`` by ``scale ** exponents[G]``."""

    scale: float = 1.0
    exponents: dict = field(default_factory=dict)

    @classmethod
    def of(cls, networks, arrays, observed: int, exact: bool = False,
           squares: float | None = None) -> "Rescale":
        """The rescale of data ``arrays`` (dense with unobserved entries zeroed, or
        :class:`~tnc.engine.sparse.SparseTensor`; ``observed`` entries in all; ``squares``
        their sum of squares when known) fitted by ``networks``; the identity when the
        data are already about unit size or the networks' tensors cannot share one scale."""
        scale = unit_scale([_stored(a) for a in arrays], exact, observed, squares)
        found = None if scale == 1.0 else exponents(networks)   # the common case stops here
        if found is None:
            return cls()
        return cls(scale, found)

    @property
    def identity(self) -> bool:
        return self.scale == 1.0

    def data(self, array):
        """Data (a dense array or a :class:`~tnc.engine.sparse.SparseTensor`) in the fit's units."""
        if self.identity:
            return array
        if isinstance(array, SparseTensor):
            return array.scaled(self.scale)
        return array * self.scale

    def _factor(self, name: str, power: float) -> float:
        return self.scale ** (power * self.exponents.get(name, 0.0))

    def to_fit(self, tensors: dict) -> dict:
        """Parameter tensors in the data's units -> the fit's."""
        if self.identity:
            return tensors
        return {k: _times(v, self._factor(k, 1.0)) for k, v in tensors.items()}

    def to_data(self, tensors: dict) -> dict:
        """Parameter tensors in the fit's units -> the data's."""
        if self.identity:
            return tensors
        return {k: v * self._factor(k, -1.0) for k, v in tensors.items()}

    def l2(self, l2, names):
        """Ridge weights (one float or a dict) in the fit's units, so the penalised
        problem is the same one: ``l2 ||G||^2`` becomes ``l2 s**(2 - 2 x_G) ||G'||^2``."""
        if self.identity or not l2:
            return l2
        given = l2 if isinstance(l2, dict) else {n: l2 for n in names}
        return {n: _times(v, self.scale ** (2 - 2 * self.exponents.get(n, 0.0)))
                for n, v in given.items()}

    def loss(self, value):
        """A squared loss in the fit's units -> the data's (``s**-2`` times)."""
        if self.identity or value is None:
            return value
        with np.errstate(over="ignore"):
            return float(np.float64(value) / self.scale / self.scale)

    def history(self, history: list[dict]) -> list[dict]:
        """History entries with their ``loss`` in the data's units."""
        if self.identity:
            return history
        return [{**h, "loss": self.loss(h["loss"])} if "loss" in h else h for h in history]

    def callback(self, user):
        """``user`` seeing each state's loss and tensors in the data's units."""
        if self.identity or user is None:
            return user

        def callback(state):
            seen = {**state, "loss": self.loss(state.get("loss"))}
            if "tensors" in state:
                seen["tensors"] = self.to_data(state["tensors"])
            return user(seen)
        return callback

    def options(self, options, names):
        """A method's options dataclass in the fit's units: given starting tensors
        (``init``), ``l2`` and the ``callback``."""
        changes = {}
        start = given_tensors(getattr(options, "init", None))
        if start is not None:
            changes["init"] = self.to_fit(start)
        if getattr(options, "l2", None):
            changes["l2"] = self.l2(options.l2, names)
        if getattr(options, "callback", None) is not None:
            changes["callback"] = self.callback(options.callback)
        return dataclasses.replace(options, **changes) if changes else options

    def result(self, result):
        """A :class:`~tnc.fitting.result.FitResult` or :class:`~tnc.fitting.coupled.CoupledResult` of the
        rescaled fit, in the data's units (``info["data_scale"]`` records ``scale``).

        A method whose gauge puts the whole scale on one tensor names it in
        ``info["scale_carrier"]`` (DMRG's orthogonality centre): only that one is
        scaled back, so the others stay orthonormal, as a fit of the data as given
        would leave them.
        """
        if not self.identity:
            carrier = result.info.get("scale_carrier")
            back = self if carrier is None else Rescale(self.scale, {carrier: 1.0})
            result.tensors = back.to_data(result.tensors)
            result.history = self.history(result.history)
            result.info["data_scale"] = self.scale
        return result


def _stored(array):
    """The entries ``array`` stores: a sparse tensor's nonzero values, else the array."""
    return array.values if isinstance(array, SparseTensor) else array


def scale_exponent(X) -> int:
    """The power of two that brings ``X``'s largest magnitude into [0.5, 1) (0 for zeros).

    Decompositions run on ``X / 2**e`` and scale back: dividing by a power of
    two is exact, so ``c * X`` decomposes as ``c`` times ``X``'s decomposition
    for every ``c`` from 1e-300 to 1e300, where squares of the raw data would
    underflow or overflow.

    >>> scale_exponent(np.array([3.0, -0.2])), scale_exponent(np.zeros(2)), 3.0 / 2.0 ** 2
    (2, 0, 0.75)
    """
    largest = float(np.max(np.abs(X))) if X.size else 0.0
    return int(np.frexp(largest)[1]) if largest > 0 else 0


def given_tensors(init):
    """The dict of starting tensors ``init`` holds (a dict or a result), else None."""
    tensors = getattr(init, "tensors", init)
    return tensors if isinstance(tensors, dict) else None


def _times(value, factor: float):
    """``value * factor`` for numeric arrays; anything else as it is, for the method's
    own check to name."""
    try:
        array = np.asarray(value)
        return (array if array.dtype.kind in "fc" else array.astype(float)) * factor
    except (TypeError, ValueError):
        return value
