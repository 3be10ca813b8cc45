"""The engine on torch and jax arrays: contract, grad, value_and_grad, GradPlan and slicing,
against numpy.einsum, torch autograd / jax.grad through einsum, and the numpy engine.

float64 throughout (jax with ``jax_enable_x64``, set by the fixture of this module):
values and gradients agree to 1e-10 relative to the largest entry."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tnc
from tnc.engine.grad import grad_plan
from tnc.errors import TncError
from test_grad import SMALL, networks          # random networks: ties, repeated legs, any output

torch = pytest.importorskip("torch")
RTOL = 1e-10


def as_torch(a):
    return torch.as_tensor(np.asarray(a))       # 0-d numpy scalars too


@pytest.fixture(scope="module")
def jnp():
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    import jax.numpy
    yield jax.numpy
    jax.config.update("jax_enable_x64", before)


def close(got, expected, rtol=RTOL, what=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, what
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale, err_msg=what)


def einsum_value(net, tensors):
    return np.einsum(net.equation, *[tensors[o.name] for o in net.occurrences])


def torch_autograd(net, tensors, upstream):
    """Gradients of sum(upstream * einsum) by torch autograd through torch.einsum."""
    leaves = {n: torch.tensor(a, requires_grad=True) for n, a in tensors.items()}
    out = torch.einsum(net.equation, *[leaves[o.name] for o in net.occurrences])
    (out * torch.tensor(upstream)).sum().backward()
    return {n: leaves[n].grad.numpy() for n in net.params}


# -- random networks --------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.sampled_from(["auto", "greedy"]))
def test_random_networks_on_torch_match_einsum_and_autograd(text, optimize):
    net = tnc.compile(text)
    tensors = net.random(seed=0)
    upstream = np.random.default_rng(1).standard_normal(net.output_shape)
    tt = {n: as_torch(a) for n, a in tensors.items()}
    value = net.contract(tt, optimize=optimize)
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
    close(value, einsum_value(net, tensors), what=text)
    grads = net.grad(tt, upstream=as_torch(upstream), optimize=optimize)
    expected = torch_autograd(net, tensors, upstream)
    for name in net.params:
        assert isinstance(grads[name], torch.Tensor), text
        close(grads[name], expected[name], what=f"{text}: {name}")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=networks())
def test_random_networks_on_jax_match_einsum_and_jax_grad(jnp, text):
    import jax
    net = tnc.compile(text)
    tensors = net.random(seed=0)
    upstream = np.random.default_rng(1).standard_normal(net.output_shape)
    jt = {n: jnp.asarray(a) for n, a in tensors.items()}
    value = net.contract(jt)
    assert isinstance(value, jax.Array) and value.dtype == jnp.float64
    close(value, einsum_value(net, tensors), what=text)
    grads = net.grad(jt, upstream=jnp.asarray(upstream))

    def objective(params):
        everything = {**jt, **params}
        out = jnp.einsum(net.equation, *[everything[o.name] for o in net.occurrences])
        return jnp.sum(out * upstream)
    expected = jax.grad(objective)({n: jt[n] for n in net.params})
    for name in net.params:
        assert isinstance(grads[name], jax.Array), text
        close(grads[name], expected[name], what=f"{text}: {name}")


def test_torch_gradients_match_finite_differences():
    from test_grad import numeric_grad
    net = tnc.library("peps", **SMALL["peps"])
    tensors = net.random(seed=3)
    upstream = np.random.default_rng(2).standard_normal(net.output_shape)
    grads = net.grad({n: as_torch(a) for n, a in tensors.items()},
                     upstream=as_torch(upstream))
    for name in net.params:
        close(grads[name], numeric_grad(net, tensors, name, upstream), rtol=1e-6, what=name)


# -- GradPlan: the interface tnc.torch / tnc.jax build on ------------------------------------
@pytest.mark.parametrize("name", ["tt", "peps", "sym_cp", "energy"])
def test_grad_plan_forward_backward_trace_under_jax_jit(jnp, name):
    import jax
    net = tnc.library(name, **SMALL[name])
    tensors = net.random(seed=0, include_data=True)
    names = [o.name for o in net.occurrences]
    plan = grad_plan(net, "auto", set(net.params))
    upstream = np.random.default_rng(4).standard_normal(net.output_shape)

    @jax.jit
    def run(arrays, u):
        value, tape = plan.forward(arrays)
        return value, plan.backward(tape, u)
    value, grads = run([jnp.asarray(tensors[n]) for n in names], jnp.asarray(upstream))
    close(value, einsum_value(net, tensors))
    expected = net.grad(tensors, upstream=upstream)
    assert sorted(grads) == sorted(expected)
    for n in expected:
        assert isinstance(grads[n], jax.Array)
        close(grads[n], expected[n], what=n)


def test_contract_traces_under_jax_jit_and_grad(jnp):
    import jax
    net = tnc.library("tt", **SMALL["tt"])
    tensors = net.random(seed=0)
    arrays = {n: jnp.asarray(a) for n, a in tensors.items()}
    close(jax.jit(net.contract)(arrays), einsum_value(net, tensors))
    grads = jax.grad(lambda ts: net.contract(ts).sum())(arrays)
    expected = net.grad(tensors)
    for n in expected:
        close(grads[n], expected[n], what=n)


def test_grad_plan_on_torch_tensors_keeps_them_torch():
    net = tnc.library("tt", **SMALL["tt"])
    tensors = net.random(seed=0)
    plan = grad_plan(net, "auto", set(net.params))
    value, tape = plan.forward([as_torch(tensors[o.name]) for o in net.occurrences])
    grads = plan.backward(tape, torch.ones(net.output_shape, dtype=torch.float64))
    expected = net.grad(tensors)
    for n in expected:
        assert isinstance(grads[n], torch.Tensor) and grads[n].is_contiguous()
        close(grads[n], expected[n], what=n)


def test_folded_constants_on_torch_and_jax(jnp):
    from tnc.engine.constants import Folded
    net = tnc.compile("network m(I = 4, A = 3, B = 2, J = 5) { index i: I, a: A, b: B, j: J "
                      "data F(i, a), G(i, b) tensor W(a, b, j) output i, j }")
    rng = np.random.default_rng(0)
    fixed = {"F": rng.random((4, 3)), "G": rng.random((4, 2))}
    W, upstream = rng.random((3, 2, 5)), rng.standard_normal((4, 5))
    plan = grad_plan(net, wrt={"W"})
    expected = np.einsum("ia,ib,abj->ij", fixed["F"], fixed["G"], W)
    for convert in (as_torch, jnp.asarray):
        folded = Folded(plan, [o.name for o in net.occurrences],
                        {n: convert(a) for n, a in fixed.items()})
        value, tape = plan.forward([None, None, convert(W)], folded)
        assert type(value) is type(convert(W))
        close(value, expected)
        close(plan.backward(tape, convert(upstream))["W"],
              np.einsum("ia,ib,ij->abj", fixed["F"], fixed["G"], upstream))


@pytest.mark.parametrize("legs", [("i", "j", "k"), ("k", "j", "i"), ("i", "j", "m")])
def test_kernel_layout_steps_on_torch_equal_einsum(legs):
    """Steps planned for the compiled kernel (numpy) run as broadcast products on torch,
    including the one-sided shapes (P = 1 or Q = 1)."""
    from tnc.engine.pairwise import pairwise
    sizes = {"i": 3000, "j": 64, "k": 1, "m": 5, "r": 3}
    step = pairwise(legs, ("j", "r"), set(legs) - {"j"} | {"r"}, sizes)
    rng = np.random.default_rng(0)
    X, B = rng.random([sizes[leg] for leg in legs]), rng.random((64, 3))
    expected = np.einsum(f"{''.join(legs)},jr->{''.join(step.out)}", X, B)
    close(step(as_torch(X), as_torch(B)), expected)


# -- requires_grad ----------------------------------------------------------------------------
def test_grad_of_tensors_that_require_grad_uses_their_values():
    net = tnc.library("cp", **SMALL["cp"])
    tensors = net.random(seed=1, include_data=True)
    tt = {n: torch.tensor(a, requires_grad=n in net.params) for n, a in tensors.items()}
    upstream = np.random.default_rng(0).standard_normal(net.output_shape)
    grads = net.grad(tt, upstream=as_torch(upstream))
    expected = net.grad(tensors, upstream=upstream)
    for n in expected:
        assert not grads[n].requires_grad
        close(grads[n], expected[n], what=n)
    value, vgrads = net.value_and_grad(tt, "gaussian", torch.zeros(net.output_shape))
    assert isinstance(value, float) and not vgrads["A"].requires_grad


def test_torch_autograd_sees_through_contract():
    """net.contract on torch tensors is made of torch operations: autograd through it gives
    what net.grad gives."""
    net = tnc.library("ring", **SMALL["ring"])
    tensors = net.random(seed=2)
    upstream = np.random.default_rng(3).standard_normal(net.output_shape)
    leaves = {n: torch.tensor(a, requires_grad=True) for n, a in tensors.items()}
    (net.contract(leaves) * as_torch(upstream)).sum().backward()
    expected = net.grad(tensors, upstream=upstream)
    for n in expected:
        close(leaves[n].grad, expected[n], what=n)


def test_default_upstream_of_a_scalar_network_on_torch_and_jax(jnp):
    net = tnc.compile("network d(n = 3) { index i: n  tensor x(i), y(i)  output }")
    for convert in (as_torch, jnp.asarray):
        grads = net.grad({"x": convert(np.arange(3.0)), "y": convert(np.ones(3))})
        assert type(grads["x"]) is type(convert(np.ones(1)))
        assert bk_list(grads["x"]) == [1.0, 1.0, 1.0] and bk_list(grads["y"]) == [0.0, 1.0, 2.0]


def bk_list(x):
    return np.asarray(x).tolist()


def test_contract_never_returns_a_view_of_the_callers_tensor():
    net = tnc.compile("network t(I = 2, J = 3) { index i: I, j: J  tensor A(i, j)  output j, i }")
    a = torch.ones(2, 3)
    out = net.contract({"A": a})
    out += 1
    assert torch.equal(a, torch.ones(2, 3)) and out.shape == (3, 2)


# -- results: library, dtype, device -----------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_keep_library_dtype_and_device(jnp, dtype):
    net = tnc.library("tucker", **SMALL["tucker"])
    tensors = net.random(seed=0, include_data=True, dtype=dtype)
    for convert, library in ((torch.from_numpy, "torch"), (jnp.asarray, "jax")):
        arrays = {n: convert(a) for n, a in tensors.items()}
        value = net.contract(arrays)
        grads = net.grad(arrays)
        loss, vgrads = net.value_and_grad(arrays, "gaussian", convert(np.zeros(net.output_shape,
                                                                                dtype)))
        for out in (value, *grads.values(), *vgrads.values()):
            assert type(out).__module__.split(".")[0] in (library, "jaxlib"), library
            assert str(out.dtype).endswith(dtype), (library, out.dtype)
        if library == "torch":
            assert all(value.device == a.device for a in arrays.values())
        close(value, einsum_value(net, tensors), rtol=1e-5 if dtype == "float32" else RTOL)


# -- bad input ----------------------------------------------------------------------------------
def test_two_libraries_in_one_call_name_both(jnp):
    net = tnc.library("cp", **SMALL["cp"])
    tensors = net.random(seed=0, include_data=True)
    mixed = {**tensors, "A": as_torch(tensors["A"])}
    for call in (net.contract, net.grad):
        with pytest.raises(TncError, match=r"two libraries: .*`A` is torch.*`B` is numpy|"
                                           r"`A` is torch, `B` is numpy"):
            call(mixed)
    with pytest.raises(TncError, match="torch.*jax|jax.*torch"):
        net.grad({**{n: as_torch(a) for n, a in tensors.items()},
                  "C": jnp.asarray(tensors["C"])})
    tt = {n: as_torch(a) for n, a in tensors.items()}
    with pytest.raises(TncError, match="target.*numpy|numpy.*target"):
        net.value_and_grad(tt, "gaussian", np.zeros(net.output_shape))
    with pytest.raises(TncError, match="upstream"):
        net.grad(tt, upstream=np.ones(net.output_shape))


def test_two_devices_in_one_call_name_both():
    net = tnc.library("cp", **SMALL["cp"])
    tensors = {n: torch.ones(s) for n, s in net.params.items()}
    tensors["B"] = torch.ones(net.params["B"], device="meta")
    with pytest.raises(TncError, match="two devices: `A` is on cpu, `B` on meta"):
        net.contract(tensors)


# -- slicing ----------------------------------------------------------------------------------
def test_sliced_contraction_and_gradients_on_torch_and_jax_equal_unsliced(jnp):
    net = tnc.library("tt", N=4, d=3, r=8)
    tensors = net.random(seed=0)
    upstream = np.random.default_rng(0).standard_normal(net.output_shape)
    limit = net.cost().peak_bytes // 2
    assert net.cost(memory_limit=limit).slices > 1            # the limit does slice
    glimit = 4 * grad_plan(net).cost.peak_bytes // 5
    expected_value = einsum_value(net, tensors)
    expected = net.grad(tensors, upstream=upstream, memory_limit=None)
    for convert in (torch.from_numpy, jnp.asarray):
        arrays = {n: convert(a) for n, a in tensors.items()}
        close(net.contract(arrays, memory_limit=limit), expected_value)
        grads = net.grad(arrays, upstream=convert(upstream), memory_limit=glimit)
        for n in expected:
            assert type(grads[n]) is type(arrays[n])
            close(grads[n], expected[n], what=n)


def test_slicing_really_runs_on_torch(monkeypatch):
    from tnc.engine import slicing
    calls = []
    original = slicing.grad_sliced
    monkeypatch.setattr(slicing, "grad_sliced", lambda *a: calls.append(1) or original(*a))
    net = tnc.library("tt", N=4, d=3, r=8)
    arrays = {n: as_torch(a) for n, a in net.random(seed=0).items()}
    net.grad(arrays, memory_limit=4 * grad_plan(net).cost.peak_bytes // 5)
    assert calls


def test_value_and_grad_slices_under_a_small_memory_limit(monkeypatch):
    from tnc.engine import slicing
    calls = []
    original = slicing.grad_sliced
    monkeypatch.setattr(slicing, "grad_sliced", lambda *a: calls.append(1) or original(*a))
    net = tnc.library("tt", N=4, d=3, r=8)
    tensors = net.random(seed=0)
    rng = np.random.default_rng(2)
    target, mask = rng.standard_normal(net.output_shape), rng.random(net.output_shape) < 0.7
    output_bytes = 8 * int(np.prod(net.output_shape))
    limit = 4 * grad_plan(net).cost.peak_bytes // 5 + 2 * output_bytes
    for convert in (lambda a: a, as_torch):
        arrays = {n: convert(a) for n, a in tensors.items()}
        for m in (None, mask):
            expected_value, expected = net.value_and_grad(tensors, "gaussian", target, m,
                                                          memory_limit=None)
            calls.clear()
            value, grads = net.value_and_grad(arrays, "gaussian", convert(target),
                                              None if m is None else convert(m),
                                              memory_limit=limit)
            assert calls, "the small limit should slice"
            assert value == pytest.approx(expected_value, rel=1e-12)
            for n in expected:
                assert type(grads[n]) is type(arrays[n])
                close(grads[n], expected[n], what=n)


# -- losses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gaussian", "bernoulli_logit", "bernoulli_odds", "poisson",
                                  "poisson_log", "gamma", "rayleigh", "huber(0.3)",
                                  "negative_binomial(2)", "beta(0.5)"])
def test_every_loss_on_torch_and_jax_equals_numpy(jnp, name):
    from tnc.fitting.losses import get_loss
    loss = get_loss(name)
    rng = np.random.default_rng(0)
    m = rng.random(20) * 3 + 0.05
    m[:3] = [-40.0, 40.0, 0.1] if loss.model_lower_bound is None else m[:3]
    x = rng.integers(0, 2, 20).astype(float) + (0.5 if name in ("gamma", "rayleigh") else 0.0)
    for convert in (torch.from_numpy, jnp.asarray):
        value, derivative = loss.value(convert(m), convert(x)), loss.derivative(convert(m), convert(x))
        assert type(value) is type(convert(m)) and type(derivative) is type(convert(m))
        close(value, loss.value(m, x), what=name)
        close(derivative, loss.derivative(m, x), what=name)
