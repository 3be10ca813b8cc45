"""An MLP with a TT-matrix hidden layer (Novikov et al. 2015) on scikit-learn's digits.

The 8x8 digit images (64 pixels, standardised) go through a hidden layer of 256
units and ReLU, then a dense 256 -> 10 read-out. The hidden layer is either a
``tnc.torch.Layer`` whose weight is a TT-matrix (64 = 4x4x4 inputs, 256 = 8x8x4
outputs, rank 8, written below as a tnc network) or a dense ``nn.Linear``; both
are trained the same way (Adam, cross entropy) and the script prints test
accuracy and parameter counts of both. The digits set ships with scikit-learn
(no download)::

    python examples/tt_layer_digits.py            # 30 epochs, a few seconds per model
    python examples/tt_layer_digits.py --quick    # 15 epochs (the smoke test)
"""
from __future__ import annotations

import time

import _shared  # noqa: F401  (tnc from the checkout)
from _shared import example_parser, pyplot

TTM = """
network ttm3(r = 8) {
    index c1: 4, c2: 4, c3: 4, o1: 8, o2: 8, o3: 4, b1: r, b2: r
    tensor W1(o1, c1, b1), W2(b1, o2, c2, b2), W3(b2, o3, c3)
    output o1, o2, o3, c1, c2, c3
}
"""
HIDDEN = 256


def load(seed: int):
    """Standardised digits as float32 torch tensors, a stratified 75/25 split."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)
    mean, std = x_train.mean(0), x_train.std(0) + 1.0
    as_x = lambda x: torch.tensor((x - mean) / std, dtype=torch.float32)  # noqa: E731
    return as_x(x_train), as_x(x_test), torch.tensor(y_train), torch.tensor(y_test)


def mlp(hidden_layer):
    import torch
    return torch.nn.Sequential(hidden_layer, torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))


def hidden_layers(rank: int, seed: int) -> dict:
    import torch
    import tnc.torch
    torch.manual_seed(seed)
    return {"TT-matrix": tnc.torch.Layer(TTM, inputs=["c1", "c2", "c3"], gain=2.0, r=rank,
                                         seed=seed),
            "dense": torch.nn.Linear(64, HIDDEN)}


def train(model, data, epochs: int, seed: int, lr=3e-3, batch=64) -> dict:
    """Adam on cross entropy; test accuracy after each epoch."""
    import torch
    x_train, x_test, y_train, y_test = data
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for chunk in torch.randperm(len(x_train), generator=generator).split(batch):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[chunk]), y_train[chunk]).backward()
            optimizer.step()
        with torch.no_grad():
            curve.append((model(x_test).argmax(1) == y_test).float().mean().item())
    return {"accuracy": curve[-1], "curve": curve, "seconds": time.perf_counter() - start,
            "params": sum(p.numel() for p in model.parameters()),
            "hidden_params": sum(p.numel() for p in model[0].parameters())}


def plot(rows: dict, out):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, row in rows.items():
        ax.plot(range(1, len(row["curve"]) + 1), row["curve"],
                label=f"{name} hidden layer ({row['hidden_params']} params)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits: MLP 64 -> 256 -> 10")
    ax.legend()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tt_layer_digits.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    parser = example_parser(__doc__, "15 epochs instead of 30")
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    data = load(args.seed)
    epochs = 15 if args.quick else 30
    layers = hidden_layers(args.rank, args.seed)
    print(f"hidden layer: {layers['TT-matrix']!r}")
    rows = {name: train(mlp(layer), data, epochs, args.seed) for name, layer in layers.items()}
    for name, row in rows.items():
        print(f"{name:>10} hidden layer: test accuracy {row['accuracy']:.3f}, "
              f"hidden-layer params {row['hidden_params']}, MLP params {row['params']}, "
              f"{row['seconds']:.1f} s for {epochs} epochs")
    tt, dense = rows["TT-matrix"], rows["dense"]
    print(f"TT-matrix layer: {dense['hidden_params'] / tt['hidden_params']:.1f}x fewer "
          f"hidden-layer parameters, accuracy {tt['accuracy'] - dense['accuracy']:+.3f} "
          "against dense")
    return {"png": str(plot(rows, args.out)), "rows": rows, "epochs": epochs}


if __name__ == "__main__":
    main()
