"""tnc.torch.Layer: a linear layer whose weight is a tnc network.

The reference for every value and gradient is the dense weight built by
``numpy.einsum`` / torch autograd through ``torch.einsum`` on the network's
equation (not by tnc), applied as ``x @ W.T + b``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import tnc
from tnc.errors import TncError

torch = pytest.importorskip("torch")
import tnc.torch  # noqa: E402  (after the importorskip)

CP = ("network cp(I = 8, J = 8, K = 64, R = 6) { index i: I, j: J, k: K, r: R "
      "tensor A(i, r), B(j, r), C(k, r)  output i, j, k }")
LAYERS = {
    "ttm": dict(network="ttm", inputs="col", N=3, m=4, k=4, r=4),
    "ttm5": dict(network="ttm", inputs="col", N=5, m=4, k=4, r=8),
    "cp": dict(network=CP, inputs=["k"]),
    "tucker": dict(network="tucker", inputs=["i"], I=64, J=8, K=8, R1=4, R2=4, R3=4),
    "ring": dict(network="ring", inputs=["p[1]", "p[2]"], N=4, d=8, r=3),
}


def dense_reference(layer):
    """``(fan_out, fan_in)`` weight by torch.einsum on the equation (autograd-tracked)."""
    net, legs = layer.network, layer.legs
    tensors = layer.tensors()
    w = torch.einsum(net.equation, *[tensors[o.name] for o in net.occurrences])
    order = [net.output.index(i) for i in legs.outputs + legs.inputs]
    return w.permute(order).reshape(legs.fan_out, legs.fan_in)


@pytest.mark.parametrize("strategy", ["contract", "dense"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_forward_and_gradients_match_the_dense_layer(name, strategy):
    layer = tnc.torch.Layer(**LAYERS[name], dtype=torch.float64, seed=1, strategy=strategy)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(7, layer.legs.fan_in, dtype=torch.float64)
    y = layer(x)
    w = dense_reference(layer)
    expected = x @ w.T + layer.bias
    scale = expected.abs().max().item()
    assert y.shape == (7, layer.legs.fan_out)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12 * scale)
    upstream = torch.randn(y.shape, dtype=torch.float64)
    ours = torch.autograd.grad((y * upstream).sum(), list(layer.parameters()))
    ref = torch.autograd.grad((expected * upstream).sum(), list(layer.parameters()))
    for (pname, _), g, e in zip(layer.named_parameters(), ours, ref):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-10 * e.abs().max().item(), msg=pname)


@pytest.mark.parametrize("strategy", ["contract", "dense"])
def test_input_with_leg_shape_and_gradient_to_the_input(strategy):
    layer = tnc.torch.Layer(**LAYERS["ttm"], dtype=torch.float64, seed=2, strategy=strategy)
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, layer(x.detach().reshape(3, 64)))
    y.sum().backward()
    w = dense_reference(layer).detach()
    torch.testing.assert_close(x.grad.reshape(3, 64), torch.ones(3, 64, dtype=torch.float64) @ w,
                               rtol=1e-10, atol=1e-12)


def test_parameter_names_counts_and_repr():
    layer = tnc.torch.Layer(**LAYERS["ttm5"])
    net = tnc.library("ttm", N=5, m=4, k=4, r=8)
    names = dict(layer.named_parameters())
    assert set(names) == {"W_1", "W_2", "W_3", "W_4", "W_5", "bias"}
    assert layer.param_names["W[3]"] == "W_3" and layer.tensors()["W[3]"] is layer.W_3
    count = sum(math.prod(s) for s in net.params.values())
    assert layer.network_params == count == sum(p.numel() for n, p in names.items() if n != "bias")
    assert layer.compression == pytest.approx(1024 * 1024 / count)
    text = repr(layer)
    assert f"params {count} + bias 1024" in text and "1024 -> 1024" in text
    assert f"compression {1024 * 1024 / count:.1f}x" in text
    assert layer.W_1.dtype == torch.float32
    assert tnc.torch.Layer(**LAYERS["ttm"], bias=False).bias is None


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_initialisation_keeps_the_activation_variance(name, gain):
    """Unit-variance inputs give outputs of variance ``gain`` (dense weight variance
    gain / fan_in): measured mean over 10 initialisations was 1.00-1.04 x gain."""
    ratios = []
    for seed in range(10):
        layer = tnc.torch.Layer(**LAYERS[name], gain=gain, seed=seed, dtype=torch.float64)
        x = torch.randn(512, layer.legs.fan_in, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            ratios.append(layer(x).var().item() / gain)
    assert 0.75 < np.mean(ratios) < 1.33, ratios
    assert all(1 / 3 < r < 3 for r in ratios), ratios


def test_the_plan_contracts_the_input_into_the_network():
    layer = tnc.torch.Layer(**LAYERS["ttm5"])
    batch = 16
    net = layer.batched_network(batch)
    dense_flops = 2 * batch * 1024 * 1024          # x @ W.T alone, W not even formed
    assert net.cost().flops < 0.6 * dense_flops    # measured 16.8M against 33.5M
    assert net.data == {"x": (batch, 4, 4, 4, 4, 4)}


def test_auto_strategy_takes_the_dense_product_only_where_its_flops_are_close():
    from tnc.engine.grad import grad_plan
    layer = tnc.torch.Layer(**LAYERS["ttm5"])
    params = set(layer.network.params)
    for batch in (1, 16, 256):
        together = grad_plan(layer.batched_network(batch), "auto", params).cost.flops
        dense = (grad_plan(layer.weight_network, "auto", params).cost.flops
                 + 4 * batch * 1024 * 1024)
        expected = "dense" if dense <= tnc.torch.GEMM_ADVANTAGE * together else "contract"
        assert layer.strategy_for(batch) == expected
    assert [layer.strategy_for(b) for b in (1, 256)] == ["contract", "dense"]
    low_rank = tnc.torch.Layer("ttm", inputs="col", N=5, m=4, k=4, r=2)
    assert low_rank.strategy_for(256) == "contract"
    forced = tnc.torch.Layer(**LAYERS["ttm5"], strategy="contract")
    assert forced.strategy_for(256) == "contract" and "strategy contract" in repr(forced)


def test_networks_from_text_path_and_network(tmp_path):
    text = tnc.lang.compiler.library_source("ttm")
    path = tmp_path / "mine.tn"
    path.write_text(text)
    net = tnc.library("ttm", N=2, m=3, k=5, r=2)
    layers = [tnc.torch.Layer(text, inputs="col", N=2, m=3, k=5, r=2, seed=0),
              tnc.torch.Layer(str(path), inputs="col", N=2, m=3, k=5, r=2, seed=0),
              tnc.torch.Layer(net, inputs=["col[1]", "col[2]"], seed=0)]
    x = torch.randn(4, 25)
    outputs = [layer(x) for layer in layers]
    for y in outputs:
        assert y.shape == (4, 9)
        torch.testing.assert_close(y, outputs[0])


def test_bad_layers_are_tnc_errors():
    with pytest.raises(TncError, match="layer input `rows` is not an output leg"):
        tnc.torch.Layer("ttm", inputs="rows")
    with pytest.raises(TncError, match="every output leg"):
        tnc.torch.Layer("ttm", inputs=["row", "col"])
    with pytest.raises(TncError, match="data tensors"):
        tnc.torch.Layer("network d() { index i: 2, j: 3  data X(i, j) tensor A(i, j) "
                        "output i, j }", inputs="i")
    with pytest.raises(TncError, match="tensor `x`"):
        tnc.torch.Layer("network d() { index i: 2, j: 3  tensor x(i, j)  output i, j }",
                        inputs="i")
    with pytest.raises(TncError, match="strategy must be one of auto, contract, dense"):
        tnc.torch.Layer("ttm", inputs="col", strategy="fast")
    layer = tnc.torch.Layer(**LAYERS["ttm"])
    with pytest.raises(TncError, match=r"shape \(batch, 64\) or \(batch, 4, 4, 4\), got \(2, 63\)"):
        layer(torch.randn(2, 63))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu_check.sh)")
def test_cuda_layer_and_contract_stay_on_the_device_and_match_cpu():
    layer = tnc.torch.Layer(**LAYERS["ttm5"], dtype=torch.float64, seed=3, strategy="contract")
    x = torch.randn(8, 1024, dtype=torch.float64)
    y = layer(x)
    y.sum().backward()
    cpu_grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    on_gpu = layer.to("cuda")
    on_gpu.zero_grad(set_to_none=True)
    y_gpu = on_gpu(x.cuda())
    y_gpu.sum().backward()
    assert y_gpu.device.type == "cuda"
    torch.testing.assert_close(y_gpu.cpu(), y, rtol=1e-10, atol=1e-12)
    for n, p in on_gpu.named_parameters():
        assert p.grad.device.type == "cuda"
        torch.testing.assert_close(p.grad.cpu(), cpu_grads[n], rtol=1e-10, atol=1e-12)


def test_dense_weight_joins_two_halves_and_falls_back_to_the_whole_network():
    """The dense strategy builds the weight from two tnc contractions joined by one product
    (no permuted copy of the weight); a network with one tensor has no halves."""
    layer = tnc.torch.Layer(**LAYERS["ttm5"], dtype=torch.float64, seed=2)
    assert layer.halves is not None and layer.halves.dims == (64, 16, 64, 16, 8)
    torch.testing.assert_close(layer.dense_weight(), dense_reference(layer), rtol=1e-12,
                               atol=1e-14)
    single = tnc.torch.Layer("network m(I=4, J=3) { index i: I, j: J  tensor W(i, j) "
                             "output i, j }", inputs=["j"], dtype=torch.float64, seed=3)
    assert single.halves is None
    torch.testing.assert_close(single.dense_weight(), single.W.detach())
