"""Regenerate the bundled example data: a rank-3 CP tensor (20 x 25 x 30) plus 1% noise.

Run: python examples/make_data.py   (writes examples/data/cp3_noisy.npy)
"""
from pathlib import Path

import numpy as np


def cp3_noisy(seed: int = 7, shape=(20, 25, 30), rank: int = 3, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    clean = np.einsum("ir,jr,kr->ijk", *factors)
    return clean + noise * np.linalg.norm(clean) / np.sqrt(clean.size) * rng.standard_normal(shape)


if __name__ == "__main__":
    out = Path(__file__).parent / "data" / "cp3_noisy.npy"
    np.save(out, cp3_noisy())
    print(f"wrote {out}")
