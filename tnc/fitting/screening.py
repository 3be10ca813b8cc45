"""How ``init="auto"`` starts an ALS fit: the SVD start, or the best of several short fits.

Measured on tensorly's data sets (``bench/bench_real.py``, CPU seconds, one thread):

* IL2 (13x4x12x8, 192 entries missing): the SVD start of data with missing entries
  (zeros in their place) can land in a worse basin (rank 3 with WLS: 0.2988 against
  0.2363 from a random start); 5 short starts of 25 sweeps ended 1.04 % (rank 4) and
  0.81 % (rank 5) above tensorly's best of 5 random starts, 10 x 25 and 5 x 100 each
  fixed one rank, 10 x 100 all three (-0.00 %, -0.00 %, -0.03 %) for 1.2-1.35 s against
  0.8-1.0 s: data of at most ``SCREEN_SMALL`` entries screen 10 x 100;
* Kinetic (460,800 entries, 20 % hidden): 5 x 25 took rank 5 from 0.03864 to 0.03731
  (tensorly's best of 5: 0.03720), rank 3 0.04930 -> 0.04916, rank 4 0.04189 ->
  0.04183, for 10-25 % more time;
* complete data of at most ``SCREEN_SMALL`` entries screen too: COVID-19 serology
  (28,908 entries) ended +0.17 %, +0.23 % and +0.99 % above the best of 5 random starts
  of tensorly and pyttb at ranks 3-5 from the SVD start, screened +0.00 % at each, for
  0.6-0.84 s against 0.16-0.57 s; bigger complete data keep the SVD start.

The in-memory ALS (:func:`tnc.fitting.als.run_als`), the streamed one
(:mod:`tnc.fitting.streamed`) and sparse CP (:mod:`tnc.fitting.sparse_als`) screen by the
same rule with the same starts (:func:`screened_fit`), so each gives the fit of the others.
"""
from __future__ import annotations

import dataclasses

SCREEN_ENTRIES = 1_000_000  # init="auto" screens several short starts on data this small
SCREEN_STARTS = 5         # the SVD start and 4 random ones
SCREEN_SWEEPS = 25        # sweeps of each screening fit
SCREEN_SMALL = 1 << 16    # data this small screen SCREEN_SMALL_STARTS starts of
SCREEN_SMALL_STARTS = 10  # SCREEN_SMALL_SWEEPS sweeps (about a second at most)
SCREEN_SMALL_SWEEPS = 100
SCREEN_TIE = 1e-6         # short fits this close (relative loss) tie: the earliest wins


def screening(problem, options) -> tuple[int, int] | None:
    """``(starts, sweeps)`` to screen for ``init="auto"``, or None (the SVD start): data of
    at most ``SCREEN_SMALL`` entries (complete or not; sparse data count their dense
    size) screen ``SCREEN_SMALL_STARTS`` x ``SCREEN_SMALL_SWEEPS``, masked data up to
    ``SCREEN_ENTRIES`` ``SCREEN_STARTS`` x ``SCREEN_SWEEPS``; bigger data and given
    starts none.

        >>> import numpy as np, tnc
        >>> from tnc.fitting.als import ALSOptions
        >>> from tnc.fitting.front import FitProblem
        >>> net = tnc.library("cp", I=4, J=3, K=2, R=2)
        >>> masked = FitProblem(net, np.ones((4, 3, 2)), np.ones((4, 3, 2), bool), {})
        >>> screening(masked, ALSOptions()), screening(masked, ALSOptions(init="svd"))
        ((10, 100), None)
        >>> screening(FitProblem(net, np.ones((4, 3, 2)), None, {}), ALSOptions(max_iter=30))
        (10, 30)
    """
    init = options.init
    if not (isinstance(init, str) and init == "auto"):
        return None
    if problem.target.size <= SCREEN_SMALL:
        return SCREEN_SMALL_STARTS, min(SCREEN_SMALL_SWEEPS, options.max_iter)
    if problem.mask is None or problem.target.size > SCREEN_ENTRIES:
        return None
    return SCREEN_STARTS, min(SCREEN_SWEEPS, options.max_iter)


def best_screened(run, options, seed, plan):
    """The best of ``plan = (starts, sweeps)`` short fits ``run(options, seed, init)``
    (FitResults): the SVD start, then random seeds ``seed + 1, ...``; no callback sees
    them. Losses within ``SCREEN_TIE`` of the lowest tie and the earliest of them wins,
    so rounding (float32, another array library) does not move the fit to another start
    that is no better. Its ``info["screened"]`` lists every short fit's error (six places)."""
    starts, sweeps = plan
    short = dataclasses.replace(options, max_iter=sweeps, callback=None)
    trials = [run(short, None if seed is None else seed + j, "svd" if j == 0 else "random")
              for j in range(starts)]
    lowest = min(r.loss for r in trials)
    best = next(r for r in trials if r.loss <= lowest + SCREEN_TIE * abs(lowest))
    best.info["screened"] = [round(t.rel_error, 6) for t in trials]
    return best


def screened_fit(run, options, seed, plan):
    """``run(options, seed, start)`` from the best of the ``plan`` short fits
    (:func:`best_screened`), its ``info`` saying the start was screened: the first run of
    every ALS path where :func:`screening` gives a plan."""
    start = best_screened(run, options, seed, plan)
    result = run(options, seed, start)
    result.info.update(init="screened", screened=start.info["screened"])
    return result


def restart_start(init, k: int):
    """The start of restart ``k`` (from 0) of an ALS fit not screened: ``init`` first
    (``"auto"``: the SVD start), then random starts after a named one, since an SVD start
    is the same every time and its restarts would repeat one fit; given arrays every time.
    The dense, streamed and sparse ALS paths all restart this way.

        >>> [restart_start("svd", k) for k in range(3)], restart_start("auto", 0)
        (['svd', 'random', 'random'], 'svd')
    """
    if not isinstance(init, str):
        return init
    if k:
        return "random"
    return "svd" if init == "auto" else init
