"""Elementwise losses between a model tensor ``m`` and data ``x``, in one registry.

A :class:`Loss` gives the value and the derivative (with respect to ``m``) of
``f(m, x)`` entry by entry; fitting sums it over the observed entries. The
GCP family (Hong, Kolda & Duersch 2020) is registered here: ``gaussian``,
``bernoulli_logit``, ``bernoulli_odds``, ``poisson``, ``poisson_log``,
``gamma``, ``rayleigh``, and the parametrised ``negative_binomial(r)``,
``huber(delta)`` and ``beta(b)``, spelled with their parameter
(``"huber(0.25)"``, the same in Python and on the command line). Each checks
its data's domain and says whether the model must be non-negative. A user
loss is a :class:`Loss` given to :func:`register_loss`; a parametrised family
is a factory given to :func:`register_loss_family`.

Backends and dtypes: ``value`` and ``derivative`` run on numpy, torch, jax and cupy
arrays (each array's own library; numpy arrays call numpy directly) and keep the
arrays' dtype. ``fused`` works on numpy arrays only (it writes in place). The
``gaussian`` loss takes complex data: its value is ``|m - x|^2`` and its derivative
``2 (m - x)``, which for complex ``m`` is ``df/dRe m + i df/dIm m`` (the
direction of steepest ascent; equal to ``2 conj(df/dm)`` in Wirtinger terms). That is
the derivative the reverse sweep expects: :meth:`tnc.Network.value_and_grad` feeds it
to the holomorphic sweep conjugated and conjugates the gradients, so what it returns
for a complex tensor ``T`` is ``dL/dRe T + i dL/dIm T`` and ``T - step * gradient``
descends (see :mod:`tnc.engine.grad`). The other losses are defined on real data and
refuse complex data by name. For example::

    >>> import numpy as np
    >>> gaussian = get_loss("gaussian")
    >>> gaussian.value(np.array([1.0, 2.0]), np.array([1.5, 2.0]))
    array([0.25, 0.  ])
    >>> get_loss("huber(0.5)").derivative(np.array([0.0, 3.0]), np.array([0.25, 0.0]))
    array([-0.5,  1. ])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from autoray import do

from tnc.engine.backend import dtype_name, to_numpy
from tnc.errors import TncError


@dataclass(frozen=True)
class Loss:
    """An elementwise loss ``f(m, x)`` with its derivative ``df/dm``.

    ``check_data(x)`` raises a :class:`TncError` naming the loss and the offending
    entries when ``x`` is outside the loss's domain; ``model_lower_bound`` is the
    smallest value the model may take (e.g. 0 for Poisson with identity link),
    None when unbounded. ``fused(m, x, value_out, derivative_out)`` (optional)
    writes both into preallocated arrays of ``m``'s shape without allocating
    temporaries of that size; full-gradient fits use it when present.
    ``homogeneous``: the degree ``p`` when ``f(c m, c x) = |c|**p f(m, x)`` for
    every ``c`` (2 for least squares), None otherwise; GCP divides such data
    by its scale before fitting, so its stopping tests are relative.
    """

    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]
    check_data: Callable[[np.ndarray], None] = lambda x: None
    model_lower_bound: float | None = None
    description: str = ""
    fused: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None] | None = None
    homogeneous: int | None = None


LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss, overwrite: bool = False) -> Loss:
    """Add ``loss`` to the registry under ``loss.name`` and return it."""
    if loss.name in LOSSES and not overwrite:
        raise TncError(f"a loss named `{loss.name}` is already registered; "
                       "pass overwrite=True to replace it")
    LOSSES[loss.name] = loss
    return loss


def get_loss(loss: str | Loss) -> Loss:
    """The registered loss of that name (a :class:`Loss` passes through).

    Parametrised losses are spelled with their parameter, the same in Python
    and on the command line: ``"huber(0.25)"``, ``"negative_binomial(r=5)"``,
    ``"beta(b=0.5)"`` (or built directly: ``tnc.fitting.losses.huber(0.25)``)::

        >>> get_loss("negative_binomial(r=5)").model_lower_bound
        0.0
    """
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str):
        raise TncError(f"loss must be a name or a tnc.Loss, got {type(loss).__name__}")
    name, args = _split_call(loss)
    if args is None and name in LOSSES:
        return LOSSES[name]
    if name in FAMILIES:
        return _call_family(name, args)
    raise TncError(f"unknown loss {loss!r}; registered losses: " + ", ".join(
        sorted(LOSSES) + [_family_usage(f) for f in sorted(FAMILIES)]))


def _split_call(text: str) -> tuple[str, str | None]:
    """``"huber(0.25)"`` -> ``("huber", "0.25")``; ``"poisson"`` -> ``("poisson", None)``."""
    text = text.strip()
    if text.endswith(")") and "(" in text:
        name, _, args = text[:-1].partition("(")
        return name.strip(), args
    return text, None


def _call_family(name: str, args: str | None) -> Loss:
    import inspect
    factory = FAMILIES[name]
    if args is None or not args.strip():
        raise TncError(f"loss {name!r} needs its parameter: write "
                       f"{_family_usage(name)!r}, e.g. {name}(1.5)")
    positional, keywords = [], {}
    try:
        for part in args.split(","):
            key, sep, value = part.rpartition("=")
            if sep:
                keywords[key.strip()] = float(value)
            else:
                positional.append(float(value))
        inspect.signature(factory).bind(*positional, **keywords)
    except (ValueError, TypeError) as error:
        raise TncError(f"cannot read the parameters of loss {name!r} from {args!r} "
                       f"({error}); write {_family_usage(name)!r}") from None
    return factory(*positional, **keywords)


def _family_usage(name: str) -> str:
    import inspect
    return f"{name}({', '.join(inspect.signature(FAMILIES[name]).parameters)})"


def offending_entries(bad: np.ndarray, x: np.ndarray, limit: int = 5, coords=None) -> str:
    """``"(0, 3)=-1.0, (2, 1)=-4.0 and 7 more"`` for the first entries where ``bad``.

    ``coords`` (``(len(x), ndim)``) names the entries of a 1-d ``x`` of sparse
    values by their coordinates in the full tensor.
    """
    where = np.argwhere(bad)
    if coords is None:
        shown = ", ".join(f"{tuple(int(i) for i in w)}={x[tuple(w)].item()!r}"
                          for w in where[:limit])
    else:
        shown = ", ".join(f"{tuple(int(i) for i in coords[w[0]])}={x[w[0]].item()!r}"
                          for w in where[:limit])
    more = len(where) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def require_finite(x: np.ndarray, name: str) -> None:
    x = to_numpy(x)
    bad = ~np.isfinite(x)
    if bad.any():
        raise TncError(f"{name}: data has non-finite entries {offending_entries(bad, x)}; "
                       "mark missing entries with a mask")


# -- elementwise functions on any array library (numpy called directly) -------------------
def _elementwise(name: str):
    numpy_function = getattr(np, name)

    def apply(x):
        if isinstance(x, (np.ndarray, np.generic, float, int)):
            return numpy_function(x)
        return do(name, x)
    apply.__name__ = f"_{name}"
    return apply


_log, _log1p, _exp, _abs = (_elementwise(n) for n in ("log", "log1p", "exp", "abs"))


def _where(condition, a, b):
    return np.where(condition, a, b) if isinstance(condition, (np.ndarray, np.generic, bool)) \
        else do("where", condition, a, b)


def _softplus(m):
    """``log(1 + e^m)`` without overflow."""
    if isinstance(m, (np.ndarray, np.generic, float, int)):
        return np.logaddexp(0.0, m)
    a = _abs(m)
    return (m + a) / 2 + _log1p(_exp(-a))


def _squared_distance(m, x):
    """``|m - x|^2``: the square for real arrays, ``Re^2 + Im^2`` for complex ones.

        >>> _squared_distance(np.array([1 + 2j]), np.array([0j])).tolist()
        [5.0]
    """
    d = m - x
    if dtype_name(d).startswith("complex"):
        return d.real ** 2 + d.imag ** 2
    return d ** 2


register_loss(Loss(
    "gaussian",
    value=_squared_distance,
    derivative=lambda m, x: 2.0 * (m - x),
    check_data=lambda x: require_finite(x, "loss 'gaussian'"),
    description="least squares, |m - x|^2: real or complex data with Gaussian noise",
    homogeneous=2,
))


# -- the GCP family (Hong, Kolda & Duersch 2020; the formulas of pyttb's gcp handles) -----
EPS = 1e-10     # keeps log(m) and x / m finite at m = 0


def domain_check(loss_name: str, requirement: str, bad: Callable[[np.ndarray], np.ndarray]):
    """A ``check_data(x, coords=None)`` raising a TncError on the entries where ``bad(x)``.

        >>> check = domain_check("poisson", "non-negative integer counts", lambda x: x < 0)
        >>> check(np.array([[1.0, -2.0]]))
        Traceback (most recent call last):
        ...
        tnc.errors.TncError: loss 'poisson' needs non-negative integer counts; 1 data entry is not: (0, 1)=-2.0
    """
    def check(x, coords=None) -> None:
        x = to_numpy(x)
        if x.dtype.kind == "c":
            raise TncError(f"loss {loss_name!r} needs {requirement}, not complex data of "
                           f"dtype {x.dtype.name}; complex data fit with the 'gaussian' loss")
        with np.errstate(invalid="ignore"):
            wrong = ~np.isfinite(x) | bad(x)
        if wrong.any():
            count = int(wrong.sum())
            raise TncError(f"loss {loss_name!r} needs {requirement}; {count} data "
                           f"{'entry is' if count == 1 else 'entries are'} not: "
                           + offending_entries(wrong, x, coords=coords))
    check.accepts_coords = True
    return check


def _not_binary(x):
    return (x != 0) & (x != 1)


def _not_count(x):
    return (x < 0) | (x != np.floor(x))


def _not_positive(x):
    return ~(x > 0)


def _not_nonnegative(x):
    return ~(x >= 0)


BINARY = ("binary data (0 or 1)", _not_binary)
COUNTS = ("non-negative integer counts", _not_count)
POSITIVE = ("positive data (x > 0)", _not_positive)
NONNEGATIVE = ("non-negative data (x >= 0)", _not_nonnegative)


def gcp_loss(name: str, value, derivative, domain, lower_bound=None, description="",
             fused=None) -> Loss:
    """A :class:`Loss` whose ``check_data`` enforces ``domain`` (requirement, bad-entry test)."""
    return Loss(name, value, derivative, domain_check(name, *domain), lower_bound, description,
                fused)


# In-place versions: fitting calls them once per gradient on the whole tensor, where
# fresh temporaries (page faults) cost more than the arithmetic. ``v`` and ``d`` are
# the outputs, used as scratch on the way.
def _poisson_fused(m, x, v, d):
    np.add(m, EPS, out=v)
    np.divide(x, v, out=d)
    np.subtract(1.0, d, out=d)
    np.log(v, out=v)
    v *= x
    np.subtract(m, v, out=v)


def _poisson_log_fused(m, x, v, d):
    np.exp(m, out=d)
    np.multiply(x, m, out=v)
    np.subtract(d, v, out=v)
    d -= x


def _bernoulli_logit_fused(m, x, v, d):
    from scipy.special import expit
    np.multiply(x, m, out=d)
    np.logaddexp(0.0, m, out=v)
    v -= d
    expit(m, out=d)
    d -= x


def _bernoulli_odds_fused(m, x, v, d):
    np.add(m, 1.0, out=d)
    np.reciprocal(d, out=d)                 # 1 / (m + 1)
    np.add(m, EPS, out=v)
    np.divide(x, v, out=v)                  # x / (m + eps)
    d -= v
    np.add(m, EPS, out=v)
    np.log(v, out=v)
    v *= x
    np.subtract(np.log1p(m), v, out=v)


def _gamma_fused(m, x, v, d):
    np.add(m, EPS, out=d)
    np.divide(x, d, out=v)                  # x / (m + eps)
    np.log(d, out=d)
    v += d                                  # value
    np.add(m, EPS, out=d)
    np.reciprocal(d, out=d)                 # 1 / (m + eps)
    np.subtract(d, x * d * d, out=d)


def _expit(m):
    """``1 / (1 + exp(-m))`` without overflow."""
    e = _exp(-_abs(m))
    return _where(m >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


for _loss in (
    gcp_loss("bernoulli_logit", lambda m, x: _softplus(m) - x * m,
             lambda m, x: _expit(m) - x, BINARY, None,
             "binary data, log-odds link: log(1 + e^m) - x m", _bernoulli_logit_fused),
    gcp_loss("bernoulli_odds", lambda m, x: _log1p(m) - x * _log(m + EPS),
             lambda m, x: 1.0 / (m + 1.0) - x / (m + EPS), BINARY, 0.0,
             "binary data, odds link (m >= 0): log(m + 1) - x log(m)", _bernoulli_odds_fused),
    gcp_loss("poisson", lambda m, x: m - x * _log(m + EPS),
             lambda m, x: 1.0 - x / (m + EPS), COUNTS, 0.0,
             "counts, identity link (m >= 0): m - x log(m)", _poisson_fused),
    gcp_loss("poisson_log", lambda m, x: _exp(m) - x * m,
             lambda m, x: _exp(m) - x, COUNTS, None,
             "counts, log link: e^m - x m", _poisson_log_fused),
    gcp_loss("gamma", lambda m, x: x / (m + EPS) + _log(m + EPS),
             lambda m, x: 1.0 / (m + EPS) - x / (m + EPS) ** 2, POSITIVE, 0.0,
             "positive measurements, gamma with fixed shape (m >= 0): x / m + log(m)",
             _gamma_fused),
    gcp_loss("rayleigh",
             lambda m, x: 2.0 * _log(m + EPS) + (np.pi / 4) * (x / (m + EPS)) ** 2,
             lambda m, x: 2.0 / (m + EPS) - (np.pi / 2) * x ** 2 / (m + EPS) ** 3,
             POSITIVE, 0.0, "positive amplitudes (m >= 0): 2 log(m) + (pi/4) (x / m)^2"),
):
    register_loss(_loss)


# -- parametrised losses: factories, spelled "name(value)" or "name(param=value)" -----------
FAMILIES: dict[str, Callable[..., Loss]] = {}


def register_loss_family(name: str, factory: Callable[..., Loss]) -> None:
    """Make ``get_loss("name(...)")`` call ``factory(...)`` (float arguments)."""
    FAMILIES[name] = factory


def negative_binomial(r: float) -> Loss:
    """Counts with overdispersion, ``r`` failures, odds link (m >= 0).

    ``(r + x) log(1 + m) - x log(m)``::

        >>> negative_binomial(5).name
        'negative_binomial(5)'
    """
    r = _positive_param("negative_binomial", "r", r)
    return gcp_loss(f"negative_binomial({r:g})",
                    lambda m, x: (r + x) * _log1p(m) - x * _log(m + EPS),
                    lambda m, x: (r + x) / (1.0 + m) - x / (m + EPS), COUNTS, 0.0,
                    f"overdispersed counts, r = {r:g}: (r + x) log(1 + m) - x log(m)")


def huber(delta: float) -> Loss:
    """Robust least squares: ``(m - x)^2`` within ``delta``, linear beyond.

        >>> huber(0.5).value(np.array([0.0, 3.0]), np.array([0.25, 0.0]))
        array([0.0625, 2.75  ])
    """
    delta = _positive_param("huber", "delta", delta)

    def value(m, x):
        d = _abs(m - x)
        return _where(d < delta, d ** 2, 2.0 * delta * d - delta ** 2)

    return gcp_loss(f"huber({delta:g})", value,
                    lambda m, x: 2.0 * (m - x).clip(-delta, delta),
                    ("finite data", lambda x: np.zeros(x.shape, bool)), None,
                    f"robust least squares, quadratic within {delta:g} of the data")


def beta(b: float) -> Loss:
    """Beta divergence (m >= 0): ``m^b / b - x m^(b-1) / (b - 1)``, for b not 0 or 1.

        >>> beta(0.5).name
        'beta(0.5)'
    """
    b = float(b)
    if b in (0.0, 1.0) or not np.isfinite(b):
        raise TncError(f"loss 'beta' needs b other than 0 and 1 (b -> 1 is the Poisson "
                       f"loss, b = 2 least squares), got b={b:g}")
    return gcp_loss(f"beta({b:g})",
                    lambda m, x: (m + EPS) ** b / b - x * (m + EPS) ** (b - 1) / (b - 1),
                    lambda m, x: (m + EPS) ** (b - 1) - x * (m + EPS) ** (b - 2),
                    NONNEGATIVE, 0.0, f"beta divergence, b = {b:g}")


def _positive_param(loss: str, param: str, value) -> float:
    value = float(value)
    if not value > 0 or not np.isfinite(value):
        raise TncError(f"loss {loss!r} needs {param} > 0, got {param}={value:g}")
    return value


register_loss_family("negative_binomial", negative_binomial)
register_loss_family("huber", huber)
register_loss_family("beta", beta)
