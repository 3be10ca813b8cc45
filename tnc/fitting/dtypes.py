"""The dtype a fit runs in: one policy for every method of :func:`tnc.fit`.

* float32 data is fitted in float32 (tensors returned in float32: half the memory),
  float64 in float64, complex64 / complex128 in complex where the method fits complex
  data (its registration says so: :func:`tnc.fitting.front.register_method`);
* integer and boolean data become float64;
* any other dtype (float16, long double, object, strings, ...) or complex data given
  to a method that fits real data only is a :class:`~tnc.errors.TncError` naming the
  dtype and the method;
* starting tensors (``init=``) and data tensors (``inputs=``) join the data by numpy's
  promotion rules (:func:`numpy.result_type`): float32 data with a float64 start is
  fitted in float64, real data with a complex start in complex; integer starting
  tensors are an error naming the tensor (a parameter is never integer).

    >>> import numpy as np
    >>> fit_dtype(np.dtype(np.int64), "als", ("float32", "float64")).name
    'float64'
    >>> promoted(np.dtype(np.float32), {"A": np.zeros(2)}, {}, "als").name
    'float64'
"""
from __future__ import annotations

import math

import numpy as np

from tnc.engine import backend
from tnc.errors import TncError
from tnc.fitting.rescale import given_tensors

REAL = ("float32", "float64")
COMPLEX = ("complex64", "complex128")
KNOWN = REAL + COMPLEX


def fit_dtype(dtype, method: str, supported: tuple | None, what: str = "data") -> np.dtype:
    """The dtype ``method`` fits data of ``dtype`` in, or a :class:`TncError` naming both
    (:func:`tnc.engine.backend.fit_dtype` first: integers to float64, unknown dtypes out).

    ``supported``: the dtype names the method fits as given; None means float64 only
    (real data converted to float64, complex refused).

    >>> fit_dtype(np.dtype(np.complex64), "nls", ("float32", "float64"))
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: method 'nls' cannot fit data of dtype complex64; it fits float32 and float64 (integer and boolean data are converted to float64)
    """
    dtype = backend.fit_dtype(dtype, what, f"method {method!r}")
    names = ("float64",) if supported is None else tuple(supported)
    if dtype.name in names:
        return dtype
    if supported is None and dtype.kind == "f":
        return np.dtype(np.float64)
    fitted = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    raise TncError(f"method {method!r} cannot fit {what} of dtype {dtype}; it fits {fitted} "
                   "(integer and boolean data are converted to float64)")


def promoted(data_dtype, init, inputs: dict, method: str,
             supported: tuple | None = KNOWN) -> np.dtype:
    """``data_dtype`` joined by numpy's rules with the dtypes of the starting tensors
    ``init`` (a dict name -> array, a FitResult or a string) and of the data tensors
    ``inputs``, checked again against the method (a complex start of a real-only method
    is refused); integer starting tensors are a :class:`TncError` naming the tensor
    (:func:`tnc.engine.backend.check_param_dtype`).

    >>> promoted(np.dtype(np.float32), {"A": np.arange(3)}, {}, "als")
    Traceback (most recent call last):
    ...
    tnc.errors.TncError: tensor `A` of method 'als' has integer dtype int64; a parameter must be float32, float64, complex64 or complex128 (start from A.astype(float))
    """
    dtypes = [np.dtype(data_dtype)]
    for name, array in (given_tensors(init) or {}).items():
        if getattr(array, "dtype", None) is None and not isinstance(array, (list, tuple)):
            continue                                   # not an array: the method names it
        try:
            array = array if hasattr(array, "dtype") else np.asarray(array)
        except ValueError:
            continue                                   # ragged: the method names it
        backend.check_param_dtype(array, name, f"method {method!r}")
        dtypes.append(fit_dtype(backend.dtype_of(array), method, supported,
                                f"init tensor `{name}`"))
    dtypes += [backend.fit_dtype(a, f"data tensor `{k}`", f"method {method!r}")
               for k, a in inputs.items()]
    return fit_dtype(np.result_type(*dtypes), method, supported)


def random_start(network, seed, dtype) -> dict:
    """``network.random(seed)`` in ``dtype``; for a complex dtype real and imaginary
    parts are independent Gaussians (seeds ``seed`` and ``seed + 1``), each scaled by
    ``1/sqrt 2`` so an entry's expected ``|z|^2`` is that of the real start.

    >>> import tnc
    >>> start = random_start(tnc.library("cp", I=3, J=4, K=5, R=2), 0, np.complex64)
    >>> start["A"].dtype, bool(np.all(start["A"].imag != 0))
    (dtype('complex64'), True)
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "c":
        return network.random(seed=seed, dtype=dtype)
    real = network.random(seed=seed)
    imag = network.random(seed=None if seed is None else seed + 1)
    return {k: ((real[k] + 1j * imag[k]) / np.sqrt(2.0)).astype(dtype) for k in real}


def balanced(tensors: dict) -> dict:
    """``tensors`` scaled to one Frobenius norm, their geometric mean (a product of
    tensors used once each keeps its value), as pyttb's ``gcp_opt`` balances its start
    (``normalize("all")``); GCP and NLS start so. An unbalanced start drifts further apart
    under L-BFGS-B: on COVID-19 serology at CP rank 4, Gaussian starts (factor norms
    about the square root of each size, 438 against 6) ended at relative errors
    0.56-0.66 with one factor's columns near 0 and the others near 200, against 0.4347
    from balanced starts and for ALS.

        >>> b = balanced({"A": np.full((4, 1), 1.0), "B": np.full((1, 1), 4.0)})
        >>> round(float(np.linalg.norm(b["A"])), 6), round(float(np.linalg.norm(b["B"])), 6)
        (2.828427, 2.828427)
    """
    norms = {k: float(np.linalg.norm(v)) for k, v in tensors.items()}
    if not norms or min(norms.values()) <= 0:
        return tensors
    target = math.exp(sum(math.log(n) for n in norms.values()) / len(norms))
    return {k: v * (target / norms[k]) for k, v in tensors.items()}


def real_dtype(dtype) -> np.dtype:
    """The real dtype of ``dtype``'s entries (float32 for complex64).

    >>> real_dtype(np.complex64).name, real_dtype(np.float64).name
    ('float32', 'float64')
    """
    return np.finfo(np.dtype(dtype)).dtype


def resolution(dtype) -> float:
    """The relative precision of ``dtype``'s entries (machine epsilon of its real part):
    a fit's loss ``||X||^2 - 2<X,M> + <M,M>`` in that dtype is known to about this times
    ``||X||^2``, so relative-error tests finer than it are floored at it.

    >>> resolution(np.float32) == float(np.finfo(np.float32).eps), resolution(np.complex128) < 1e-15
    (True, True)
    """
    return float(np.finfo(np.dtype(dtype)).eps)
