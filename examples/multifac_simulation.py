"""MULTIFAC simulation (Kang, Rao, Lock 2025): linked tensors, shared and individual ranks.

Two tensors share their first mode (10 samples): X1 is 10x10x8, X2 is
10x14x5x3. Their signals are CP models with 2 components shared by both (the
same first-mode loadings) and 3 individual components each; Gaussian noise is
added at SNR 3 (signal variance / noise variance, per tensor, as in the
authors' code). Each tensor is then scaled to unit mean square before fitting.
Two designs of the factors are run (``--factors``, default both):

* ``unit``: every factor column a random unit vector, so every component has
  the same weight, well above the noise;
* ``gaussian``: N(0, 1) entries, the authors' reference design. Component
  weights then differ by up to 10x, and in some replicates a true component
  is weaker than the *noise floor* (the largest weight noise alone reaches on
  a component, see :func:`tnc.models.multifac.noise_floors`): no method can tell it
  from noise, and those replicates are counted separately.

MULTIFAC fits rank 20 with an L2 penalty ``sigma`` on all factors; components
are classified against the noise floor. By default (``--tuning per-replicate``)
``sigma`` is chosen on every replicate by 5-fold cross-validation over entries,
over a log grid of 8 values in [1, 8], as the value of least held-out error;
the one-standard-error choice is fitted and reported too. Least error was
picked over one-SE on development seeds 100-119 (12/20 against 10/20 recovered,
N(0, 1) factors) before these numbers were run. Ranks recovered, N(0, 1)
factors: 12/20 with ``--seed 0`` (12 of the 17 replicates whose every true
component is above the floor; one-SE 11/20) and 13/20 with ``--seed 200`` (one-SE
11/20); unit factors 20/20 (both rules). The same procedure on seeds 300-319:
11/20 (one-SE 8/20; 3/10 on 300-309 alone, mostly a weak individual component
of X1 lost), so over the 80 N(0, 1) replicates run, 48 (60%) with least error
and 40 (50%) with one-SE. Mean RSE signal 0.036 against 0.175 unpenalised
(N(0,1), seed 0). About 3.5 min per design on one core.

``--tuning sigma`` cross-validates ``sigma`` on the first replicate only, with
the one-standard-error rule, and reuses it (about 70 s for both designs; with
seed 0: 9/20 and 20/20). ``--tuning two-step`` instead runs
:func:`tnc.models.multifac.two_step_cv` on every replicate: the rank of least held-out
error over 4, 6, ..., 12 at sigma 1, then the sigma of least held-out error at
that rank, and fits that rank with 10 starts. It is slower (about 9 min) and not
better: with seed 0, ranks recovered in 10/20 (gaussian; rank 6 chosen in 4
replicates) and 17/20 (unit), mean RSE signal 0.043 and 0.041.

Printed per design: the relative squared error (RSE,
``sum_k ||S_k_hat - S_k||^2 / sum_k ||S_k||^2``) of the whole signal, of its
shared part and of its individual parts, the recovered ranks, the same for an
unpenalised fit of the same rank, and over ``--replicates`` seeded replicates how often
the true ranks (shared 2, individual 3 and 3) are recovered, and how often with
the one-SE choices (``--tuning sigma``: with each other ``sigma`` of the grid that
cross-validation cannot tell from the best). Then a
missing-data run on the first ``--missing`` replicates: two samples missing
entirely from X2 (whole slices) and 5% of the other entries missing; the
slices are imputed from the shared structure and compared with imputing the
mean of the observed samples, and with the best any shared-only imputation
can do (the true shared signal).

    python examples/multifac_simulation.py            # both designs, 20 replicates, ~7 min
    python examples/multifac_simulation.py --factors gaussian --seed 200
    python examples/multifac_simulation.py --quick    # the smoke test's run
    python examples/multifac_simulation.py --tuning sigma      # sigma from replicate 0: ~70 s
    python examples/multifac_simulation.py --tuning two-step   # rank, then sigma: ~9 min
"""
from __future__ import annotations

import time

import numpy as np

from _shared import example_parser, pyplot

import tnc  # noqa: E402  (after _shared: a checkout works without installing)
from tnc.models.multifac import cp_signal, cross_validate, impute, multifac, two_step_cv

SHAPES = ((10, 10, 8), (10, 14, 5, 3))
SHARED, INDIVIDUAL, SNR, RANK = 2, (3, 3), 3.0, 20
TWO_STEP_RANKS = (4, 6, 8, 10, 12)     # step 1's grid (--tuning two-step), chosen a priori
PER_REPLICATE_GRID = tuple(float(s) for s in np.geomspace(1.0, 8.0, 8))  # chosen a priori


def unit_columns(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=0)


