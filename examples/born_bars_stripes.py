"""A Born machine (MPS, p = psi^2 / Z) learns the 30 bars-and-stripes 4x4 patterns.

Han, Wang, Fan, Wang and Zhang (PRX 2018): two-site sweeps on the negative
log-likelihood with adaptive bond sizes. Trained on all 30 patterns the NLL
floor is ln 30 = 3.401 (the uniform distribution on them); a second run holds
out 6 patterns and reports their test NLL. Both are printed against the
independent-pixel baseline, and exact samples are drawn and pictured::

    python examples/born_bars_stripes.py            # a few seconds
    python examples/born_bars_stripes.py --quick    # smoke test
"""
from __future__ import annotations

import itertools

import numpy as np

from _shared import example_parser, pyplot

from tnc.mps.born import bars_and_stripes, independent_nll, train_born


def report(name: str, model, train, test) -> dict:
    """Print and return the MPS's and the baseline's train/test NLL (nats per image)."""
    base_train, base_test = independent_nll(train, test)
    row = {"train": model.nll(train), "test": model.nll(test), "baseline_train": base_train,
           "baseline_test": base_test, "max_rank": max(model.ranks)}
    print(f"{name}: MPS train NLL {row['train']:.3f}, test NLL {row['test']:.3f} | "
          f"independent pixels train {base_train:.3f}, test {base_test:.3f} | "
          f"max rank {row['max_rank']}, {len(model.history)} sweeps")
    return row


def picture(draw, path):
    """``draw(plt)`` -> a figure, saved to ``path`` as a PNG; None without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        print("matplotlib is not installed: no picture")
        return None
    fig = draw(plt)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def save_samples(samples: np.ndarray, side: int, path, title: str):
    """A grid of binary images ``(n, side * side)`` as a PNG (see :func:`picture`)."""
    def draw(plt):
        columns = min(len(samples), 10)
        rows = -(-len(samples) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(columns, rows + 0.4), squeeze=False)
        for ax, image in itertools.zip_longest(axes.ravel(), samples):
            ax.axis("off")
            if image is not None:
                ax.imshow(image.reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
        fig.suptitle(title, fontsize=9)
        return fig
    return picture(draw, path)


def main(argv=None) -> dict:
    parser = example_parser(__doc__, "fewer sweeps")
    parser.add_argument("--max-rank", type=int, default=16)
    args = parser.parse_args(argv)
    sweeps = 6 if args.quick else 12
    patterns = bars_and_stripes()
    print(f"{len(patterns)} patterns; NLL floor ln {len(patterns)} = "
          f"{np.log(len(patterns)):.3f}")
    full = train_born(patterns, 2, max_rank=args.max_rank, max_iter=sweeps, seed=args.seed,
                      progress=False)
    rows = {"all": report("all 30 (test = train)", full, patterns, patterns)}
    print("NLL per sweep: " + " ".join(f"{r['loss']:.3f}" for r in full.history))
    order = np.random.default_rng(args.seed).permutation(len(patterns))
    train, test = patterns[order[6:]], patterns[order[:6]]
    held = train_born(train, 2, max_rank=args.max_rank, max_iter=sweeps, seed=args.seed,
                      progress=False)
    rows["held_out"] = report("24 train / 6 held out", held, train, test)
    samples = full.sample(1000, seed=args.seed)
    known = {tuple(p) for p in patterns}
    valid = float(np.mean([tuple(s) in known for s in samples]))
    print(f"share of exact samples that are bars or stripes: {valid:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    png = save_samples(samples[:30], 4, args.out / "born_bars_stripes.png",
                       f"Born machine samples (NLL {rows['all']['train']:.3f})")
    return {"rows": rows, "valid": valid, "png": png, "history": full.history}


if __name__ == "__main__":
    main()
