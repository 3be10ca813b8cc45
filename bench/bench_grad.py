"""Cost of all parameter gradients against one forward contraction and torch autograd.

    python bench/bench_grad.py [--repeats 15] [--seconds 5] [--clock cpu|wall]

For each case prints the median time (same process, numpy float64) of
one forward contraction (``Network.contract``), of ``Network.grad`` (every
parameter, data tensors not differentiated) and of torch autograd through
``opt_einsum.contract`` on torch tensors with the same path (forward plus
``backward()``, data tensors with ``requires_grad=False``), and the ratios
grad/forward and tnc/torch. A second table runs the same job on torch tensors:
``Network.grad`` given torch tensors (tnc's reverse sweep in torch operations)
against the same torch autograd. Timings are noisy on a shared machine: medians of interleaved repeats, and
one BLAS thread for numpy and torch alike (set OMP_NUM_THREADS/
OPENBLAS_NUM_THREADS before running to change that; oversubscribed BLAS
threads spin and make single calls 100x slower here).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import opt_einsum as oe  # noqa: E402

import tnc  # noqa: E402

XTT = """network xtt(N = 8, d = 6, r = 12) {
    index p[n]: d   for n in 1..N
    index b[n]: r   for n in 1..N-1
    tensor G[n](b[n-1]?, p[n], b[n]?)   for n in 1..N
    data   X(p[1..N])
    output
}"""

PEPS_NORM = """network peps_norm(Lx = 3, Ly = 3, d = 2, D = 4) {
    index p[x, y]: d   for x in 1..Lx, y in 1..Ly
    index h[x, y]: D, k[x, y]: D   for x in 1..Lx-1, y in 1..Ly
    index v[x, y]: D, w[x, y]: D   for x in 1..Lx, y in 1..Ly-1
    tensor A[x, y](p[x, y], h[x-1, y]?, h[x, y]?, v[x, y-1]?, v[x, y]?)   for x in 1..Lx, y in 1..Ly
    tensor A[x, y](p[x, y], k[x-1, y]?, k[x, y]?, w[x, y-1]?, w[x, y]?)   for x in 1..Lx, y in 1..Ly
    output
}"""

XTUCKER = """network xtucker(I = 60, J = 70, K = 80, R1 = 8, R2 = 9, R3 = 10) {
    index i: I, j: J, k: K, a: R1, b: R2, c: R3
    tensor G(a, b, c), U1(i, a), U2(j, b), U3(k, c)
    data   X(i, j, k)
    output
}"""

CASES = {"TT8 <X, TT> (d=6, r=12)": XTT,
         "PEPS 3x3 <psi|psi> (d=2, D=4)": PEPS_NORM,
         "Tucker <X, Tucker> (60x70x80, ranks 8,9,10)": XTUCKER}


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def median_times(fns: dict, repeats: int, seconds: float, clock=time.perf_counter) -> dict:
    """Median seconds per function, the functions interleaved so load changes hit all alike.

    At least ``repeats`` rounds, more while a round fits ``seconds`` in all.
    """
    start = time.perf_counter()
    for fn in fns.values():
        fn()                               # warm up (plans, caches, BLAS threads)
    one_round = time.perf_counter() - start
    repeats = max(repeats, min(1000, int(seconds / max(one_round, 1e-9))))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_grad_fn(net: tnc.Network, tensors: dict):
    """Forward plus backward with torch autograd through opt_einsum on net's path."""
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    path = list(net.plan().cost.path)
    params = {n: torch.tensor(tensors[n], requires_grad=True) for n in net.params}
    data = {n: torch.tensor(tensors[n]) for n in net.data}
    names = [occ.name for occ in net.occurrences]

    def run():
        for p in params.values():
            p.grad = None
        arrays = [params[n] if n in params else data[n] for n in names]
        oe.contract(net.equation, *arrays, optimize=path, backend="torch").sum().backward()
        return {n: p.grad for n, p in params.items()}
    return run


def tnc_torch_grad_fn(net: tnc.Network, tensors: dict):
    """``Network.grad`` on torch tensors: tnc's engine running torch operations."""
    import torch
    arrays = {n: torch.tensor(a) for n, a in tensors.items()}
    return lambda: net.grad(arrays)


def tape_forward_fn(net: tnc.Network, tensors: dict):
    """tnc.engine.grad's own forward pass alone (the same matrix products, keeping intermediates)."""
    from tnc.engine.grad import grad_plan
    plan, arrays = grad_plan(net), net.operands(tensors)
    return lambda: plan.forward(arrays)


def naive_envs_fn(net: tnc.Network, tensors: dict):
    """Delete-the-node gradients: one environment contraction per tensor use."""
    names = [occ.name for occ in net.occurrences]
    envs = [(net.environment(n, names[:k].count(n) if names.count(n) > 1 else None))
            for k, n in enumerate(names)]

    def run():
        return [env.contract({n: tensors[n] for n in {**env.params, **env.data}})
                for env in envs]
    return run


def bench_case(label: str, text: str, repeats: int, seconds: float, clock) -> dict:
    net = tnc.compile(text)
    tensors = net.random(seed=0, include_data=True)
    fns = {"forward": lambda: net.contract(tensors), "tnc grad": lambda: net.grad(tensors),
           "tape forward": tape_forward_fn(net, tensors),
           "naive envs": naive_envs_fn(net, tensors)}
    try:
        fns["torch grad"] = torch_grad_fn(net, tensors)
        fns["tnc grad on torch"] = tnc_torch_grad_fn(net, tensors)
    except ImportError:
        pass
    row = {"case": label, "torch grad": float("nan"), "tnc grad on torch": float("nan"),
           **median_times(fns, repeats, seconds, clock)}
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="least rounds per case")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="more rounds while they fit this time per case")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="process CPU time (default: robust to other processes on a "
                             "shared machine, with one BLAS thread) or wall time")
    args = parser.parse_args(argv)
    columns = ["forward", "tape forward", "tnc grad", "torch grad", "naive envs"]
    print(f"median {args.clock} time per call, {os.environ['OMP_NUM_THREADS']} BLAS thread(s)")
    print(f"{'case':44s}" + "".join(f"{c:>13s}" for c in columns)
          + f"{'grad/fwd':>10s}{'grad/tape':>10s}{'tnc/torch':>10s}{'naive/fwd':>10s}")
    rows = []
    for label, text in CASES.items():
        row = bench_case(label, text, args.repeats, args.seconds, CLOCKS[args.clock])
        rows.append(row)
        print(f"{label:44s}" + "".join(f"{row[c] * 1e3:11.2f}ms" for c in columns)
              + f"{row['tnc grad'] / row['forward']:10.2f}"
              f"{row['tnc grad'] / row['tape forward']:10.2f}"
              f"{row['tnc grad'] / row['torch grad']:10.2f}"
              f"{row['naive envs'] / row['forward']:10.2f}")
    print("\nthe same gradients on torch tensors (tnc engine in torch operations vs torch "
          "autograd through opt_einsum)")
    print(f"{'case':44s}{'tnc on torch':>13s}{'torch grad':>13s}{'tnc/torch':>10s}")
    for row in rows:
        print(f"{row['case']:44s}{row['tnc grad on torch'] * 1e3:11.2f}ms"
              f"{row['torch grad'] * 1e3:11.2f}ms"
              f"{row['tnc grad on torch'] / row['torch grad']:10.2f}")


if __name__ == "__main__":
    main()
