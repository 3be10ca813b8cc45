"""Constant-only subtrees contracted once (tnc.engine.constants) in GCP's objective.

    python bench/bench_constants.py [--repeats 15] [--rows 4000]

A model with two fixed side-feature inputs, ``M(i, j) = sum_ab F(i, a) G(i, b) W(a, b, j)``
(their face-splitting product ``(i, a, b)`` is the constant subtree), fitted by GCP:
the median time of one objective call (forward, loss, backward) with the constants
folded and without, per output width J, and for reference opt_einsum's own
``contract_expression(..., constants=[0, 1])`` forward against its plain one, in the
same process, interleaved (medians over repeats, 1 BLAS thread).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse       # noqa: E402

import numpy as np    # noqa: E402
import opt_einsum as oe  # noqa: E402

import tnc            # noqa: E402
from tnc.fitting.gcp import DenseObjective  # noqa: E402
from tnc.fitting.losses import get_loss  # noqa: E402
from bench_als import timed_together     # noqa: E402  (medians of interleaved repeats)

TEXT = ("network m(I = {I}, A = 30, B = 30, J = {J}) {{ index i: I, a: A, b: B, j: J "
        "data F(i, a), G(i, b) tensor W(a, b, j) output i, j }}")


def case(rows: int, width: int, repeats: int) -> dict:
    net = tnc.compile(TEXT.format(I=rows, J=width))
    rng = np.random.default_rng(0)
    fixed = {"F": rng.random((rows, 30)), "G": rng.random((rows, 30))}
    W = {"W": rng.standard_normal((30, 30, width))}
    target = rng.standard_normal((rows, width))
    loss = get_loss("gaussian")
    folded = DenseObjective(net, fixed, target, None, loss, "auto")
    plain = DenseObjective(net, fixed, target, None, loss, "auto")
    plain.folded = None
    shapes = [(rows, 30), (rows, 30), (30, 30, width)]
    oe_const = oe.contract_expression("ia,ib,abj->ij", fixed["F"], fixed["G"], shapes[2],
                                      constants=[0, 1])
    oe_plain = oe.contract_expression("ia,ib,abj->ij", *shapes)
    times = timed_together({"tnc folded": lambda: folded(W), "tnc plain": lambda: plain(W),
                     "oe constants": lambda: oe_const(W["W"]),
                     "oe plain": lambda: oe_plain(fixed["F"], fixed["G"], W["W"])}, repeats)
    times["saved flops"] = folded.folded.saved_flops
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rows", type=int, default=4000)
    args = parser.parse_args(argv)
    print(f"GCP objective call, I={args.rows}, A=B=30, median of {args.repeats}, "
          f"{os.environ['OPENBLAS_NUM_THREADS']} BLAS thread(s)")
    print(f"{'J':>4} {'folded ms':>10} {'plain ms':>10} {'folded/plain':>13} "
          f"{'oe const/plain':>15} {'saved Mflop/call':>17}")
    for width in (1, 4, 16, 64):
        t = case(args.rows, width, args.repeats)
        print(f"{width:4d} {t['tnc folded'] * 1e3:10.3f} {t['tnc plain'] * 1e3:10.3f} "
              f"{t['tnc folded'] / t['tnc plain']:13.2f} "
              f"{t['oe constants'] / t['oe plain']:15.2f} {t['saved flops'] / 1e6:17.1f}")


if __name__ == "__main__":
    main()
