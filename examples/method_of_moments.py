"""Method of moments: the centres of a spherical Gaussian mixture from its 2nd and 3rd moments.

Anandkumar, Ge, Hsu, Kakade and Telgarsky (2014), with the moment corrections of
Hsu and Kakade (2013). Samples ``x ~ sum_i w_i N(mu_i, sigma^2 I)`` in ``d``
dimensions with ``k <= d`` centres have, with ``m1 = E[x]``,

    M2 = E[x x^T] - sigma^2 I                                   = sum_i w_i mu_i mu_i^T
    M3 = E[x (x) x (x) x] - sigma^2 sum_j (m1 e_j e_j + e_j m1 e_j + e_j e_j m1)
                                                                = sum_i w_i mu_i^(x)3

(``sigma^2`` is the covariance's eigenvalue of multiplicity ``d - k``; the mean of
its ``d - k`` smallest eigenvalues estimates it). A whitening ``W`` (``d x k``,
``W^T M2 W = I``) turns the third moment into an orthogonally decomposable
``k x k x k`` tensor,

    T = M3(W, W, W) = sum_i w_i^(-1/2) v_i^(x)3,   v_i = sqrt(w_i) W^T mu_i orthonormal,

whose components the tensor power method with deflation finds one by one;
un-whitening gives ``mu_i = lambda_i (W^T)^+ v_i`` and ``w_i = lambda_i^(-2)``.
The contractions are tnc networks (below): the empirical third moment (the
sample index ``s`` is a hyperedge of three copies of the data), the whitening
``M3(W, W, W)`` (one tensor ``W`` used three times) and the power step
``T(I, v, v)``.

Run:  python examples/method_of_moments.py [--quick] [--out DIR]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from _shared import example_parser, pyplot  # also makes tnc importable from a checkout
import tnc

NETWORKS = """
network third_moment(n = 100, d = 10) {     # sum_s x_s (x) x_s (x) x_s
    index s: n, a: d, b: d, c: d
    data X(s, a), X(s, b), X(s, c)
    output a, b, c
}
network whiten(d = 10, k = 3) {             # M3(W, W, W)
    index a: d, b: d, c: d, i: k, j: k, l: k
    data M3(a, b, c)
    tensor W(a, i), W(b, j), W(c, l)
    output i, j, l
}
network power_step(k = 3) {                 # T(I, v, v)
    index i: k, j: k, l: k
    data T(i, j, l)
    tensor v(j), v(l)
    output i
}
"""


def sample_mixture(rng, n: int, d: int, k: int, sigma: float, spread: float):
    """``(samples (n, d), centres (k, d), weights (k,))`` of a spherical Gaussian mixture."""
    centres = spread * rng.standard_normal((k, d))
    weights = np.arange(1, k + 1) / (k * (k + 1) / 2)          # 1:2:...:k
    labels = rng.choice(k, size=n, p=weights)
    return centres[labels] + sigma * rng.standard_normal((n, d)), centres, weights


def moments(x: np.ndarray, k: int, sigma2: float | None = None):
    """``(M2, M3, sigma2)``: the corrected moments (sigma2 estimated when not given)."""
    n, d = x.shape
    m1 = x.mean(axis=0)
    if sigma2 is None:
        sigma2 = float(np.linalg.eigvalsh(np.cov(x, rowvar=False))[: d - k].mean())
    m2 = x.T @ x / n - sigma2 * np.eye(d)
    net = tnc.compile_all(NETWORKS, n=n, d=d)["third_moment"]
    m3 = net.contract({"X": x}) / n
    eye = np.eye(d)
    m3 -= sigma2 * (np.einsum("a,bc->abc", m1, eye) + np.einsum("b,ac->abc", m1, eye)
                    + np.einsum("c,ab->abc", m1, eye))
    return m2, m3, sigma2


def whitening(m2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W, B)``: ``W^T M2 W = I_k`` and ``B = (W^T)^+`` (``d x k`` each)."""
    values, vectors = np.linalg.eigh(m2)
    values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    if values.min() <= 0:
        raise ValueError("M2 has fewer than k positive eigenvalues; too few samples?")
    return vectors / np.sqrt(values), vectors * np.sqrt(values)


