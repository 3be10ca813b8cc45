"""tnc's ALS, HOOI and TT-SVD against pyttb and tensorly, in one process.

    python bench/bench_als.py [--size 200] [--rank 10] [--sweeps 20] [--repeats 3] [--threads N]
                              [--kernels auto|avx512|avx2|portable|blas] [--extrapolate on|off]

Every library gets the same data, the same starting factors (where it accepts
them), a fixed number of sweeps (tolerance 0) and the same BLAS thread count.
Times per sweep are total time / sweeps (median over repeats, the libraries run
in turn within each repeat); ratios < 1 mean
tnc is faster. For CP it also prints, for information, the time tnc needs to
reach the error pyttb reaches in its sweeps ("to pyttb fit", compare with
"pyttb total"), and the same fit in float32 (data and start cast; target <= 0.6x the
float64 time per sweep, its error within 1e-4 relative of the float64 one); tnc's sweeps alternate between streaming X once and twice
(the windowed schedule of tnc.fitting.als), so their median is printed too. The targets: CP <= 0.5x pyttb and tensorly, Tucker HOOI <= 1.0x
pyttb tucker_als, TT-SVD of a 4^11 tensor <= 1.0x tensorly tensor_train.
``--extrapolate`` sets tnc CP-ALS's line search (default: ALS's own default); the
header line says which ran.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import numpy as np

from tnc.engine import kernels


def timed(function, repeats: int) -> float:
    """Median wall time of ``function()`` over ``repeats`` runs (after one warm-up)."""
    return timed_together({"f": function}, repeats)["f"]


def timed_together(functions: dict, repeats: int) -> dict:
    """Median wall time of each function, the functions run in turn in every repeat
    (after one warm-up each), so a change of load on the shared machine hits all
    of them alike and their ratios stay fair."""
    times = {name: [] for name in functions}
    for round_ in range(repeats + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def cp_data(n: int, rank: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for _ in range(3)]
    X = np.einsum("ir,jr,kr->ijk", *factors, optimize=True)
    X += 0.1 * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(X.shape)
    start = [rng.random((n, rank)) for _ in range(3)]
    return X, start


def cp_runners(n, rank, sweeps, extrapolate: bool = False):
    """The data, tnc's network and start, and one run of each library's CP-ALS (same
    data, same start, ``sweeps`` sweeps, tolerance 0; tnc with ``extrapolate``)."""
    import pyttb
    import tensorly
    from tensorly.decomposition import parafac
    import tnc
    X, start = cp_data(n, rank)
    net = tnc.library("cp", I=n, J=n, K=n, R=rank)
    init = dict(zip("ABC", start))
    tt = pyttb.tensor(X, copy=False)

    def run_tnc():
        return tnc.fit(net, X, method="als", init=init, max_iter=sweeps, tol=0,
                       extrapolate=extrapolate, progress=False)

    X32, init32 = X.astype(np.float32), {k: v.astype(np.float32) for k, v in init.items()}

    def run_tnc32():     # the same fit in float32 (float32 kernels, half the bytes of X)
        return tnc.fit(net, X32, method="als", init=init32, max_iter=sweeps, tol=0,
                       extrapolate=extrapolate, progress=False)

    def run_pyttb():
        return pyttb.cp_als(tt, rank, stoptol=0, maxiters=sweeps,
                            init=pyttb.ktensor([f.copy() for f in start]), printitn=0)

    def run_tensorly():
        return parafac(X, rank, n_iter_max=sweeps, init=tensorly.cp_tensor.CPTensor(
            (np.ones(rank), [f.copy() for f in start])), tol=0)

    return X, net, init, {"tnc": run_tnc, "pyttb": run_pyttb, "tensorly": run_tensorly,
                          "tnc float32": run_tnc32}


def bench_cp_variants(n, rank, sweeps, repeats, extrapolate: bool = False) -> dict:
    """tnc's CP-ALS per sweep on every kernel variant this CPU runs and on BLAS, and
    pyttb's, all run in turn within each repeat (so the machine's load hits all alike)."""
    _, _, _, runs = cp_runners(n, rank, sweeps, extrapolate)
    chosen = kernels.variant()
    functions = {f"tnc {name}": (lambda name=name: (kernels.use(name), runs["tnc"]()))
                 for name in kernels.supported() + ("blas",)}
    try:
        together = timed_together({**functions, "pyttb": runs["pyttb"]}, repeats)
    finally:
        kernels.use(chosen)
    return {name: value / sweeps for name, value in together.items()}


def bench_cp(n, rank, sweeps, repeats, extrapolate: bool = False) -> dict:
    import tnc
    X, net, init, runs = cp_runners(n, rank, sweeps, extrapolate)
    run_tnc, run_pyttb, run_tensorly = runs["tnc"], runs["pyttb"], runs["tensorly"]
    result = run_tnc()
    together = timed_together({"tnc": run_tnc, "pyttb": run_pyttb, "tensorly": run_tensorly,
                               "tnc float32": runs["tnc float32"]}, repeats)
    times = {name: value / sweeps for name, value in together.items()}
    steps = np.diff([0.0] + [h["time"] for h in result.history])
    times["tnc median sweep"] = float(np.median(steps[1:]))
    times["tnc rel_error"] = result.rel_error
    times["tnc float32 rel_error"] = runs["tnc float32"]().rel_error
    times["float32 vs float64 error"] = abs(times["tnc float32 rel_error"] / result.rel_error - 1)
    target = float(run_pyttb()[2]["normresidual"]) / np.linalg.norm(X)
    times["tnc to pyttb fit"] = timed(lambda: tnc.fit(
        net, X, method="als", init=init, max_iter=10 * sweeps, tol=0, progress=False,
        extrapolate=extrapolate,
        callback=lambda state: state["rel_error"] <= target * (1 + 1e-6)), repeats)
    times["pyttb total"] = times["pyttb"] * sweeps
    times["pyttb rel_error"] = target
    return times


def bench_tucker(n, rank, sweeps, repeats) -> dict:
    import pyttb
    from tnc.fitting.decompositions import hooi
    rng = np.random.default_rng(1)
    core = rng.standard_normal((rank,) * 3)
    factors = [np.linalg.qr(rng.standard_normal((n, rank)))[0] for _ in range(3)]
    X = np.einsum("abc,ia,jb,kc->ijk", core, *factors, optimize=True)
    X += 0.1 * np.linalg.norm(X) / np.sqrt(X.size) * rng.standard_normal(X.shape)
    start = [np.linalg.qr(rng.standard_normal((n, rank)))[0] for _ in range(3)]
    tt = pyttb.tensor(X, copy=False)
    # tol=0 stops HOOI once the core norm repeats exactly, which happens after a
    # number of sweeps that rounding decides; pyttb always does all of them
    done = len(hooi(X, [f.copy() for f in start], max_sweeps=sweeps, tol=0)[2])
    together = timed_together({
        "tnc": lambda: hooi(X, [f.copy() for f in start], max_sweeps=sweeps, tol=0),
        "pyttb": lambda: pyttb.tucker_als(tt, [rank] * 3, stoptol=0, maxiters=sweeps,
                                          init=[f.copy() for f in start], printitn=0)},
        repeats)
    return {"tnc": together["tnc"] / done, "pyttb": together["pyttb"] / sweeps,
            "tnc sweeps done": done}


def bench_tt(repeats, rank: int = 16) -> dict:
    from tensorly.decomposition import tensor_train
    from tnc.fitting.decompositions import tt_svd
    X = np.random.default_rng(2).standard_normal((4,) * 11)
    return timed_together({"tnc": lambda: tt_svd(X, rank),
                           "tensorly": lambda: tensor_train(X, rank)}, repeats)


def report(title: str, times: dict, targets: dict) -> None:
    print(f"\n{title}")
    for name, value in times.items():
        plain = "error" in name or "done" in name  # a ratio or a count, not seconds
        shown = f"{value:10.3e}" if " vs " in name else \
            f"{value * (1 if plain else 1e3):10.3f}{'' if plain else ' ms'}"
        print(f"  {name:28s} {shown}")
    for other, target in targets.items():
        mine = "tnc float32" if other == "tnc" else "tnc"
        ratio = times[mine] / times[other]
        verdict = "ok" if ratio <= target else "SLOWER THAN TARGET"
        print(f"  ratio {mine}/{other:{25 - len(mine)}s} {ratio:6.2f}  (target <= {target})  "
              f"{verdict}")


def als_extrapolates() -> bool:
    """ALS's default for ``extrapolate`` (:class:`tnc.fitting.als.ALSOptions`)."""
    from tnc.fitting.als import ALSOptions
    return bool(ALSOptions().extrapolate)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads for every library (default: leave as is)")
    parser.add_argument("--only", choices=("cp", "tucker", "tt"), action="append")
    parser.add_argument("--kernels", default="auto",
                        choices=("auto", "all") + kernels.VARIANTS + ("blas",),
                        help="tnc's kernel variant (tnc.engine.kernels.use; default: the fastest "
                             "here; all: CP only, every variant against pyttb)")
    parser.add_argument("--extrapolate", choices=("on", "off"), default=None,
                        help="tnc CP-ALS's line search (default: ALS's own default)")
    args = parser.parse_args(argv)
    extrapolate = als_extrapolates() if args.extrapolate is None else args.extrapolate == "on"
    kernels.use("auto" if args.kernels == "all" else args.kernels)
    limit = nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(args.threads)
        kernels.set_threads(args.threads)  # tnc's compiled kernels use as many as BLAS
    only = set(args.only or ("cp", "tucker", "tt"))
    with limit:
        print(f"dense {args.size}^3, rank {args.rank}, {args.sweeps} sweeps, "
              f"median of {args.repeats}, threads {args.threads or 'default'}, "
              f"tnc kernels {kernels.variant()} (this CPU runs {', '.join(kernels.supported())}), "
              f"tnc extrapolate {'on' if extrapolate else 'off'}")
        if args.kernels == "all":
            times = bench_cp_variants(args.size, args.rank, args.sweeps, args.repeats,
                                      extrapolate)
            print("\nCP-ALS per sweep, every kernel variant (avx2 target: <= 0.40x pyttb at "
                  "1 thread, <= 0.45x at 2)")
            for name, value in times.items():
                ratio = "" if name == "pyttb" else f"   tnc/pyttb {value / times['pyttb']:5.2f}"
                print(f"  {name:16s} {value * 1e3:9.3f} ms{ratio}")
            return
        if "cp" in only:
            report("CP-ALS (time per sweep)", bench_cp(args.size, args.rank, args.sweeps,
                                                       args.repeats, extrapolate),
                   {"pyttb": 0.5, "tensorly": 0.5, "tnc": 0.6})
        if "tucker" in only:
            report("Tucker HOOI (time per sweep)", bench_tucker(
                args.size, args.rank, args.sweeps, args.repeats), {"pyttb": 1.0})
        if "tt" in only:
            report("TT-SVD of a 4^11 tensor, max rank 16 (total time)",
                   bench_tt(args.repeats), {"tensorly": 1.0})


if __name__ == "__main__":
    main()
