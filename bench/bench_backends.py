"""tnc on torch: a TT-matrix layer, all gradients through tnc.torch.contract, CP-ALS.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/bench_backends.py \
        [--repeats 9] [--device cpu|cuda] [--only layer,grads,als[,cupy]]

Everything runs in one process, the contenders in interleaved turns
(:mod:`timing`), one thread; the script prints medians and the ratios, and
says for each goal of issue 14 whether it is met:

1. forward plus backward of a 1024 -> 1024 TT-matrix layer (4^5 x 4^5, rank 8,
   batch 256, float32): ``tnc.torch.Layer`` (strategy "auto", and "contract" for
   the one-contraction plan) against tensorly-torch's ``FactorizedLinear(...,
   factorization="blocktt")`` (both its implementations) and a dense
   ``nn.Linear``. Goal: tnc <= 0.7x tltorch (the faster of its two).
2. all gradients of <X, TT8> (d=6, r=12) and of a random network (seeded,
   9 tensors, 16 bonds) by ``tnc.torch.contract`` (tnc's reverse sweep) against torch
   autograd through ``opt_einsum.contract`` on the same path, float64.
   Goal: <= 0.7x.
3. CP-ALS (200^3, rank 10, 15 sweeps, float64) with torch tensors against tnc's numpy
   path: native sweeps (``backend="native"``) and the numpy conversion. Goal: <= 1.2x.
4. (``--only cupy``, GPU machines: ``bench/gpu_check.sh``) all gradients of
   <X, TT8> by ``Network.grad`` on cupy arrays against numpy.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import random  # noqa: E402

import numpy as np  # noqa: E402
import opt_einsum as oe  # noqa: E402
import torch  # noqa: E402

import tnc  # noqa: E402
import tnc.torch  # noqa: E402
from bench_grad import XTT  # noqa: E402
from timing import median_times  # noqa: E402


def synced(step, device):
    """``step`` followed by a device synchronisation (CUDA runs asynchronously)."""
    if not str(device).startswith("cuda"):
        return step

    def run():
        step()
        torch.cuda.synchronize()
    return run


def verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal}x: {'met' if ratio <= goal else 'NOT met'}"


def print_times(times: dict, base: str) -> None:
    for name, seconds in times.items():
        print(f"  {name:<42} median {seconds * 1e3:8.2f} ms   ratio to {base}: "
              f"{seconds / times[base]:.2f}")


# -- 1. the TT-matrix layer -----------------------------------------------------------------
def layer_step(layer, x):
    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
    return step


def bench_layer(device, repeats) -> None:
    import tltorch
    torch.manual_seed(0)
    x = torch.randn(256, 1024, device=device)
    layers = {"tnc Layer (auto)": tnc.torch.Layer("ttm", inputs="col", N=5, m=4, k=4, r=8,
                                                  device=device),
              "tnc Layer (strategy contract)": tnc.torch.Layer(
                  "ttm", inputs="col", N=5, m=4, k=4, r=8, device=device, strategy="contract")}
    for impl in ("reconstructed", "factorized"):
        layers[f"tltorch blocktt ({impl})"] = tltorch.FactorizedLinear(
            (4,) * 5, (4,) * 5, factorization="blocktt", rank=8, implementation=impl,
            device=device)
    layers["dense nn.Linear"] = torch.nn.Linear(1024, 1024, device=device)
    auto = layers["tnc Layer (auto)"]
    print(f"\n1. TT-matrix layer 1024 -> 1024 (4^5 x 4^5, rank 8), batch 256, float32, "
          f"forward + backward on {device}; tnc auto runs '{auto.strategy_for(256)}'")
    print(f"   {auto!r}")
    times = median_times({name: synced(layer_step(layer, x), device)
                          for name, layer in layers.items()}, repeats=repeats, warmup=2)
    print_times(times, "tnc Layer (auto)")
    best = min(times["tltorch blocktt (reconstructed)"], times["tltorch blocktt (factorized)"])
    ratio = times["tnc Layer (auto)"] / best
    contract_ratio = times["tnc Layer (strategy contract)"] / best
    print(f"  tnc (auto) / tltorch (faster implementation): {ratio:.2f}  {verdict(ratio, 0.7)}")
    print(f"  tnc (contract) / tltorch (faster implementation): {contract_ratio:.2f}")


# -- 2. all gradients ----------------------------------------------------------------------
def random_network(seed=4, tensors=9, indices=16, open_legs=2, sizes=(4, 12)) -> str:
    """A seeded random connected network: a ring through all tensors plus random
    extra bonds (sizes drawn from ``sizes``), ``open_legs`` output legs of size 16."""
    rng = random.Random(seed)
    bonds = [(k, (k + 1) % tensors) for k in range(tensors)]
    bonds += [tuple(rng.sample(range(tensors), 2)) for _ in range(indices - tensors)]
    legs = {k: [] for k in range(tensors)}
    dims = []
    for n, (a, b) in enumerate(bonds):
        legs[a].append(f"e{n}")
        legs[b].append(f"e{n}")
        dims.append(f"e{n}: {rng.randint(*sizes)}")
    for n in range(open_legs):
        legs[rng.randrange(tensors)].append(f"o{n}")
        dims.append(f"o{n}: 16")
    uses = ", ".join(f"T{k}({', '.join(legs[k])})" for k in range(tensors))
    return (f"network random{seed}() {{ index {', '.join(dims)}  tensor {uses}  "
            f"output {', '.join(f'o{n}' for n in range(open_legs))} }}")


def gradient_steps(net, tensors, upstream):
    """``{tnc: step, torch: step}``: every parameter's gradient, data not differentiated."""
    expression = oe.contract_expression(net.equation, *net.shapes,
                                        optimize=list(net.cost().path))

    def run(contract):
        def step():
            leaves = {n: a.detach().requires_grad_(n in net.params) for n, a in tensors.items()}
            (contract(leaves) * upstream).sum().backward()
        return step
    return {"tnc.torch.contract (tnc reverse sweep)": run(lambda t: tnc.torch.contract(net, t)),
            "torch autograd through opt_einsum": run(
                lambda t: expression(*net.operands(t), backend="torch"))}


