"""Network.grad / value_and_grad / environment against finite differences and torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tnc
from tnc.errors import MemoryLimitError, TensorError, TncError
from tnc.engine.grad import grad_plan

SMALL = {"cp": dict(I=3, J=4, K=2, R=2), "tucker": dict(I=3, J=4, K=2, R1=2, R2=3, R3=2),
         "tt": dict(N=4, d=2, r=3), "ttm": dict(N=3, r=2), "ring": dict(N=4, d=2, r=2),
         "peps": dict(Lx=2, Ly=3, D=2), "ht": dict(N=4, d=2, r=2), "energy": dict(N=3, D=2),
         "sym_cp": dict(n=3, R=2)}
DSL = Path(__file__).resolve().parent / "dsl"       # copied from ../shared/dsl


def value(net, tensors, upstream):
    return float(np.sum(upstream * net.contract(tensors)))


def numeric_grad(net, tensors, name, upstream, eps=1e-6):
    """Central differences, entry by entry (float64)."""
    result = np.zeros(np.shape(tensors[name]))
    for idx in np.ndindex(result.shape):
        shifted = {k: np.array(v) for k, v in tensors.items()}   # 0-d arrays too
        shifted[name][idx] += eps
        plus = value(net, shifted, upstream)
        shifted[name][idx] -= 2 * eps
        result[idx] = (plus - value(net, shifted, upstream)) / (2 * eps)
    return result


def check_fd(net, tensors=None, wrt=None, seed=1, rtol=1e-6):
    tensors = tensors if tensors is not None else net.random(seed=0, include_data=True)
    upstream = np.random.default_rng(seed).standard_normal(net.output_shape)
    grads = net.grad(tensors, upstream=upstream, wrt=wrt)
    names = list(net.params) if wrt is None else list(wrt)
    assert sorted(grads) == sorted(names)
    for name in names:
        expected = numeric_grad(net, tensors, name, upstream)
        assert grads[name].shape == tensors[name].shape
        scale = max(np.abs(expected).max(), 1e-3)
        np.testing.assert_allclose(grads[name], expected, rtol=0, atol=rtol * scale,
                                   err_msg=f"{net.name}: gradient of {name}")


@pytest.mark.parametrize("name", tnc.library_names())
def test_library_networks_match_finite_differences(name):
    net = tnc.library(name, **SMALL.get(name, {}))
    check_fd(net)
    if net.data:
        check_fd(net, wrt=list(net.data))


@pytest.mark.parametrize("path", sorted(DSL.glob("*.tn")),
                         ids=lambda p: p.stem)
def test_dsl_sketches_match_finite_differences(path):
    net = tnc.compile(path)
    check_fd(net.with_sizes(**SMALL.get(net.name, {})))


@pytest.mark.parametrize("text", [
    # repeated index on one tensor (a diagonal), and a trace to a scalar
    "network a(n = 3) { index i: n, j: 2  tensor A(i, i), B(i, j)  output j }",
    "network a(n = 3) { index i: n, j: 2  tensor A(i, j, i)  output }",
    "network a(n = 3) { index i: n, j: 2  tensor A(i, j, i)  output j }",
    # a leg carried by one tensor only and summed (broadcast back)
    "network a(n = 3) { index i: n, j: n, k: 2  tensor A(i, k), B(j)  output j }",
    # tied tensor with a hyperedge k shared by four uses
    "network a(n = 3) { index i: n, j: n, k: 2  tensor A(i, k), B(i, k), C(i, j), A(j, k)  output k }",
    # one tensor, output legs permuted; an outer product
    "network a(n = 3) { index i: n, j: 2  tensor A(i, j)  output j, i }",
    "network a(n = 3) { index i: n, j: 2  tensor A(i), B(j)  output j, i }",
    # scalar output of a hyperedge (three-way inner product)
    "network a(n = 4) { index i: n  tensor A(i), B(i), C(i)  output }",
    # a tensor used twice on the same legs (a square) and the output on a hyperedge
    "network a(n = 3) { index i: n, j: 2  tensor A(i, j), A(i, j), B(i)  output i }",
])
def test_special_structures(text):
    check_fd(tnc.compile(text))


def test_data_tensor_gradients_and_mixed_wrt():
    net = tnc.library("energy", N=3, D=2)
    check_fd(net, wrt=["H[2]", "G[1]"])
    tensors = net.random(seed=0, include_data=True)
    assert sorted(net.grad(tensors, wrt="H[1]")) == ["H[1]"]


def test_scalar_network_default_upstream_is_one():
    net = tnc.library("energy", N=3, D=2)
    tensors = net.random(seed=0, include_data=True)
    assert net.output_shape == ()
    for a, b in zip(net.grad(tensors).values(), net.grad(tensors, upstream=1.0).values()):
        np.testing.assert_array_equal(a, b)


def test_tied_gradient_is_sum_of_environments():
    net = tnc.library("sym_cp", n=3, R=2)
    tensors = net.random(seed=0)
    upstream = np.random.default_rng(2).standard_normal(net.output_shape)
    total = sum(contract_environment(net, "A", k, tensors, upstream) for k in range(3))
    np.testing.assert_allclose(net.grad(tensors, upstream)["A"], total, rtol=1e-12)


def contract_environment(net, name, k, tensors, upstream):
    """``<environment, upstream>`` over the original output, as an array of the tensor's shape."""
    env = net.environment(name, occurrence=k)
    e = env.contract({n: tensors[n] for n in {**env.params, **env.data}})
    legs = [occ for occ in net.occurrences if occ.name == name][k].indices
    ids = {i: n for n, i in enumerate(dict.fromkeys(legs + net.output))}
    return np.einsum(e, [ids[i] for i in env.output], upstream, [ids[i] for i in net.output],
                     [ids[i] for i in legs])


