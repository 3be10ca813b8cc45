"""tnc networks as differentiable torch functions and layers.

:func:`contract` is a ``torch.autograd.Function``: its forward is tnc's engine
forward sweep on the torch tensors themselves (CPU or CUDA; no numpy round trip)
and its backward is tnc's reverse sweep, one sweep for every input that
requires grad; the others get None. A tied tensor gets the sum over its uses.

    >>> import torch, tnc, tnc.torch
    >>> net = tnc.compile("network mm() { index i: 2, j: 3, k: 2  tensor A(i, j), B(j, k) "
    ...                   "output i, k }")
    >>> A = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    >>> B = torch.randn(3, 2, dtype=torch.float64)
    >>> out = tnc.torch.contract(net, {"A": A, "B": B})
    >>> out.sum().backward()
    >>> torch.allclose(A.grad, torch.ones(2, 2, dtype=torch.float64) @ B.T), B.grad is None
    (True, True)

Double backward (``create_graph=True``, e.g. Hessian-vector products) is
supported: under ``create_graph=True`` the first-order gradients are computed
by torch autograd through opt_einsum's contraction of the same equation (so
that torch can differentiate them again) instead of by tnc's sweep.

:class:`Layer` is an ``nn.Module`` whose weight is a tnc network (TT-matrix,
Tucker, CP, ring, your own) with input and output legs; see its docstring.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tnc.autodiff import (Call, attribute_names, init_std, layer_network, ordered_arrays,
                          split_legs, weight_halves, weight_network)
from tnc.errors import TncError

__all__ = ["contract", "Layer"]


def contract(network, tensors: dict, optimize="auto", memory_limit="auto"):
    """The value of ``network`` on ``tensors`` (name -> torch tensor), differentiable.

    Gradients flow to the tensors with ``requires_grad`` (computed by one tnc
    reverse sweep); the plan is kept by the network's program per ``optimize``
    and set of differentiated tensors. ``memory_limit`` as in
    :meth:`tnc.Network.grad` (the forward keeps the backward's intermediates).

    CPU tensors of float32, float64, complex64 or complex128 run through tnc's numpy
    engine on views of their memory (no copies; its compiled kernels, BLAS's threads:
    ``OMP_NUM_THREADS``/threadpoolctl rather than ``torch.set_num_threads``); other
    devices and dtypes run as torch operations. The results are torch tensors either way.
    """
    arrays = ordered_arrays(network, tensors, torch.is_tensor, "torch tensor")
    names = tuple(dict.fromkeys(occ.name for occ in network.occurrences))
    grad_on = torch.is_grad_enabled()
    wrt = {n for n, a in zip(names, arrays) if grad_on and a.requires_grad}
    host = NUMPY_ON_CPU and all(_numpy_compatible(a) for a in arrays)
    call = Call.make(network, optimize, wrt, numpy_arrays=host)
    call.check_memory(max(a.element_size() for a in arrays), memory_limit)
    return _Contract.apply(call, host, *arrays)


NUMPY_ON_CPU = True    # False: CPU tensors run as torch operations too (the tests run both)
HOST_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _numpy_compatible(array) -> bool:
    """Whether ``array`` can run as a numpy view of its memory: a dense CPU tensor of a
    dtype numpy has (``.numpy()`` shares the memory)."""
    return array.device.type == "cpu" and array.layout == torch.strided and \
        array.dtype in HOST_DTYPES


def _as_numpy(array):
    """A numpy view of a CPU tensor's memory (lazy conjugate and negative bits resolved,
    which copies only a tensor that has one)."""
    return array.detach().resolve_conj().resolve_neg().numpy()


class _Contract(torch.autograd.Function):
    """forward: tnc's forward sweep; backward: tnc's reverse sweep (see :func:`contract`).
    ``host``: the sweeps run on numpy views of the tensors, the results are wrapped back."""

    @staticmethod
    def forward(ctx, call, host, *arrays):
        if host:
            value, tape = call.forward([_as_numpy(a) for a in arrays])
            value = torch.from_numpy(np.asarray(value))
        else:
            value, tape = call.forward(arrays)
        if any(_shares_memory(value, a) for a in arrays):
            value = value.clone()          # never hand back a view of an input
        ctx.call, ctx.tape, ctx.host = call, tape, host
        ctx.save_for_backward(*arrays)
        return value

    @staticmethod
    def backward(ctx, upstream):
        call = ctx.call
        if torch.is_grad_enabled():        # create_graph=True: differentiable gradients
            return (None, None, *_differentiable_grads(call, ctx.saved_tensors, upstream))
        # tnc's sweep is holomorphic (jax's vjp); torch's convention for complex tensors is
        # its conjugate on conjugated upstream, and a real input takes the real part.
        complex_upstream = upstream.is_complex()
        grads = _sweep_back(ctx, upstream.conj() if complex_upstream else upstream)
        if not complex_upstream:
            return (None, None, *(grads.get(name) for name in call.names))
        return (None, None, *(_torch_convention(grads.get(name), array)
                              for name, array in zip(call.names, ctx.saved_tensors)))


def _sweep_back(ctx, upstream) -> dict:
    """tnc's reverse sweep over the forward's tape: name -> torch gradient."""
    if not ctx.host:
        return ctx.call.backward(ctx.tape, upstream)
    grads = ctx.call.backward(ctx.tape, _as_numpy(upstream))   # the output's dtype, CPU
    return {name: torch.from_numpy(np.asarray(g)) for name, g in grads.items()}


def _torch_convention(grad, array):
    """A holomorphic gradient as torch expects it: conjugated, real for a real input."""
    if grad is None:
        return None
    grad = grad.conj()
    return grad if array.is_complex() else grad.real


def _shares_memory(x, y) -> bool:
    return x.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()


def _differentiable_grads(call, arrays, upstream) -> list:
    """First-order gradients that torch can differentiate again (double backward):
    torch autograd through opt_einsum's contraction of the network's equation."""
    import opt_einsum as oe
    wanted = [k for k, name in enumerate(call.names) if name in call.plan.wrt]
    with torch.enable_grad():
        inputs = [a if a.requires_grad else a.detach().requires_grad_() for a in arrays]
        value = oe.contract(call.network.equation, *call.operands(inputs), backend="torch")
        grads = torch.autograd.grad(value, [inputs[k] for k in wanted], upstream,
                                    create_graph=True, allow_unused=True)
    result = [None] * len(arrays)
    for k, g in zip(wanted, grads):
        result[k] = torch.zeros_like(arrays[k]) if g is None else g
    return result


# -- layers -------------------------------------------------------------------------------
STRATEGIES = ("auto", "contract", "dense")
GEMM_ADVANTAGE = 2.0    # measured: one 256 x 1024 x 1024 GEMM ~20 GMAC/s, the TT chain 2-8


class Layer(nn.Module):
    """A linear layer whose weight is a tnc network: ``y = W x + b``.

    ``network``: tnc source text, a ``.tn`` path, a library name (``"ttm"``) or a
    :class:`tnc.Network`; ``sizes`` go to :func:`tnc.compile`/:func:`tnc.library`.
    ``inputs``: which open legs of the network the input enters on, as leg names
    (``["col[1]", "col[2]"]``) or index families (``"col"``: ``col[1]``, ``col[2]``,
    ...); the other open legs, in network order, are the outputs. ``forward(x)``
    takes ``x`` of shape ``(batch, prod(in_sizes))`` or ``(batch, *in_sizes)`` and
    returns ``(batch, prod(out_sizes))``.

    ``strategy``: ``"contract"`` runs ONE tnc contraction of the network with
    ``x`` as a data tensor with a batch leg (the planner orders it with the input
    in it); ``"dense"`` contracts the network alone to the dense weight (tnc's
    sweep differentiates it) and applies it by one matrix product (``F.linear``);
    ``"auto"`` (default) takes ``"dense"`` when its forward-plus-backward flops are
    at most :data:`GEMM_ADVANTAGE` times those of ``"contract"`` (one big matrix
    product runs at several times the flop rate of a chain of small reshaped
    ones), per batch size; :meth:`strategy_for` says which.

    Initialisation: every entry of every tensor is ``N(0, std^2)`` with ``std``
    chosen so that the dense equivalent weight has entries of variance
    ``gain / fan_in`` (``gain=1``: LeCun, activations keep their variance;
    ``gain=2``: He, for ReLU). ``bias`` (zeros) is added unless ``bias=False``.
    Parameters are named after the tnc tensors made valid attributes (``W[1]`` ->
    ``W_1``; :attr:`param_names` maps them); :meth:`tensors` gives them by tnc name.

        >>> import torch, tnc.torch
        >>> layer = tnc.torch.Layer("ttm", inputs="col", N=3, m=4, k=4, r=3)
        >>> layer
        Layer(ttm: 64 -> 64, legs (4, 4, 4) -> (4, 4, 4), params 240 + bias 64, dense 4096, compression 17.1x)
        >>> layer(torch.randn(5, 64)).shape
        torch.Size([5, 64])
    """

    def __init__(self, network, inputs, bias: bool = True, gain: float = 1.0,
                 strategy: str = "auto", optimize="auto", dtype=torch.float32, device=None,
                 seed=None, **sizes):
        super().__init__()
        if strategy not in STRATEGIES:
            raise TncError(f"layer strategy must be one of {', '.join(STRATEGIES)}, "
                           f"got {strategy!r}")
        self.network = _network(network, sizes)
        self.legs = split_legs(self.network, inputs)
        self.weight_network = weight_network(self.network, self.legs)
        self.optimize = optimize
        self.strategy = strategy
        self.gain = gain
        self.param_names = attribute_names(self.network.params)
        clashes = [a for a in self.param_names.values() if hasattr(self, a) or a == "bias"]
        if clashes:
            raise TncError("layer tensor names clash with nn.Module attributes: "
                           + ", ".join(f"`{a}`" for a in clashes) + "; rename the tensors")
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        std = init_std(self.network, gain / self.legs.fan_in)
        for name, shape in self.network.params.items():
            weight = torch.randn(shape, generator=generator, dtype=dtype) * std
            self.register_parameter(self.param_names[name],
                                    nn.Parameter(weight.to(device)))
        self.bias = (nn.Parameter(torch.zeros(self.legs.fan_out, dtype=dtype, device=device))
                     if bias else None)
        self._batched: dict[int, object] = {}        # batch -> network
        self.halves = weight_halves(self.network, self.legs)
        self._strategies: dict[tuple, str] = {}       # (batch, input_grad) -> strategy

    def tensors(self) -> dict:
        """The weight network's tensors by tnc name (the parameters themselves)."""
        return {name: getattr(self, attr) for name, attr in self.param_names.items()}

    def batched_network(self, batch: int):
        """The network one call contracts: the weight network plus ``x(batch, inputs)``."""
        if batch not in self._batched:
            if len(self._batched) > 16:
                self._batched.clear()
            self._batched[batch] = layer_network(self.network, self.legs, batch)
        return self._batched[batch]

    def forward(self, x):
        legs = self.legs
        if x.dim() == 2 and x.shape[1] == legs.fan_in:
            x = x.reshape(x.shape[0], *legs.in_sizes)
        elif tuple(x.shape[1:]) != legs.in_sizes:
            raise TncError(f"layer input must have shape (batch, {legs.fan_in}) or "
                           f"(batch, {', '.join(map(str, legs.in_sizes))}), got {tuple(x.shape)}")
        batch = x.shape[0]
        if self.strategy_for(batch, x.requires_grad) == "dense":
            x = x.reshape(batch, legs.fan_in)
            return nn.functional.linear(x, self.dense_weight(), self.bias)
        y = contract(self.batched_network(batch), {**self.tensors(), "x": x}, self.optimize)
        y = y.reshape(batch, legs.fan_out)
        return y if self.bias is None else y + self.bias

    def strategy_for(self, batch: int, input_grad: bool = False) -> str:
        """``"contract"`` or ``"dense"``: how :meth:`forward` runs a batch of this size
        (``input_grad``: whether the input requires grad too)."""
        if self.strategy != "auto":
            return self.strategy
        key = (batch, input_grad)
        if key not in self._strategies:
            from tnc.engine.grad import grad_plan
            params = set(self.network.params)
            together = grad_plan(self.batched_network(batch), self.optimize,
                                 params | ({"x"} if input_grad else set())).cost.flops
            products = 2 * batch * self.legs.fan_in * self.legs.fan_out * (2 + input_grad)
            dense = grad_plan(self.weight_network, self.optimize, params).cost.flops + products
            self._strategies[key] = "dense" if dense <= GEMM_ADVANTAGE * together else "contract"
        return self._strategies[key]

    def dense_weight(self):
        """The dense equivalent weight, shape ``(fan_out, fan_in)``, differentiable: the
        two halves of :func:`tnc.autodiff.weight_halves` (each one tnc contraction) joined
        by one torch einsum laid out as the weight, else the whole network."""
        halves = self.halves
        if halves is None:
            w = contract(self.weight_network, self.tensors(), self.optimize)
            return w.reshape(self.legs.fan_out, self.legs.fan_in)
        tensors = self.tensors()
        left, right = (contract(half, {n: tensors[n] for n in half.params}, self.optimize)
                       for half in (halves.left, halves.right))
        outs_l, outs_r, ins_l, ins_r, shared = halves.dims
        w = torch.einsum("ais,scd->acid", left.reshape(outs_l, ins_l, shared),
                         right.reshape(shared, outs_r, ins_r))
        return w.reshape(self.legs.fan_out, self.legs.fan_in)

    @property
    def network_params(self) -> int:
        return sum(math.prod(s) for s in self.network.params.values())

    @property
    def compression(self) -> float:
        """Dense weight entries per network parameter (bias not counted)."""
        return self.legs.fan_in * self.legs.fan_out / self.network_params

    def extra_repr(self) -> str:
        legs = self.legs
        bias = f" + bias {legs.fan_out}" if self.bias is not None else ""
        strategy = "" if self.strategy == "auto" else f", strategy {self.strategy}"
        return (f"{self.network.name}: {legs.fan_in} -> {legs.fan_out}, legs {legs.in_sizes} -> "
                f"{legs.out_sizes}, params {self.network_params}{bias}, dense "
                f"{legs.fan_in * legs.fan_out}, compression {self.compression:.1f}x{strategy}")

    def __repr__(self) -> str:
        return f"Layer({self.extra_repr()})"


def _network(network, sizes):
    """A :class:`tnc.Network` from a Network, source text, path or library name."""
    import tnc
    if isinstance(network, tnc.Network):
        if sizes:
            raise TncError("sizes are given when the network is a string, not a Network; "
                           "use network.with_sizes(...)")
        return network
    if isinstance(network, str) and network in tnc.library_names():
        return tnc.library(network, **sizes)
    return tnc.compile(network, **sizes)
