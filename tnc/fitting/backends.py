"""Fits of torch, jax and cupy data: converted to numpy at :func:`tnc.fit`'s boundary,
or (ALS, and GCP's Adam, under the policy below) swept on the data's own library.

Every fitting method but native ALS and GCP's Adam runs its loops on numpy (the compiled kernels,
LAPACK's solves, scipy's L-BFGS-B). Data, masks, data tensors and starting tensors of
another array library are taken as numpy arrays (a torch tensor that requires grad
through its detached value, with no error; a GPU array copied to the host) and the
fitted tensors come back in the data's library, on its device, in the dtype the fit
ran in (:mod:`tnc.fitting.dtypes`). Arrays of two libraries, or on two devices, in one
call are a :class:`~tnc.errors.TncError` naming both
(:func:`tnc.engine.backend.backend_of`). For a fit of 200^3 float data on the CPU the
two copies cost one pass over the data, against the several passes every sweep makes.
GCP's Adam steps natively too, under the same policy (:func:`tnc.fitting.gcp.run_gcp`:
the sampled model, its reverse sweep and :class:`tnc.fitting.optimizers.Adam` on the
data's library; the entries are drawn by numpy's generator, so a native run repeats the
numpy run's draws). L-BFGS-B (scipy), NLS and the other methods run on the host even for
GPU data.

Native ALS (:mod:`tnc.fitting.native`): ``tnc.fit(..., method="als", backend=...)``
with ``backend`` one of

* ``"auto"`` (default): native when the data live on a non-CPU device (CUDA, a jax
  GPU); the numpy conversion for CPU torch and jax arrays, where it is the faster
  (``bench/bench_backends.py --only als``, 200^3 rank 10, one thread: native torch
  1.8x the numpy path, converted 1.0x: numpy's products use tnc's compiled kernels),
  and for complex data or the options native ALS lacks (``nonneg``, ``extrapolate``,
  ``holdout``);
* ``"native"``: sweeps on the data's library (a TncError naming the option and the
  backend when the fit asks for something native ALS does not do);
* ``"numpy"``: always the numpy conversion.

Either way the fitted tensors come back in the data's library, device and dtype.
:func:`within` keeps the foreign array of the call running (the fit's ``like``) so
that the method can pick the native path (:func:`native_like`).

    >>> import numpy as np
    >>> foreign({"data": np.ones(2)}) is None
    True
"""
from __future__ import annotations

import contextlib
import contextvars

from tnc.engine import backend
from tnc.errors import TncError

FOREIGN = ("torch", "jax", "jaxlib", "cupy")   # libraries converted at the boundary


def foreign(arrays: dict):
    """An array of ``arrays`` (name -> array) from a library in :data:`FOREIGN` (the one
    whose library and device the results take), or None when every array is numpy's,
    a scalar or handled elsewhere (sparse, dask); a TncError naming both libraries
    (or devices) when they are mixed."""
    named = {k: v for k, v in arrays.items() if v is not None and not isinstance(v, (str, dict))}
    found = [v for v in named.values() if backend.backend_name(v) in FOREIGN]
    if not found:
        return None
    backend.backend_of(list(named.values()), "tnc.fit", list(named))
    return found[0]


def boundary_arrays(data, mask, inputs, options: dict) -> dict:
    """Name -> every array of a :func:`tnc.fit` call: the data, the mask, each data
    tensor and each starting tensor (``init=``)."""
    arrays = {"data": data, "mask": mask}
    if isinstance(inputs, dict):             # anything else: check_inputs names it
        arrays.update({f"inputs {k}": v for k, v in inputs.items()})
    init = getattr(options.get("init"), "tensors", options.get("init"))
    if isinstance(init, dict):
        arrays.update({f"init {k}": v for k, v in init.items()})
    return arrays


def to_numpy_call(data, mask, inputs, options: dict):
    """``(data, mask, inputs, options)`` with every foreign array a numpy array."""
    convert = (lambda x: x if x is None or isinstance(x, str)
               else backend.to_numpy(backend.detach(x)))
    inputs = {k: convert(v) for k, v in inputs.items()} if isinstance(inputs, dict) else inputs
    init = options.get("init")
    if isinstance(init, dict):
        options = {**options, "init": {k: convert(v) for k, v in init.items()}}
    return convert(data), convert(mask), inputs, options


def to_library(result, like):
    """``result`` with its fitted tensors (and data tensors) as arrays of ``like``'s library
    and device, in their own dtype."""
    result.tensors = {k: backend.asarray(v, like) for k, v in result.tensors.items()}
    if getattr(result, "inputs", None):
        result.inputs = {k: backend.asarray(v, like) for k, v in result.inputs.items()}
    return result


# -- the native policy -----------------------------------------------------------------------
BACKEND_CHOICES = ("auto", "native", "numpy")
NATIVE_LIBRARIES = ("torch", "jax")
_LIKE: contextvars.ContextVar = contextvars.ContextVar("tnc_fit_like", default=None)


@contextlib.contextmanager
def within(like):
    """Run a :func:`tnc.fit` call whose foreign array is ``like`` (None: numpy data)."""
    token = _LIKE.set(like)
    try:
        yield
    finally:
        _LIKE.reset(token)


def native_like():
    """The foreign array of the :func:`tnc.fit` call running now, or None."""
    return _LIKE.get()


def choose(choice: str, like, refusals: dict, dtype, method: str = "ALS") -> bool:
    """Whether a fit runs natively on ``like``'s library (see the module docstring).

    ``choice``: the ``backend`` option; ``refusals``: option name -> True where the
    fit asks for something native runs lack; ``dtype``: the fit's numpy dtype;
    ``method``: its name in the refusals' messages.

        >>> choose("auto", None, {}, "float64")
        False
    """
    if choice not in BACKEND_CHOICES:
        raise TncError(f"backend must be one of {', '.join(map(repr, BACKEND_CHOICES))}, "
                       f"got {choice!r}")
    if like is None or choice == "numpy":
        return False
    name = backend.backend_name(like)
    blockers = [k for k, v in refusals.items() if v]
    if getattr(dtype, "kind", None) == "c" or str(dtype).startswith("complex"):
        blockers.insert(0, f"complex data ({dtype})")
    if choice == "native":
        if name not in NATIVE_LIBRARIES:
            raise TncError(f"backend='native': {method} runs natively on "
                           f"{' and '.join(NATIVE_LIBRARIES)} arrays, not {name}; "
                           "use backend='numpy'")
        if blockers:
            raise TncError(f"backend='native' on {name}: {blockers[0]} is numpy-only in "
                           f"{method}; drop it or use backend='numpy'")
        return True
    if blockers or name not in NATIVE_LIBRARIES:
        return False
    device = str(backend.device_of(like) or "cpu").lower()
    return "cpu" not in device
