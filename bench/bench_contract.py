"""Benchmark tnc's planning and contraction against opt_einsum and cotengra.

    python bench/bench_contract.py            # full run (about a minute)
    python bench/bench_contract.py --quick    # fewer repeats

Prints, for PEPS 4x4 (D=3): the planning time of tnc's default optimizer
('auto') and the ratio of its flops to the best of opt_einsum 'dp' and
cotengra's HyperOptimizer (target: <= 1.1 and < 10 s); the overhead of
``Network.contract`` over calling the cached opt_einsum expression directly
(target: < 5 %); and the planning time of 'auto' on the 48-tensor energy network.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")        # oversubscribed BLAS threads make timings noisy
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import opt_einsum as oe  # noqa: E402

import tnc  # noqa: E402
from tnc.engine.plan import cotengra_available  # noqa: E402


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def reference_flops(net, cotengra_repeats: int) -> dict[str, int]:
    """Flops found by opt_einsum 'dp' and (when installed) a cotengra HyperOptimizer."""
    found = {}
    _, info = oe.contract_path(net.equation, *net.shapes, shapes=True, optimize="dp")
    found["opt_einsum dp"] = int(info.opt_cost)
    if cotengra_available():
        import cotengra as ctg
        optimizer = ctg.HyperOptimizer(max_repeats=cotengra_repeats, minimize="flops",
                                       parallel=False, progbar=False)
        _, info = oe.contract_path(net.equation, *net.shapes, shapes=True, optimize=optimizer)
        found["cotengra"] = int(info.opt_cost)
    return found


def bench_planning(name: str, sizes: dict, cotengra_repeats: int) -> None:
    net = tnc.library(name, **sizes)
    cost, seconds = timed(net.cost, "auto")
    found = reference_flops(net, cotengra_repeats)
    best = min(found.values())
    print(f"{name} {sizes}: {len(net.occurrences)} tensors")
    print(f"  tnc auto planning time        {seconds:8.3f} s   (target < 10 s)")
    print(f"  tnc auto flops                {cost.flops:10.4g}")
    for label, flops in found.items():
        print(f"  {label:<29} {flops:10.4g}")
    print(f"  flops ratio auto / best       {cost.flops / best:8.3f}     (target <= 1.1)")


def interleaved_medians(first, second, rounds: int, batch: int = 10) -> tuple[float, float]:
    """Median seconds per call of two functions timed in alternating batches."""
    times = ([], [])
    for _ in range(rounds):
        for function, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            for _ in range(batch):
                function()
            bucket.append((time.perf_counter() - start) / batch)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_overhead(rounds: int) -> None:
    net = tnc.library("peps", Lx=4, Ly=4, D=3)
    tensors = net.random(seed=0)
    net.contract(tensors)                               # plan once, warm up
    expression = net.plan("auto").expression
    arrays = [tensors[occ.name] for occ in net.occurrences]
    direct, through = interleaved_medians(lambda: expression(*arrays),
                                          lambda: net.contract(tensors), rounds)
    print(f"repeated contract, peps 4x4 D=3 (median of {rounds} interleaved batches of 10)")
    print(f"  cached opt_einsum expression  {direct * 1e3:8.3f} ms")
    print(f"  tnc Network.contract          {through * 1e3:8.3f} ms")
    print(f"  overhead ratio                {through / direct:8.3f}     (target < 1.05)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*kahypar.*")
    rounds = 20 if args.quick else 100
    bench_planning("peps", {"Lx": 4, "Ly": 4, "D": 3}, 32 if args.quick else 128)
    print()
    bench_overhead(rounds)
    print()
    net = tnc.library("energy")
    cost, seconds = timed(net.cost, "auto")
    print(f"energy {net.sizes}: {len(net.occurrences)} tensors")
    print(f"  tnc auto planning time        {seconds:8.3f} s   flops {cost.flops:.4g}")
    _, info = oe.contract_path(net.equation, *net.shapes, shapes=True, optimize="greedy")
    print(f"  opt_einsum greedy flops       {int(info.opt_cost):10.4g}")
    _, info = oe.contract_path(net.equation, *net.shapes, shapes=True,
                               optimize="random-greedy-128")
    print(f"  opt_einsum random-greedy-128  {int(info.opt_cost):10.4g}   (auto without cotengra)")
    if cotengra_available():
        cost, seconds = timed(net.cost, "cotengra")
        print(f"  tnc 'cotengra' (full search)  {cost.flops:10.4g}   in {seconds:.3f} s")


if __name__ == "__main__":
    main()
