"""The optimisers GCP and coupled models share: parameters packed into one real vector
for scipy's L-BFGS-B (:class:`Packing`, :func:`run_lbfgsb`), and projected Adam steps.

L-BFGS-B runs in float64 inside scipy whatever the fit's dtype: :class:`Packing`
converts at the boundary (float32 tensors are packed into float64 and unpacked back
into float32; a complex tensor is packed as its real and imaginary parts, so a
real-valued loss of complex parameters is minimised over ``2n`` real numbers, and
its gradient must then be given as ``dL/dRe + i dL/dIm``). Adam steps in the
tensors' own dtype (for complex, the second moment is ``|g|^2``).

    >>> p = Packing({"A": (2,)}, np.complex64)
    >>> vector = p.pack({"A": np.array([1 + 2j, 3 - 4j])})
    >>> vector, p.unpack(vector)["A"].dtype
    (array([ 1.,  2.,  3., -4.]), dtype('complex64'))
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from tnc.engine import backend
from tnc.errors import TncError
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record

# -- packing parameters into one vector for scipy ----------------------------------------
class Packing:
    """Name -> array dicts to one flat float64 vector and back (views, no copies on
    unpack, for float64 tensors; tensors of another ``dtype`` are converted at the
    boundary, complex ones packed as (real, imaginary) pairs).

        >>> p = Packing({"A": (2, 3), "B": (4,)})
        >>> p.unpack(np.arange(10.0))["B"]
        array([6., 7., 8., 9.])
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype=np.float64):
        self.shapes = dict(shapes)
        self.dtype = np.dtype(dtype)
        self.wide = np.dtype(np.complex128 if self.dtype.kind == "c" else np.float64)
        width = 2 if self.dtype.kind == "c" else 1
        sizes = [width * math.prod(s) for s in self.shapes.values()]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def unpack(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        if self.dtype == np.float64:
            return {name: vector[a:b].reshape(shape) for (name, shape), a, b in
                    zip(self.shapes.items(), self.offsets[:-1], self.offsets[1:])}
        vector = np.ascontiguousarray(vector, dtype=np.float64)
        return {name: vector[a:b].view(self.wide).reshape(shape).astype(self.dtype, copy=False)
                for (name, shape), a, b in
                zip(self.shapes.items(), self.offsets[:-1], self.offsets[1:])}

    def pack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(arrays[name], dtype=self.wide).reshape(-1).view(
            np.float64) for name in self.shapes])


# -- L-BFGS-B --------------------------------------------------------------------------------
def run_lbfgsb(objective: Callable, tensors: dict, options, lower, bar: Progress):
    """Minimise with scipy's L-BFGS-B; returns ``(tensors, history, converged, info)``.

    ``objective(tensors) -> (value, gradients)`` (a :class:`DenseObjective`, or
    :mod:`tnc.fitting.coupled`'s sum of them); ``lower``: lower bounds, a dict name ->
    bound (None or absent: unbounded), a flat vector over the packed tensors
    (``-inf``: unbounded) or None; ``options``: ``max_iter``, ``ftol``,
    ``gtol`` and ``callback`` (as :class:`GCPOptions`).
    """
    packing = Packing({k: v.shape for k, v in tensors.items()},
                      np.result_type(*tensors.values()) if tensors else np.float64)
    bounds = lower_bounds(packing, lower)
    history: list[dict] = []
    start = time.perf_counter()

    def fun(vector):
        value, grads = objective(packing.unpack(vector))
        return value, packing.pack(grads)

    def callback(intermediate_result):
        entry = record(len(history) + 1, intermediate_result.fun, None,
                       time.perf_counter() - start)
        history.append(entry)
        bar.update(loss=entry["loss"])
        if wants_stop(options.callback, {**entry, "tensors": packing.unpack(
                intermediate_result.x.copy())}):
            raise StopIteration

    import scipy.optimize                # loaded by GCP's L-BFGS-B fits only
    result = scipy.optimize.minimize(
        fun, packing.pack(tensors), jac=True, method="L-BFGS-B", bounds=bounds,
        callback=callback, options={"maxiter": options.max_iter, "ftol": options.ftol,
                                    "gtol": options.gtol})
    final = record(len(history), result.fun, None, time.perf_counter() - start)
    if not history or history[-1]["loss"] != final["loss"]:
        history.append(final)
    info = {"message": str(result.message), "evaluations": int(result.nfev)}
    return packing.unpack(result.x), history, bool(result.status == 0), info


