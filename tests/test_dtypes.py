"""The dtype policy of every fitting method, in ONE table, so the methods cannot drift apart.

Each row of :data:`METHODS` fits one small planted model by one method. Every test
below runs over every row:

* the result's tensors have the input dtype (for each dtype the row fits as given);
* a float32 fit reaches the float64 fit's error (relative ``row.close``);
* integer data are fitted in float64; integer starting tensors are a TncError naming
  the tensor; float16 and object data are a TncError naming the dtype and the method;
* complex data are fitted (error near the planted noise) where the row says so, else a
  TncError names the method and the dtype.

To add a method: append a :class:`Row` (``fit(data, init=None)`` returns the method's
result; ``tensors(result)`` its parameter tensors, default ``result.tensors``;
``dtypes`` the dtypes it fits as given; ``fitted_in`` the dtype other real data is
fitted in when it does not keep them (``None``: it keeps every dtype of ``dtypes``);
``takes_init=False`` when it has no starting tensors; ``shape`` and ``rank`` of the
planted CP data if the default does not suit it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import tnc
from tnc.errors import TncError

REAL = ("float32", "float64")
COMPLEX = ("complex64", "complex128")
NOISE = 0.05          # planted data: rank-R CP plus this much relative Gaussian noise


def cp(shape, rank, **kw):
    return tnc.library("cp", I=shape[0], J=shape[1], K=shape[2], R=rank)


def coupled_fit(data, init=None, **kw):
    """A coupled model of one CP term fitted by ALS through tnc.fit_model."""
    text = ("network X(I = 2, J = 2, K = 2, R = 2) { index i: I, j: J, k: K, r: R  "
            "tensor A(i, r), B(j, r), C(k, r)  output i, j, k }\n"
            "model m { fit X to T }\n")
    options = {} if init is None else {"init": init}
    return tnc.fit_model(text, {"T": data}, method="als", progress=False, **options)


@dataclass
class Row:
    """One method's way of fitting the planted data (see the module docstring)."""

    name: str
    fit: Callable                     # fit(data, init=None) -> result
    dtypes: tuple = REAL              # the dtypes fitted as given
    fitted_in: str | None = None      # other real data's fit dtype, when not kept
    takes_init: bool = True
    policy: bool = True               # follows tnc.fitting.dtypes: bad dtypes, integer init
    close: float = 1e-3               # |err32 - err64| <= close * err64 (+ float32 noise)
    complex_error: float = 3 * NOISE  # complex fits reach at most this relative error
    shape: tuple = (7, 6, 5)
    rank: int = 2
    tensors: Callable = lambda result: result.tensors


def _als(**options):
    def fit(data, init=None):
        return tnc.fit(cp(data.shape, 2), data, "als", progress=False,
                       **({} if init is None else {"init": init}), **options)
    return fit


def _masked_als(missing):
    def fit(data, init=None):
        mask = np.random.default_rng(5).random(data.shape) > 0.15
        return tnc.fit(cp(data.shape, 2), data, "als", mask=mask, missing=missing,
                       progress=False, **({} if init is None else {"init": init}))
    return fit


def _method(method, **options):
    def fit(data, init=None):
        return tnc.fit(cp(data.shape, 2), data, method, progress=False,
                       **({} if init is None else {"init": init}), **options)
    return fit


METHODS = [
    Row("als", _als(), REAL + COMPLEX),
    Row("als wls", _masked_als("wls"), REAL + COMPLEX),
    Row("als em", _masked_als("em"), REAL + COMPLEX),
    Row("gcp lbfgsb", _method("gcp", optimizer="lbfgsb"), REAL + COMPLEX),
    Row("gcp adam", _method("gcp", optimizer="adam", max_iter=20, epoch_iters=50,
                            batch_size=100, lr=0.05), REAL + COMPLEX, close=0.01),
    Row("nls", _method("nls"), REAL),
    # coupled models (tnc/fitting/coupled.py) compute in float64 and return the data's
    # float dtype; complex data are refused
    Row("coupled als", coupled_fit, REAL),
]


def _dmrg(data, init=None):
    net = tnc.library("tt", N=data.ndim, d=data.shape[0], r=2)
    return tnc.fit(net, data, "dmrg", progress=False, **({} if init is None else {"init": init}))


def _decompose(kind, method=None):
    def fit(data, init=None):
        return tnc.decompose(data, kind, ranks=2, method=method)
    return fit


METHODS += [
    Row("dmrg", _dmrg, REAL + COMPLEX, shape=(6, 6, 6)),
    Row("decompose hosvd", _decompose("tucker", "hosvd"), REAL + COMPLEX, takes_init=False),
    Row("decompose sthosvd", _decompose("tucker", "sthosvd"), REAL + COMPLEX, takes_init=False),
    Row("decompose hooi", _decompose("tucker", "hooi"), REAL + COMPLEX, takes_init=False),
    Row("decompose tt-svd", _decompose("tt"), REAL + COMPLEX, takes_init=False),
]

