"""DMRG fitting of a rank-8 TT to a 4^10 tensor: time per sweep against one read of the data.

A sweep of ``tnc.fit(..., method="dmrg")`` on an open chain reads the data once
(:class:`tnc.mps.environments.DataEnvironment`), so its time is compared with
two single reads of the same data in the same process: ``np.sum`` and one
contraction of the data with a vector (over its last leg). For scale it also
times tensorly's TT-SVD of the same tensor at the same rank (one pass of
truncated SVDs, not an iterative fit). Prints medians over ``--repeats``::

    python bench/bench_dmrg_fit.py --N 10 --d 4 --rank 8 --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import tnc


def data(N, d, rank, noise, seed=3):
    """A random rank-``rank`` TT tensor of unit norm plus Gaussian noise of norm ``noise``."""
    true = tnc.library("tt", N=N, d=d, r=rank)
    x = true.contract(true.random(seed=seed))
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(x.shape)
    return x / np.linalg.norm(x) + noise * e / np.linalg.norm(e)


def median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_sweep_times(x, N, d, rank, sweeps):
    """Per-sweep times of one fit (the first sweep, which builds the environment, dropped)."""
    net = tnc.library("tt", N=N, d=d, r=rank)
    result = tnc.fit(net, x, method="dmrg", max_iter=sweeps, tol=0, progress=False)
    stamps = [0.0] + [h["time"] for h in result.history]
    return list(np.diff(stamps)[1:]), result.rel_error


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=10)
    parser.add_argument("--d", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--noise", type=float, default=1e-2)
    parser.add_argument("--sweeps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    warnings.simplefilter("ignore")
    x = data(args.N, args.d, args.rank, args.noise)
    vector = np.ones(args.d)
    sweep_times, rel = [], None
    for _ in range(args.repeats):
        times, rel = fit_sweep_times(x, args.N, args.d, args.rank, args.sweeps)
        sweep_times += times
    per_sweep = statistics.median(sweep_times)
    read_sum = median_time(lambda: np.sum(x), 20 * args.repeats)
    read_vec = median_time(lambda: x.reshape(-1, args.d) @ vector, 20 * args.repeats)
    print(f"DMRG fit: rank-{args.rank} TT to a {args.d}^{args.N} tensor (noise {args.noise:g}), "
          f"BLAS threads {args.threads or 'default'}, medians over {len(sweep_times)} sweeps")
    print(f"  tnc sweep        {per_sweep * 1e3:8.3f} ms   (rel_error {rel:.6f})")
    print(f"  np.sum(data)     {read_sum * 1e3:8.3f} ms   sweep / sum    {per_sweep / read_sum:.2f}")
    print(f"  data @ vector    {read_vec * 1e3:8.3f} ms   sweep / vector {per_sweep / read_vec:.2f}")
    try:
        from tensorly.decomposition import tensor_train
    except ImportError:
        return
    peer = median_time(lambda: tensor_train(x, [1] + [args.rank] * (args.N - 1) + [1]),
                       args.repeats)
    print(f"  tensorly TT-SVD  {peer * 1e3:8.3f} ms   sweep / TT-SVD {per_sweep / peer:.2f}")


if __name__ == "__main__":
    main()
