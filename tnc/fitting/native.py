"""ALS sweeps on the data's own backend (torch, jax): :class:`NativeFit`.

The same algorithm as :class:`tnc.fitting.als.Fit` (the same trees, windows, cache,
normalisation and stopping rule), with every array a tensor of the data's library on
its device: right-hand sides and Grams through the engine's pairwise recipes (which
follow torch and jax arrays), the normal equations solved with the library's linalg
(``torch.linalg.cholesky_ex`` + ``torch.cholesky_solve``; ``jnp.linalg.cholesky`` +
``jax.scipy.linalg.cho_solve``; the pseudo-inverse when the Gram is singular), losses
reduced on the backend and read back as Python floats (the history holds floats).

When it runs is :func:`tnc.fitting.backends.choose` 's policy (``backend=`` option:
``"auto"``, ``"native"``, ``"numpy"``). Setup (validation, rescaling, the start) stays
on numpy: the data cross to the host once and back once (on the CPU both are views).
Real dtypes only; ``nonneg``, ``extrapolate`` and ``holdout`` are numpy-only (a
TncError names the option and the backend when ``backend="native"`` asks for them).

    >>> import numpy as np
    >>> native_dot(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    11.0
"""
from __future__ import annotations

import numpy as np

from tnc.engine import backend
from tnc.fitting.als import TARGET, WEIGHT, Fit, leaf_values, prime
from tnc.fitting.dtypes import real_dtype


# -- array helpers on any backend ----------------------------------------------------------
def native_squared_norm(x) -> float:
    """``sum x^2`` of a real backend array as a float, accumulated in float64.

        >>> native_squared_norm(np.array([3.0, 4.0]))
        25.0
    """
    name = backend.backend_name(x)
    if name == "torch":         # no squared copy of the data (a 200^3 copy: 0.1 s)
        import torch
        return float(torch.linalg.vector_norm(x.reshape(-1), dtype=torch.float64)) ** 2
    if name == "jax":
        import jax.numpy as jnp
        flat = x.reshape(-1)
        return float(jnp.vdot(flat, flat)) if x.dtype == jnp.float64 else float(
            jnp.sum(flat.astype(jnp.float64) ** 2))
    return float(np.sum(np.asarray(x, np.float64) ** 2))


def native_dot(a, b) -> float:
    """``sum a * b`` of two real backend arrays of one shape, as a float (float64 sums).

        >>> native_dot(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
        11.0
    """
    return float(backend.to_numpy(_wide(a * b).sum()))


def _wide(x):
    """``x`` in float64 (float32 rows and Grams are small: the loss formula's cancellation
    needs their sums in float64)."""
    return backend.astype(x, np.float64) if backend.dtype_name(x) == "float32" else x


def where(mask, a, b):
    """``mask ? a : b`` on the backend (``b`` may be a Python number)."""
    name = backend.backend_name(mask)
    if name == "torch":
        import torch
        return torch.where(mask, a, torch.as_tensor(b, dtype=a.dtype, device=a.device)
                           if not hasattr(b, "shape") else b)
    if name == "jax":
        import jax.numpy as jnp
        return jnp.where(mask, a, b)
    return np.where(mask, a, b)


def to_backend(array, like):
    """A numpy array as an array of ``like``'s library and device, in its own dtype (a
    view of it on torch's CPU)."""
    return backend.asarray(np.ascontiguousarray(array), like)


# -- the normal equations ----------------------------------------------------------------
def solve_rows_native(rhs, gram, l2: float = 0.0):
    """Rows ``g`` with ``g Gram = rhs``, batch by batch, on the backend of ``rhs``:
    ``rhs`` (n, m, b), ``gram`` (n, b, b) symmetric. A Cholesky solve; the pseudo-inverse
    when the Gram is not positive definite (as :func:`tnc.fitting.solve.solve_rows`).

        >>> import torch
        >>> gram = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
        >>> solve_rows_native(torch.tensor([[[2.0, 4.0]]]), gram)
        tensor([[[1., 1.]]])
    """
    if l2:
        gram = gram + l2 * backend.eye(gram.shape[-1], like=gram)
    name = backend.backend_name(rhs)
    if name == "torch":
        import torch
        factor, info = torch.linalg.cholesky_ex(gram)
        if bool(info.any()):
            return rhs @ torch.linalg.pinv(gram, hermitian=True)
        return torch.cholesky_solve(rhs.transpose(1, 2), factor).transpose(1, 2)
    if name == "jax":
        import jax.numpy as jnp
        from jax.scipy.linalg import cho_solve
        factor = jnp.linalg.cholesky(gram)
        if bool(jnp.isnan(factor).any()):
            return rhs @ jnp.linalg.pinv(gram, hermitian=True)
        solve = lambda f, r: cho_solve((f, True), r.T).T  # noqa: E731
        import jax
        return jax.vmap(solve)(factor, rhs)
    from tnc.fitting.solve import solve_rows
    return solve_rows(rhs, gram, l2=0.0)


