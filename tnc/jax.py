"""tnc networks as differentiable jax functions (``jax.custom_vjp``).

:func:`contract` runs tnc's engine forward sweep on the jax arrays, and its
VJP is tnc's reverse sweep. The network is static: the plan is built from the
network's shapes outside any trace, so :func:`contract` works under
``jax.jit``, ``jax.grad`` and ``jax.vjp`` (the sweeps trace into jax
operations).

    >>> import jax, jax.numpy as jnp, tnc, tnc.jax
    >>> net = tnc.compile("network mm() { index i: 2, j: 3, k: 2  tensor A(i, j), B(j, k) "
    ...                   "output i, k }")
    >>> A, B = jnp.ones((2, 3)), jnp.arange(6.0).reshape(3, 2)
    >>> loss = jax.jit(lambda A, B: tnc.jax.contract(net, {"A": A, "B": B}).sum())
    >>> jnp.allclose(jax.grad(loss)(A, B), jnp.ones((2, 2)) @ B.T).item()
    True

``wrt`` (tensor names, default all) limits which tensors get gradients; the
others act as ``jax.lax.stop_gradient`` constants (zero cotangent).
Forward-mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) is not available
through a ``custom_vjp``; reverse-over-reverse (``jax.grad`` of ``jax.grad``)
is, since the backward sweep is itself made of jax operations.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from tnc.autodiff import Call, ordered_arrays

__all__ = ["contract"]


def contract(network, tensors: dict, optimize="auto", wrt=None, memory_limit="auto"):
    """The value of ``network`` on ``tensors`` (name -> jax array), differentiable by
    tnc's reverse sweep. numpy arrays are taken as jax arrays."""
    tensors = {name: jnp.asarray(a) if _is_numpy(a) else a for name, a in tensors.items()}
    arrays = ordered_arrays(network, tensors, lambda a: isinstance(a, jax.Array), "jax array")
    names = tuple(dict.fromkeys(occ.name for occ in network.occurrences))
    wrt = frozenset(names if wrt is None else ([wrt] if isinstance(wrt, str) else wrt))
    call = Call.make(network, optimize, wrt)
    call.check_memory(max(a.dtype.itemsize for a in arrays), memory_limit)
    return _function(call)(*arrays)


def _is_numpy(a) -> bool:
    import numpy as np
    return isinstance(a, (np.ndarray, np.generic))


def _function(call: Call):
    """``f(*arrays)`` with tnc's forward and reverse sweeps as its value and VJP."""
    wanted = tuple(name in call.plan.wrt for name in call.names)

    @jax.custom_vjp
    def f(*arrays):
        return call.forward(arrays)[0]

    def f_fwd(*arrays):
        value, tape = call.forward(arrays)
        return value, (tape, arrays)        # the inputs: for cotangent dtypes and zeros

    def f_bwd(residual, upstream):
        tape, arrays = residual
        grads = call.backward(tape, upstream)
        return tuple(grads[name].astype(a.dtype) if w else jnp.zeros_like(a)
                     for name, a, w in zip(call.names, arrays, wanted))

    f.defvjp(f_fwd, f_bwd)
    return f
