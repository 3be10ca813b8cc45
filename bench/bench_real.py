"""Real data: tnc's CP fits against tensorly's masked ``parafac`` and pyttb, in one process.

The data sets ship with tensorly (no downloads): IL2 (13x4x12x8, 192 NaN
entries missing), Kinetic (64x12x10x60, 20 % of the entries hidden at random,
seed 0) and COVID-19 serology (438x6x11). Every fit's error is the relative
error on the observed entries, computed here from its factors the same way.

* ``tnc default``: ``tnc.fit(..., method="als")`` with no options;
* ``tnc plain``: the same without extrapolation (``extrapolate=False``);
* ``tensorly``: ``parafac(mask=..., init="random", n_iter_max=1000)``, best of 5 seeds
  (time: their sum; iterations: the best seed's);
* ``pyttb``: ``cp_als`` (complete data only; random start, 1000 iterations, best of 5).

Columns ``sweeps-1e-9``: sweeps until the loss changes by less than 1e-9 of itself
between sweeps (``-``: not within the budget); ``t->tl``: seconds until the fit's error
first reaches tensorly's best (``-``: never). Run: ``python bench/bench_real.py``
(``--quick``: IL2 only, ranks 3 and 5).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import tnc

SEEDS = range(5)


def datasets(quick: bool = False):
    """``(name, data with missing entries 0, mask or None, ranks)`` for each data set."""
    from tensorly import datasets as tld

    il2 = np.asarray(tld.load_IL2data().tensor, float)
    yield "IL2", np.nan_to_num(il2), ~np.isnan(il2), (3, 5)
    if quick:
        return
    kinetic = np.asarray(tld.load_kinetic().tensor, float)
    yield "Kinetic", kinetic, np.random.default_rng(0).random(kinetic.shape) >= 0.2, (3, 4, 5)
    covid = np.asarray(tld.load_covid19_serology().tensor, float)
    yield "COVID19", covid, None, (3, 4, 5)


def cp_text(shape, rank: int) -> str:
    """A CP network in the tnc language for data of ``shape``."""
    letters = "ijklmn"[:len(shape)]
    sizes = ", ".join(f"{c.upper()} = {n}" for c, n in zip(letters, shape))
    factors = ", ".join(f"F{k}({c}, r)" for k, c in enumerate(letters))
    return (f"network cp({sizes}, R = {rank}) {{ index {', '.join(f'{c}: {c.upper()}' for c in letters)}"
            f", r: R\n tensor {factors}\n output {', '.join(letters)} }}")


def observed_error(data, mask, model) -> float:
    diff = (data - model) if mask is None else np.where(mask, data - model, 0.0)
    norm = np.linalg.norm(data if mask is None else np.where(mask, data, 0.0))
    return float(np.linalg.norm(diff) / norm)


def tnc_fit(data, mask, rank, **options):
    start = time.perf_counter()
    result = tnc.fit(cp_text(data.shape, rank), data, method="als", mask=mask,
                     progress=False, **options)
    elapsed = time.perf_counter() - start
    return {"error": observed_error(data, mask, result.reconstruct()), "converged": result.converged,
            "iterations": result.iterations, "time": elapsed, "history": result.history}


def tensorly_fit(data, mask, rank):
    import tensorly as tl
    from tensorly.decomposition import parafac

    best, total = None, 0.0
    for seed in SEEDS:
        start = time.perf_counter()
        cp, errors = parafac(tl.tensor(data), rank, mask=None if mask is None else tl.tensor(
            mask.astype(float)), init="random", random_state=seed, n_iter_max=1000,
            return_errors=True)
        total += time.perf_counter() - start
        error = observed_error(data, mask, tl.cp_to_tensor(cp))
        if best is None or error < best["error"]:
            best = {"error": error, "converged": len(errors) < 1000, "iterations": len(errors)}
    best["time"] = total
    return best


def pyttb_fit(data, rank):
    import pyttb

    best, total = None, 0.0
    for seed in SEEDS:
        np.random.seed(seed)
        start = time.perf_counter()
        ktensor, _, info = pyttb.cp_als(pyttb.tensor(data), rank, maxiters=1000, stoptol=1e-9,
                                        printitn=-1)
        total += time.perf_counter() - start
        error = observed_error(data, None, ktensor.full().data)
        if best is None or error < best["error"]:
            best = {"error": error, "converged": info["iters"] < 1000,
                    "iterations": info["iters"]}
    best["time"] = total
    return best


def sweeps_to(history, tol: float = 1e-9):
    """First sweep whose loss changed by less than ``tol`` of itself, or None."""
    for previous, entry in zip(history, history[1:]):
        if abs(previous["loss"] - entry["loss"]) <= tol * entry["loss"]:
            return entry["iteration"]
    return None


def time_to(history, error):
    """Seconds until the fit's relative error first reaches ``error`` (0.01 % slack), or None."""
    return next((e["time"] for e in history if e["rel_error"] <= error * (1 + 1e-4)), None)


def row(name, rank, label, fit, reference=None):
    extra = ""
    if "history" in fit:
        sweeps, reach = sweeps_to(fit["history"]), time_to(fit["history"], reference)
        extra = f" {sweeps if sweeps else '-':>11} {f'{reach:.3f}' if reach else '-':>7}"
    print(f"{name:8} {rank:>2} {label:14} {fit['error']:.5f} {str(fit['converged']):>5} "
          f"{fit['iterations']:>5} {fit['time']:7.3f}{extra}")


def main(quick: bool = False) -> None:
    warnings.filterwarnings("ignore")
    print(f"{'data':8} {'R':>2} {'fit':14} {'error':7} {'conv':>5} {'iter':>5} {'time s':>7} "
          f"{'sweeps-1e-9':>11} {'t->tl':>7}")
    ratios = {"sweeps": [], "time": []}
    for name, data, mask, ranks in datasets(quick):
        for rank in ranks:
            reference = tensorly_fit(data, mask, rank)
            default = tnc_fit(data, mask, rank)
            plain = tnc_fit(data, mask, rank, extrapolate=False)
            row(name, rank, "tnc default", default, reference["error"])
            row(name, rank, "tnc plain", plain, reference["error"])
            row(name, rank, "tensorly best5", reference)
            if mask is None:
                row(name, rank, "pyttb best5", pyttb_fit(data, rank))
            fast, slow = sweeps_to(default["history"]), sweeps_to(plain["history"])
            if fast and slow:
                ratios["sweeps"].append(fast / slow)
            reach = time_to(default["history"], reference["error"])
            if reach:
                ratios["time"].append(reach / reference["time"] * len(SEEDS))
    for key, values in ratios.items():
        if values:
            print(f"median {key} ratio (default / {'plain' if key == 'sweeps' else 'tensorly one seed'})"
                  f": {statistics.median(values):.2f} over {len(values)} cases")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