def lower_bounds(packing: Packing, lower):
    """scipy ``Bounds`` for ``lower`` (see :func:`run_lbfgsb`), None when nothing is bounded.

        >>> lower_bounds(Packing({"A": (2,), "B": (1,)}), {"A": 0.0}).lb
        array([  0.,   0., -inf])
    """
    if lower is None:
        return None
    if isinstance(lower, dict):
        unknown = [k for k in lower if k not in packing.shapes]
        if unknown:
            raise TncError(f"lower bound for `{unknown[0]}`, which is not a tensor being fitted")
        lower = packing.pack({k: np.full(shape, -np.inf if lower.get(k) is None else lower[k])
                              for k, shape in packing.shapes.items()})
    lower = np.asarray(lower, dtype=np.float64)
    if lower.shape != (packing.size,):
        raise TncError(f"lower bounds: expected {packing.size} entries, got shape {lower.shape}")
    import scipy.optimize
    return scipy.optimize.Bounds(lower, np.inf) if np.isfinite(lower).any() else None


# -- stochastic Adam -------------------------------------------------------------------------
class Adam:
    """Adam steps on a dict of arrays, projected onto ``lower`` (None: unbounded; a number).

    numpy, torch and jax arrays alike (:mod:`tnc.engine.backend`): numpy and torch tensors
    are stepped in place, jax arrays (immutable) replaced in ``tensors``; each in its own
    dtype and device, with the same arithmetic in the same order, so a torch or jax run
    repeats the numpy run's steps to rounding.

        >>> x = {"A": np.array([1.0, -1.0])}
        >>> Adam(x, 0.0).step(x, {"A": np.array([1.0, 1.0])}, 0.5); x["A"].round(6).tolist()
        [0.5, 0.0]
    """

    def __init__(self, tensors: dict, lower, beta1=0.9, beta2=0.999, eps=1e-8):
        self.m = {k: backend.zeros(tuple(v.shape), like=v) for k, v in tensors.items()}
        self.v = {k: backend.zeros(tuple(v.shape), like=v) for k, v in tensors.items()}
        self.t, self.lower = 0, lower
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, tensors: dict, grads: dict, lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for k, x in tensors.items():
            if type(x) is np.ndarray:
                self._step_numpy(k, x, grads[k], lr, c1, c2)
            else:
                tensors[k] = self._step_backend(k, x, grads[k], lr, c1, c2)

    def _step_numpy(self, k, x, g, lr, c1, c2) -> None:
        self.m[k] *= self.beta1
        self.m[k] += (1 - self.beta1) * g
        self.v[k] *= self.beta2
        self.v[k] += (1 - self.beta2) * (abs(g) ** 2 if np.iscomplexobj(g) else g * g)
        x -= lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)
        if self.lower is not None:
            np.maximum(x, self.lower, out=x)

    def _step_backend(self, k, x, g, lr, c1, c2):
        """One step of a torch or jax tensor (out of place: the same numbers as numpy's)."""
        square = abs(g) ** 2 if backend.dtype_name(g).startswith("complex") else g * g
        self.m[k] = self.m[k] * self.beta1 + (1 - self.beta1) * g
        self.v[k] = self.v[k] * self.beta2 + (1 - self.beta2) * square
        x_new = x - lr * (self.m[k] / c1) / (_sqrt(self.v[k] / c2) + self.eps)
        if self.lower is not None:
            x_new = _maximum(x_new, self.lower)
        if backend.backend_name(x) == "torch":
            x.copy_(x_new)                 # in place, as numpy's step
            return x
        return x_new

    def state(self):
        return _copies(self.m), _copies(self.v), self.t

    def restore(self, state) -> None:
        m, v, self.t = state
        self.m, self.v = _copies(m), _copies(v)


def _copies(arrays: dict) -> dict:
    return {k: backend.copy_of(a) for k, a in arrays.items()}


def _sqrt(x):
    return backend.do("sqrt", x)


def _maximum(x, lower):
    if backend.backend_name(x) == "torch":
        import torch
        return torch.clamp(x, min=lower) if isinstance(lower, (int, float)) else \
            torch.maximum(x, torch.as_tensor(lower, dtype=x.dtype, device=x.device))
    return backend.do("maximum", x, lower, like=backend.backend_name(x))
