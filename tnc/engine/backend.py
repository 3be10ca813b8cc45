"""Which array library an array belongs to, and the few operations the engine needs on any.

Dispatch happens once, here: the engine and every fitting method ask
:func:`backend_of` which library (``"numpy"``, ``"torch"``, ``"jax"``, ``"cupy"``,
``"dask"``, ...) a call's arrays come from, and run the small shims below on them.
The names come from `autoray <https://github.com/jcmgray/autoray>`_ (what quimb and
cotengra dispatch with: pure Python, a type lookup cached per class), so no optional
library is imported here: torch is only ever touched through a torch tensor the caller
passed. numpy arrays take the direct numpy call in every shim (the benchmarked path
pays no dispatch).

Rules every method follows:

* one call, one backend: arrays from two libraries (numpy data with torch parameters)
  or on two devices (``cuda:0`` and ``cpu``) are a :class:`~tnc.errors.TncError` naming
  both (and the tensors, when known); Python scalars (and numpy scalars) go with any
  backend;
* dtypes promote by numpy's rules (:func:`result_dtype`: :func:`numpy.result_type`
  over the arrays' dtypes, Python scalars weak as in NEP 50): float32 with float64 is
  float64, real with complex is complex;
* :func:`fit_dtype`: integer and boolean data are fitted in float64; float32, float64,
  complex64 and complex128 are kept; any other dtype is an error naming the dtype and
  the method; :func:`check_param_dtype`: a parameter (a tensor being fitted or
  differentiated) is never integer;
* a torch tensor with ``requires_grad`` is used through its detached value
  (:func:`detach`) wherever tnc computes gradients itself.

    >>> import numpy as np
    >>> backend_of([np.ones(2), 3.0])
    'numpy'
    >>> transpose(np.ones((2, 3, 4)), (2, 0, 1)).shape
    (4, 2, 3)
    >>> result_dtype(np.ones(2, np.float32), np.ones(2, np.complex64), 2.0).name
    'complex64'
    >>> fit_dtype(np.arange(3), "data", "als").name
    'float64'
"""
from __future__ import annotations

import numbers

import numpy as np
from autoray import do, infer_backend

from tnc.errors import TncError

FIT_DTYPES = ("float32", "float64", "complex64", "complex128")
ENGINE_BACKENDS = ("numpy", "torch", "jax", "cupy")   # run by tnc's own pairwise recipes


# -- which backend ------------------------------------------------------------------------
_NUMPY_ONLY = {np.ndarray}


def all_numpy(arrays) -> bool:
    """Whether every item of ``arrays`` is a plain numpy array (the fast path; a set of
    types, several times faster than ``all(...)`` over a generator).

    >>> all_numpy([np.ones(2), np.ones(3)]), all_numpy([np.ones(2), 1.0])
    (True, False)
    """
    return set(map(type, arrays)) == _NUMPY_ONLY


def is_scalar(x) -> bool:
    """Python numbers and numpy scalars: they go with arrays of any backend."""
    return isinstance(x, (numbers.Number, np.generic))


def backend_name(x) -> str:
    """The library ``x`` belongs to: ``"numpy"``, ``"torch"``, ``"jax"``, ``"cupy"``,
    ``"dask"``, ... (autoray's name; ``"builtins"`` for Python scalars).

    >>> backend_name(np.zeros(2)), backend_name(1.5)
    ('numpy', 'builtins')
    """
    if type(x) is np.ndarray:
        return "numpy"
    return infer_backend(x)


def device_of(x) -> str | None:
    """The device ``x`` lives on (``"cpu"``, ``"cuda:0"``, ...), None for numpy arrays,
    scalars and arrays whose device cannot be read (a jax tracer under ``jax.jit``).

    >>> device_of(np.zeros(2)) is None
    True
    """
    if type(x) is np.ndarray or is_scalar(x):
        return None
    devices = getattr(x, "devices", None)       # jax: a set of devices
    if callable(devices):
        try:
            return ",".join(sorted(str(d) for d in devices()))
        except Exception:  # noqa: BLE001 - a tracer has no concrete device
            return None
    device = getattr(x, "device", None)         # torch, cupy
    if device is None:
        return None
    return f"cuda:{device.id}" if backend_name(x) == "cupy" else str(device)


