"""Tensor-train algebra: scaling in N and R, and against torchtt and quimb in this process.

Four parts, medians over ``--repeats`` runs (the sizes of part 1 interleaved), BLAS capped at ``--threads``:

1. scaling of ``dot``, ``round`` (x + y, rank 2R, back to rank R) and operator
   application (``A.apply(x, max_rank=R)``, A of rank 4) at (N, R), (2N, R),
   (N, 2R): doubling N should double the time (ratio 2 +- 20 %), doubling R
   multiply it by at most 8.5 (the O(N d R³) formulas);
2. rounding the sum of 10 random rank-10 trains (N=20, d=4) to ``--eps`` (the QR
   rounding) and to 1e-6 (the Gram rounding ``round`` takes from there on)
   against torchtt's ``TT.round`` (same sum, same eps): goal ratio <= 0.5;
3. a rank-5 MPO applied to a rank-32 MPS (N=32, d=2) and compressed to bond 32
   against quimb's ``MatrixProductOperator.apply`` + ``compress(max_bond=32)``:
   goal ratio <= 1.0 with the same relative error (each against its own exact product);
4. ``tt_cross`` on 2^30-point grids (30 dims of 2, 10 dims of 8): time, calls, error.

    python bench/bench_tt.py --repeats 7 --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_tt.py --repeats 7

A missing peer library is reported and its part skipped.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tnc.mps.tt import TensorTrain, TTMatrix


def random_train(rng, N, d, r, sites=1):
    ranks = [1] + [r] * (N - 1) + [1]
    cls = TensorTrain if sites == 1 else TTMatrix
    return cls([rng.standard_normal((ranks[k],) + (d,) * sites + (ranks[k + 1],)) / np.sqrt(
        d * r) for k in range(N)])


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(functions, repeats: int) -> list[float]:
    """Median times of ``functions`` run in turn, ``repeats`` rounds: a load spike on the
    shared machine then hits every size alike instead of one."""
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, out in zip(functions, times):
            start = time.perf_counter()
            function()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def scaling(args) -> None:
    rng = np.random.default_rng(0)
    N, R, d = args.N, args.R, 4
    print(f"1. scaling (d={d}; medians of {args.repeats}); ratios: 2N / N (goal 1.6..2.4), "
          "2R / R (goal <= 8.5)")
    for name, make in (("dot", _dot_case), ("round", _round_case), ("apply", _apply_case)):
        base, longer, wider = interleaved([make(rng, N, d, R), make(rng, 2 * N, d, R),
                                           make(rng, N, d, 2 * R)], args.repeats)
        print(f"   {name:6s} N={N} R={R}: {base * 1e3:8.2f} ms   2N: {longer / base:5.2f}x   "
              f"2R: {wider / base:5.2f}x")


def _dot_case(rng, N, d, R):
    x, y = random_train(rng, N, d, R), random_train(rng, N, d, R)
    return lambda: [x.dot(y) for _ in range(5)]         # 5 dots a run: above the timer noise


def _round_case(rng, N, d, R):
    s = random_train(rng, N, d, R) + random_train(rng, N, d, R)
    return lambda: s.round(max_rank=R)


def _apply_case(rng, N, d, R):
    A, x = random_train(rng, N, d, 4, sites=2), random_train(rng, N, d, R)
    return lambda: A.apply(x, max_rank=R)


def versus_torchtt(args) -> None:
    for eps in sorted({args.eps, 1e-6}):
        _versus_torchtt(args, eps)


def _versus_torchtt(args, eps) -> None:
    method = "gram" if eps >= 1e-6 else "qr"          # what round(method="auto") takes
    print(f"2. round the sum of 10 rank-10 trains (N=20, d=4) to eps={eps:g} "
          f"(auto: {method!r})")
    try:
        import torch
        import torchtt
    except ImportError as error:
        print(f"   torchtt not installed ({error}); skipped")
        return
    torch.set_num_threads(max(args.threads, 1))
    rng = np.random.default_rng(1)
    trains = [random_train(rng, 20, 4, 10) for _ in range(10)]
    ours = trains[0]
    for t in trains[1:]:
        ours = ours + t
    theirs = None
    for t in trains:
        tt = torchtt.TT([torch.from_numpy(c.copy()) for c in t.cores])
        theirs = tt if theirs is None else theirs + tt
    exact = ours
    ours_time = median_time(lambda: ours.round(rel_error=eps), args.repeats)
    theirs_time = median_time(lambda: theirs.round(eps), args.repeats)
    mine = ours.round(rel_error=eps)
    other = TensorTrain([c.numpy() for c in theirs.round(eps).cores])
    print(f"   tnc {ours_time * 1e3:.1f} ms (ranks max {max(mine.ranks)}, error "
          f"{(mine - exact).norm() / exact.norm():.2e})   torchtt {theirs_time * 1e3:.1f} ms "
          f"(max {max(other.ranks)}, error {(other - exact).norm() / exact.norm():.2e})   "
          f"ratio tnc/torchtt {ours_time / theirs_time:.2f} (goal <= 0.5)")


def versus_quimb(args) -> None:
    N, d, chi, ra = 32, 2, 32, 5
    print(f"3. MPO (rank {ra}) applied to an MPS (rank {chi}), N={N}, d={d}, compressed to {chi}")
    try:
        import quimb.tensor as qtn
    except ImportError as error:
        print(f"   quimb not installed ({error}); skipped")
        return
    rng = np.random.default_rng(2)
    A = random_train(rng, N, d, ra, sites=2)
    A = TTMatrix([c + c.transpose(0, 2, 1, 3) for c in A.cores])     # symmetric: no convention
    x = random_train(rng, N, d, chi)
    qA = qtn.MatrixProductOperator([_ends(c, k, N) for k, c in enumerate(
        [c.transpose(0, 3, 1, 2) for c in A.cores])], shape="lrud")
    qx = qtn.MatrixProductState([_ends(c, k, N) for k, c in enumerate(
        [c.transpose(0, 2, 1) for c in x.cores])], shape="lrp")

    def quimb_apply():
        y = qA.apply(qx)
        y.compress(max_bond=chi, cutoff=0.0)
        return y
    ours_time = median_time(lambda: A.apply(x, max_rank=chi), args.repeats)
    theirs_time = median_time(quimb_apply, args.repeats)
    exact = A @ x
    mine = A.apply(x, max_rank=chi)
    ours_error = (mine - exact).norm() / exact.norm()
    q_exact = qA.apply(qx)
    theirs_error = quimb_apply().distance(q_exact) / q_exact.norm()
    print(f"   tnc {ours_time * 1e3:.1f} ms (error {ours_error:.4e})   quimb "
          f"{theirs_time * 1e3:.1f} ms (error {theirs_error:.4e})   ratio tnc/quimb "
          f"{ours_time / theirs_time:.2f} (goal <= 1.0)")


def _ends(core, k, N):
    """quimb's end tensors drop the outer bond: the first has no left, the last no right
    (``core`` in quimb's order, left and right bonds first)."""
    if k == N - 1:
        core = core[:, 0]
    return core[0] if k == 0 else core


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=32)
    parser.add_argument("--R", type=int, default=32)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for every library (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}  "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')!r}  threads={args.threads}")
    scaling(args)
    versus_torchtt(args)
    versus_quimb(args)
    cross(args)


def cross(args) -> None:
    """TT-cross of f = 1 / (1 + sum x_k^2) on 2^30-point grids; error on random points."""
    from tnc.mps.cross import tt_cross
    print("4. tt_cross of 1 / (1 + sum x_k^2), x_k on a uniform grid in [0, 1], to 1e-6")
    for N, d in ((30, 2), (10, 8)):
        grid = np.linspace(0.0, 1.0, d)
        f = lambda i: 1.0 / (1.0 + (grid[i] ** 2).sum(axis=1))     # noqa: E731
        start = time.perf_counter()
        out = tt_cross(f, (d,) * N, rel_error=1e-6)
        elapsed = time.perf_counter() - start
        points = np.random.default_rng(3).integers(0, d, (100000, N))
        exact = f(points)
        error = np.linalg.norm(out.tt.entries(points) - exact) / np.linalg.norm(exact)
        print(f"   {N} dims of {d}: {elapsed:.2f} s, {out.calls} calls, {out.evaluations} points "
              f"({out.evaluations / d ** N:.1e} of the grid), max rank {max(out.tt.ranks)}, "
              f"converged {out.converged}, error on 1e5 random points {error:.2e}")


if __name__ == "__main__":
    main()
