"""Sliced contraction: tnc against cotengra on the same path and the same sliced indices.

    python bench/bench_slicing.py [--L 4] [--D 4] [--fraction 0.1] [--repeats 5]

A PEPS norm (two layers of an L x L PEPS, bond D) is planned once; tnc slices it
to fit ``fraction`` of its unsliced peak (greedy slicer), and cotengra's
``ContractionTree`` built from the same path gets the same indices removed
(``remove_ind_``) and contracts the same slices. Medians over repeats, the two
run in turn within each repeat; ratio < 1 means tnc is faster. It also prints the
flops overhead of tnc's greedy slicing and of cotengra's ``SliceFinder`` for the
same limit (``slicer="cotengra"``), and checks both values against the unsliced one.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import tnc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_slicing import PEPS_NORM  # noqa: E402  (the same network text the tests use)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=4)
    parser.add_argument("--D", type=int, default=4)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import cotengra as ctg

    net = tnc.compile(PEPS_NORM, Lx=args.L, Ly=args.L, D=args.D)
    tensors = net.random(seed=0)
    limit = int(net.cost().peak_bytes * args.fraction)
    cost = net.cost(memory_limit=limit)
    other = net.cost(memory_limit=limit, slicer="cotengra")
    plan = net.plan()
    inputs, output = net.equation.split("->")
    tree = ctg.ContractionTree.from_path(inputs.split(","), output, plan.info.size_dict,
                                         path=[list(p) for p in plan.cost.path])
    for index in cost.sliced:
        tree.remove_ind_(net.symbols[index])
    arrays = net.operands(tensors)
    exact = net.contract(tensors, memory_limit=None)
    runs = {"tnc": lambda: net.contract(tensors, memory_limit=limit),
            "cotengra": lambda: tree.contract(arrays)}
    for name, run in runs.items():
        value = run()
        assert abs(value - exact) <= 1e-12 * abs(exact), (name, value, exact)
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"PEPS norm {args.L}x{args.L} D={args.D}: unsliced {net.cost()}")
    print(f"limit {limit} B: tnc greedy {cost}")
    print(f"            cotengra SliceFinder: {len(other.sliced)} indices, {other.slices} "
          f"slices, flops overhead x{other.overhead:.4g}, peak {other.peak_bytes} B")
    print(f"same path and slices ({tree.nslices} slices): tnc {median['tnc'] * 1e3:.1f} ms, "
          f"cotengra {median['cotengra'] * 1e3:.1f} ms, ratio tnc/cotengra "
          f"{median['tnc'] / median['cotengra']:.3f} (median of {args.repeats})")


if __name__ == "__main__":
    main()