def backend_of(arrays, what: str = "this call", names=None) -> str:
    """The one backend of ``arrays`` (a list, or a dict name -> array), or a
    :class:`TncError` naming both backends, or both devices, when they differ.

    Scalars are skipped (``"numpy"`` when nothing else is given). ``names``: the
    tensors' names in the order of ``arrays`` (a dict gives its keys); ``what``: the
    call, for the message.

        >>> backend_of({"A": np.ones(2), "B": np.ones(3)})
        'numpy'
        >>> import torch                              # doctest: +SKIP
        >>> backend_of({"A": np.ones(2), "B": torch.ones(2)})   # doctest: +SKIP
        Traceback (most recent call last):
        ...
        tnc.errors.TncError: this call mixes arrays of two libraries: `A` is numpy, `B` is torch; convert them to one library (and device)
    """
    if isinstance(arrays, dict):
        names, arrays = list(arrays), list(arrays.values())
    else:
        arrays = list(arrays)
    if all_numpy(arrays):                   # the common case, fast
        return "numpy"
    first = first_device = None
    for k, x in enumerate(arrays):
        if x is None or is_scalar(x):
            continue
        name = backend_name(x)
        if name == "builtins":          # a list or tuple of numbers: goes with any backend
            continue
        label = f"`{names[k]}`" if names is not None else f"array {k}"
        if first is None:
            first, first_label, first_device = name, label, device_of(x)
            continue
        if name != first:
            raise TncError(f"{what} mixes arrays of two libraries: {first_label} is {first}, "
                           f"{label} is {name}; convert them to one library (and device)")
        device = device_of(x)
        if device is not None and first_device is not None and device != first_device:
            raise TncError(f"{what} mixes arrays on two devices: {first_label} is on "
                           f"{first_device}, {label} on {device}; move them to one device")
        first_device = first_device or device
    return "numpy" if first is None else first


# -- dtypes -----------------------------------------------------------------------------
def dtype_name(x) -> str:
    """The name of ``x``'s dtype as numpy spells it (``"float32"``, ``"complex128"``,
    ``"bfloat16"``, ...), for any backend; a dtype object passes through.

    >>> dtype_name(np.ones(2, np.float32)), dtype_name(np.complex128), dtype_name(2.0)
    ('float32', 'complex128', 'float64')
    """
    dtype = x if isinstance(x, (type, np.dtype)) else getattr(x, "dtype", x)
    if isinstance(x, (bool, int, float, complex)) and not isinstance(x, np.generic):
        dtype = np.result_type(type(x))
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]     # torch.float32 -> float32


def dtype_of(x) -> np.dtype:
    """``x``'s dtype as a numpy dtype (torch dtypes translated by name), or a
    :class:`TncError` for a dtype numpy has no equivalent of (``bfloat16`` in torch).

    >>> dtype_of(np.ones(1, np.complex64))
    dtype('complex64')
    """
    name = dtype_name(x)
    try:
        return np.dtype(name)
    except TypeError:
        raise TncError(f"dtype {name} has no numpy equivalent; tnc computes in float32, "
                       "float64, complex64 or complex128") from None


def result_dtype(*arrays) -> np.dtype:
    """The dtype numpy's promotion gives ``arrays`` together (:func:`numpy.result_type`):
    float32 with float64 is float64, real with complex is complex, integer with float32
    is float64 (numpy's table); Python scalars are weak (NEP 50: ``float32 * 2.0`` stays
    float32). Arrays of any backend; None entries are skipped.

    >>> result_dtype(np.ones(2, np.float32), 2.0), result_dtype(np.ones(2, np.float32), np.ones(2))
    (dtype('float32'), dtype('float64'))
    """
    if all_numpy(arrays):                   # the common case, fast
        return np.result_type(*arrays)
    parts = [x.dtype if type(x) is np.ndarray else
             x if is_scalar(x) and not isinstance(x, np.generic) else dtype_of(x)
             for x in arrays if x is not None]
    return np.result_type(*parts) if parts else np.dtype(np.float64)


