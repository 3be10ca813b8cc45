"""Classify scikit-learn's 8x8 digits with an MPS (Stoudenmire & Schwab 2016).

Each image (64 pixels scaled to [0, 1]) becomes a product state of local
features [cos(pi x / 2), sin(pi x / 2)]; an MPS over the 64 sites with a label
leg of size 10 on the merged pair is trained by two-site sweeps (``--features
linear`` uses [1, x] instead, the default: it generalises better here) (exact local
ridge least squares on the one-hot labels, truncated SVD with adaptive rank).
The digits set ships with scikit-learn (no download)::

    python examples/mps_digits.py                 # full run, a few minutes on 2 cores
    python examples/mps_digits.py --small         # smoke test: few images, small ranks
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tnc.mps.mps_classifier import feature_map, train_classifier


def load(test_size=0.25, seed=0, limit=None):
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)


def run(max_rank=24, sweeps=2, ridge=1e-1, limit=None, progress=True, seed=0,
        features="linear") -> dict:
    """Train and evaluate; returns accuracies, ranks and timings."""
    x_train, x_test, y_train, y_test = load(limit=limit, seed=seed)
    start = time.perf_counter()
    phi_train, phi_test = feature_map(x_train, features), feature_map(x_test, features)
    model = train_classifier(phi_train, y_train, 10, max_rank=max_rank,
                             max_iter=sweeps, ridge=ridge, progress=progress, seed=seed)
    seconds = time.perf_counter() - start
    return {"test_accuracy": float(np.mean(model.predict(phi_test) == y_test)),
            "train_accuracy": float(np.mean(model.predict(phi_train) == y_train)),
            "seconds": seconds, "max_rank": max(model.ranks), "history": model.history,
            "train_size": len(y_train), "test_size": len(y_test)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rank", type=int, default=24)
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--ridge", type=float, default=1e-1)
    parser.add_argument("--features", choices=["linear", "trig"], default="linear")
    parser.add_argument("--small", action="store_true", help="tiny smoke-test run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    options = dict(max_rank=args.max_rank, sweeps=args.sweeps, ridge=args.ridge,
                   progress=not args.no_progress, features=args.features)
    if args.small:
        options.update(max_rank=12, sweeps=1, limit=400)
    out = run(**options)
    for number, record in enumerate(out["history"], 1):
        name = "half pass to the middle" if number == len(out["history"]) else f"sweep {number}"
        print(f"{name}: loss {record['loss']:.4f}  train acc (in-sweep) "
              f"{record['train_accuracy']:.3f}  max rank {record['max_rank']}  "
              f"truncation {record['truncation_error']:.2e}  {record['time']:.1f} s")
    print(f"{out['train_size']} train / {out['test_size']} test images, max rank "
          f"{out['max_rank']}, {out['seconds']:.1f} s")
    print(f"train accuracy {out['train_accuracy']:.4f}")
    print(f"test accuracy  {out['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