def simulate(seed: int, factors: str = "unit") -> dict:
    """Data, true signals and their shared/individual parts (all scaled alike), the true
    component weights of each tensor and its noise floor (noise standard deviation
    times ``sum_{n>=2} sqrt(I_n)``, in the same scale)."""
    rng = np.random.default_rng(seed)
    columns_of = unit_columns if factors == "unit" else (lambda a: a)
    U = columns_of(rng.standard_normal((SHAPES[0][0], SHARED + sum(INDIVIDUAL))))
    data, signal, shared, individual, weights, floors = [], [], [], [], [], []
    start = SHARED
    for k, shape in enumerate(SHAPES):
        columns = list(range(SHARED)) + list(range(start, start + INDIVIDUAL[k]))
        start += INDIVIDUAL[k]
        loadings = [U[:, columns], *(columns_of(rng.standard_normal((n, len(columns))))
                                     for n in shape[1:])]
        s = cp_signal(loadings)
        s_shared = cp_signal(loadings, np.arange(len(columns)) < SHARED)
        std = np.sqrt(s.var() / SNR)
        x = s + rng.standard_normal(shape) * std
        scale = 1.0 / np.sqrt(np.mean(x ** 2))
        weights.append(np.prod([np.linalg.norm(f, axis=0) for f in loadings], axis=0) * scale)
        floors.append(std * scale * sum(np.sqrt(n) for n in shape[1:]))
        data.append(x * scale)
        signal.append(s * scale)
        shared.append(s_shared * scale)
        individual.append((s - s_shared) * scale)
    return {"data": data, "signal": signal, "shared": shared, "individual": individual,
            "weights": weights, "floors": floors}


def detectable(sim) -> bool:
    """Every true component's weight above its tensor's noise floor."""
    return all(np.all(w > f) for w, f in zip(sim["weights"], sim["floors"]))


def rse(estimates, truths) -> float:
    return float(sum(np.sum((e - t) ** 2) for e, t in zip(estimates, truths))
                 / sum(np.sum(t ** 2) for t in truths))


def scores(result, sim) -> dict:
    k = range(len(SHAPES))
    return {"rse": rse([result.signal(i) for i in k], sim["signal"]),
            "rse_shared": rse([result.signal(i, "shared") for i in k], sim["shared"]),
            "rse_individual": rse([result.signal(i, "individual") for i in k],
                                  sim["individual"]),
            "ranks": result.ranks}


def recovered(ranks) -> bool:
    return ranks["shared"] == SHARED and ranks["individual"] == list(INDIVIDUAL)


def line(name: str, s: dict) -> str:
    return (f"{name:<12} RSE signal {s['rse']:.4f}  shared {s['rse_shared']:.4f}  individual "
            f"{s['rse_individual']:.4f}  ranks shared {s['ranks']['shared']}, individual "
            f"{s['ranks']['individual']}")


def missing_slices_run(sim, rank: int, sigma: float, seed: int, restarts: int) -> dict:
    """Two samples missing from X2 entirely, 5% of other entries missing in both."""
    rng = np.random.default_rng(seed + 1000)
    masks = [rng.random(x.shape) > 0.05 for x in sim["data"]]
    gone = rng.choice(SHAPES[1][0], 2, replace=False)
    masks[1][gone] = False
    data = [np.where(m, x, np.nan) for x, m in zip(sim["data"], masks)]
    result = multifac([np.nan_to_num(x) for x in data], rank, sigma, masks=masks, seed=seed,
                      restarts=restarts)
    completed = impute(result, [np.nan_to_num(x) for x in data], masks)
    observed = [i for i in range(SHAPES[1][0]) if i not in gone]
    mean_fill = sim["data"][1][observed].mean(axis=0)
    truth = sim["signal"][1][gone]
    error = lambda guess: float(np.sum((guess - truth) ** 2) / np.sum(truth ** 2))  # noqa: E731
    entry_truth = sim["signal"][0][~masks[0]]
    return {"slices": [int(i) for i in gone],
            "rse_multifac": error(completed[1][gone]),
            "rse_mean": error(np.broadcast_to(mean_fill, truth.shape)),
            "rse_shared_truth": error(sim["shared"][1][gone]),
            "rse_entries_x1": float(np.sum((completed[0][~masks[0]] - entry_truth) ** 2)
                                    / np.sum(entry_truth ** 2))}


