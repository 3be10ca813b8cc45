"""CP-ALS on a float32 array on disk, streamed (tnc/fitting/streamed.py), against the same fit
of the array loaded into memory; each fit in a fresh process, one BLAS thread.

Issue 15's goal: 1200^3 float32 (6.9 GB on disk), rank 10, the streaming process's peak RSS
under 1.5 GB and its time per entry per sweep at most 2x the in-memory figure. The size is
an argument (``--size 600`` writes 0.86 GB) and the RSS goal scales with the data:
``1.5 GB * (size / 1200)^3``, also the streamed fit's ``memory_limit`` unless
``--memory-limit`` is given. Prints the time per sweep (both fits from the same random start,
``--sweeps`` sweeps, tol=0, the first sweep dropped) as the median over consecutive pairs of
sweeps of their mean, their ratio and both peak RSS
(``resource.getrusage``, the child's own). The file goes under ``--dir`` (default /tmp) and is
deleted. ``--method gcp``: the same for GCP's L-BFGS-B iterations (the full gradient streamed,
tnc/fitting/streamed_gcp.py). ``--hidden 0.2 --missing em|wls``: a random 20 % of the
entries hidden by a boolean mask stored beside the data (.npy, memory-mapped, streamed in the
same blocks), against the in-memory masked fit.
Run: ``python bench/bench_scale.py [--size 600] [--sweeps 7]``.

Why pairs: in memory, 3-way CP-ALS keeps the data contracted with one factor between
updates (the dimension trees' cache), so its sweeps alternate between one product over the
data and two (0.29 s and 0.60 s at 800^3); the median of single sweeps reports the cheap
kind. The streamed fit makes two passes every sweep. A pair holds one sweep of each kind, so
its mean is the cost of a sweep in a long fit; the plain medians are printed too.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

GOAL_RSS_AT_1200 = 1.5e9


def write_cp_file(path: str, size: int, rank: int, seed: int = 0, rows: int = 16) -> None:
    """A rank-``rank`` CP tensor plus 10% noise, float32, written block by block as .npy."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal((size, rank)) for _ in range(3))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (size,) * 3}
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        for start in range(0, size, rows):
            block = np.einsum("ir,jr,kr->ijk", a[start:start + rows], b, c)
            block += 0.1 * np.std(block) * rng.standard_normal(block.shape)
            file.write(block.astype(np.float32).tobytes())


def write_mask_file(path: str, size: int, hidden: float, seed: int = 1, rows: int = 16) -> None:
    """A boolean mask (True: observed) with a random ``hidden`` fraction False, as .npy."""
    rng = np.random.default_rng(seed)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(bool)),
              "fortran_order": False, "shape": (size,) * 3}
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        for start in range(0, size, rows):
            file.write((rng.random((min(rows, size - start), size, size)) >= hidden).tobytes())


def child(path: str, mode: str, rank: int, sweeps: int, memory_limit: int,
          method: str = "als", mask_path: str = "", missing: str = "auto") -> None:
    """One fit (``mode`` "disk" or "memory") in this process; prints a JSON line."""
    import resource
    import tnc
    # in memory: read, not copied from a mapping (whose pages would count in the RSS too)
    load = (lambda p: np.load(p, mmap_mode="r")) if mode == "disk" else np.load
    data = load(path)
    mask = load(mask_path) if mask_path else None
    if mode == "memory64":                  # converted to float64 first
        data = data.astype(np.float64)
    n = data.shape[0]
    net = tnc.library("cp", I=n, J=n, K=n, R=rank)
    limit = memory_limit if mode == "disk" else "auto"
    options = {"init": "random"} if method == "als" else {"method": "gcp"}
    if mask is not None:
        options.update(mask=mask, **({"missing": missing} if method == "als" else {}))
    result = tnc.fit(net, data, max_iter=sweeps, tol=0.0, progress=False,
                     memory_limit=limit, **options)
    times = np.diff([0.0] + [h["time"] for h in result.history])[1:]
    print(json.dumps({"sweeps": list(map(float, times)), "rel_error": result.rel_error,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "streamed": result.info.get("streamed")}))