def power_method(t: np.ndarray, k: int, rng, starts: int = 10, iters: int = 50):
    """``(lambdas (k,), vectors (k, k))`` of ``t`` by power iteration with deflation."""
    step = tnc.compile_all(NETWORKS, k=k)["power_step"]

    def iterate(v, t, count):
        for _ in range(count):
            v = step.contract({"T": t, "v": v})
            v /= np.linalg.norm(v)
        return v

    lambdas, vectors = [], []
    for _ in range(k):
        candidates = [iterate(_unit(rng.standard_normal(k)), t, iters) for _ in range(starts)]
        values = [np.einsum("ijl,i,j,l->", t, v, v, v) for v in candidates]
        v = iterate(candidates[int(np.argmax(values))], t, iters)
        lam = float(np.einsum("ijl,i,j,l->", t, v, v, v))
        t = t - lam * np.einsum("i,j,l->ijl", v, v, v)
        lambdas.append(lam)
        vectors.append(v)
    return np.array(lambdas), np.array(vectors)


def _unit(v):
    return v / np.linalg.norm(v)


def recover(x: np.ndarray, k: int, rng, sigma2: float | None = None) -> dict:
    """Centres and weights of a ``k``-component spherical mixture from samples ``x``."""
    m2, m3, sigma2 = moments(x, k, sigma2)
    w, b = whitening(m2, k)
    whiten = tnc.compile_all(NETWORKS, d=x.shape[1], k=k)["whiten"]
    t = whiten.contract({"M3": m3, "W": w})
    lambdas, vectors = power_method(t, k, rng)
    return {"centres": (lambdas[:, None] * vectors) @ b.T, "weights": lambdas ** -2.0,
            "sigma2": sigma2}


def match(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Order of ``found`` matching each true centre (Hungarian, Euclidean distance)."""
    cost = np.linalg.norm(truth[:, None, :] - found[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def plot(x, truth, found, path: Path) -> None:
    plt = pyplot()
    centred = truth - truth.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:2].T   # plane of the true centres
    shown = x[:3000] @ axes
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(*shown.T, s=3, alpha=0.3, color="grey", label="samples")
    ax.scatter(*(truth @ axes).T, marker="x", s=120, color="black", label="true centres")
    ax.scatter(*(found @ axes).T, marker="o", s=120, facecolors="none", edgecolors="red",
               linewidths=2, label="method of moments")
    ax.set(title="spherical Gaussian mixture, plane of the centres")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv):
    parser = example_parser(__doc__, "fewer samples (a few seconds)")
    parser.add_argument("--samples", type=int, help="default 200000, quick 20000")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--components", type=int, default=4)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--spread", type=float, default=3.0, help="std of the centres' entries")
    parser.add_argument("--known-variance", action="store_true",
                        help="use the true sigma^2 instead of estimating it")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n = args.samples or (20_000 if args.quick else 200_000)
    start = time.perf_counter()
    x, truth, weights = sample_mixture(rng, n, args.dim, args.components, args.sigma,
                                       args.spread)
    result = recover(x, args.components, rng, args.sigma ** 2 if args.known_variance else None)
    order = match(result["centres"], truth)
    found, found_weights = result["centres"][order], result["weights"][order]
    errors = np.linalg.norm(found - truth, axis=1)
    relative = errors / np.linalg.norm(truth, axis=1)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "method_of_moments.png"
    plot(x, truth, found, png)
    print(f"{n} samples, d = {args.dim}, k = {args.components}, sigma = {args.sigma} "
          f"(sigma^2 {'given' if args.known_variance else 'estimated'}: {result['sigma2']:.4f})")
    print(f"{'centre':>6} {'|mu|':>8} {'error':>8} {'rel. error':>10} {'weight':>7} {'found':>7}")
    for i in range(args.components):
        print(f"{i:>6} {np.linalg.norm(truth[i]):>8.3f} {errors[i]:>8.4f} {relative[i]:>10.4f} "
              f"{weights[i]:>7.3f} {found_weights[i]:>7.3f}")
    print(f"max relative centre error {relative.max():.4f}, max weight error "
          f"{np.abs(found_weights - weights).max():.4f}")
    print(f"plot: {png}  ({time.perf_counter() - start:.1f} s)")
    return {"centre_errors": errors, "relative_errors": relative, "weights": weights,
            "found_weights": found_weights, "sigma2": result["sigma2"], "png": png}


if __name__ == "__main__":
    main()
