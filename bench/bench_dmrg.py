"""Heisenberg chain ground state: tnc's two-site DMRG against quimb's DMRG2.

Both run in this process on the same problem (open spin-1/2 Heisenberg chain,
L = 32), the same bond-dimension schedule ending at 64, the same SVD cutoff
(discarded weight, 'sum2' mode in quimb) and the same stopping rule (energy
change between sweeps below ``--tol``). Prints both energies, the median wall
times over ``--repeats`` runs and the ratio tnc / quimb::

    python bench/bench_dmrg.py --L 32 --chi 64 --repeats 5 --threads 1

``--threads`` caps the BLAS threads of both (threadpoolctl): on a shared
2-core machine multithreaded BLAS on 64x64 blocks mostly measures contention.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import tnc


def run_tnc(L, schedule, cutoff, tol):
    net = tnc.library("energy", N=L, D=schedule[-1], W=5)
    result = tnc.ground_state(net, tnc.heisenberg_mpo(L), max_rank=schedule, cutoff=cutoff,
                              tol=tol, max_iter=40, progress=False)
    return result.info["energy"], result.converged, result.iterations


def run_quimb(L, schedule, cutoff, tol):
    import quimb.tensor as qtn
    dmrg = qtn.DMRG2(qtn.MPO_ham_heis(L), bond_dims=schedule, cutoffs=cutoff)
    converged = dmrg.solve(tol=tol, max_sweeps=40, verbosity=0)
    return float(dmrg.energy), converged, len(dmrg.energies)


def timed(function, *args):
    start = time.perf_counter()
    out = function(*args)
    return time.perf_counter() - start, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--chi", type=int, default=64)
    parser.add_argument("--cutoff", type=float, default=1e-10)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for both libraries (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    schedule = [c for c in (8, 16, 32) if c < args.chi] + [args.chi]
    warnings.simplefilter("ignore")
    runs = {"tnc": run_tnc, "quimb": run_quimb}
    times = {name: [] for name in runs}
    outs = {}
    for _ in range(args.repeats):              # interleaved, so noise hits both alike
        for name, function in runs.items():
            seconds, outs[name] = timed(function, args.L, schedule, args.cutoff, args.tol)
            times[name].append(seconds)
    print(f"Heisenberg L={args.L}, bond dims {schedule}, cutoff {args.cutoff:g}, "
          f"tol {args.tol:g}, {args.repeats} runs each, BLAS threads {args.threads or 'default'}")
    for name in runs:
        energy, converged, sweeps = outs[name]
        print(f"  {name:6s} energy {energy:.12f}  converged {converged}  sweeps {sweeps}  "
              f"median {statistics.median(times[name]):.3f} s  "
              f"(min {min(times[name]):.3f}, max {max(times[name]):.3f})")
    ratio = statistics.median(times["tnc"]) / statistics.median(times["quimb"])
    print(f"  energy difference {abs(outs['tnc'][0] - outs['quimb'][0]):.2e}")
    print(f"  ratio tnc / quimb (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
