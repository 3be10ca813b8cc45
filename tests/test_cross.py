"""TT-cross against dense numpy: separable and rank-limited functions, bad functions."""
import numpy as np
import pytest

import tnc
from tnc.mps.cross import maxvol, tt_cross


def dense_of(f, shape):
    grid = np.stack(np.meshgrid(*[np.arange(d) for d in shape], indexing="ij"), axis=-1)
    return f(grid.reshape(-1, len(shape))).reshape(shape)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_separable_function_is_rank_one_and_exact():
    shape = (5, 4, 6, 3)
    rng = np.random.default_rng(0)
    factors = [rng.random(d) + 0.5 for d in shape]
    f = lambda i: np.prod([g[i[:, k]] for k, g in enumerate(factors)], axis=0)
    out = tt_cross(f, shape, rel_error=1e-10)
    assert out.converged and out.tt.ranks == [1, 1, 1]
    assert rel(out.tt.to_dense(), dense_of(f, shape)) < 1e-12
    assert out.calls == len(out.history) * (len(shape) - 1) and out.evaluations < np.prod(shape)


def test_rank_limited_function_recovers_its_ranks():
    shape = (6, 5, 7, 4, 5)
    rng = np.random.default_rng(1)
    terms = [[rng.standard_normal(d) for d in shape] for _ in range(3)]
    f = lambda i: sum(np.prod([g[i[:, k]] for k, g in enumerate(t)], axis=0) for t in terms)
    out = tt_cross(f, shape, rel_error=1e-10, seed=3)
    X = dense_of(f, shape)
    assert out.converged and max(out.tt.ranks) <= 3
    assert rel(out.tt.to_dense(), X) < 1e-9
    capped = tt_cross(f, shape, rel_error=1e-10, max_rank=2, max_sweeps=3)
    assert max(capped.tt.ranks) == 2 and not capped.converged
    assert rel(capped.tt.to_dense(), X) > 1e-3


def test_smooth_function_to_requested_error_and_complex_values():
    shape = (8,) * 5
    grid = np.linspace(0, 1, 8)
    f = lambda i: 1.0 / (1.0 + (grid[i] ** 2).sum(axis=1))
    out = tt_cross(f, shape, rel_error=1e-6)
    X = dense_of(f, shape)
    assert out.converged and rel(out.tt.to_dense(), X) < 1e-6
    g = lambda i: np.exp(1j * grid[i].sum(axis=1)) / (1.0 + (grid[i] ** 2).sum(axis=1))
    z = tt_cross(g, shape, rel_error=1e-6)
    assert z.tt.dtype == np.complex128 and rel(z.tt.to_dense(), dense_of(g, shape)) < 1e-6


def test_large_grid_checked_on_random_points():
    grid = np.array([0.0, 1.0])
    f = lambda i: 1.0 / (1.0 + (grid[i] ** 2).sum(axis=1))
    out = tt_cross(f, (2,) * 30, rel_error=1e-6)
    points = np.random.default_rng(2).integers(0, 2, (20000, 30))
    assert out.converged and out.evaluations < 10 ** 6
    assert rel(out.tt.entries(points), f(points)) < 1e-6


def test_bad_functions_name_the_call_and_point():
    shape = (3, 3, 3)
    calls = []

    def late_nan(i):
        calls.append(1)
        values = 1.0 + i.sum(axis=1).astype(float)
        if len(calls) == 2:
            values[4] = np.nan
        return values
    with pytest.raises(tnc.TncError, match=r"call 2 of f returned nan at index \(\d, \d, \d\) "
                                           r"\(point 4 of"):
        tt_cross(late_nan, shape)
    with pytest.raises(tnc.TncError, match=r"call 1 of f, on \d+ points .* returned shape "
                                           r"\(\d+, 1\)"):
        tt_cross(lambda i: np.ones((len(i), 1)), shape)
    with pytest.raises(tnc.TncError, match="shape of at least 2 positive ints"):
        tt_cross(lambda i: i[:, 0], (3, 0))
    with pytest.raises(tnc.TncError, match="rel_error"):
        tt_cross(lambda i: i[:, 0], shape, rel_error=0)


def test_maxvol_bounds_the_interpolation_coefficients():
    A = np.random.default_rng(4).standard_normal((200, 7))
    rows = maxvol(A)
    assert len(set(rows.tolist())) == 7
    assert np.abs(A @ np.linalg.inv(A[rows])).max() <= 1.05 + 1e-12