def fit_dtype(array, what: str, method: str) -> np.dtype:
    """The dtype ``method`` computes ``array`` (its ``what``: ``"data"``, a tensor's
    name) in: integer and boolean become float64; float32, float64, complex64 and
    complex128 are kept; any other dtype is a :class:`TncError` naming the dtype and
    the method.

    >>> fit_dtype(np.ones(2, np.float32), "data", "gcp").name
    'float32'
    >>> fit_dtype(np.ones(2, np.float16), "data", "gcp")
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: gcp cannot compute data of dtype float16; it computes in float32, float64, complex64 or complex128 (integer and boolean data become float64)
    """
    name = dtype_name(array)
    if name == "bool" or name.startswith(("int", "uint")):
        return np.dtype(np.float64)
    if name in FIT_DTYPES:
        return np.dtype(name)
    raise TncError(f"{method} cannot compute {what} of dtype {name}; it computes in "
                   "float32, float64, complex64 or complex128 (integer and boolean data "
                   "become float64)")


def check_param_dtype(array, name: str, method: str) -> np.dtype:
    """``array``'s dtype when it may be a parameter of ``method`` (float32, float64,
    complex64, complex128), else a :class:`TncError` naming the tensor, the dtype and
    the method: an integer parameter cannot move by a gradient step.

    >>> check_param_dtype(np.zeros(2, np.int64), "A", "gcp")
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: tensor `A` of gcp has integer dtype int64; a parameter must be float32, float64, complex64 or complex128 (start from A.astype(float))
    """
    dtype = dtype_name(array)
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        raise TncError(f"tensor `{name}` of {method} has integer dtype {dtype}; a parameter "
                       f"must be float32, float64, complex64 or complex128 (start from "
                       f"{name}.astype(float))")
    return fit_dtype(array, f"tensor `{name}`", method)


def backend_dtype(dtype, like):
    """The dtype object of ``like``'s library for the numpy dtype ``dtype``
    (``torch.float32`` for a torch tensor, the numpy dtype elsewhere)."""
    dtype = np.dtype(dtype)
    if backend_name(like) == "torch":
        import torch                    # like is a torch tensor: torch is loaded
        return getattr(torch, dtype.name)
    return dtype


def astype(x, dtype):
    """``x`` in the numpy dtype ``dtype`` (``x`` itself when it already is), any backend.

    >>> astype(np.ones(2), np.float32).dtype
    dtype('float32')
    """
    if dtype_name(x) == np.dtype(dtype).name:
        return x
    if type(x) is np.ndarray:
        return x.astype(dtype)
    if backend_name(x) == "torch":
        return x.to(backend_dtype(dtype, x))
    return x.astype(np.dtype(dtype))


def promote(*arrays) -> list:
    """``arrays`` cast to their common dtype (:func:`result_dtype`), those already in it
    unchanged: torch refuses a product of float32 and float64 tensors, numpy and jax
    would promote by themselves."""
    dtypes = {dtype_name(x) for x in arrays}
    if len(dtypes) <= 1:
        return list(arrays)
    common = result_dtype(*arrays)
    return [astype(x, common) for x in arrays]