def run_child(path, mode, rank, sweeps, memory_limit, method="als", mask_path="",
              missing="auto") -> dict:
    command = [sys.executable, __file__, "--child", mode, "--path", path, "--rank", str(rank),
               "--sweeps", str(sweeps), "--memory-limit", str(memory_limit), "--method", method,
               "--mask-path", mask_path, "--missing", missing]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def per_sweep(times: list) -> float:
    """The median over consecutive pairs of sweep times of their mean (the one time when
    fewer than two): a sweep's cost where sweeps alternate between two kinds.

        >>> per_sweep([0.25, 0.75, 0.25, 0.75, 0.25])
        0.5
    """
    pairs = [(a + b) / 2 for a, b in zip(times[0::2], times[1::2])]
    return statistics.median(pairs) if pairs else times[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--sweeps", type=int, default=7)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--memory-limit", type=int, default=None)
    parser.add_argument("--skip-memory", action="store_true", help="only the streamed fit")
    parser.add_argument("--modes", default="memory,memory64",
                        help="in-memory fits to compare (memory: float32 as stored, memory64: "
                        "converted to float64, 2x the file in RAM)")
    parser.add_argument("--method", choices=["als", "gcp"], default="als",
                        help="gcp: L-BFGS-B iterations (streamed_gcp.py) instead of ALS sweeps")
    parser.add_argument("--hidden", type=float, default=0.0,
                        help="fraction of entries hidden by a mask stored beside the data")
    parser.add_argument("--missing", choices=["auto", "em", "wls"], default="auto")
    parser.add_argument("--child", choices=["disk", "memory", "memory64"])
    parser.add_argument("--path")
    parser.add_argument("--mask-path", default="")
    args = parser.parse_args()
    if args.child:
        return child(args.path, args.child, args.rank, args.sweeps, args.memory_limit,
                     args.method, args.mask_path, args.missing)
    goal = GOAL_RSS_AT_1200 * (args.size / 1200) ** 3
    limit = args.memory_limit or int(goal)
    entries = args.size ** 3
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, "x.npy")
        started = time.perf_counter()
        write_cp_file(path, args.size, args.rank)
        mask_path = os.path.join(folder, "mask.npy") if args.hidden else ""
        if mask_path:
            write_mask_file(mask_path, args.size, args.hidden)
        print(f"wrote {args.size}^3 float32 ({os.path.getsize(path) / 1e9:.2f} GB) in "
              f"{time.perf_counter() - started:.0f} s; rank {args.rank}, {args.sweeps} sweeps, "
              f"streamed memory_limit {limit / 1e6:.0f} MB"
              + (f"; {args.hidden:.0%} hidden, missing={args.missing}" if mask_path else ""))
        run = lambda mode: run_child(path, mode, args.rank, args.sweeps, limit,  # noqa: E731
                                     args.method, mask_path, args.missing)
        disk = run("disk")
        fits = {"disk": disk}
        if not args.skip_memory:
            for mode in [m for m in args.modes.split(",") if m]:
                fits[mode] = run(mode)
    per_entry = {k: per_sweep(v["sweeps"]) / entries * 1e9 for k, v in fits.items()}
    print("sweep times (s, the first dropped): " + "; ".join(
        f"{k} {' '.join(f'{t:.3f}' for t in v['sweeps'])} (median {statistics.median(v['sweeps']):.3f})"
        for k, v in fits.items()))
    print(f"streamed: {disk['streamed']}")
    print(f"streamed from disk: {per_entry['disk']:.3f} ns per entry per sweep (median over pairs), "
          f"peak RSS {disk['peak_rss'] / 1e6:.0f} MB (goal {goal / 1e6:.0f} MB: "
          f"{'met' if disk['peak_rss'] <= goal else 'MISSED'}), rel error {disk['rel_error']:.6g}")
    for mode, what in (("memory", "float32 as stored"), ("memory64", "converted to float64")):
        if mode in fits:
            ratio = per_entry["disk"] / per_entry[mode]
            print(f"in memory ({what}): {per_entry[mode]:.3f} ns per entry per sweep, peak RSS "
                  f"{fits[mode]['peak_rss'] / 1e6:.0f} MB, rel error "
                  f"{fits[mode]['rel_error']:.6g}; streamed / in memory {ratio:.2f}x "
                  f"(goal <= 2x: {'met' if ratio <= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
