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
* complete data keep the SVD start, although COVID-19 serology (28,908 entries) ends
  +0.99 % above the best of 5 random starts at rank 5 from it (+0.00 % screened, 0.8 s
  against 0.2 s): screening them would change the default of every small complete fit,
  and the streamed and sparse paths, which must give the same fit, do not screen yet.
"""
from __future__ import annotations

import dataclasses

SCREEN_ENTRIES = 1_000_000  # init="auto" screens several short starts on data this small
SCREEN_STARTS = 5         # the SVD start and 4 random ones
SCREEN_SWEEPS = 25        # sweeps of each screening fit
SCREEN_SMALL = 1 << 16    # data this small screen SCREEN_SMALL_STARTS starts of
SCREEN_SMALL_STARTS = 10  # SCREEN_SMALL_SWEEPS sweeps (about a second at most)
SCREEN_SMALL_SWEEPS = 100


def screening(problem, options) -> tuple[int, int] | None:
    """``(starts, sweeps)`` to screen for ``init="auto"``, or None (the SVD start): masked
    data of at most ``SCREEN_SMALL`` entries screen ``SCREEN_SMALL_STARTS`` x
    ``SCREEN_SMALL_SWEEPS``, up to ``SCREEN_ENTRIES`` ``SCREEN_STARTS`` x
    ``SCREEN_SWEEPS``; complete (and sparse) and bigger data and given starts none.

        >>> import numpy as np, tnc
        >>> from tnc.fitting.als import ALSOptions
        >>> from tnc.fitting.front import FitProblem
        >>> net = tnc.library("cp", I=4, J=3, K=2, R=2)
        >>> masked = FitProblem(net, np.ones((4, 3, 2)), np.ones((4, 3, 2), bool), {})
        >>> screening(masked, ALSOptions()), screening(masked, ALSOptions(init="svd"))
        ((10, 100), None)
    """
    init = options.init
    if not (isinstance(init, str) and init == "auto") or problem.mask is None or (
            problem.target.size > SCREEN_ENTRIES):
        return None
    if problem.target.size <= SCREEN_SMALL:
        return SCREEN_SMALL_STARTS, min(SCREEN_SMALL_SWEEPS, options.max_iter)
    return SCREEN_STARTS, min(SCREEN_SWEEPS, options.max_iter)


def best_screened(run, options, seed, plan):
    """The best of ``plan = (starts, sweeps)`` short fits ``run(options, seed, init)``
    (FitResults): the SVD start, then random seeds ``seed + 1, ...``; no callback sees
    them. Its ``info["screened"]`` lists every short fit's error (six places)."""
    starts, sweeps = plan
    short = dataclasses.replace(options, max_iter=sweeps, callback=None)
    trials = [run(short, None if seed is None else seed + j, "svd" if j == 0 else "random")
              for j in range(starts)]
    best = min(trials, key=lambda r: r.loss)
    best.info["screened"] = [round(t.rel_error, 6) for t in trials]
    return best
