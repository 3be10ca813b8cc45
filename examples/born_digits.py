"""A Born machine (MPS, p = psi^2 / Z) on binarised scikit-learn digits (8x8, 64 sites).

Pixels above 7 (of 16) become 1; the images are read row by row as sequences of
64 bits. Two-site sweeps on the negative log-likelihood with adaptive bond sizes
(Han et al., PRX 2018); train and test NLL are printed against the
independent-pixel baseline (Laplace-smoothed frequencies), and exact samples
are pictured. The digits ship with scikit-learn (no download)::

    python examples/born_digits.py              # about 10 s on 2 cores
    python examples/born_digits.py --quick      # smoke test: 300 images, small ranks
"""
from __future__ import annotations

import numpy as np

from _shared import example_parser

from born_bars_stripes import report, save_samples
from tnc.mps.born import train_born


def load(seed: int, limit=None):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.data > 7).astype(np.intp)
    if limit is not None:
        x = x[:limit]
    return train_test_split(x, test_size=0.25, random_state=seed)


def main(argv=None) -> dict:
    parser = example_parser(__doc__, "300 images, rank 8, 2 sweeps")
    parser.add_argument("--max-rank", type=int, default=24)
    parser.add_argument("--sweeps", type=int, default=8)
    args = parser.parse_args(argv)
    limit, max_rank, sweeps = (300, 8, 2) if args.quick else (None, args.max_rank, args.sweeps)
    train, test = load(args.seed, limit)
    print(f"{len(train)} train / {len(test)} test images of 64 binary pixels")
    model = train_born(train, 2, max_rank=max_rank, max_iter=sweeps, seed=args.seed,
                       progress=False)
    for number, record in enumerate(model.history, 1):
        print(f"sweep {number}: train NLL {record['loss']:.3f}  max rank "
              f"{record['max_rank']}  truncation {record['truncation_error']:.1e}")
    row = report("digits", model, train, test)
    print(f"training took {model.wall_time:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    samples = model.sample(30, seed=args.seed)
    png = save_samples(samples, 8, args.out / "born_digits.png",
                       f"Born machine samples (test NLL {row['test']:.1f} nats)")
    return {"row": row, "png": png, "history": model.history}


if __name__ == "__main__":
    main()