def plot(result, out, name: str) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    order = np.argsort(-result.weights.max(axis=0))
    for k, axis in enumerate(axes):
        colours = ["tab:purple" if c == "shared" else "tab:orange" if c == f"individual {k + 1}"
                   else "tab:gray" for c in np.array(result.classes)[order]]
        axis.bar(range(len(order)), result.weights[k, order], color=colours)
        axis.set_title(f"{name} factors, tensor {k + 1} {SHAPES[k]}: component weights")
        axis.axhline(result.floors[k], color="k", lw=0.8, ls=":")
        axis.set_xlabel("component (purple: shared, orange: individual, grey: below noise floor)")
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"multifac_component_weights_{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def tune_sigma(sim, args, grid, folds) -> dict:
    """The sigma-only path: rank 20, sigma by cross-validation on replicate 0 (reused)."""
    cv = cross_validate(sim["data"], grid, RANK, folds=folds, seed=args.seed)
    print(f"cross-validation over sigma {cv.sigmas}: mean held-out relative error "
          f"{np.round(cv.mean, 4).tolist()} (se {np.round(cv.se, 4).tolist()}); best "
          f"{cv.best}, one-standard-error choice {cv.chosen}")
    return {"rank": RANK, "sigma": cv.chosen, "cv": cv}


def tune_per_replicate(sim, seed: int, grid, folds) -> dict:
    """Sigma by cross-validation on this replicate's own data, at rank 20: the least
    held-out error (``sigma``) and the one-standard-error choice (``sigma_1se``)."""
    cv = cross_validate(sim["data"], grid, RANK, folds=folds, seed=seed)
    return {"rank": RANK, "sigma": cv.best, "sigma_1se": cv.chosen, "cv": cv}


def tune_two_step(sim, seed: int, args, grid, folds, verbose: bool) -> dict:
    """The two-step path on one replicate: the rank, then sigma at it (its own CV)."""
    ranks = (4, 8, 12) if args.quick else TWO_STEP_RANKS
    cv = two_step_cv(sim["data"], ranks, grid, folds=folds, seed=seed)
    if verbose:
        print("two-step cross-validation, replicate 0 (mean held-out relative error):")
        print("  " + cv.table().replace("\n", "\n  "))
    return {"rank": cv.rank, "sigma": cv.sigma, "cv": cv}


