"""tnc.torch.contract and tnc.jax.contract against torch and jax autograd through opt_einsum.

References are independent of tnc's engine: torch autograd through
``opt_einsum.contract(eq, ..., backend="torch")``, ``jax.grad`` through
``jnp.einsum``, and torch's finite-difference ``gradcheck``. float64 to 1e-10
relative; float32 to 1e-4 relative (of the largest entry), the float32 rounding
of a few products and sums.
"""
from __future__ import annotations

import numpy as np
import opt_einsum as oe
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tnc
from tnc.errors import TensorError, TncError
from test_grad import networks          # random networks: ties, repeated legs, any output

RANDOM = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JAX_RANDOM = settings(RANDOM, max_examples=25)      # each example compiles under jax.jit
TT = dict(N=4, d=3, r=2)


@pytest.fixture(scope="module", params=["numpy views", "torch operations"])
def torch(request):
    """torch, with CPU tensors run through tnc's numpy engine on views of their memory
    (the default) or as torch operations (the route other devices take)."""
    torch = pytest.importorskip("torch")
    import tnc.torch
    previous = tnc.torch.NUMPY_ON_CPU
    tnc.torch.NUMPY_ON_CPU = request.param == "numpy views"
    yield torch
    tnc.torch.NUMPY_ON_CPU = previous


@pytest.fixture(scope="module")
def jax():
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", previous)


def close(got, expected, rtol, what=""):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, what
    np.testing.assert_allclose(got, expected, rtol=0,
                               atol=rtol * max(np.abs(expected).max(), 1e-300), err_msg=what)


# -- torch --------------------------------------------------------------------------------------
def torch_reference(torch, net, tensors, upstream, wrt):
    """Value and gradients by torch autograd through opt_einsum's contraction."""
    leaves = {n: a.detach().clone().requires_grad_(n in wrt) for n, a in tensors.items()}
    value = oe.contract(net.equation, *[leaves[o.name] for o in net.occurrences], backend="torch")
    (value * upstream).sum().backward()
    return value.detach(), {n: leaves[n].grad for n in wrt}


def torch_tnc(torch, net, tensors, upstream, wrt):
    import tnc.torch
    leaves = {n: a.detach().clone().requires_grad_(n in wrt) for n, a in tensors.items()}
    value = tnc.torch.contract(net, leaves)
    (value * upstream).sum().backward()
    return value.detach(), {n: leaves[n].grad for n in leaves}


def torch_tensors(torch, net, dtype, seed=0):
    return {n: torch.tensor(a, dtype=dtype)
            for n, a in net.random(seed=seed, include_data=True).items()}


@RANDOM
@given(networks(), st.data())
def test_torch_random_networks_match_autograd(torch, text, data):
    net = tnc.compile(text)
    tensors = torch_tensors(torch, net, torch.float64)
    wrt = set(data.draw(st.sets(st.sampled_from(sorted(tensors)), min_size=1)))
    upstream = torch.randn(net.output_shape, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))
    value, grads = torch_tnc(torch, net, tensors, upstream, wrt)
    ref_value, ref_grads = torch_reference(torch, net, tensors, upstream, wrt)
    close(value, ref_value, 1e-10, text)
    for name in tensors:
        if name in wrt:
            close(grads[name], ref_grads[name], 1e-10, f"{text}: {name}")
        else:
            assert grads[name] is None, f"{text}: {name} does not require grad"


