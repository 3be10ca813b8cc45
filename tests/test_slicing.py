"""Sliced contraction (tnc.engine.slicing): values and gradients against the unsliced
network and numpy.einsum, costs, refusals, executors."""
import importlib.util
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import opt_einsum as oe
import pytest

import tnc
from tnc.engine.grad import grad_plan
from tnc.engine.slicing import SlicedCost

PEPS_NORM = """
network peps_norm(Lx = 3, Ly = 3, d = 2, D = 3) {
    index p[x, y]: d   for x in 1..Lx, y in 1..Ly
    index h[x, y]: D   for x in 1..Lx-1, y in 1..Ly
    index v[x, y]: D   for x in 1..Lx, y in 1..Ly-1
    index g[x, y]: D   for x in 1..Lx-1, y in 1..Ly
    index w[x, y]: D   for x in 1..Lx, y in 1..Ly-1
    tensor A[x, y](p[x, y], h[x-1, y]?, h[x, y]?, v[x, y-1]?, v[x, y]?)   for x in 1..Lx, y in 1..Ly
    tensor A[x, y](p[x, y], g[x-1, y]?, g[x, y]?, w[x, y-1]?, w[x, y]?)   for x in 1..Lx, y in 1..Ly
    output
}"""


def einsum(net, tensors):
    """numpy.einsum along opt_einsum's greedy path (numpy's own search stalls at 24 operands)."""
    operands = net.operands(tensors)
    path, _ = oe.contract_path(net.equation, *operands, optimize="greedy")
    return np.einsum(net.equation, *operands, optimize=["einsum_path", *path])


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def limit_of(net, fraction):
    return int(net.cost().peak_bytes * fraction)


@pytest.fixture(scope="module")
def norm():
    return tnc.compile(PEPS_NORM, Lx=3, Ly=4, D=3)


def test_peps_norm_sliced_equals_unsliced_and_einsum(norm):
    t = norm.random(seed=1)
    limit = limit_of(norm, 0.2)
    cost = norm.cost(memory_limit=limit)
    assert isinstance(cost, SlicedCost) and cost.peak_bytes <= limit < norm.cost().peak_bytes
    assert cost.slices == np.prod([norm.spec.index_sizes[i] for i in cost.sliced]) > 1
    assert cost.overhead >= 1 and "slices" in str(cost) and cost.sliced[0] in str(cost)
    value = norm.contract(t, memory_limit=limit)
    assert relative(value, norm.contract(t, memory_limit=None)) < 1e-12
    assert relative(value, einsum(norm, t)) < 1e-12
    with pytest.raises(tnc.MemoryLimitError):       # the same limit refused before slicing
        from tnc.engine.plan import check_memory
        check_memory(norm.cost(), limit)


def test_peps_output_indices_sliced_into_blocks():
    net = tnc.library("peps", Lx=3, Ly=3, D=3)
    t = net.random(seed=2)
    limit = limit_of(net, 0.3)
    cost = net.cost(memory_limit=limit)
    assert any(i in net.output for i in cost.sliced)      # the result itself is cut
    value = net.contract(t, memory_limit=limit)
    assert value.shape == net.output_shape
    assert relative(value, einsum(net, t)) < 1e-12


def test_tt_sliced_and_cotengra_slicer_equal_einsum():
    net = tnc.library("tt", N=5, d=2, r=12)
    t = net.random(seed=3)
    limit = limit_of(net, 0.4)
    slicers = ("greedy", "cotengra") if importlib.util.find_spec("cotengra") else ("greedy",)
    for slicer in slicers:                        # cotengra is an optional extra
        cost = net.cost(memory_limit=limit, slicer=slicer)
        assert cost.peak_bytes <= limit and cost.slices > 1
        assert relative(net.contract(t, memory_limit=limit, slicer=slicer), einsum(net, t)) < 1e-12


def random_network(rng, k):
    """A random network text: 5-6 tensors on 7 indices, a repeated leg, a tied use."""
    names = [f"i{j}" for j in range(7)]
    sizes = ", ".join(f"{n}: {int(rng.integers(2, 5))}" for n in names)
    legs = [list(rng.choice(names, size=int(rng.integers(2, 4)), replace=False))
            for _ in range(5)]
    legs[0].append(legs[0][0])                                   # a diagonal A(i, ..., i)
    tensors = [f"T{j}({', '.join(l)})" for j, l in enumerate(legs)]
    tensors.append(f"T1({', '.join(legs[1])})")                  # T1 used twice
    used = sorted({n for l in legs for n in l})
    output = ", ".join(rng.choice(used, size=int(rng.integers(0, 3)), replace=False))
    return tnc.compile(f"network r{k}() {{ index {sizes}  tensor {', '.join(tensors)}  "
                       f"output {output} }}")


def test_random_networks_values_and_gradients():
    rng = np.random.default_rng(7)
    checked = 0
    for k in range(12):
        net = random_network(rng, k)
        if grad_plan(net).cost.peak_bytes < 400:
            continue
        t = net.random(seed=k)
        limit = limit_of(net, 0.5)
        try:
            value = net.contract(t, memory_limit=limit)
        except tnc.MemoryLimitError:
            assert 8 * np.prod(net.output_shape) > limit * 0.5    # refused only near the output
            continue
        assert relative(value, einsum(net, t)) < 1e-12
        upstream = rng.standard_normal(net.output_shape)
        glimit = int(grad_plan(net).cost.peak_bytes * 0.7)
        try:
            sliced = net.grad(t, upstream, memory_limit=glimit)
        except tnc.MemoryLimitError:
            continue
        full = net.grad(t, upstream, memory_limit=None)
        assert sliced.keys() == full.keys()
        for name in full:
            assert relative(sliced[name], full[name]) < 1e-12, (net.equation, name)
        checked += 1
    assert checked >= 4


