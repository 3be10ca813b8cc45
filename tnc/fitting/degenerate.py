"""Diverging CP terms: a fit whose best rank-R approximation may not exist.

A CP model (a rank index carried by every tensor, each tensor's other legs its own
output legs: ``M = sum_r a_r (x) b_r (x) c_r``) can approach an error it never
attains. The set of tensors of rank at most R is not closed (de Silva and Lim 2008):
two or more terms then grow without bound in nearly opposite directions while their
sum stays bounded, the error falls ever more slowly, and no sweep budget makes the
fit converge (Kruskal, Harshman and Lundy's "degenerate solutions"; on IL2 at rank 3
the two cancelling terms doubled in norm between sweep 1000 and sweep 5000 while the
error fell by 1.5e-4 of itself).

:func:`diagnose` looks for the pattern in fitted tensors: a pair of terms whose
congruence (the product over the tensors of their columns' cosines) is below
:data:`CONGRUENCE` (-0.85) and whose norms both exceed the whole model's norm. ``tnc.fit``
records what it finds as ``result.info["degenerate"]``, names it in the summary and
warns (:class:`DegenerateWarning`), for every method.

    >>> import numpy as np, tnc
    >>> net = tnc.library("cp", I=2, J=2, K=2, R=2)
    >>> a, b = np.array([1.0, 0.0]), np.array([1.0, 1e-3])
    >>> big = 1e3                      # a (x) a (x) a - b (x) b (x) b, each term 1e3 times bigger
    >>> tensors = {"A": np.c_[a, b] * big ** (1 / 3), "B": np.c_[a, b] * big ** (1 / 3),
    ...            "C": np.c_[a, -b] * big ** (1 / 3)}
    >>> found = diagnose(net, tensors)
    >>> found["terms"], round(found["congruence"], 6) < -0.85, found["norm_ratio"] > 1
    ([0, 1], True, True)
"""
from __future__ import annotations

import math
import warnings

import numpy as np

CONGRUENCE = -0.85     # below: the pair's terms point nearly opposite ways; chosen here: with
                       # the norm test it flags the IL2 fits at ranks 3-5 and COVID-19 at
                       # rank 3 after 1000 sweeps, and none of the fits that converge


class DegenerateWarning(UserWarning):
    """Two CP terms cancel while growing: the fit approaches an error it cannot attain."""


def rank_index(network) -> str | None:
    """The index that makes ``network`` a CP model (carried by all of three or more
    tensor uses, not in the output, every other leg an output leg of one tensor only),
    or None."""
    occurrences = network.occurrences
    if len(occurrences) < 3:
        return None
    shared = set(occurrences[0].indices).intersection(*(o.indices for o in occurrences))
    own = [leg for o in occurrences for leg in o.indices if leg not in shared]
    if len(shared) != 1 or len(own) != len(set(own)) or not set(own) <= set(network.output):
        return None
    (index,) = shared
    return None if index in network.output else index


def diagnose(network, tensors: dict) -> dict | None:
    """The worst pair of cancelling terms of a CP model's ``tensors`` (name -> array,
    data tensors included), or None: ``{"terms": [r, s], "congruence": c, "norm_ratio":
    q}`` with ``q`` the smaller of the two terms' norms over the model's norm."""
    index = rank_index(network)
    if index is None or len({o.name for o in network.occurrences}) != len(network.occurrences):
        return None
    columns = [_columns(np.asarray(tensors[o.name]), o.indices.index(index))
               for o in network.occurrences]
    norms = [np.linalg.norm(c, axis=0) for c in columns]
    if any(not np.all(np.isfinite(n) & (n > 0)) for n in norms):
        return None
    # <term r, term s> / (|term r| |term s|): the product of the columns' cosines (complex
    # tensors: its real part, as the model's norm takes it)
    cosines = np.real(np.prod([(c.conj().T @ c) / np.outer(n, n)
                               for c, n in zip(columns, norms)], axis=0))
    logs = np.sum(np.log(norms), axis=0)         # the terms' norms, scaled so none overflows
    terms = np.exp(logs - logs.max())
    model = math.sqrt(max(float(terms @ cosines @ terms), 0.0))
    np.fill_diagonal(cosines, np.inf)
    r, s = np.unravel_index(np.argmin(cosines), cosines.shape)
    ratio = float(min(terms[r], terms[s]) / model) if model > 0 else math.inf
    if cosines[r, s] >= CONGRUENCE or ratio <= 1.0:
        return None
    return {"terms": sorted([int(r), int(s)]), "congruence": float(cosines[r, s]),
            "norm_ratio": ratio}


def _columns(array, axis: int) -> np.ndarray:
    """``array`` as a matrix whose columns are its slices along ``axis``."""
    return np.moveaxis(array, axis, -1).reshape(-1, array.shape[axis])


def record(result) -> None:
    """Put :func:`diagnose`'s finding for a fit into ``result.info["degenerate"]`` and warn."""
    found = diagnose(result.network, {**result.tensors, **result.inputs})
    if found is None:
        return
    result.info["degenerate"] = found
    r, s = found["terms"]
    warnings.warn(
        f"terms {r} and {s} of the rank `{rank_index(result.network)}` nearly cancel "
        f"(congruence {found['congruence']:.3f}, each at least {found['norm_ratio']:.3g}x the "
        "model's norm): a degenerate CP fit, whose error falls ever more slowly as the two "
        "grow, so more sweeps will not make it converge; the best fit of this rank may not "
        "exist. A lower rank, nonneg=True or l2= (a ridge) make the minimum exist",
        DegenerateWarning, stacklevel=3)
