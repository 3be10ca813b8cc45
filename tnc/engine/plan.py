"""Plan a contraction: einsum equation, path, flop count and memory, before any allocation.

    >>> from tnc.engine.plan import plan_contraction
    >>> plan = plan_contraction("ij,jk->ik", [(2, 3), (3, 4)], "greedy")
    >>> plan.cost.flops, plan.cost.largest_intermediate
    (48, 8)
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import opt_einsum as oe

from tnc.errors import MemoryLimitError, TncError

OPTIMIZERS = ("auto", "greedy", "dp", "optimal", "branch-1", "branch-2", "branch-all",
              "random-greedy", "auto-hq", "cotengra")
DP_MAX_TENSORS = 20          # 'auto' plans with dynamic programming up to this many tensors


@dataclass(frozen=True)
class Cost:
    """What a planned contraction costs.

    ``flops``: scalar operations counted by opt_einsum; ``largest_intermediate``:
    elements of the biggest intermediate; ``peak_bytes``: bytes of intermediates
    alive at the same moment (inputs excluded, result included); ``path``: the
    pairwise contraction order.
    """

    flops: int
    largest_intermediate: int
    peak_bytes: int
    path: tuple[tuple[int, ...], ...]

    def for_itemsize(self, itemsize: int) -> "Cost":
        """The same cost with ``peak_bytes`` for elements of ``itemsize`` bytes (planned at 8)."""
        return Cost(self.flops, self.largest_intermediate, self.peak_bytes // 8 * itemsize,
                    self.path)

    def __str__(self) -> str:
        return (f"flops {format_count(self.flops)}, largest intermediate "
                f"{format_count(self.largest_intermediate)} "
                f"elements, peak memory {format_bytes(self.peak_bytes)}")


@dataclass(frozen=True)
class Plan:
    """A planned contraction: the compiled opt_einsum expression and its cost."""

    equation: str
    expression: oe.contract.ContractExpression
    cost: Cost
    info: object    # opt_einsum PathInfo, for printing


def format_count(n) -> str:
    """``n`` to 4 significant digits, also an int past the float range (a network's
    flops or sizes can be 4**2000), which ``f"{n:.4g}"`` cannot format.

    >>> format_count(123456), format_count(4 ** 2000)
    ('1.235e+05', '1.318e+1204')
    """
    if isinstance(n, int) and abs(n) >= 2 ** 1000:
        digits = str(abs(n))         # truncated, not rounded: 4 digits of a 300+ digit number
        return f"{'-' if n < 0 else ''}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
    return f"{n:.4g}"


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{format_count(n)} {unit}"
        n = n // 1024 if isinstance(n, int) and abs(n) >= 2 ** 1000 else n / 1024
    return f"{n} B"


def resolve_optimizer(optimize, num_tensors: int):
    """Turn tnc's optimizer names into something opt_einsum accepts.

    ``"auto"`` plans exactly (dynamic programming) for up to ``DP_MAX_TENSORS``
    tensors and above with a 2-second cotengra search (when installed) or
    opt_einsum's random-greedy; ``"cotengra"`` searches longer (5 s).
    """
    if not isinstance(optimize, str):
        return fresh_optimizer(optimize)    # a path, or a PathOptimizer object
    if optimize not in OPTIMIZERS:
        raise TncError(f"unknown path optimizer {optimize!r}; choose one of "
                       + ", ".join(OPTIMIZERS))
    if optimize == "auto":
        if num_tensors <= 4:
            return "optimal"
        if num_tensors <= DP_MAX_TENSORS:
            return "dp"
        return _cotengra_optimizer(quick=True) if cotengra_available() else "random-greedy-128"
    if optimize == "cotengra":
        if not cotengra_available():
            raise TncError("optimize='cotengra' needs the optional cotengra package: "
                           "pip install 'tnc[cotengra]'")
        return _cotengra_optimizer()
    return optimize


def fresh_optimizer(optimize):
    """A deep copy of a path optimizer object (opt_einsum's rule: a stateful optimizer
    serves one search; reused on another contraction, ``RandomGreedy`` raises), a path
    unchanged.

        >>> opt = oe.RandomGreedy(max_repeats=4)
        >>> fresh_optimizer(opt) is not opt, fresh_optimizer([(0, 1)])
        (True, [(0, 1)])
    """
    if not isinstance(optimize, oe.paths.PathOptimizer) and not callable(optimize):
        return optimize
    try:
        return copy.deepcopy(optimize)
    except Exception as error:  # noqa: BLE001 - any failure to copy means: cannot reuse it
        raise TncError(f"the path optimizer {type(optimize).__name__} cannot be copied "
                       f"({error}); tnc searches several contractions with it and an optimizer "
                       "object serves one search only: pass a name ('random-greedy', "
                       "'cotengra') or a path instead") from None


def cotengra_available() -> bool:
    try:
        import cotengra  # noqa: F401
    except ImportError:
        return False
    return True


def _cotengra_optimizer(quick: bool = False):
    """cotengra's hyper-optimizer; ``quick`` (for ``"auto"``) tunes greedy trials for 2 s.

    On the 48-tensor energy network and 5x5, 6x6 PEPS, greedy trials for 2 s find
    paths within 0.3% of the flops of the full search given 5 s, and several
    times cheaper than opt_einsum's random-greedy.
    """
    import cotengra as ctg
    if quick:
        return ctg.HyperOptimizer(methods=["greedy"], max_repeats=64, max_time=2,
                                  minimize="flops", parallel=False, progbar=False)
    return ctg.HyperOptimizer(max_repeats=64, max_time=5, minimize="flops",
                              parallel=False, progbar=False)


def peak_intermediate_elements(contraction_list, input_sizes: list[int]) -> int:
    """Most intermediate elements alive at once while following the path.

    A step's operands are freed only once its result exists, so at each step
    the intermediates alive before it plus its result count (inputs do not)::

        >>> peak_intermediate_elements([((0, 1), 8), ((0, 1), 24), ((0, 1), 12)], [6, 12, 20, 30])
        44
    """
    live = list(input_sizes)
    is_input = [True] * len(input_sizes)
    alive = peak = 0
    for step in contraction_list:
        positions, result_size = step[0], step[-1]
        peak = max(peak, alive + result_size)
        for pos in sorted(positions, reverse=True):
            size, was_input = live.pop(pos), is_input.pop(pos)
            if not was_input:
                alive -= size
        alive += result_size
        live.append(result_size)
        is_input.append(False)
    return peak


def _step_result_sizes(info) -> list:
    """opt_einsum's contraction list with each step's result size appended."""
    steps = []
    for positions, _, einsum_str, _, _ in info.contraction_list:
        result = einsum_str.split("->")[1]
        size = 1
        for symbol in result:
            size *= info.size_dict[symbol]
        steps.append((positions, size))
    return steps


def plan_contraction(equation: str, shapes, optimize="auto", itemsize: int = 8) -> Plan:
    """Find a path for ``equation`` over ``shapes`` and compile it, allocating nothing."""
    shapes = [tuple(int(d) for d in s) for s in shapes]
    optimizer = resolve_optimizer(optimize, len(shapes))
    try:
        path, info = oe.contract_path(equation, *shapes, shapes=True, optimize=optimizer)
    except MemoryError as error:   # pragma: no cover - planning itself is small
        raise TncError(f"planning ran out of memory: {error}") from None
    input_sizes = [int(np.prod(s, dtype=object)) for s in shapes]
    peak = peak_intermediate_elements(_step_result_sizes(info), input_sizes)
    cost = Cost(int(info.opt_cost), int(info.largest_intermediate), int(peak) * itemsize,
                tuple(tuple(p) for p in path))
    expression = oe.contract_expression(equation, *shapes, optimize=path)
    return Plan(equation, expression, cost, info)


MEMORY_RECHECK_SECONDS = 1.0      # available memory is read at most this often
_memory_reading = [float("-inf"), 0]


def available_memory() -> int:
    """Bytes this process may use before the machine swaps or kills it.

    Read from the system at most once per ``MEMORY_RECHECK_SECONDS``: reading
    ``/proc/meminfo`` costs more than a small contraction.
    """
    now = time.monotonic()
    if now - _memory_reading[0] > MEMORY_RECHECK_SECONDS:
        _memory_reading[:] = [now, _read_available_memory()]
    return _memory_reading[1]


def _read_available_memory() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 ** 62


_BUDGET = contextvars.ContextVar("tnc_memory_budget", default="auto")


@contextlib.contextmanager
def memory_budget(memory_limit):
    """Within it, ``"auto"`` means ``memory_limit`` (bytes, or None; ``"auto"`` keeps the
    budget in force): a fitting front's ``memory_limit=`` reaches every check its
    method makes.

        >>> with memory_budget(2 ** 20):
        ...     limit_bytes("auto")
        1048576
    """
    limit_bytes(memory_limit)                     # a bad value is refused here, by name
    token = _BUDGET.set(_BUDGET.get() if isinstance(memory_limit, str) else memory_limit)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def limit_bytes(memory_limit) -> int | None:
    """``memory_limit`` in bytes: a number of bytes, ``"auto"`` (90% of the memory
    available now, or the :func:`memory_budget` in force) or None (no limit,
    returned as None)."""
    if memory_limit is None:
        return None
    if isinstance(memory_limit, str) and memory_limit == "auto":
        budget = _BUDGET.get()
        if not (isinstance(budget, str) and budget == "auto"):
            return limit_bytes(budget)
        return int(0.9 * available_memory())
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float, np.number)) \
            or not memory_limit >= 0:
        raise TncError(f"memory_limit must be a number of bytes >= 0, 'auto' or None, got "
                       f"{memory_limit!r}")
    return int(min(memory_limit, 2 ** 62))


def check_allocation(nbytes: int, what: str, memory_limit="auto") -> None:
    """Raise :class:`MemoryLimitError` before allocating ``nbytes`` for ``what`` when they
    do not fit ``memory_limit`` (see :func:`limit_bytes`); the one check every large
    allocation (random tensors, factors, Grams, dense conversions, environments) makes.

        >>> check_allocation(10 ** 15, "a test array", memory_limit=2 ** 30)
        Traceback (most recent call last):
        ...
        tnc.errors.MemoryLimitError: a test array needs 909.5 TiB but the memory limit is 1 GiB; lower the sizes or raise memory_limit
    """
    limit = limit_bytes(memory_limit)
    if limit is not None and nbytes > limit:
        raise MemoryLimitError(f"{what} needs {format_bytes(nbytes)} but the memory limit is "
                               f"{format_bytes(limit)}; lower the sizes or raise memory_limit")


def check_arrays_fit(shapes: dict, what: str, memory_limit="auto", dtype=np.float64) -> None:
    """:func:`check_allocation` for arrays of ``shapes`` (name -> shape) made together;
    the message names their total and the largest."""
    elements = sum(math.prod(shape) for shape in shapes.values())
    largest = max(shapes, key=lambda n: math.prod(shapes[n]), default=None)
    if largest is not None:
        check_allocation(elements * np.dtype(dtype).itemsize,
                         f"{what} ({format_count(elements)} elements; largest `{largest}` of shape "
                         f"{tuple(shapes[largest])})", memory_limit)


def check_memory(cost: Cost, memory_limit, what: str = "this contraction") -> None:
    """Raise :class:`MemoryLimitError` when ``cost`` does not fit ``memory_limit``.

    ``memory_limit`` is a number of bytes, ``"auto"`` (90% of available memory)
    or ``None`` (no check).
    """
    limit = limit_bytes(memory_limit)
    if limit is None:
        return
    if cost.peak_bytes > limit:
        raise MemoryLimitError(
            f"{what} needs {format_bytes(cost.peak_bytes)} for intermediates "
            f"(largest {format_count(cost.largest_intermediate)} elements) but the memory limit is "
            f"{format_bytes(limit)}; lower the sizes, try optimize='dp' or 'cotengra', "
            "or raise memory_limit")