def test_environment_network_rebuilds_the_network():
    net = tnc.library("tt", N=4, d=2, r=3)
    tensors = net.random(seed=0)
    env = net.environment("G[2]")
    assert env.output[:2] == ("b[1]", "b[2]") and "G[2]" not in env.params
    assert env.source is None and env.cost().flops > 0
    upstream = np.random.default_rng(3).standard_normal(net.output_shape)
    np.testing.assert_allclose(contract_environment(net, "G[2]", 0, tensors, upstream),
                               net.grad(tensors, upstream)["G[2]"], rtol=1e-12)


def test_environment_errors():
    net = tnc.library("sym_cp", n=3, R=2)
    with pytest.raises(TncError, match="occurrence=k"):
        net.environment("A")
    with pytest.raises(TncError, match="no tensor `Z`"):
        net.environment("Z")
    with pytest.raises(TncError, match="not occurrence=5"):
        net.environment("A", occurrence=5)
    with pytest.raises(TncError, match="cannot be recompiled"):
        net.environment("A", occurrence=0).with_sizes(n=4)
    single = tnc.compile("network s(n = 2) { index i: n  tensor A(i)  output i }")
    with pytest.raises(TncError, match="only tensor"):
        single.environment("A")


def test_value_and_grad_gaussian_with_mask():
    net = tnc.library("tucker", I=3, J=4, K=2, R1=2, R2=2, R3=2)
    tensors = net.random(seed=0)
    rng = np.random.default_rng(4)
    target = rng.standard_normal(net.output_shape)
    mask = rng.random(net.output_shape) < 0.7
    target[~mask] = np.nan                                   # missing entries are ignored
    loss, grads = net.value_and_grad(tensors, "gaussian", target, mask=mask)
    model = net.contract(tensors)
    residual = np.where(mask, model - target, 0.0)
    assert loss == pytest.approx(np.sum(residual ** 2), rel=1e-12)
    expected = net.grad(tensors, upstream=2 * residual)
    for name in net.params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-12)


def test_grad_errors_are_clear():
    net = tnc.library("tt", N=3, d=2, r=2)
    tensors = net.random(seed=0)
    with pytest.raises(TensorError, match="with respect to `Q`"):
        net.grad(tensors, wrt=["Q"])
    with pytest.raises(TensorError, match="upstream .* shape"):
        net.grad(tensors, upstream=np.ones(3))
    with pytest.raises(TensorError, match="missing `G\\[3\\]`"):
        net.grad({k: v for k, v in tensors.items() if k != "G[3]"})
    with pytest.raises(MemoryLimitError, match="gradient of network `tt`"):
        net.grad(tensors, memory_limit=16)


def test_plan_is_cached_per_optimize_and_wrt():
    net = tnc.library("tt", N=4, d=2, r=3)
    assert grad_plan(net) is grad_plan(net, "auto", list(net.params))
    assert grad_plan(net, wrt=["G[1]"]) is not grad_plan(net)
    assert grad_plan(net, "greedy") is not grad_plan(net)
    check_fd(net, wrt=["G[1]"])


def test_gradients_skip_subtrees_without_wrt():
    text = """network x(N = 4, d = 3, r = 2) {
        index p[n]: d   for n in 1..N
        index b[n]: r   for n in 1..N-1
        tensor G[n](b[n-1]?, p[n], b[n]?)   for n in 1..N
        data X(p[1..N])
        output }"""
    net = tnc.compile(text)
    everything = grad_plan(net, wrt=list(net.params) + ["X"]).cost.flops
    assert grad_plan(net).cost.flops < everything
    check_fd(net)