def bench_grads(device, repeats) -> None:
    cases = {"<X, TT8> (N=8, d=6, r=12)": tnc.compile(XTT),
             "random network (9 tensors, 16 bonds of 4-12, seed 4)": tnc.compile(random_network())}
    print(f"\n2. all gradients, float64, on {device}: tnc.torch.contract against torch autograd "
          "through opt_einsum (same path)")
    for title, net in cases.items():
        tensors = {n: torch.tensor(a, device=device)
                   for n, a in net.random(seed=0, include_data=True).items()}
        upstream = torch.randn(net.output_shape, dtype=torch.float64, device=device)
        steps = {name: synced(step, device)
                 for name, step in gradient_steps(net, tensors, upstream).items()}
        times = median_times(steps, repeats=repeats, warmup=2)
        print(f"  {title}: {net.cost()}")
        print_times(times, "torch autograd through opt_einsum")
        ratio = times["tnc.torch.contract (tnc reverse sweep)"] / \
            times["torch autograd through opt_einsum"]
        print(f"  tnc / torch autograd: {ratio:.2f}  {verdict(ratio, 0.7)}")


# -- 3. CP-ALS -----------------------------------------------------------------------------
def bench_als(device, repeats) -> None:
    """CP-ALS 200^3 rank 10 on torch tensors: native sweeps (tnc/fitting/native.py,
    ``backend="native"``) and the numpy conversion (``backend="numpy"``) against tnc's
    numpy path on the numpy array; checks the native fit equals the numpy one."""
    net = tnc.library("cp", I=200, J=200, K=200, R=10)
    data = net.contract(net.random(seed=1))
    data = data + 0.01 * np.random.default_rng(2).standard_normal(data.shape)
    print(f"\n3. CP-ALS 200^3 rank 10, 15 sweeps, float64: torch tensors on {device} against "
          "numpy")

    def fit(x, **options):
        return lambda: tnc.fit(net, data=x, method="als", max_iter=15, tol=0, seed=0,
                               progress=False, **options)
    on_torch = torch.tensor(data, device=device)
    native, reference = fit(on_torch, backend="native")(), fit(data)()
    kinds = {f"{type(t).__name__} {t.dtype} on {t.device}" for t in native.tensors.values()}
    gap = max(float(np.max(np.abs(native.tensors[k].cpu().numpy() - reference.tensors[k])))
              / float(np.max(np.abs(reference.tensors[k]))) for k in reference.tensors)
    print(f"  native tensors: {', '.join(sorted(kinds))}; largest relative gap to the "
          f"numpy fit: {gap:.1e}")
    names = {"numpy": "tnc ALS on numpy", "native": f"torch ({device}) backend='native'",
             "converted": f"torch ({device}) backend='numpy'"}
    times = median_times({names["numpy"]: fit(data),
                          names["native"]: synced(fit(on_torch, backend="native"), device),
                          names["converted"]: synced(fit(on_torch, backend="numpy"), device)},
                         repeats=repeats, warmup=1)
    print_times(times, names["numpy"])
    for kind in ("native", "converted"):
        ratio = times[names[kind]] / times[names["numpy"]]
        print(f"  torch {kind} / numpy: {ratio:.2f}  {verdict(ratio, 1.2)}")


# -- 4. cupy (GPU machines only) ----------------------------------------------------------------
def bench_cupy(device, repeats) -> None:
    """All gradients of <X, TT8> by ``Network.grad`` on cupy arrays against numpy."""
    try:
        import cupy
    except ImportError:
        print("\n4. cupy: not installed, skipped")
        return
    net = tnc.compile(XTT)
    tensors = net.random(seed=0, include_data=True)
    on_gpu = {n: cupy.asarray(a) for n, a in tensors.items()}
    print("\n4. all gradients of <X, TT8> by Network.grad, cupy against numpy (float64)")
    try:
        grads = net.grad(on_gpu)
    except Exception as error:          # noqa: BLE001
        print(f"  not supported yet: {type(error).__name__}: {error}")
        return
    expected = net.grad(tensors)
    worst = max(float(abs(cupy.asnumpy(grads[n]) - expected[n]).max() / abs(expected[n]).max())
                for n in expected)
    print(f"  gradients come back as {type(next(iter(grads.values()))).__name__}; largest "
          f"relative difference to numpy {worst:.1e}")

    def on_cupy():
        net.grad(on_gpu)
        cupy.cuda.Device().synchronize()
    times = median_times({"numpy": lambda: net.grad(tensors), "cupy": on_cupy},
                         repeats=repeats, warmup=2)
    print_times(times, "numpy")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="layer,grads,als")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", {torch.get_num_threads()} thread(s); medians of {args.repeats} interleaved runs")
    benches = {"layer": bench_layer, "grads": bench_grads, "als": bench_als, "cupy": bench_cupy}
    for name in args.only.split(","):
        benches[name](args.device, args.repeats)


if __name__ == "__main__":
    main()
