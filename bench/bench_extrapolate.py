"""The cost of an extrapolated ALS sweep (``extrapolate=True``) over a plain one.

Issue 18 asks extrapolation to make ALS faster through swamps; it pays only when the
sweeps it saves outweigh what each search costs. This script fits the same planted,
noisy data both ways in one process, the two fits taking turns (:mod:`timing`'s rule),
60 sweeps each with ``tol=0``, and prints the median time per sweep after the first 10
(planning and the first searches excluded) and their ratio:

    python bench/bench_extrapolate.py [--repeats 7] [--sweeps 60]

Measured (December 2026, one BLAS thread, shared 2-core machine): CP 30^3 R5 2.63x,
CP 100^3 R10 2.11x, Tucker 30^3 2.32x, TT N=6 2.91x, after the line's norms and data
products became one batched einsum each (before: 2.95x, 2.28x, 2.57x, 3.26x).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
from threadpoolctl import threadpool_limits

import tnc

CASES = {"cp 30^3 R5": ("cp", dict(I=30, J=30, K=30, R=5)),
         "cp 100^3 R10": ("cp", dict(I=100, J=100, K=100, R=10)),
         "tucker 30^3 R4": ("tucker", dict(I=30, J=30, K=30, R1=4, R2=4, R3=4)),
         "tt N=6 d=6 r=4": ("tt", dict(N=6, d=6, r=4))}


def planted(kind: str, sizes: dict, seed: int = 1, noise: float = 0.01):
    net = tnc.library(kind, **sizes)
    x = net.contract(net.random(seed=seed))
    rng = np.random.default_rng(seed + 100)
    return net, x + noise * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.shape)


def per_sweep(net, x, extrapolate: bool, seed: int, sweeps: int) -> float:
    result = tnc.fit(net, x, method="als", seed=seed, progress=False, init="svd",
                     extrapolate=extrapolate, max_iter=sweeps, tol=0.0)
    times = [h["time"] for h in result.history]
    return (times[-1] - times[9]) / (len(times) - 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweeps", type=int, default=60)
    args = parser.parse_args()
    threadpool_limits(1)
    print(f"ms per sweep, medians of {args.repeats} interleaved fits of {args.sweeps} sweeps")
    for name, (kind, sizes) in CASES.items():
        net, x = planted(kind, sizes)
        times = {False: [], True: []}
        for seed in range(args.repeats):
            for extrapolate in (False, True):
                times[extrapolate].append(per_sweep(net, x, extrapolate, seed, args.sweeps))
        plain, extrapolated = (statistics.median(times[k]) for k in (False, True))
        print(f"  {name:16s} plain {plain * 1e3:7.3f}  extrapolated {extrapolated * 1e3:7.3f}"
              f"  ratio {extrapolated / plain:.2f}")


if __name__ == "__main__":
    main()