@pytest.mark.parametrize("name", ["tt", "ring", "tucker", "cp", "sym_cp", "peps"])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_torch_library_networks(torch, name, dtype, rtol):
    from test_grad import SMALL
    net = tnc.library(name, **SMALL[name])
    dtype = getattr(torch, dtype)
    tensors = torch_tensors(torch, net, dtype)
    upstream = torch.randn(net.output_shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    value, grads = torch_tnc(torch, net, tensors, upstream, set(net.params))
    assert value.dtype == dtype and all(grads[n].dtype == dtype for n in net.params)
    ref = {n: a.double() for n, a in tensors.items()}
    ref_value, ref_grads = torch_reference(torch, net, ref, upstream.double(), set(net.params))
    close(value.double(), ref_value, rtol)
    for n in net.params:
        close(grads[n].double(), ref_grads[n], rtol, n)


def test_torch_scalar_output_and_tied_tensor(torch):
    import tnc.torch
    net = tnc.compile("network q() { index i: 3, j: 4  tensor A(i, j), M(j, j), A(i, j) output }")
    A = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    M = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    value = tnc.torch.contract(net, {"A": A, "M": M})
    assert value.shape == ()
    value.backward()
    # d/dA sum_ij A_ij M_jj A_ij = 2 A diag(M); d/dM = diag(sum_i A_ij^2)
    close(A.grad, 2 * A.detach() * torch.diagonal(M.detach()), 1e-12)
    close(M.grad, torch.diag((A.detach() ** 2).sum(0)), 1e-12)


def test_torch_gradcheck_and_second_backward(torch):
    import tnc.torch
    net = tnc.library("tt", **TT)
    tensors = {n: t.requires_grad_() for n, t in torch_tensors(torch, net, torch.float64).items()}
    names = list(tensors)

    def f(*arrays):
        return tnc.torch.contract(net, dict(zip(names, arrays)))
    assert torch.autograd.gradcheck(f, tuple(tensors.values()))
    value = f(*tensors.values())
    value.sum().backward(retain_graph=True)
    first = {n: t.grad.clone() for n, t in tensors.items()}
    value.sum().backward()                  # the tape survives the first backward
    for n, t in tensors.items():
        close(t.grad, 2 * first[n], 1e-14, n)


def test_torch_double_backward_matches_autograd(torch):
    import tnc.torch
    net = tnc.library("tt", **TT)
    base = torch_tensors(torch, net, torch.float64)
    v = {n: torch.randn(a.shape, dtype=torch.float64) for n, a in base.items()}

    def hvp(contract):
        leaves = {n: a.clone().requires_grad_() for n, a in base.items()}
        value = contract(leaves)
        grads = torch.autograd.grad((value ** 2).sum(), list(leaves.values()), create_graph=True)
        dot = sum((g * v[n]).sum() for g, n in zip(grads, leaves))
        return torch.autograd.grad(dot, list(leaves.values()))
    got = hvp(lambda t: tnc.torch.contract(net, t))
    expected = hvp(lambda t: oe.contract(net.equation, *net.operands(t), backend="torch"))
    for g, e in zip(got, expected):
        close(g, e, 1e-10)


def test_torch_bad_input_is_a_tnc_error(torch):
    import tnc.torch
    net = tnc.library("tt", **TT)
    tensors = torch_tensors(torch, net, torch.float64)
    tensors["G[2]"] = tensors["G[2]"].numpy()
    with pytest.raises(TensorError, match="`G\\[2\\]` .* must be a torch tensor, got ndarray"):
        tnc.torch.contract(net, tensors)
    with pytest.raises(TensorError, match="missing `G\\[1\\]`"):
        tnc.torch.contract(net, {})
    tensors = torch_tensors(torch, net, torch.float64)
    tensors["G[3]"] = tensors["G[3]"].to("meta")          # a second device, on any machine
    with pytest.raises(TncError, match="two devices: `G\\[1\\]` is on cpu, `G\\[3\\]` on meta"):
        tnc.torch.contract(net, tensors)


def test_torch_no_grad_runs_forward_only(torch):
    import tnc.torch
    net = tnc.library("tt", **TT)
    tensors = {n: t.requires_grad_() for n, t in torch_tensors(torch, net, torch.float64).items()}
    with torch.no_grad():
        value = tnc.torch.contract(net, tensors)
    assert not value.requires_grad
    close(value, net.contract({n: t.detach().numpy() for n, t in tensors.items()}), 1e-12)


# -- jax ----------------------------------------------------------------------------------------
def jax_loss(net, contract, upstream, wrt, tensors):
    def loss(*params):
        return (contract({**tensors, **dict(zip(wrt, params))}) * upstream).sum()
    return loss


def einsum_contract(net):
    import jax.numpy as jnp
    return lambda t: jnp.einsum(net.equation, *net.operands(t))


@JAX_RANDOM
@given(networks(), st.data())
def test_jax_random_networks_match_jax_grad(jax, text, data):
    import tnc.jax
    net = tnc.compile(text)
    tensors = {n: jax.numpy.asarray(a) for n, a in net.random(seed=0).items()}
    wrt = sorted(data.draw(st.sets(st.sampled_from(sorted(tensors)), min_size=1)))
    upstream = np.random.default_rng(3).standard_normal(net.output_shape)
    argnums = tuple(range(len(wrt)))
    ours = jax_loss(net, lambda t: tnc.jax.contract(net, t), upstream, wrt, tensors)
    ref = jax_loss(net, einsum_contract(net), upstream, wrt, tensors)
    params = [tensors[n] for n in wrt]
    got = jax.jit(jax.grad(ours, argnums))(*params)
    expected = jax.grad(ref, argnums)(*params)
    for name, g, e in zip(wrt, got, expected):
        close(g, e, 1e-10, f"{text}: {name}")
    value = tnc.jax.contract(net, tensors)
    close(value, einsum_contract(net)(tensors), 1e-10, text)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_jax_vjp_under_jit(jax, dtype, rtol):
    import tnc.jax
    jnp = jax.numpy
    net = tnc.library("ring", N=4, d=3, r=2)
    tensors = {n: jnp.asarray(a, dtype=dtype) for n, a in net.random(seed=4).items()}
    cotangent = jnp.asarray(np.random.default_rng(5).standard_normal(net.output_shape), dtype)

    def run(contract):
        value, vjp = jax.vjp(contract, tensors)
        return value, vjp(cotangent)[0]
    value, grads = jax.jit(lambda: run(lambda t: tnc.jax.contract(net, t)))()
    ref = {n: a.astype("float64") for n, a in tensors.items()}
    ref_value, _ = jax.vjp(einsum_contract(net), ref)
    ref_grads = jax.vjp(einsum_contract(net), ref)[1](cotangent.astype("float64"))[0]
    assert value.dtype == dtype and all(g.dtype == dtype for g in grads.values())
    close(value.astype("float64"), ref_value, rtol)
    for n in net.params:
        close(grads[n].astype("float64"), ref_grads[n], rtol, n)


def test_jax_tied_wrt_and_grad_of_grad(jax):
    import tnc.jax
    jnp = jax.numpy
    net = tnc.compile("network q() { index i: 3, j: 4  tensor A(i, j), M(j, j), A(i, j) output }")
    A = jnp.asarray(np.random.default_rng(6).standard_normal((3, 4)))
    M = jnp.asarray(np.random.default_rng(7).standard_normal((4, 4)))
    gA, gM = jax.grad(lambda A, M: tnc.jax.contract(net, {"A": A, "M": M}), (0, 1))(A, M)
    close(gA, 2 * A * jnp.diagonal(M), 1e-12)
    close(gM, jnp.diag((A ** 2).sum(0)), 1e-12)
    only_A = jax.grad(lambda M: tnc.jax.contract(net, {"A": A, "M": M}, wrt=["A"]))(M)
    assert not np.asarray(only_A).any()       # M outside wrt: a constant, zero cotangent
    ours = jax.grad(lambda A: jax.grad(lambda A: tnc.jax.contract(net, {"A": A, "M": M}))(A).sum())
    ref = jax.grad(lambda A: jax.grad(lambda A: jnp.einsum("ij,jj,ij->", A, M, A))(A).sum())
    close(ours(A), ref(A), 1e-12)


def test_jax_bad_input_is_a_tnc_error(jax):
    import tnc.jax
    net = tnc.library("tt", **TT)
    tensors = {n: jax.numpy.asarray(a) for n, a in net.random().items()}
    tensors["G[3]"] = [[1.0]]
    with pytest.raises(TensorError, match="`G\\[3\\]` .* must have shape"):
        tnc.jax.contract(net, tensors)


def test_import_tnc_loads_neither_torch_nor_jax():
    import subprocess
    import sys
    code = ("import sys, tnc; tnc.library('tt', N=3).contract; "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules; "
            "assert callable(tnc.torch.contract) and 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_complex_gradients_follow_torchs_convention():
    """torch's complex gradients are the conjugate of tnc's holomorphic sweep on conjugated
    upstream, and a real input next to complex ones gets a real gradient: both checked
    against torch autograd through opt_einsum on a real-valued loss."""
    torch = pytest.importorskip("torch")
    import opt_einsum as oe
    import tnc.torch
    net = tnc.compile("network m(I=3,J=4,K=2) { index i: I, j: J, k: K  "
                      "tensor A(i, j), B(j, k)  output i, k }")
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.complex128)

    def grads(contract):
        a.grad = b.grad = None
        (contract() * w).abs().pow(2).sum().backward()
        return a.grad.clone(), b.grad.clone()

    mine = grads(lambda: tnc.torch.contract(net, {"A": a, "B": b}))
    reference = grads(lambda: oe.contract(net.equation, a, b.to(torch.complex128),
                                          backend="torch"))
    assert mine[1].dtype == torch.float64
    for got, want in zip(mine, reference):
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-10)