IDS = [row.name for row in METHODS]


def planted(row: Row, dtype="float64", seed=0) -> np.ndarray:
    """Rank-``row.rank`` CP data of ``row.shape`` plus NOISE relative noise (complex
    factors and noise for a complex ``dtype``), in ``dtype``."""
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) \
        if np.dtype(dtype).kind == "c" else rng.standard_normal
    factors = [draw((n, row.rank)) for n in row.shape]
    clean = np.einsum("ir,jr,kr->ijk", *factors)
    noise = draw(clean.shape)
    data = clean + NOISE * np.linalg.norm(clean) / np.linalg.norm(noise) * noise
    return data.astype(dtype)


def _tensors(row, result) -> dict:
    return dict(row.tensors(result))


@pytest.mark.parametrize("row", METHODS, ids=IDS)
@pytest.mark.parametrize("dtype", REAL)
def test_result_dtype_is_the_input_dtype(row, dtype):
    result = row.fit(planted(row, dtype))
    expected = dtype if dtype in row.dtypes else row.fitted_in
    assert expected is not None, f"{row.name}: {dtype} is neither kept nor converted"
    assert {k: v.dtype.name for k, v in _tensors(row, result).items()} == {
        k: expected for k in _tensors(row, result)}


@pytest.mark.parametrize("row", [r for r in METHODS if "float32" in r.dtypes],
                         ids=[r.name for r in METHODS if "float32" in r.dtypes])
def test_float32_error_close_to_float64(row):
    data = planted(row)
    error64 = row.fit(data).rel_error
    error32 = row.fit(data.astype(np.float32)).rel_error
    assert NOISE / 4 < error64 < 2 * NOISE
    assert abs(error32 - error64) <= row.close * error64 + 1e-5


@pytest.mark.parametrize("row", METHODS, ids=IDS)
def test_integer_data_become_float64(row):
    data = np.rint(20 * planted(row)).astype(np.int32)
    result = row.fit(data)
    assert all(v.dtype == np.float64 for v in _tensors(row, result).values())
    reference = row.fit(data.astype(np.float64))
    assert result.rel_error == pytest.approx(reference.rel_error, rel=1e-9)


@pytest.mark.parametrize("row", [r for r in METHODS if r.takes_init],
                         ids=[r.name for r in METHODS if r.takes_init])
def test_integer_init_is_refused_naming_the_tensor(row):
    if not row.policy:
        pytest.skip(f"{row.name} does not follow tnc.fitting.dtypes yet")
    data = planted(row)
    start = {k: np.ones(v.shape, np.int64) for k, v in _tensors(row, row.fit(data)).items()}
    name = next(iter(start))
    with pytest.raises(TncError, match=re.escape(f"`{name}`") + ".*integer"):
        row.fit(data, init=start)


@pytest.mark.parametrize("row", METHODS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float16, object])
def test_unsupported_dtype_names_dtype_and_method(row, dtype):
    if not row.policy:
        pytest.skip(f"{row.name} does not follow tnc.fitting.dtypes yet")
    data = planted(row).astype(dtype)
    with pytest.raises(TncError) as error:
        row.fit(data)
    message = str(error.value)
    assert np.dtype(dtype).name in message, message
    assert row.name.split()[0] in message, message


@pytest.mark.parametrize("row", METHODS, ids=IDS)
@pytest.mark.parametrize("dtype", COMPLEX)
def test_complex_fitted_or_refused(row, dtype):
    data = planted(row, dtype)
    if dtype not in row.dtypes:
        if not row.policy:
            pytest.skip(f"{row.name} does not follow tnc.fitting.dtypes yet")
        with pytest.raises(TncError) as error:
            row.fit(data)
        assert dtype in str(error.value) and row.name.split()[0] in str(error.value)
        return
    result = row.fit(data)
    assert all(v.dtype == np.dtype(dtype) for v in _tensors(row, result).values())
    assert result.rel_error < row.complex_error


@pytest.mark.parametrize("row", [r for r in METHODS if r.takes_init and "float32" in r.dtypes],
                         ids=[r.name for r in METHODS if r.takes_init and "float32" in r.dtypes])
@pytest.mark.filterwarnings("ignore:GCP .adam. diverged")    # Adam from its own optimum
def test_mixed_data_and_init_promote_by_numpy_rules(row):
    data = planted(row, np.float32)
    start = {k: v.astype(np.float64) for k, v in _tensors(row, row.fit(data)).items()}
    assert all(v.dtype == np.float64 for v in _tensors(row, row.fit(data, init=start)).values())