def test_gradients_sum_over_slices(norm):
    t = norm.random(seed=4)
    plan = grad_plan(norm).cost
    limit = int(plan.peak_bytes * 0.5)
    full = norm.grad(t, memory_limit=None)
    sliced = norm.grad(t, memory_limit=limit)
    for name in full:                                # A[x, y] tied: both uses, summed
        assert relative(sliced[name], full[name]) < 1e-12
    net = tnc.library("peps", Lx=2, Ly=3, D=3)        # output legs sliced: upstream blocks
    t = net.random(seed=5)
    upstream = np.random.default_rng(0).standard_normal(net.output_shape)
    limit = int(grad_plan(net).cost.peak_bytes * 0.7)
    full = net.grad(t, upstream, memory_limit=None)
    sliced = net.grad(t, upstream, memory_limit=limit, wrt=["A[1,1]", "A[2,3]"])
    assert sorted(sliced) == ["A[1,1]", "A[2,3]"]
    for name in sliced:
        assert relative(sliced[name], full[name]) < 1e-12


def test_float32_and_complex_slices():
    net = tnc.library("tt", N=5, d=2, r=12)
    t = {n: a.astype(np.complex128) * (1 + 0.5j) for n, a in net.random(seed=6).items()}
    limit = limit_of(net, 0.8)           # complex: 16 bytes an element, twice over the limit
    assert relative(net.contract(t, memory_limit=limit), einsum(net, t)) < 1e-12
    t32 = {n: a.real.astype(np.float32) for n, a in t.items()}
    assert net.cost(dtype=np.float32, memory_limit=limit).peak_bytes <= limit
    value = net.contract(t32, memory_limit=limit_of(net, 0.3))
    assert value.dtype == np.float32
    assert relative(value, einsum(net, t32).astype(np.float64)) < 1e-5   # float32 rounding


def test_no_slicing_fits_names_the_output():
    net = tnc.library("tt", N=4, d=4, r=4)
    with pytest.raises(tnc.MemoryLimitError, match="even sliced over every index"):
        net.contract(net.random(), memory_limit=8 * 4 ** 4 - 1)      # the output alone
    with pytest.raises(tnc.MemoryLimitError, match="gradient"):
        net.grad(net.random(), memory_limit=8 * 4 ** 4)               # output and gradients
    with pytest.raises(tnc.TncError, match="unknown slicer"):
        net.cost(memory_limit=100, slicer="nope")
    assert not isinstance(net.cost(memory_limit=10 ** 9), SlicedCost)   # fits: unsliced


def test_executors_sum_the_slices(norm):
    t = norm.random(seed=8)
    limit = limit_of(norm, 0.2)
    reference = einsum(norm, t)
    with ThreadPoolExecutor(2) as pool:
        assert relative(norm.contract(t, memory_limit=limit, executor=pool), reference) < 1e-12
    net = tnc.library("peps", Lx=2, Ly=3, D=3)          # output blocks through processes
    t = net.random(seed=9)
    with ProcessPoolExecutor(2) as pool:
        value = net.contract(t, memory_limit=limit_of(net, 0.3), executor=pool)
    assert relative(value, einsum(net, t)) < 1e-12


def test_cli_contract_slices_and_show_prints_the_slicing(tmp_path, capsys):
    from tnc.cli import main
    net = tnc.library("peps", Lx=3, Ly=3, D=3)
    t = net.random(seed=10)
    np.savez(tmp_path / "t.npz", **t)
    limit = limit_of(net, 0.4)
    code = main(["contract", "peps", "--tensors", str(tmp_path / "t.npz"), "--memory-limit",
                 f"{limit}B", "-o", str(tmp_path / "x.npy")])
    out = capsys.readouterr().out
    assert code == 0 and "slices" in out
    assert relative(np.load(tmp_path / "x.npy"), einsum(net, t)) < 1e-12
    cost = net.cost(memory_limit=limit)
    assert main(["show", "peps", "--memory-limit", f"{limit / 1024}KiB"]) == 0
    out = capsys.readouterr().out
    assert f"sliced    over {', '.join(cost.sliced)}: {cost.slices} slices" in out
    assert main(["show", "peps", "--memory-limit", "1GB"]) == 0
    assert "sliced    not needed" in capsys.readouterr().out
    assert main(["show", "peps", "--memory-limit", "lots"]) == 2
    assert "not an amount of memory" in capsys.readouterr().err


def test_torch_arrays_slice_through_opt_einsum():
    torch = pytest.importorskip("torch")
    net = tnc.library("tt", N=5, d=2, r=12)
    t = net.random(seed=11)
    value = net.contract({n: torch.from_numpy(a) for n, a in t.items()},
                         memory_limit=limit_of(net, 0.4))
    assert isinstance(value, torch.Tensor)
    assert relative(value.numpy(), einsum(net, t)) < 1e-12
