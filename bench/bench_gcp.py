"""GCP speed: Poisson L-BFGS-B against pyttb.gcp_opt, and stochastic Adam on sparse data.

    python bench/bench_gcp.py [--repeats 5] [--skip-sparse] [--sparse-size 1000] [--nnz 1000000]

1. Poisson GCP, 60^3 count tensor of a rank-5 CP model (gamma factors),
   rank 5, L-BFGS-B: tnc (``tnc.fit(..., method="gcp", loss="poisson")``) and
   ``pyttb.gcp_opt(..., Objectives.POISSON, LBFGSB())`` from the same start
   (pyttb's normalised initial guess), with the same stopping rules (factr 1e7,
   pgtol 1e-4 * entries). Prints the median wall times of interleaved repeats,
   their ratio, both final losses, and tnc's time to first reach pyttb's final
   loss (from its per-iteration history), plus the correlation of the fitted and
   true means.
2. Poisson GCP on a ``--kernel-size``^3 count tensor (170: 4.9M entries, past
   tnc.engine.streams.CP_GRADIENT_ENTRIES), 15 L-BFGS-B iterations, with the dense
   gradient on the compiled kernels and with them disabled (the grad engine on BLAS):
   median times, their ratio, and the share of the fit spent in the kernels.
3. Stochastic Adam (stratified sampling) on a random sparse
   ``size^3`` count tensor with ``nnz`` nonzeros: wall time, epochs, and the
   peak RSS (``resource.getrusage``) against the storage of the nonzeros and of
   the dense tensor.

Same process, one BLAS thread for everything (oversubscribed BLAS threads on
a shared machine make small matrix products 10-100x slower; set
OMP_NUM_THREADS before running to change that).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tnc  # noqa: E402
from kernel_clock import KernelClock  # noqa: E402
from tnc.engine import kernels  # noqa: E402


def poisson_problem(size=60, rank=5, seed=0):
    rng = np.random.default_rng(seed)
    factors = [rng.gamma(1.0, 1.0, (size, rank)) for _ in range(3)]
    mean = np.einsum("ir,jr,kr->ijk", *factors)
    return mean, rng.poisson(mean).astype(float)


def run_pyttb(counts, init, rank):
    import pyttb as ttb
    from pyttb.gcp.handles import Objectives
    from pyttb.gcp.optimizers import LBFGSB
    start = time.perf_counter()
    result, initial, info = ttb.gcp_opt(ttb.tensor(counts), rank, Objectives.POISSON, LBFGSB(),
                                        init=[np.asfortranarray(u) for u in init], printitn=0)
    return time.perf_counter() - start, float(info["final_f"]), result, initial


def run_tnc(net, counts, init):
    start = time.perf_counter()
    result = tnc.fit(net, counts, method="gcp", loss="poisson", progress=False,
                     init={name: u.copy() for name, u in zip("ABC", init)})
    return time.perf_counter() - start, result


def bench_poisson(repeats: int) -> None:
    logging.disable(logging.WARNING)        # pyttb warns about memory order on every call
    size, rank = 60, 5
    mean, counts = poisson_problem(size, rank)
    rng = np.random.default_rng(1)
    raw = [rng.uniform(0, 1, (size, rank)) for _ in range(3)]
    _, _, _, initial = run_pyttb(counts, raw, rank)        # warm-up; its normalised start
    init = [np.array(u) * initial.weights ** (1 / 3) for u in initial.factor_matrices]
    net = tnc.library("cp", I=size, J=size, K=size, R=rank)
    run_tnc(net, counts, init)                             # warm-up: plans are cached
    times, shares = {"tnc": [], "pyttb": []}, []
    for _ in range(repeats):
        t_pyttb, f_pyttb, _, _ = run_pyttb(counts, init, rank)
        with KernelClock() as clock:
            t_tnc, result = run_tnc(net, counts, init)
        times["pyttb"].append(t_pyttb)
        times["tnc"].append(t_tnc)
        shares.append(clock.seconds / t_tnc)
    reached = next((h["time"] for h in result.history if h["loss"] <= f_pyttb), None)
    med = {k: statistics.median(v) for k, v in times.items()}
    corr = np.corrcoef(result.reconstruct().ravel(), mean.ravel())[0, 1]
    print(f"Poisson GCP {size}^3 rank {rank}, L-BFGS-B, median of {repeats}:")
    print(f"  pyttb.gcp_opt  {med['pyttb']:.3f} s   final loss {f_pyttb:.6f}")
    print(f"  tnc gcp        {med['tnc']:.3f} s   final loss {result.loss:.6f} "
          f"({result.iterations} iterations, {result.info['evaluations']} evaluations)")
    print(f"  ratio tnc/pyttb {med['tnc'] / med['pyttb']:.2f}x; tnc reached pyttb's final "
          f"loss after " + (f"{reached:.3f} s" if reached is not None else "-- (not reached)"))
    print(f"  correlation of fitted and true means: {corr:.5f}")
    print(f"  share of tnc's fit in the compiled kernels: {statistics.median(shares):.0%}")


def bench_kernel_gradient(size: int, repeats: int, rank=5, iterations=15) -> None:
    """tnc's Poisson GCP with the dense gradient on the kernels and on the grad engine."""
    _, counts = poisson_problem(size, rank)
    rng = np.random.default_rng(1)
    init = [rng.uniform(0.5, 1.5, (size, rank)) for _ in range(3)]
    net = tnc.library("cp", I=size, J=size, K=size, R=rank)

    def fit():
        return tnc.fit(net, counts, method="gcp", loss="poisson", progress=False,
                       max_iter=iterations, init={n: u.copy() for n, u in zip("ABC", init)})

    def engine():
        with kernels.disabled():
            return fit()

    runs = {"kernels": [], "engine": []}
    fit(), engine()                                          # warm-up: plans
    for _ in range(repeats):
        for name, function in (("kernels", fit), ("engine", engine)):
            with KernelClock() as clock:
                start = time.perf_counter()
                result = function()
                elapsed = time.perf_counter() - start
            runs[name].append((elapsed, clock.seconds / elapsed, result.loss))
    med = {name: statistics.median(r[0] for r in rows) for name, rows in runs.items()}
    share = statistics.median(r[1] for r in runs["kernels"])
    print(f"Poisson GCP {size}^3 rank {rank}, {iterations} L-BFGS-B iterations, median of "
          f"{repeats} (kernels {kernels.variant()}, {kernels.threads()} threads):")
    print(f"  dense gradient on the kernels  {med['kernels']:.3f} s   ({share:.0%} of it in "
          f"the kernels; loss {runs['kernels'][-1][2]:.6f})")
    print(f"  on the grad engine (BLAS)      {med['engine']:.3f} s   (loss "
          f"{runs['engine'][-1][2]:.6f})")
    print(f"  ratio kernels/engine {med['kernels'] / med['engine']:.2f}")