def run_design(factors: str, args, replicates: int, missing: int) -> dict:
    grid = [2.0, 3.0, 4.0] if args.quick else [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    folds, restarts = (3, 2) if args.quick else (5, 3)
    two_step, per_replicate = args.tuning == "two-step", args.tuning == "per-replicate"
    if two_step:                 # a rank near the true total: ALS needs more starts
        restarts = 3 if args.quick else 10
    if per_replicate and not args.quick:
        grid = list(PER_REPLICATE_GRID)
    print(f"== {factors} factors ({args.tuning} tuning) ==")
    sim = simulate(args.seed, factors)
    tuned = None if two_step or per_replicate else tune_sigma(sim, args, grid, folds)

    rows, first, sims, settings = [], None, [], []
    for r in range(replicates):
        sim_r = sim if r == 0 else simulate(args.seed + r, factors)
        sims.append(sim_r)
        if two_step:
            tuned = tune_two_step(sim_r, args.seed + r, args, grid, folds, r == 0)
        elif per_replicate:
            tuned = tune_per_replicate(sim_r, args.seed + r, grid, folds)
        settings.append(tuned)
        rank, sigma = tuned["rank"], tuned["sigma"]
        penalised = multifac(sim_r["data"], rank, sigma, seed=args.seed + r, restarts=restarts)
        plain = multifac(sim_r["data"], rank, 0.0, seed=args.seed + r, max_iter=300)
        rows.append({"multifac": scores(penalised, sim_r), "unpenalised": scores(plain, sim_r),
                     "detectable": detectable(sim_r), "rank": rank, "sigma": sigma})
        if per_replicate:        # what the one-standard-error choice would have recovered
            one_se = tuned["sigma_1se"]
            alt = penalised if one_se == sigma else multifac(
                sim_r["data"], rank, one_se, seed=args.seed + r, restarts=restarts)
            rows[-1].update(sigma_1se=one_se, recovered_1se=recovered(alt.ranks))
        if r == 0:
            first = penalised
            print(f"replicate 0 (seed {args.seed}), rank {rank}, sigma {sigma}:")
            print("  " + line("MULTIFAC", rows[0]["multifac"]))
            print("  " + line("unpenalised", rows[0]["unpenalised"]))
    hits = sum(recovered(row["multifac"]["ranks"]) for row in rows)
    easy = [row for row in rows if row["detectable"]]
    easy_hits = sum(recovered(row["multifac"]["ranks"]) for row in easy)
    mean = lambda key, method: float(np.mean([row[method][key] for row in rows]))  # noqa: E731
    if two_step:
        chosen = [(row["rank"], row["sigma"]) for row in rows]
        print(f"two-step choices (rank, sigma) per replicate: {chosen}")
    if per_replicate:
        print(f"sigma of least held-out error per replicate: "
              f"{[round(row['sigma'], 2) for row in rows]}; with the one-standard-error "
              f"choices {[round(row['sigma_1se'], 2) for row in rows]} instead, true ranks "
              f"recovered in {sum(row['recovered_1se'] for row in rows)}/{replicates}")
    print(f"over {replicates} replicates: true ranks (shared {SHARED}, individual "
          f"{list(INDIVIDUAL)}) recovered in {hits}/{replicates} ({easy_hits}/{len(easy)} of "
          f"those whose every true component is above the noise floor); mean RSE signal "
          f"MULTIFAC {mean('rse', 'multifac'):.4f} vs unpenalised of the same rank "
          f"{mean('rse', 'unpenalised'):.4f}; shared {mean('rse_shared', 'multifac'):.4f}, "
          f"individual {mean('rse_individual', 'multifac'):.4f}")

    sensitivity = {} if two_step or per_replicate else sigma_sensitivity(
        tuned, sims, args, restarts)
    runs = [missing_slices_run(sims[r], settings[r]["rank"], settings[r]["sigma"], args.seed + r,
                               restarts) for r in range(missing)]
    average = {key: float(np.mean([m[key] for m in runs]))
               for key in ("rse_multifac", "rse_mean", "rse_shared_truth", "rse_entries_x1")}
    wins = sum(m["rse_multifac"] < m["rse_mean"] for m in runs)
    print(f"two missing slices of tensor 2, {missing} replicates: mean RSE of the imputed signal "
          f"MULTIFAC (shared structure) {average['rse_multifac']:.4f} vs mean of observed samples "
          f"{average['rse_mean']:.4f} (MULTIFAC better in {wins}/{missing}; the true shared signal "
          f"{average['rse_shared_truth']:.4f}); missing entries of tensor 1: RSE "
          f"{average['rse_entries_x1']:.4f}")
    png = plot(first, args.out, factors)
    return {"sigma": settings[0]["sigma"], "rank": settings[0]["rank"], "cv": settings[0]["cv"],
            "tuning": args.tuning, "rows": rows, "recovered": hits,
            "detectable": len(easy), "recovered_detectable": easy_hits,
            "replicates": replicates, "missing": {**average, "wins": wins, "runs": runs},
            "sensitivity": sensitivity,
            "png": png}


def sigma_sensitivity(tuned, sims, args, restarts) -> dict:
    """Rank recovery at every other sigma CV cannot tell from the chosen one (within one SE)."""
    cv, sigma = tuned["cv"], tuned["sigma"]
    near = [g for g, m in zip(cv.sigmas, cv.mean)
            if g != sigma and m <= cv.mean.min() + cv.se[int(np.argmin(cv.mean))]]
    sensitivity = {}
    for other in near:
        fits = [multifac(s["data"], RANK, other, seed=args.seed + r, restarts=restarts)
                for r, s in enumerate(sims)]
        sensitivity[other] = {
            "recovered": sum(recovered(f.ranks) for f in fits),
            "rse": float(np.mean([scores(f, s)["rse"] for f, s in zip(fits, sims)]))}
        print(f"  sigma {other} (within one standard error of the best): true ranks recovered "
              f"in {sensitivity[other]['recovered']}/{len(sims)}; mean RSE signal "
              f"{sensitivity[other]['rse']:.4f}")
    return sensitivity


def main(argv=None) -> dict:
    parser = example_parser(__doc__, "2 replicates, a 3-point grid and 3 folds (smoke test)")
    parser.add_argument("--replicates", type=int, default=None,
                        help="seeded replicates (default 20, 2 with --quick)")
    parser.add_argument("--missing", type=int, default=None,
                        help="replicates of the missing-data run (default 10, 2 with --quick)")
    parser.add_argument("--factors", choices=("unit", "gaussian", "both"), default="both",
                        help="factor columns: random unit vectors (equal component weights), "
                             "N(0, 1) draws (the authors' design, unequal weights), or both")
    parser.add_argument("--tuning", choices=("per-replicate", "sigma", "two-step"),
                        default="per-replicate",
                        help="per-replicate (default): rank 20, sigma cross-validated on every "
                             "replicate (least held-out error; the one-SE choice is reported "
                             "too); sigma: rank 20, sigma cross-validated on replicate 0 with "
                             "the one-SE rule and reused; two-step: per replicate, the rank "
                             "then sigma by cross-validation (slow)")
    args = parser.parse_args(argv)
    replicates = args.replicates or (2 if args.quick else 20)
    missing = min(args.missing or (2 if args.quick else 10), replicates)
    started = time.perf_counter()
    designs = ("unit", "gaussian") if args.factors == "both" else (args.factors,)
    results = {factors: run_design(factors, args, replicates, missing) for factors in designs}
    print(f"plots: {', '.join(r['png'] for r in results.values())}  "
          f"({time.perf_counter() - started:.1f} s)")
    return {"designs": results, **results[designs[0]]}


if __name__ == "__main__":
    main()
