"""Overparameterized ALS: how often does CP-ALS from a random start fit a rank-r tensor exactly?

Arvanitakis, Srinivas and Vijayaraghavan (2025) prove that a *parallel* ALS,
every factor updated from the previous iterate at once, fits a random rank-r
``n x n x n`` tensor exactly from a random start once the fitted rank k reaches
about r^2; standard *sequential* ALS is not covered by the proof but its success
rate rises smoothly with k. This example measures both: for each k it fits T
random rank-r tensors from random starts and counts the runs that reach a
relative error below 1e-6 within the sweep budget.

Sequential ALS is tnc's own, ``tnc.fit(cp3, T, method="als", init=start)``.
The parallel variant is written here: its mode update ``F = MTTKRP · Gram⁺``
takes the MTTKRP and the Hadamard product of Grams from tnc networks compiled
once (below), and its error after iteration t is that of ``(X_t, Y_t,
Z_{t+1})``, Z refitted to the previous X and Y: the paper's "step 2c".

Run:  python examples/overparameterized_als.py [--quick] [--out DIR]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from _shared import example_parser, pyplot  # also makes tnc importable from a checkout
import tnc

NETWORKS = """
# The model and the two halves of a CP-ALS update of the first factor.
network cp3(N = 10, K = 3) {
    index i: N, j: N, l: N, r: K
    tensor A(i, r), B(j, r), C(l, r)
    output i, j, l
}
network mttkrp(N = 10, K = 3) {         # right-hand side: T x_j B x_l C
    index i: N, j: N, l: N, r: K
    data T(i, j, l)
    tensor B(j, r), C(l, r)
    output i, r
}
network gram(N = 10, K = 3) {           # (B^T B) * (C^T C): B and C each used twice
    index j: N, l: N, r: K, s: K
    tensor B(j, r), B(j, s), C(l, r), C(l, s)
    output r, s
}
"""
SUCCESS = 1e-6


class ParallelALS:
    """Parallel least-squares CP updates of an ``n x n x n`` tensor at rank ``k``."""

    def __init__(self, n: int, k: int):
        self.nets = tnc.compile_all(NETWORKS, N=n, K=k)

    def error(self, unfoldings, factors) -> float:
        model = self.nets["cp3"].contract(dict(zip("ABC", factors)))
        return float(np.linalg.norm(unfoldings[0] - model) / np.linalg.norm(unfoldings[0]))

    def update(self, unfoldings, factors, mode: int) -> np.ndarray:
        """The factor of ``mode`` minimising the error with the other two fixed."""
        b, c = (factors[m] for m in range(3) if m != mode)
        rhs = self.nets["mttkrp"].contract({"T": unfoldings[mode], "B": b, "C": c})
        gram = self.nets["gram"].contract({"B": b, "C": c})
        return np.linalg.lstsq(gram, rhs.T, rcond=1e-12)[0].T

    def run(self, unfoldings, factors, max_sweeps: int) -> int | None:
        """Iterations needed to reach the success threshold, or None within the budget."""
        for sweep in range(1, max_sweeps + 1):
            new = [self.update(unfoldings, factors, mode) for mode in range(3)]
            if self.error(unfoldings, [factors[0], factors[1], new[2]]) < SUCCESS:
                return sweep
            factors = [unit_columns(f) for f in new]
        return None


def sequential_als(network, tensor, start, max_sweeps: int) -> int | None:
    """Sweeps tnc's ALS needs from ``start`` to reach the success threshold, or None."""
    result = tnc.fit(network, tensor, method="als", init=dict(zip("ABC", start)),
                     max_iter=max_sweeps, tol=0.0, progress=False,
                     callback=lambda state: state["rel_error"] < SUCCESS)
    hits = [h["iteration"] for h in result.history if h["rel_error"] < SUCCESS]
    return hits[0] if hits else None


def unit_columns(factor: np.ndarray) -> np.ndarray:
    """Columns scaled to unit norm. Each update undoes column scalings of the factors it
    reads, so this changes nothing in the parallel iteration except stopping the overall
    scale from oscillating with growing amplitude (the three scales map to minus the
    sum of the other two, an eigenvalue of -2)."""
    return factor / np.maximum(np.linalg.norm(factor, axis=0), 1e-300)