def random_sparse(size: int, nnz: int, rank: int, seed=0) -> tnc.SparseTensor:
    """Counts at ``nnz`` random coordinates, drawn from a low-rank mean there (in chunks)."""
    rng = np.random.default_rng(seed)
    linear = np.unique(rng.integers(0, size ** 3, int(nnz * 1.01)))[:nnz]
    coords = np.stack(np.unravel_index(linear, (size,) * 3), axis=1)
    factors = [rng.gamma(1.0, 1.0, (size, rank)) for _ in range(3)]
    values = np.empty(len(coords))
    for start in range(0, len(coords), 100_000):
        part = coords[start:start + 100_000]
        mean = np.einsum("sr,sr,sr->s", *(f[part[:, n]] for n, f in enumerate(factors)))
        values[start:start + 100_000] = 1.0 + rng.poisson(mean)
    return tnc.SparseTensor.from_coo(coords, values, (size,) * 3)


def current_rss() -> int:
    """Resident set size now, in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def bench_sparse(size: int, nnz: int, rank: int, epochs: int) -> None:
    data = random_sparse(size, nnz, rank)
    stored = data.coords.nbytes + data.values.nbytes
    before = current_rss()
    during = [before]
    net = tnc.library("cp", I=size, J=size, K=size, R=rank)
    start = time.perf_counter()
    result = tnc.fit(net, data, method="gcp", loss="poisson", optimizer="adam",
                     max_iter=epochs, epoch_iters=200, lr=1e-3, progress=False,
                     callback=lambda state: during.append(current_rss()))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mib = 2 ** 20
    print(f"Stochastic Adam (stratified), sparse {size}^3 with {data.nnz} nonzeros, rank {rank}:")
    print(f"  {wall:.1f} s for {result.iterations - 1} epochs of 200 steps "
          f"(batch {result.info['batch_size']}, estimate on {result.info['estimate_samples']} "
          f"entries); estimated loss {result.history[0]['loss']:.4g} -> {result.loss:.4g}")
    print(f"  RSS before the fit {before / mib:.0f} MiB, largest after an epoch "
          f"{max(during) / mib:.0f} MiB (+{(max(during) - before) / mib:.0f} MiB); peak RSS "
          f"of the process {peak / mib:.0f} MiB")
    print(f"  the nonzeros take {stored / mib:.0f} MiB; the dense tensor would take "
          f"{8 * data.size / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-sparse", action="store_true")
    parser.add_argument("--kernel-size", type=int, default=170, help="0: skip that case")
    parser.add_argument("--sparse-size", type=int, default=1000)
    parser.add_argument("--nnz", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    bench_poisson(args.repeats)
    if args.kernel_size:
        bench_kernel_gradient(args.kernel_size, args.repeats)
    if not args.skip_sparse:
        bench_sparse(args.sparse_size, args.nnz, 10, args.epochs)


if __name__ == "__main__":
    main()
