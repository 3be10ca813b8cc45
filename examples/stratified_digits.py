"""Stratified-NTF against plain NTF on scikit-learn's digits, at matched parameter counts.

The 1797 8x8 digit images (bundled with scikit-learn, no download) form a
``samples x 8 x 8`` tensor; the strata are the ten digit classes. Stratified-NTF
(Sietsema et al. 2024) gives each class a rank-``l`` strata feature (shared by
all its images) and all classes ``r`` rank-one global topics with per-image
weights; plain NTF is a non-negative CP of the whole tensor. For each topic
budget ``r`` NTF gets the smallest rank whose parameter count is at least
Stratified-NTF's, both run the same multiplicative updates for the same number
of iterations, and the script prints both losses and says which is lower. A
third fit adds the total-variation penalty on the topics. The learned topics,
strata features and NTF components are drawn to a PNG.

Run:  python examples/stratified_digits.py [--quick] [--out DIR]
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from _shared import example_parser, pyplot  # also makes tnc importable from a checkout
import tnc
from tnc.models.stratified import ntf, parameter_count, stratified_ntf, total_variation


def load_strata(per_class: int | None = None) -> list[np.ndarray]:
    """The digit images grouped by class: ten arrays of shape ``(m_c, 8, 8)``."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return [digits.images[digits.target == c][:per_class] for c in range(10)]


def matched_ntf_rank(shapes, rank_specific: int, n_topics: int) -> int:
    """Smallest NTF rank with at least as many parameters as the Stratified-NTF."""
    stacked = (sum(s[0] for s in shapes), *shapes[0][1:])
    return math.ceil(parameter_count(shapes, rank_specific, n_topics) / sum(stacked))


def compare(strata, n_topics: int, rank_specific: int, max_iter: int, seed: int) -> dict:
    """Fit both models at one budget; return their results and the NTF rank used."""
    shapes = [s.shape for s in strata]
    rank = matched_ntf_rank(shapes, rank_specific, n_topics)
    stratified = stratified_ntf(strata, rank_specific, n_topics, max_iter=max_iter, tol=0,
                                seed=seed, progress=False)
    plain = ntf(np.concatenate(strata), rank, max_iter=max_iter, tol=0, seed=seed,
                progress=False)
    return {"n_topics": n_topics, "rank_specific": rank_specific, "ntf_rank": rank,
            "stratified": stratified, "ntf": plain}


def report(row: dict) -> str:
    s, n = row["stratified"], row["ntf"]
    lower = "Stratified-NTF" if s.sse < n.sse else "NTF"
    return (f"r={row['n_topics']:<2} l={row['rank_specific']:<2} Stratified-NTF: "
            f"{s.parameter_count:>6} params, SSE {s.sse:.4g} (rel. error {s.rel_error:.4f})   "
            f"NTF rank {row['ntf_rank']:<2}: {n.parameter_count:>6} params, SSE {n.sse:.4g} "
            f"(rel. error {n.rel_error:.4f})   lower loss: {lower} "
            f"({abs(s.sse - n.sse) / max(s.sse, n.sse):.1%} below the other; last iteration "
            f"lowered the SSEs by {_last_drop(s):.1e} and {_last_drop(n):.1e})")


def _last_drop(result) -> float:
    """Relative SSE decrease of the final iteration (how far from converged a fit is)."""
    if len(result.history) < 2:
        return 0.0
    before, after = result.history[-2]["sse"], result.history[-1]["sse"]
    return (before - after) / before if before > 0 else 0.0


def draw(row: dict, smooth, path: Path) -> None:
    """Rows: Stratified-NTF topics, the TV-penalised topics, strata features, NTF components."""
    plt = pyplot()
    s, n = row["stratified"], row["ntf"]
    panels = [("Stratified-NTF topics", [s.topic(j) for j in range(s.info["n_topics"])]),
              (f"topics with TV penalty {smooth.info['tv']:g}",
               [smooth.topic(j) for j in range(smooth.info["n_topics"])]),
              ("strata features (digit 0-9)", [s.feature(c) for c in range(len(s.weights))]),
              (f"NTF components (rank {row['ntf_rank']})",
               [n.topic(j) for j in range(row["ntf_rank"])])]
    columns = max(len(images) for _, images in panels)
    fig, axes = plt.subplots(len(panels), columns, figsize=(1.1 * columns, 1.35 * len(panels)),
                             squeeze=False)
    for r, (title, images) in enumerate(panels):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c], cmap="gray_r")
        axes[r][0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv):
    parser = example_parser(__doc__, "30 images per class, one budget, 30 iterations")
    parser.add_argument("--topics", type=int, nargs="+", help="topic budgets r (default 4 9)")
    parser.add_argument("--rank-specific", type=int, default=8,
                        help="rank l of each class's strata feature (default 8)")
    parser.add_argument("--iterations", type=int, help="default 300, quick 30")
    parser.add_argument("--tv", type=float, default=2e3, help="TV weight of the third fit")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    strata = load_strata(30 if args.quick else None)
    budgets = args.topics or ([4] if args.quick else [4, 9])
    iterations = args.iterations or (30 if args.quick else 300)
    print(f"digits: {sum(len(s) for s in strata)} images of 8x8 in 10 strata, "
          f"{iterations} multiplicative-update iterations per fit")
    rows = []
    for n_topics in budgets:
        rows.append(compare(strata, n_topics, args.rank_specific, iterations, args.seed))
        print(report(rows[-1]))
    last = rows[-1]
    smooth = stratified_ntf(strata, args.rank_specific, last["n_topics"], tv=args.tv,
                            max_iter=iterations, tol=0, seed=args.seed, progress=False)
    plain_tv = total_variation(last["stratified"].topics)
    print(f"TV penalty {args.tv:g} (r={last['n_topics']}): topics' total variation "
          f"{plain_tv:.3f} -> {total_variation(smooth.topics):.3f}, "
          f"SSE {last['stratified'].sse:.4g} -> {smooth.sse:.4g}")
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "stratified_digits.png"
    draw(last, smooth, png)
    print(f"plot: {png}  ({time.perf_counter() - start:.1f} s)")
    return {"rows": [{"n_topics": r["n_topics"], "rank_specific": r["rank_specific"],
                      "ntf_rank": r["ntf_rank"],
                      "stratified_params": r["stratified"].parameter_count,
                      "ntf_params": r["ntf"].parameter_count,
                      "stratified_sse": r["stratified"].sse, "ntf_sse": r["ntf"].sse}
                     for r in rows],
            "tv": {"plain": plain_tv, "penalised": total_variation(smooth.topics)},
            "png": png}


if __name__ == "__main__":
    main()