# -- one ALS run on the backend --------------------------------------------------------------
class NativeFit(Fit):
    """:class:`~tnc.fitting.als.Fit` with its tensors, target and mask arrays of ``like``'s
    library and device; numpy starting tensors are moved there first."""

    def __init__(self, problem, model, settings, tensors: dict, mask, like):
        self.problem, self.model, self.settings, self.like = problem, model, settings, like
        self.tensors = {k: to_backend(v, like) for k, v in tensors.items()}
        self.inputs = {k: to_backend(v, like) for k, v in problem.inputs.items()}
        self.mask = None if mask is None else to_backend(mask, like)
        self.target = to_backend(problem.target, like)
        self.observed_target = (self.target if mask is None else
                                where(self.mask, self.target, 0.0))
        self.xx = native_squared_norm(self.observed_target)
        self.cache: dict = {}
        self.mode = self._mode(settings.missing)
        weight = None if mask is None else to_backend(
            mask.astype(real_dtype(problem.dtype)), like)
        self.values = {TARGET: self.observed_target, WEIGHT: weight}
        for label, n in model.name_of.items():
            self.values.update(leaf_values(label, {**self.tensors, **self.inputs}[n]))

    def reconstruct(self):
        return self.problem.network.contract({**self.tensors, **self.inputs})

    def residual_loss(self, model_value=None) -> float:
        model_value = self.reconstruct() if model_value is None else model_value
        diff = self.target - model_value
        if self.mask is not None:
            diff = where(self.mask, diff, 0.0)
        return native_squared_norm(diff)

    def impute(self, model_value) -> None:
        """EM step: missing entries of the target from the current model."""
        self.values[TARGET] = where(self.mask, self.target, model_value)
        self.xx_filled = native_squared_norm(self.values[TARGET])
        for key in [k for k in self.cache if TARGET in k[1]]:
            del self.cache[key]

    def update(self, name: str, rhs_tree=None) -> float:
        """Solve for ``name`` on the backend; the loss after the update (a float)."""
        rhs, gram, axes = self.contributions(name, rhs_tree)
        new = solve_rows_native(rhs, gram, self.settings.l2[name])
        current = self.tensors[name]
        permuted = backend.transpose(current, axes) if axes != tuple(range(len(axes))) \
            else current
        tensor = new.reshape(tuple(permuted.shape))
        if axes != tuple(range(len(axes))):
            tensor = backend.transpose(tensor, list(np.argsort(axes)))
        self.set_tensor(name, _contiguous(tensor))
        xm = native_dot(rhs, new)
        wide = _wide(new)
        mm = float(backend.to_numpy(backend.einsum("nmb,nbc,nmc->", wide, _wide(gram), wide)))
        return (self.xx_filled if self.mode == "em" else self.xx) - 2 * xm + mm

    @staticmethod
    def _slice_norms(tensor, axis: int) -> np.ndarray:
        """:meth:`Fit._slice_norms` of a backend tensor (the norms, a few numbers, are
        compared on the host by :meth:`Fit._balance`)."""
        moved = backend.transpose(tensor, [axis] + [a for a in range(tensor.ndim) if a != axis])
        flat = moved.reshape(tensor.shape[axis], -1)
        return np.sqrt(backend.to_numpy((flat * flat).sum(1)).astype(np.float64))

    def _scaled(self, tensor, factor: np.ndarray):
        """``tensor`` times the host ``factor``, moved to the tensor's backend and dtype."""
        return tensor * to_backend(factor.astype(backend.dtype_of(tensor)), self.target)

    def penalty(self) -> float:
        """The ridge penalties ``sum l2 |T|^2``."""
        return sum(w * native_squared_norm(self.tensors[n])
                   for n, w in self.settings.l2.items() if w)


def _contiguous(x):
    return x.contiguous() if backend.backend_name(x) == "torch" else x
