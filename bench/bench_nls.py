"""Levenberg-Marquardt (method="nls") against ALS, GCP's L-BFGS and tensorly on a CP swamp.

    python bench/bench_nls.py [--size 30] [--rank 3] [--congruence 0.9] [--noise 0.0]
                              [--repeats 3] [--seeds 3]

The data: a planted CP model whose factors' columns all have pairwise cosine
``congruence`` (collinear factors, where ALS swamps), plus optional Gaussian noise.
Each method runs to its own stopping test (ALS tol 1e-9, NLS tol 1e-10, L-BFGS-B
pyttb's defaults, tensorly tol 1e-9, 1000-iteration caps) from ``--seeds`` random
starts; per method and seed the table gives iterations, converged, final relative
error and the median time over ``--repeats`` (the methods take turns in each repeat),
and the time ratio against tensorly's ``parafac`` in the same process.
"""
from __future__ import annotations

import argparse

import numpy as np

import tnc
from timing import median_times


def collinear_cp(size: int, rank: int, congruence: float, seed: int) -> dict:
    """Factors whose columns have unit norm and pairwise cosine ``congruence``."""
    rng = np.random.default_rng(seed)
    cosines = np.full((rank, rank), congruence) + (1 - congruence) * np.eye(rank)
    root = np.linalg.cholesky(cosines).T
    return {name: np.linalg.qr(rng.standard_normal((size, rank)))[0] @ root
            for name in ("A", "B", "C")}


def methods(net, data, seed: int) -> dict:
    import tensorly
    from tensorly.decomposition import parafac

    def peer():
        cp = parafac(tensorly.tensor(data), net.sizes["R"], n_iter_max=1000, tol=1e-9,
                     init="random", random_state=seed, return_errors=True)
        (weights, factors), errors = cp
        model = tensorly.cp_to_tensor((weights, factors))
        error = np.linalg.norm(model - data) / np.linalg.norm(data)
        return len(errors), len(errors) < 1000, error

    def ours(**options):
        def run():
            result = tnc.fit(net, data, seed=seed, progress=False, **options)
            return result.iterations, result.converged, result.rel_error
        return run

    return {"nls": ours(method="nls"), "als": ours(method="als", init="random"),
            "als+extrapolate": ours(method="als", init="random", extrapolate=True),
            "gcp lbfgs": ours(method="gcp"), "tensorly parafac": peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--congruence", type=float, default=0.9)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    n, r = args.size, args.rank
    net = tnc.library("cp", I=n, J=n, K=n, R=r)
    data = net.contract(collinear_cp(n, r, args.congruence, seed=0))
    data = data + args.noise * np.linalg.norm(data) / np.sqrt(data.size) * \
        np.random.default_rng(1).standard_normal(data.shape)
    print(f"CP {n}^3 rank {r}, congruence {args.congruence}, noise {args.noise}; "
          f"median of {args.repeats} repeats")
    print(f"{'method':18s} {'seed':>4s} {'iters':>6s} {'conv':>5s} {'rel error':>11s} "
          f"{'time s':>8s} {'vs tensorly':>11s}")
    for seed in range(args.seeds):
        runs = methods(net, data, seed)
        outcome = {name: run() for name, run in runs.items()}
        times = median_times(runs, args.repeats, warmup=0)
        for name, (iters, converged, error) in outcome.items():
            print(f"{name:18s} {seed:4d} {iters:6d} {str(bool(converged)):>5s} {error:11.3e} "
                  f"{times[name]:8.3f} {times[name] / times['tensorly parafac']:10.2f}x")


if __name__ == "__main__":
    main()
