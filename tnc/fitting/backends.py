"""Fits of torch, jax and cupy data: converted to numpy at :func:`tnc.fit`'s boundary.

Every fitting method runs its loops on numpy (the compiled kernels, LAPACK's solves,
scipy's L-BFGS-B). Data, masks, data tensors and starting tensors of another array
library are taken as numpy arrays (a torch tensor that requires grad through its
detached value, with no error; a GPU array copied to the host) and the fitted tensors
come back in the data's library, on its device, in the dtype the fit ran in
(:mod:`tnc.fitting.dtypes`). Arrays of two libraries, or on two devices, in one call
are a :class:`~tnc.errors.TncError` naming both (:func:`tnc.engine.backend.backend_of`).
For a fit of 200^3 float data on the CPU the two copies cost one pass over the data,
against the several passes every sweep makes; on a GPU the sweeps still run on the
host (no method runs on the device yet).

    >>> import numpy as np
    >>> foreign({"data": np.ones(2)}) is None
    True
"""
from __future__ import annotations

from tnc.engine import backend

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
