"""CP-ALS on sparse data: tnc (tnc/fitting/sparse_als.py) against pyttb's ``cp_als`` on an
``sptensor``, in the same process, one thread each.

Anchor (issue 15): 1000^3, 1,000,000 random nonzeros, rank 10; pyttb measured 1,498 ms per
sweep earlier on this machine. Prints medians over repeats of the time per sweep, the ratio
(goal <= 0.05x) and the fit's tracemalloc peak against the nonzeros' storage plus factors
(goal <= 3x). Run: ``python bench/bench_sparse_als.py [--size 1000] [--nnz 1000000]``;
``--networks 5`` adds sparse Tucker and TT ALS at rank 5 (no peer: against tnc's CP).
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import tnc
from tnc.engine.sparse import SparseTensor


def data(size: int, nnz: int, seed: int = 0) -> SparseTensor:
    rng = np.random.default_rng(seed)
    linear = np.unique(rng.integers(0, size ** 3, int(nnz * 1.01)))[:nnz]
    coords = np.stack(np.unravel_index(linear, (size,) * 3), axis=1)
    return SparseTensor.from_coo(coords, rng.random(len(linear)), (size,) * 3)


def tnc_sweeps(x: SparseTensor, rank: int, sweeps: int, network: str = "cp") -> list:
    """Seconds of each sweep but the first (which includes the start) of a random start."""
    i, j, k = x.shape
    net = {"cp": lambda: tnc.library("cp", I=i, J=j, K=k, R=rank),
           "tucker": lambda: tnc.library("tucker", I=i, J=j, K=k, R1=rank, R2=rank, R3=rank),
           "tt": lambda: tnc.library("tt", N=3, d=i, r=rank)}[network]()
    result = tnc.fit(net, x, method="als", init="random", max_iter=sweeps, tol=0.0,
                     progress=False)
    times = [h["time"] for h in result.history]
    return list(np.diff([0.0] + times))[1:]


def pyttb_sweep(x: SparseTensor, rank: int, sweeps: int) -> float:
    import pyttb
    tensor = pyttb.sptensor(x.coords, x.values[:, None], x.shape)
    start = time.perf_counter()
    pyttb.cp_als(tensor, rank, maxiters=sweeps, stoptol=0.0, printitn=0, init="random")
    return (time.perf_counter() - start) / sweeps


def peak_ratio(x: SparseTensor, rank: int, network: str = "cp") -> tuple:
    """(tracemalloc peak of a 3-sweep fit in bytes, the nonzeros' storage plus factors)."""
    storage = x.coords.nbytes + x.values.nbytes + sum(x.shape) * rank * 8
    tracemalloc.start()
    tnc_sweeps(x, rank, 3, network)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, storage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--nnz", type=int, default=1_000_000)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--networks", type=int, default=0, metavar="RANK",
                        help="also time sparse Tucker and TT ALS (sparse_network.py) at "
                        "this rank: no peer runs them, so they are shown against tnc's CP")
    args = parser.parse_args()
    x = data(args.size, args.nnz)
    x.linear                                            # built once, as a fit would
    ours = float(np.median(sum((tnc_sweeps(x, args.rank, 6) for _ in range(args.repeats)), [])))
    theirs = float(np.median([pyttb_sweep(x, args.rank, 2) for _ in range(args.repeats)]))
    peak, storage = peak_ratio(x, args.rank)
    kernel = "compiled" if tnc.fitting.sparse_als._library() is not None else "numpy"
    print(f"{args.size}^3, {x.nnz} nonzeros, rank {args.rank}, kernel {kernel} "
          f"(medians over {args.repeats} repeats; a loaded machine)")
    print(f"tnc   {ours * 1e3:8.1f} ms per sweep")
    print(f"pyttb {theirs * 1e3:8.1f} ms per sweep")
    print(f"ratio tnc/pyttb {ours / theirs:.4f}x (goal <= 0.05x)")
    print(f"memory: the fit's own peak {peak / 2**20:.1f} MiB on top of the data; nonzeros + "
          f"factors {storage / 2**20:.1f} MiB; (data + peak) / that = "
          f"{(storage + peak) / storage:.2f}x (goal <= 3x)")
    for network in ("tucker", "tt") if args.networks else ():
        sweep = float(np.median(sum((tnc_sweeps(x, args.networks, 4, network)
                                     for _ in range(args.repeats)), [])))
        peak, storage = peak_ratio(x, args.networks, network)
        print(f"{network} rank {args.networks}: {sweep * 1e3:8.1f} ms per sweep, "
              f"{sweep / ours:.2f}x tnc's CP rank {args.rank} sweep; (data + peak) / "
              f"(nonzeros + factors) = {(storage + peak) / storage:.2f}x")


if __name__ == "__main__":
    import tnc.fitting.sparse_als  # noqa: F401
    main()