# -- random networks ------------------------------------------------------------------------
@st.composite
def networks(draw):
    """Small random networks: 1-4 tensor uses, repeated legs, ties, hyperedges, any output."""
    n_index = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 3), min_size=n_index, max_size=n_index))
    names = [f"i{k}" for k in range(n_index)]
    n_uses = draw(st.integers(1, 4))
    uses, shapes = [], {}
    for k in range(n_uses):
        legs = draw(st.lists(st.sampled_from(names), min_size=0, max_size=3))
        shape = tuple(sizes[names.index(i)] for i in legs)
        tied = [t for t, s in shapes.items() if s == shape]
        tensor = draw(st.sampled_from(tied)) if tied and draw(st.booleans()) else f"T{k}"
        shapes.setdefault(tensor, shape)
        uses.append(f"{tensor}({', '.join(legs)})")
    carried = sorted({leg for use in uses for leg in use[use.index("(") + 1:-1].split(", ") if leg})
    output = draw(st.permutations(carried))[:draw(st.integers(0, len(carried)))]
    index = ", ".join(f"{i}: {s}" for i, s in zip(names, sizes))
    return (f"network r() {{ index {index}  tensor {', '.join(uses)}  "
            f"output {', '.join(output)} }}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.sampled_from(["auto", "greedy"]))
def test_random_networks_match_finite_differences(text, optimize):
    net = tnc.compile(text)
    tensors = net.random(seed=0)
    upstream = np.random.default_rng(1).standard_normal(net.output_shape)
    grads = net.grad(tensors, upstream=upstream, optimize=optimize)
    for name in net.params:
        expected = numeric_grad(net, tensors, name, upstream)
        np.testing.assert_allclose(grads[name], expected, rtol=0,
                                   atol=1e-6 * max(np.abs(expected).max(), 1e-3), err_msg=text)


# -- torch autograd ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cp", "tucker", "tt", "peps", "energy", "sym_cp", "ring"])
def test_agrees_with_torch_autograd(name):
    torch = pytest.importorskip("torch")
    import opt_einsum as oe
    net = tnc.library(name, **SMALL.get(name, {}))
    tensors = net.random(seed=0, include_data=True)
    upstream = np.random.default_rng(5).standard_normal(net.output_shape)
    leaves = {n: torch.tensor(a, requires_grad=n in net.params) for n, a in tensors.items()}
    out = oe.contract(net.equation, *[leaves[o.name] for o in net.occurrences], backend="torch")
    (out * torch.tensor(upstream)).sum().backward()
    grads = net.grad(tensors, upstream=upstream)
    for n in net.params:
        expected = leaves[n].grad.numpy()
        np.testing.assert_allclose(grads[n], expected, rtol=1e-10,
                                   atol=1e-12 * np.abs(expected).max())


def test_complex_gradient_is_holomorphic_derivative():
    net = tnc.library("ring", N=3, d=2, r=2)
    rng = np.random.default_rng(6)
    tensors = {n: rng.standard_normal(s) + 1j * rng.standard_normal(s) for n, s in net.params.items()}
    direction = {n: rng.standard_normal(s) + 1j * rng.standard_normal(s) for n, s in net.params.items()}
    upstream = rng.standard_normal(net.output_shape)
    grads = net.grad(tensors, upstream)
    eps = 1e-6
    shifted = [{n: tensors[n] + sign * eps * direction[n] for n in tensors} for sign in (1, -1)]
    numeric = (np.sum(upstream * net.contract(shifted[0]))
               - np.sum(upstream * net.contract(shifted[1]))) / (2 * eps)
    analytic = sum(np.sum(grads[n] * direction[n]) for n in net.params)
    assert abs(numeric - analytic) < 1e-6 * abs(analytic)


@pytest.mark.parametrize("name", ["cp", "tucker", "tt", "ring", "peps", "ht", "sym_cp"])
def test_all_gradients_cost_a_few_forward_contractions(name):
    """Reverse mode: each product is redone at most twice, whatever the number of tensors."""
    net = tnc.library(name)
    assert grad_plan(net).cost.flops <= 3.5 * net.cost().flops


def test_data_branches_cost_no_backward_products():
    net = tnc.compile("""network xtt(N = 6, d = 4, r = 5) {
        index p[n]: d   for n in 1..N
        index b[n]: r   for n in 1..N-1
        tensor G[n](b[n-1]?, p[n], b[n]?)   for n in 1..N
        data X(p[1..N])
        output }""")
    assert grad_plan(net).cost.flops <= 2.5 * net.cost().flops
