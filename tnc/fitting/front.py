"""``tnc.fit``: one entry point for every fitting method, and the data checks they share.

A method registers a function ``run(problem, options) -> FitResult`` and the
dataclass of its options; :func:`fit` compiles the model (taking open sizes
from the data), checks the data and the options, and calls it::

    >>> _load_methods()                    # each method registers when its module loads
    >>> sorted(METHODS)
    ['als', 'dmrg', 'gcp', 'nls']
    >>> METHODS["als"].options.__name__, METHODS["gcp"].sparse
    ('ALSOptions', True)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tnc.lang import ast
from tnc.engine import kernels
from tnc.lang.compiler import compile as compile_text, pick_named, read_source
from tnc.errors import TncError, TncSemanticError
from tnc.engine.network import Network
from tnc.options import validated
from tnc.lang.parser import parse
from tnc.engine.plan import memory_budget
from tnc.fitting import degenerate
from tnc.fitting.backends import (boundary_arrays, foreign, to_library, to_numpy_call,
                                  within)
from tnc.fitting.dtypes import COMPLEX, REAL, fit_dtype, promoted  # noqa: F401 (methods' dtypes)
from tnc.fitting.records import FIT_ALIASES, given_once, renamed, spelled
from tnc.fitting.rescale import Rescale
from tnc.engine.sparse import SparseTensor, as_sparse

@dataclass
class FitProblem:
    """What a method fits: ``network``'s output to ``target`` where ``mask`` is True.

    ``target`` has the network's output shape with missing entries set to 0;
    ``mask`` is None when every entry is observed; ``inputs`` holds the
    network's data tensors (never changed). The parameter tensors a fit holds
    are checked against ``memory_limit`` (bytes, ``"auto"`` or None, as in
    :meth:`Network.contract`) when the problem is made, before any method
    allocates them.
    """

    network: Network
    target: np.ndarray
    mask: np.ndarray | None
    inputs: dict[str, np.ndarray]
    memory_limit: object = "auto"
    squares: float | None = None     # sum |target|^2 when the data's check computed it

    def __post_init__(self):
        self.network.check_arrays_fit(self.network.params, "parameter tensors",
                                      self.memory_limit)

    @property
    def dtype(self) -> np.dtype:
        """The dtype the fit runs in (the data's: :mod:`tnc.fitting.dtypes`)."""
        values = getattr(self.target, "values", self.target)     # a SparseTensor's values
        return np.asarray(values).dtype

    @property
    def observed(self) -> int:
        return self.target.size if self.mask is None else int(self.mask.sum())


@dataclass(frozen=True)
class Method:
    name: str
    options: type
    run: Callable[[FitProblem, object], object]
    sparse: bool = False        # accepts a tnc.SparseTensor target (FitProblem.target)
    dtypes: tuple | None = None  # dtypes fitted as given; None: float64 only (see fit_dtype)


METHODS: dict[str, Method] = {}


def register_method(name: str, options: type, run: Callable, sparse: bool = False,
                    dtypes: tuple | None = None) -> None:
    """Make ``tnc.fit(..., method=name, **options)`` call ``run(problem, options(**options))``.

    ``sparse=True``: the method also takes sparse data, passed through untouched
    as a :class:`tnc.engine.sparse.SparseTensor` in ``problem.target`` (mask None).
    ``dtypes``: the dtype names the method fits in as given (e.g. ``REAL + COMPLEX``);
    None (a method that has not declared its own): every real dtype is fitted in float64
    and complex data is refused (:func:`fit_dtype`).
    """
    METHODS[name] = Method(name, options, run, sparse, dtypes)


def make_options(method: Method, options: dict, spelling: dict | None = None):
    """``method``'s options dataclass built from ``options`` after checking each one's
    name, type and range (see :mod:`tnc.options`: ranges go in the fields' ``metadata``);
    ``spelling``: option -> the old name the caller used, for the messages."""
    return validated(method.options, options, f"method {method.name!r}", spelling)


def fit(model, data=None, method: str = "als", *, mask=None, inputs=None, name=None,
        sizes=None, memory_limit="auto", **options):
    """Fit a network to data and return a :class:`~tnc.fitting.result.FitResult`.

    ``model``: a :class:`Network`, tnc text or a ``.tn`` path (its open size
    parameters are then read off ``data``'s shape). ``mask``: boolean array,
    True where observed, or ``"nan"`` to treat NaN entries as missing; the
    entries of a :class:`numpy.ma.MaskedArray` that its mask hides are missing
    too (combined with ``mask`` by AND). An unobserved entry, NaN or finite,
    never influences the fit, and every reported error is over the observed
    entries only. Fits are scale-equivariant: ``c * X`` gives ``c`` times the
    fit of ``X`` (least-squares methods run on the data rescaled to unit RMS,
    :func:`run_at_unit_scale`; GCP rescales its homogeneous losses itself and
    fits the others, e.g. Poisson or Bernoulli, as given).
    ``inputs``: the network's data tensors. Other keywords are the method's
    options (see ``tnc.fit_options(method)``). Sparse data (a
    :class:`tnc.SparseTensor` or a pydata ``sparse`` array) goes to methods
    that take it (``"gcp"``, and ``"als"``: CP on a compiled MTTKRP, any other network
    on products over the nonzeros, :mod:`tnc.fitting.sparse_network`) without ever
    being made dense. ``memory_limit``
    (bytes, ``"auto"`` or None) bounds every allocation the fit checks (the
    parameter tensors, contraction intermediates, ...).
    dtypes (:mod:`tnc.fitting.dtypes`): float32 data is fitted in float32 and complex
    data in complex where the method fits it (else a TncError naming the dtype and the
    method); integer and boolean data in float64; ``init`` and ``inputs`` tensors join
    by numpy's promotion rules (float32 data with a float64 start: float64; integer
    starting tensors: an error). torch, jax and cupy arrays come back as tensors of their
    library, device and dtype (a tensor that requires grad is fitted on its detached
    value); ALS and GCP's Adam run natively on torch and jax arrays under ``backend=``
    (``"auto"``: natively on a GPU, on the numpy values on a CPU, where that was
    measured faster; ``"native"``; ``"numpy"``), every other method on the numpy values
    (:mod:`tnc.fitting.backends`).
    Every method's result fills ``rel_error``, ``iterations``, ``converged`` and
    ``history`` alike (:mod:`tnc.fitting.records`); ``target=`` and
    ``max_sweeps=`` are the old names of ``data`` and ``max_iter`` (deprecated).
    """
    spelling = spelled(options, FIT_ALIASES)
    options = renamed(options, "tnc.fit", FIT_ALIASES)
    data = given_once(data, options, "data", "tnc.fit")
    if data is None:
        raise TncError("tnc.fit: no data given (tnc.fit(model, data, ...))")
    like = foreign(boundary_arrays(data, mask, inputs, options))   # torch, jax, cupy
    if like is not None:
        data, mask, inputs, options = to_numpy_call(data, mask, inputs, options)
    with memory_budget(memory_limit), within(like):   # within: native ALS's policy
        result = _fit(model, data, method, mask, inputs, name, sizes, memory_limit, options,
                      spelling)
    degenerate.record(result)         # cancelling CP terms: named, and warned about
    return result if like is None else to_library(result, like)


def _fit(model, target, method, mask, inputs, name, sizes, memory_limit, options, spelling):
    """:func:`fit` after its keywords are renamed."""
    _load_methods()
    if method not in METHODS:
        raise TncError(f"unknown fitting method {method!r}; available: "
                       + ", ".join(sorted(METHODS)))
    chosen = METHODS[method]
    from tnc.engine.blocks import out_of_core_kind
    if out_of_core_kind(target) is not None:   # memmap, zarr, h5py, dask: streamed in blocks
        from tnc.fitting import streamed
        return streamed.fit(chosen, model, target, mask, inputs, name, sizes, memory_limit,
                            options, spelling)
    sparse = as_sparse(target)
    if sparse is not None:
        return _fit_sparse(chosen, model, sparse, mask, inputs, name, sizes,
                           make_options(chosen, options, spelling), memory_limit)
    target, mask = with_array_mask(target, mask)
    target = as_target(target, chosen)
    network = model_for_data(model, target.shape, name=name, **(sizes or {}))
    inputs = check_inputs(network, inputs, keep_dtype=True)
    options = make_options(chosen, options, spelling)
    dtype = promoted(target.dtype, getattr(options, "init", None), inputs, chosen.name,
                     chosen.dtypes)
    inputs = {k: v.astype(dtype, copy=False) for k, v in inputs.items()}
    target, mask, squares = checked_target(target.astype(dtype, copy=False), mask)
    problem = FitProblem(network, target, mask, inputs, memory_limit, squares)
    with kernels.blas_serial(problem.target):   # small data: serial BLAS (kernels.py says why)
        return run_at_unit_scale(chosen, problem, options)


def run_at_unit_scale(chosen: Method, problem: FitProblem, options):
    """``chosen.run``, for a least-squares method (its options class says
    ``least_squares = True``) on the data rescaled to unit RMS and the result scaled
    back (:mod:`tnc.fitting.rescale`), so fitting ``c * X`` gives ``c`` times the fit of ``X``.
    Other methods run as given (GCP scales its homogeneous losses itself)."""
    if not getattr(chosen.options, "least_squares", False):
        return chosen.run(problem, options)
    rescale = Rescale.of([problem.network], [problem.target], problem.observed,
                         squares=problem.squares)
    if rescale.identity:
        return chosen.run(problem, options)
    scaled = FitProblem(problem.network, rescale.data(problem.target), problem.mask,
                        problem.inputs, problem.memory_limit)
    return rescale.result(chosen.run(scaled, rescale.options(options,
                                                              problem.network.params)))


def _fit_sparse(chosen: Method, model, data, mask, inputs, name, sizes, options,
                memory_limit):
    """``fit`` for sparse data: sizes read off its shape, the data passed on as is."""
    if not chosen.sparse:
        sparse_methods = ", ".join(sorted(m for m in METHODS if METHODS[m].sparse))
        raise TncError(f"method {chosen.name!r} needs dense data; use a method that takes "
                       f"sparse data ({sparse_methods}) or pass data.to_dense()")
    if mask is not None:
        raise TncError("sparse data takes no mask: every entry not listed is an observed zero")
    check_finite(data.values, "the sparse data", "; a value not listed is an observed zero, "
                 "so leave missing entries out only where zero is right, else fit dense data "
                 "with a mask")
    network = model_for_data(model, data.shape, name=name, **(sizes or {}))
    problem = FitProblem(network, data, None, check_inputs(network, inputs), memory_limit)
    return chosen.run(problem, options)


def observed_rel_error(problem: FitProblem, tensors: dict) -> float | None:
    """``||W (X - M)|| / ||W X||``: the model ``M`` of ``tensors`` against the data ``X``
    over the observed entries (``W``: ``problem.mask``, or every entry), the figure every
    method reports; None when the dense model would not fit ``problem.memory_limit``.

    For a :class:`SparseTensor` every entry is observed, and the error comes from
    ``||M||^2 - 2 <X, M> + ||X||^2`` without making the data dense.

        >>> import tnc
        >>> net = tnc.library("cp", I=3, J=4, K=5, R=2)
        >>> tensors = net.random(seed=0)
        >>> x = net.contract(tensors)
        >>> observed_rel_error(FitProblem(net, 2 * x, None, {}), tensors)
        0.5
    """
    from tnc.errors import MemoryLimitError
    target = problem.target
    try:
        model = problem.network.contract({**tensors, **problem.inputs},
                                         memory_limit=problem.memory_limit)
    except MemoryLimitError:
        return None
    if isinstance(target, SparseTensor):
        xx = float(target.values @ target.values)
        cross = float(target.values @ model[tuple(target.coords.T)])
        error2, norm2 = max(float(np.vdot(model, model).real) - 2 * cross + xx, 0.0), xx
    else:
        residual = target - model if problem.mask is None else (target - model)[problem.mask]
        observed = target if problem.mask is None else target[problem.mask]
        error2, norm2 = squared_norm(residual), squared_norm(observed)
    return math.sqrt(error2 / norm2) if norm2 > 0 else math.sqrt(error2)


def squared_norm(array) -> float:
    """``sum |a|^2`` of a real or complex array as a float; float32 and complex64 entries
    are summed in rows of ``ROW`` in their own dtype and the rows' sums in float64 (one
    pass, no float64 copy; a float32 sum over millions of entries would lose digits).

    >>> squared_norm(np.array([3.0, 4.0j])), squared_norm(np.ones(5000, np.float32))
    (25.0, 5000.0)
    """
    array = np.asarray(array).reshape(-1)
    if array.dtype not in (np.float32, np.complex64):
        return float(np.vdot(array, array).real)
    flat = array.view(np.float32) if array.dtype == np.complex64 else array
    whole = flat.size // ROW * ROW
    rows = flat[:whole].reshape(-1, ROW)
    total = np.einsum("ij,ij->i", rows, rows).sum(dtype=np.float64)
    tail = flat[whole:].astype(np.float64)
    return float(total + tail @ tail)


ROW = 1024   # float32 entries summed in their own dtype before the float64 sum


def fit_options(method: str):
    """The options dataclass of a method, to read its fields and defaults."""
    _load_methods()
    if method not in METHODS:
        raise TncError(f"unknown fitting method {method!r}")
    return METHODS[method].options


def _load_methods() -> None:
    """Import the modules that register methods (kept lazy to keep ``import tnc`` quick)."""
    import importlib
    for module in ("tnc.fitting.als", "tnc.fitting.gcp", "tnc.fitting.nls", "tnc.mps.dmrg"):
        importlib.import_module(module)


def with_array_mask(target, mask):
    """``(data, mask)`` with a :class:`numpy.ma.MaskedArray`'s mask folded into ``mask``.

    Its masked entries are unobserved: ``mask`` becomes ``~numpy.ma.getmaskarray(target)``,
    combined by AND with a boolean ``mask`` (or with ``~isnan`` for ``mask="nan"``).
    Other data come back unchanged (``split_missing`` checks the mask).
    """
    if not isinstance(target, np.ma.MaskedArray):
        return target, mask
    observed, data = ~np.ma.getmaskarray(target), np.ma.getdata(target)
    if mask is None:
        return data, observed
    if isinstance(mask, str):
        return data, (observed & ~np.isnan(as_target(data)) if mask == "nan" else mask)
    explicit = np.asarray(mask)
    if explicit.shape != observed.shape or explicit.dtype != bool:
        return data, mask                            # split_missing names the fault
    return data, observed & explicit


def refuse_masked(data, what: str = "data") -> None:
    """Raise when ``data`` is a :class:`numpy.ma.MaskedArray` hiding entries: a function
    without masks must not fit the values under its mask silently."""
    if np.ma.is_masked(data):
        raise TncError(f"{what} is a numpy masked array hiding {int(np.ma.count_masked(data))} "
                       "entries, and this function takes no mask; pass data.filled(...) or "
                       "use a method that takes one (tnc.fit(..., mask=...))")


def as_target(target, method: Method | None = None) -> np.ndarray:
    """``target`` as an array after checking it is numeric data (a masked array hiding
    entries is refused: :func:`fit` folds its mask in first): float64 and real without a
    ``method``, else in the dtype ``method`` fits it in (:mod:`tnc.fitting.dtypes`)."""
    refuse_masked(target)
    if method is None:
        return real_array(target, "data")
    array = numeric_array(target, "data", numeric=False)     # fit_dtype names the method
    return array.astype(fit_dtype(array.dtype, method.name, method.dtypes), copy=False)


def real_array(value, what: str) -> np.ndarray:
    """``value`` as a float64 array, or a :class:`TncError` naming ``what`` when it is
    not an array of real numbers (a string, ragged nested lists, complex or object data)."""
    array = numeric_array(value, what)
    if np.iscomplexobj(array):
        raise TncError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def numeric_array(value, what: str, numeric: bool = True) -> np.ndarray:
    """``value`` as a numpy array of its own dtype (a torch tensor's detached value), or a
    :class:`TncError` naming ``what`` when it is not an array (a string, ragged nested
    lists) or, with ``numeric``, not numeric (object data)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__array__") and not isinstance(
            value, (list, tuple)):
        raise TncError(f"{what} must be an array, got {type(value).__name__}")
    if hasattr(value, "detach"):                 # a torch tensor, perhaps requiring grad
        value = value.detach().cpu()
    try:
        array = np.asarray(value)
    except ValueError:
        raise TncError(f"{what} must be an array, got nested sequences of unequal lengths "
                       "(ragged)") from None
    if numeric and not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise TncError(f"{what} must be a numeric array, got dtype {array.dtype}")
    return array


def split_missing(target: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray | None]:
    """``(target with every unobserved entry zeroed, mask or None)`` after checking both.

    Zeroing here, once, means no method ever sees an unobserved value (NaN, inf
    or a finite outlier): each fits the same data whatever the mask hides.
    """
    return checked_target(target, mask)[:2]


def checked_target(target: np.ndarray, mask) -> tuple:
    """:func:`split_missing`'s ``(target, mask)`` and the target's sum of squares when the
    check computed it, else None. Complete data take one pass, the sum itself: it is
    finite exactly when every entry is (a NaN or an infinity makes it NaN or inf; an
    overflowing sum of finite entries goes the long way), and the rescale and ALS reuse it.

        >>> checked_target(np.array([3.0, 4.0]), None)[2]
        25.0
    """
    if mask is None:
        squares = squared_norm(target)
        if math.isfinite(squares):
            return target, None, squares              # the common case: one pass
    return (*_split_missing(target, mask), None)


def _split_missing(target: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray | None]:
    nan = np.isnan(target)
    if isinstance(mask, str):
        if mask != "nan":
            raise TncError(f"mask must be a boolean array or 'nan', got {mask!r}")
        mask = ~nan
    elif mask is not None:
        mask = np.asarray(mask)
        if mask.shape != target.shape:
            raise TncError(f"mask has shape {mask.shape} but the data has shape {target.shape}")
        if mask.dtype != bool:
            raise TncError(f"mask must be boolean (True = observed), got dtype {mask.dtype}")
    if mask is None:
        if nan.any():
            raise TncError(f"the data has {int(nan.sum())} NaN entries; to treat them as "
                           "missing pass mask='nan' (or a boolean mask, True = observed; "
                           "on the command line --mask nan)")
    else:
        hidden_nan = nan & mask
        if hidden_nan.any():
            raise TncError(f"the data has {int(hidden_nan.sum())} NaN entries where the mask "
                           "says observed")
        if not mask.any():
            raise TncError("the mask hides every entry; nothing to fit")
        if mask.all():
            mask = None
    infinite = np.isinf(target) if mask is None else np.isinf(target) & mask
    if infinite.any():
        raise TncError(f"the data has {int(infinite.sum())} infinite entries"
                       + (" where the mask says observed" if mask is not None else ""))
    if mask is not None:
        return np.where(mask, target, 0.0), mask     # no unobserved value reaches a method
    return (np.where(nan, 0.0, target) if nan.any() else target), None


def check_inputs(network: Network, inputs, keep_dtype: bool = False) -> dict[str, np.ndarray]:
    """The network's data tensors, ``inputs`` (name -> array), as float64 arrays (of
    their own dtype with ``keep_dtype``, integers as float64) after checking their
    names, shapes and values (real unless ``keep_dtype``, and finite)."""
    if inputs is not None and not isinstance(inputs, Mapping):
        raise TncError(f"inputs must be a dict data tensor name -> array, got "
                       f"{type(inputs).__name__}")
    inputs = dict(inputs or {})
    missing = [k for k in network.data if k not in inputs]
    unknown = [k for k in inputs if k not in network.data]
    if missing or unknown:
        raise TncError(f"network `{network.name}` takes data tensors "
                       f"{', '.join(network.data) or 'none'} as inputs=...; "
                       + (f"missing {', '.join(missing)}" if missing else "")
                       + ("; " if missing and unknown else "")
                       + (f"unknown {', '.join(unknown)}" if unknown else ""))
    arrays = {k: _input_array(v, f"data tensor `{k}` (inputs=)", keep_dtype)
              for k, v in inputs.items()}
    network.check_tensors(arrays, required=network.data)
    for name, array in arrays.items():
        check_finite(array, f"data tensor `{name}` (inputs=)")
    return arrays


def _input_array(value, what: str, keep_dtype: bool) -> np.ndarray:
    if not keep_dtype:
        return real_array(value, what)
    array = numeric_array(value, what)
    return array.astype(np.float64) if array.dtype.kind in "biu" else array


def check_finite(array: np.ndarray, what: str, hint: str = "") -> None:
    """Raise a :class:`TncError` naming ``what`` when ``array`` has NaN or infinite entries
    (a start, a data tensor, a Hamiltonian: the fit would carry them into every tensor)."""
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise TncError(f"{what} has {bad} NaN or infinite entries{hint}")


def model_for_data(model, shape: tuple[int, ...], name=None, **sizes) -> Network:
    """The network to fit, its output sizes read off the data's ``shape``.

    Pinned sizes are never overridden: those passed in ``sizes`` and, for a
    :class:`Network`, those given explicitly when it was compiled
    (:attr:`Network.pinned_sizes`); a shape they do not give is an error naming
    both shapes. Every other size parameter that sets an output index's size is
    read off the data (a Network's header defaults included); the rest keep
    their values.
    """
    if 0 in tuple(shape):
        raise TncError(f"the data has shape {tuple(shape)}, with an empty dimension: "
                       "nothing to fit")
    if isinstance(model, Network):
        if model.source is None or (not sizes and name in (None, model.name)
                                    and model.output_shape == tuple(shape)):
            return _checked_shape(model, shape)     # already fits: no recompiling
        text, filename, name, defaults = model.source, model.filename, model.name, model.sizes
        sizes = {**model.pinned_sizes, **sizes}
    else:
        (text, filename), defaults = read_source(model), {}
    definition = _pick(parse(text, filename), name)
    bound = _sizes_from_shape(text, filename, definition, shape, sizes, defaults)
    network = compile_text(text, name=definition.name, filename=filename, pinned=sizes, **bound)
    return _checked_shape(network, shape)


def _checked_shape(network: Network, shape) -> Network:
    if len(network.output_shape) != len(shape):
        raise TncError(f"network `{network.name}` has {len(network.output_shape)} output legs "
                       f"(shape {network.output_shape}) but the data has {len(shape)} "
                       f"dimensions (shape {tuple(shape)})")
    if network.output_shape != tuple(shape):
        pinned = ", ".join(f"{k}={v}" for k, v in network.pinned_sizes.items())
        raise TncError(f"network `{network.name}` has output shape {network.output_shape} "
                       f"but the data has shape {tuple(shape)}; "
                       + (f"its sizes {pinned} are pinned (given explicitly) and never read "
                          "off the data: compile it without them, or pass other sizes"
                          if pinned else "change the sizes (" + ", ".join(
                              f"{k}={v}" for k, v in network.sizes.items()) + ")"))
    return network


def _sizes_from_shape(text, filename, definition, shape, given, defaults) -> dict[str, int]:
    """Size parameters for ``definition``: ``given``, then solved from ``shape`` (the
    output legs' size expressions, :func:`tnc.lang.sizes.solve_sizes`), then defaults;
    nothing is compiled here."""
    from tnc.lang.sizes import solve_sizes
    try:
        read = solve_sizes(definition, shape, given, defaults)
    except TncSemanticError as error:       # a mistake in the model: located in its text
        raise error.located(text, filename) from None
    params = {p.name for p in definition.params}
    return {**{k: v for k, v in defaults.items() if k in params}, **given, **read}


def _pick(module: ast.Module, name) -> ast.NetworkDef:
    return pick_named({n.name: n for n in module.networks}, name, "network")