# -- complex least squares checked against exact references -----------------------------------
def test_complex_als_update_is_the_exact_least_squares_solution():
    """One ALS update of A in complex CP equals numpy.linalg.lstsq of the unfolded problem."""
    from tnc.fitting.als import Fit, als_model, resolve_settings, ALSOptions
    from tnc.fitting.front import FitProblem
    row = METHODS[0]
    data = planted(row, "complex128")
    net = cp(data.shape, 2)
    rng = np.random.default_rng(3)
    tensors = {k: rng.standard_normal(v) + 1j * rng.standard_normal(v)
               for k, v in net.params.items()}
    problem = FitProblem(net, data, None, {})
    settings = resolve_settings(problem, ALSOptions())
    fit = Fit(problem, als_model(net, settings.order), settings, dict(tensors), None)
    fit.update("A")
    khatri_rao = np.einsum("jr,kr->jkr", tensors["B"], tensors["C"]).reshape(-1, 2)
    exact = np.linalg.lstsq(khatri_rao, data.reshape(data.shape[0], -1).T, rcond=None)[0].T
    np.testing.assert_allclose(fit.tensors["A"], exact, rtol=1e-10, atol=1e-12)


def test_planted_complex_cp_is_fitted_to_1e_10():
    row = Row("exact", None, shape=(9, 8, 7), rank=3)
    rng = np.random.default_rng(1)
    factors = [rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3)) for n in row.shape]
    data = np.einsum("ir,jr,kr->ijk", *factors)
    result = tnc.fit(cp(data.shape, 3), data, "als", progress=False)
    assert result.tensors["A"].dtype == np.complex128
    assert result.rel_error < 1e-10
    model = np.einsum("ir,jr,kr->ijk", *(result.tensors[k] for k in "ABC"))
    assert np.linalg.norm(model - data) / np.linalg.norm(data) < 1e-10


def test_complex_gcp_gaussian_matches_complex_als():
    """L-BFGS-B over real and imaginary parts reaches the complex ALS optimum."""
    row = METHODS[0]
    data = planted(row, "complex128")
    als = tnc.fit(cp(data.shape, 2), data, "als", progress=False, tol=1e-14, max_iter=3000)
    gcp = tnc.fit(cp(data.shape, 2), data, "gcp", progress=False, gtol=1e-10, ftol=1e-15)
    assert gcp.rel_error == pytest.approx(als.rel_error, rel=1e-7)
    np.testing.assert_allclose(gcp.reconstruct(), als.reconstruct(),
                               atol=1e-5 * np.abs(data).max())


def test_complex_gcp_gradient_matches_finite_differences():
    """The objective's complex gradient is dL/dRe + i dL/dIm (what L-BFGS-B and Adam step
    along): checked entry by entry against central differences of the real loss."""
    from tnc.fitting.gcp import COMPLEX_GAUSSIAN, DenseObjective
    data = planted(METHODS[0], "complex128")[:4, :3, :3]
    net = cp(data.shape, 2)
    rng = np.random.default_rng(2)
    tensors = {k: rng.standard_normal(v) + 1j * rng.standard_normal(v)
               for k, v in net.params.items()}
    objective = DenseObjective(net, {}, data, None, COMPLEX_GAUSSIAN, "auto")
    _, grads = objective(tensors)
    h = 1e-6
    for name in ("A", "C"):
        for index in np.ndindex(tensors[name].shape):
            for unit in (1.0, 1j):
                up, down = dict(tensors), dict(tensors)
                up[name], down[name] = tensors[name].copy(), tensors[name].copy()
                up[name][index] += h * unit
                down[name][index] -= h * unit
                slope = (objective(up)[0] - objective(down)[0]) / (2 * h)
                part = grads[name][index].real if unit == 1.0 else grads[name][index].imag
                assert part == pytest.approx(slope, rel=1e-6, abs=1e-6)


def test_nonneg_als_refuses_complex_data():
    data = planted(METHODS[0], "complex128")
    with pytest.raises(TncError, match="nonneg.*complex"):
        tnc.fit(cp(data.shape, 2), data, "als", nonneg=True, progress=False)


@pytest.mark.parametrize("masked", [False, True])
def test_extrapolating_als_fits_complex_data_like_plain_als(masked):
    """The line search on complex data (real steps, the loss from real parts of Hermitian
    inner products) never raises the loss and ends where plain ALS does."""
    data = planted(METHODS[0], "complex128")
    mask = np.random.default_rng(3).random(data.shape) >= 0.2 if masked else None
    fits = {extrapolate: tnc.fit(cp(data.shape, 2), data, "als", mask=mask, init="random",
                                 extrapolate=extrapolate, tol=1e-12, max_iter=500,
                                 progress=False)
            for extrapolate in (False, True)}
    fast = fits[True]
    losses = np.array([h["loss"] for h in fast.history])
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])
    assert fast.info["extrapolated"] > 0
    assert all(t.dtype == np.complex128 for t in fast.tensors.values())
    assert fast.rel_error == pytest.approx(fits[False].rel_error, rel=1e-6)