# -- making and converting arrays ---------------------------------------------------------
def detach(x):
    """A torch tensor's value without its autograd graph (``requires_grad`` off); any
    other array unchanged."""
    if type(x) is not np.ndarray and getattr(x, "requires_grad", False):
        return x.detach()
    return x


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (copied off a GPU; a torch tensor detached first).

    >>> to_numpy([1.0, 2.0])
    array([1., 2.])
    """
    if type(x) is np.ndarray:
        return x
    name = backend_name(x)
    if name == "torch":
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if name == "cupy":
        return x.get()
    if name == "dask":
        return np.asarray(x.compute())
    return np.asarray(x)


def asarray(x, like):
    """``x`` (a scalar, a numpy array, or already of ``like``'s library) as an array of
    ``like``'s library, on its device; its dtype is kept (a Python scalar takes numpy's
    default for it).

    >>> asarray(2.0, np.ones(3))
    array(2.)
    """
    name = backend_name(like)
    if name == "numpy":
        return np.asarray(x)
    if backend_name(x) == name:
        return x
    if name == "torch":
        import torch
        return torch.as_tensor(np.asarray(x), device=like.device)
    return do("asarray", np.asarray(x), like=name)


def zeros(shape, like, dtype=None):
    """Zeros of ``shape`` in ``like``'s library, device and (unless ``dtype``, a numpy
    dtype, is given) dtype.

    >>> zeros((2,), like=np.ones(3, np.float32))
    array([0., 0.], dtype=float32)
    """
    return _filled("zeros", shape, like, dtype)


def ones(shape, like, dtype=None):
    """Ones of ``shape``, as :func:`zeros`."""
    return _filled("ones", shape, like, dtype)


def eye(n: int, like, dtype=None):
    """The ``n x n`` identity, as :func:`zeros`."""
    return _filled("eye", n, like, dtype)


def _filled(kind: str, shape, like, dtype):
    if type(like) is np.ndarray:
        return getattr(np, kind)(shape, dtype=like.dtype if dtype is None else dtype)
    dtype = dtype_of(like) if dtype is None else np.dtype(dtype)
    name = backend_name(like)
    if name == "numpy" or is_scalar(like):
        return getattr(np, kind)(shape, dtype=dtype)
    if name == "torch":
        import torch
        make = getattr(torch, kind)
        size = shape if kind == "eye" else tuple(shape)      # () too: a 0-d tensor
        return make(size, dtype=backend_dtype(dtype, like), device=like.device)
    return do(kind, shape, dtype=dtype, like=name)


# -- operations -------------------------------------------------------------------------
def transpose(x, perm):
    """``x`` with its axes permuted to ``perm`` (torch's ``permute``, elsewhere
    ``transpose``); a view where the library makes one."""
    if type(x) is np.ndarray:
        return x.transpose(perm)
    if backend_name(x) == "torch":
        return x.permute(*perm)
    return x.transpose(perm)


def einsum(equation: str, *arrays):
    """``einsum`` of ``arrays``' library (numpy's for numpy arrays).

    >>> einsum("ii->i", np.eye(2)).tolist()
    [1.0, 1.0]
    """
    if all_numpy(arrays):
        return np.einsum(equation, *arrays)
    return do("einsum", equation, *arrays, like=backend_name(arrays[0]))


def conj(x):
    """The complex conjugate (``x`` itself for real arrays: no copy)."""
    if not dtype_name(x).startswith("complex"):
        return x
    if type(x) is np.ndarray:
        return x.conj()
    if backend_name(x) == "torch":
        return x.conj_physical()        # not torch's lazy conjugate view
    return do("conj", x)


def add_at(result, index, value):
    """``result[index] += value``, in place where the library allows it (numpy,
    torch, cupy) and as jax's functional ``result.at[index].add(value)`` else; returns
    the result.

    >>> add_at(np.zeros(3), slice(1, 2), np.ones(1)).tolist()
    [0.0, 1.0, 0.0]
    """
    if type(result) is np.ndarray or not hasattr(result, "at"):
        result[index] += value
        return result
    return result.at[index].add(value)


def owned(g, given):
    """``g`` (a result) as an array the caller may keep and write: a contiguous copy
    when it shares memory with ``given`` (an array the caller passed in) or is a
    strided view; jax arrays (immutable) as they are."""
    if type(g) is np.ndarray:
        return np.array(g) if g.base is not None or g is given else g
    name = backend_name(g)
    if name == "torch":
        if given is not None and backend_name(given) == "torch" and \
                g.untyped_storage().data_ptr() == given.untyped_storage().data_ptr():
            return g.clone()
        return g.contiguous()
    if name == "cupy":
        return g.copy() if g.base is not None or g is given else g
    return g


def copy_of(x):
    """A copy of ``x`` that owns its memory (jax arrays are immutable: returned as they
    are)."""
    if type(x) is np.ndarray:
        return np.array(x)
    name = backend_name(x)
    if name == "torch":
        return x.clone()
    if name == "jax":
        return x
    return x.copy()