def unfoldings(tensor: np.ndarray) -> list[np.ndarray]:
    """The tensor with each mode moved first, so one MTTKRP network serves every mode."""
    return [tensor, tensor.transpose(1, 0, 2), tensor.transpose(2, 0, 1)]


def random_cp(rng, n: int, rank: int) -> np.ndarray:
    factors = [rng.standard_normal((n, rank)) for _ in range(3)]
    return np.einsum("ir,jr,lr->ijl", *factors)


def success_rates(n, r, ks, trials, max_sweeps, seed=0) -> dict:
    """For each k: fraction of random starts that succeed, per variant, and median sweeps."""
    rng = np.random.default_rng(seed)
    tensors = [unfoldings(random_cp(rng, n, r)) for _ in range(trials)]
    table = {"k": list(ks), "sequential": [], "parallel": [],
             "sequential_sweeps": [], "parallel_sweeps": []}
    for k in ks:
        parallel = ParallelALS(n, k)
        starts = [[rng.standard_normal((n, k)) for _ in range(3)] for _ in range(trials)]
        runs = {"sequential": lambda t, s: sequential_als(parallel.nets["cp3"], t[0], s,
                                                          max_sweeps),
                "parallel": lambda t, s: parallel.run(t, s, max_sweeps)}
        for variant, run in runs.items():
            sweeps = [run(t, s) for t, s in zip(tensors, starts)]
            done = [s for s in sweeps if s is not None]
            table[variant].append(len(done) / trials)
            table[f"{variant}_sweeps"].append(float(np.median(done)) if done else None)
    return table


def plot(table: dict, n: int, r: int, trials: int, max_sweeps: int, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, marker in (("sequential", "o"), ("parallel", "s")):
        label = "sequential ALS (tnc.fit)" if variant == "sequential" else "parallel ALS"
        ax.plot(table["k"], table[variant], marker=marker, label=label)
    ax.axvline(r, color="grey", ls=":", label="k = r")
    ax.axvline(r * r, color="grey", ls="--", label="k = r²")
    ax.set(xlabel="fitted rank k", ylabel="success rate", ylim=(-0.05, 1.05),
           title=f"rank-{r} {n}x{n}x{n} tensors, {trials} starts, {max_sweeps} sweeps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv):
    parser = example_parser(__doc__, "a few seconds: fewer k, trials, sweeps")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--rank", type=int, default=3, help="true rank r")
    parser.add_argument("--trials", type=int, help="random starts per k (default 20, quick 4)")
    parser.add_argument("--sweeps", type=int, help="sweep budget (default 500, quick 150)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    r = args.rank
    trials = args.trials or (4 if args.quick else 20)
    max_sweeps = args.sweeps or (150 if args.quick else 500)
    ks = [r, 2 * r, r * r] if args.quick else list(range(r, max(3 * r, r * r) + 2))
    start = time.perf_counter()
    table = success_rates(args.n, r, ks, trials, max_sweeps, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "overparameterized_als.png"
    plot(table, args.n, r, trials, max_sweeps, png)
    print(f"rank-{r} {args.n}x{args.n}x{args.n} tensors, {trials} random starts per k, "
          f"success = relative error < {SUCCESS:g} within {max_sweeps} sweeps")
    print(f"{'k':>4} {'sequential':>11} {'(median sweeps)':>16} {'parallel':>9} {'(median sweeps)':>16}")
    for row in zip(table["k"], table["sequential"], table["sequential_sweeps"],
                   table["parallel"], table["parallel_sweeps"]):
        k, seq, seq_sweeps, par, par_sweeps = row
        print(f"{k:>4} {seq:>11.2f} {_fmt(seq_sweeps):>16} {par:>9.2f} {_fmt(par_sweeps):>16}")
    print(f"plot: {png}  ({time.perf_counter() - start:.1f} s)")
    return {**table, "png": png}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    main()
