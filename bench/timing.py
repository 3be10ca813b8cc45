"""One timing helper for the bench scripts: medians, warm-ups, interleaved turns.

    from timing import median_time, median_times

``median_time(fn, repeats, warmup)`` is the median wall time of ``fn()``;
``median_times({name: fn}, repeats, warmup)`` runs the functions in turn in every
repeat, so a change of load on the shared machine hits all of them alike and the
ratios between them stay fair. Both return seconds. The bench scripts quote ratios
of these medians, never a single absolute time.

>>> median_time(lambda: sum(range(100)), repeats=3, warmup=1) >= 0.0
True
>>> sorted(median_times({"a": lambda: None, "b": lambda: None}, repeats=2))
['a', 'b']
"""
from __future__ import annotations

import statistics
import time


def median_times(functions: dict, repeats: int = 3, warmup: int = 1,
                 clock=time.perf_counter) -> dict:
    """Median time of each function over ``repeats`` rounds after ``warmup`` untimed ones.

    The functions take turns inside each round (a, b, a, b, ...), not a block each.
    ``clock`` is any zero-argument seconds counter (``time.process_time`` for CPU time).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = {name: [] for name in functions}
    for round_ in range(warmup + repeats):
        for name, function in functions.items():
            start = clock()
            function()
            if round_ >= warmup:
                times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_time(function, repeats: int = 3, warmup: int = 1, clock=time.perf_counter) -> float:
    """Median time of ``function()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    return median_times({"f": function}, repeats, warmup, clock)["f"]


def timed_call(function, *args, clock=time.perf_counter, **kwargs):
    """``(value, seconds)`` of one call ``function(*args, **kwargs)``: for runs too
    long to repeat (a whole fit), where the script repeats over seeds instead."""
    start = clock()
    value = function(*args, **kwargs)
    return value, clock() - start
