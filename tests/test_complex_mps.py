"""float32, float64, complex64 and complex128 through TT-SVD, TT rounding, the TensorTrain
and TTMatrix values, HOSVD / st-HOSVD / HOOI, DMRG fitting and DMRG ground states: the
input's dtype comes back, and every answer is checked against dense numpy (or exact
diagonalisation) to the dtype's accuracy."""
from types import SimpleNamespace

import numpy as np
import pytest

import tnc
from tnc.fitting.decompositions import decompose, tt_round
from tnc.mps.mpo import dense_hamiltonian, xy_dm_mpo
from tnc.mps.tt import TensorTrain, TTMatrix

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
# what a result in each dtype is checked to (relative, Frobenius): a few hundred eps
ACCURACY = {np.float32: 2e-4, np.complex64: 2e-4, np.float64: 1e-10, np.complex128: 1e-10}


def rand(rng, shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def low_rank(rng, dtype, shape=(4, 5, 3, 6), rank=3):
    """A dense tensor of TT ranks <= ``rank`` (a random train multiplied out in numpy)."""
    ranks = [1] + [rank] * (len(shape) - 1) + [1]
    out = np.ones((1, 1), dtype=dtype)
    for k, d in enumerate(shape):
        core = rand(rng, (ranks[k], d, ranks[k + 1]), dtype)
        out = np.tensordot(out, core, axes=([1], [0])).reshape(-1, ranks[k + 1])
    return out.reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tt_svd_keeps_the_dtype_and_meets_the_error(dtype):
    rng = np.random.default_rng(0)
    X = low_rank(rng, dtype) + 1e-2 * rand(rng, (4, 5, 3, 6), dtype)
    for eps in (1e-1, 3e-2):
        result = decompose(X, "tt", rel_error=eps)
        assert all(t.dtype == dtype for t in result.tensors.values())
        model = result.reconstruct()
        assert model.dtype == dtype
        error = rel(model, X)
        assert error <= eps * (1 + 1e-3) and result.rel_error == pytest.approx(error, rel=1e-3)
    exact = decompose(low_rank(rng, dtype), "tt", rel_error=ACCURACY[dtype] / 10)
    assert exact.rel_error < ACCURACY[dtype]
    assert max(t.shape[-1] for t in list(exact.tensors.values())[:-1]) <= 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_tt_round_keeps_the_dtype_and_meets_the_error(dtype):
    rng = np.random.default_rng(1)
    x = TensorTrain.from_dense(low_rank(rng, dtype))
    y = TensorTrain.from_dense(low_rank(rng, dtype))
    total = x + y + x                       # ranks 9, true ranks at most 6
    dense = total.to_dense()
    assert total.dtype == dtype and rel(dense, x.to_dense() * 2 + y.to_dense()) < ACCURACY[dtype]
    for method in ("qr", "gram"):
        rounded = total.round(rel_error=ACCURACY[dtype] / 10, method=method)
        assert rounded.dtype == dtype and max(rounded.ranks) <= 6
        assert rel(rounded.to_dense(), dense) < ACCURACY[dtype] * (10 if method == "gram" else 1)
    for eps in (0.3, 0.05):
        cut = total.round(rel_error=eps)
        assert cut.dtype == dtype and rel(cut.to_dense(), dense) <= eps
    cores = tt_round(total.cores, ranks=2)
    assert all(c.dtype == dtype for c in cores)


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_algebra_matches_dense_numpy(dtype):
    rng = np.random.default_rng(2)
    a, b = low_rank(rng, dtype), low_rank(rng, dtype)
    x, y = TensorTrain.from_dense(a), TensorTrain.from_dense(b)
    tol = ACCURACY[dtype]
    c = (1 - 2j) if np.dtype(dtype).kind == "c" else 3.0
    assert rel((x - y).to_dense(), a - b) < tol
    assert rel((c * x).to_dense(), c * a) < tol and (c * x).dtype == dtype
    assert rel((x * y).to_dense(), a * b) < tol and (x * y).dtype == dtype
    # <x, y> = sum conj(x) y, and ||x||
    assert abs(x.dot(y) - np.vdot(a, b)) < tol * np.linalg.norm(a) * np.linalg.norm(b)
    assert x.norm() == pytest.approx(np.linalg.norm(a), rel=tol)
    assert isinstance(x.dot(y), complex if np.dtype(dtype).kind == "c" else float)


@pytest.mark.parametrize("dtype", DTYPES)
def test_operator_times_train_and_operator_matches_dense(dtype):
    rng = np.random.default_rng(3)
    shape = (2, 3, 2)
    n = int(np.prod(shape))
    M, P = rand(rng, (n, n), dtype), rand(rng, (n, n), dtype)
    A = TTMatrix.from_dense(M.reshape(shape + shape))
    B = TTMatrix.from_dense(P.reshape(shape + shape))
    v = rand(rng, shape, dtype)
    x = TensorTrain.from_dense(v)
    tol = ACCURACY[dtype]
    assert A.dtype == x.dtype == dtype
    assert rel((A @ x).to_dense().ravel(), M @ v.ravel()) < tol
    assert rel((A @ B).to_dense().reshape(n, n), M @ P) < tol
    applied = A.apply(x, rel_error=tol / 10)
    assert applied.dtype == dtype and rel(applied.to_dense().ravel(), M @ v.ravel()) < tol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_tucker_keeps_the_dtype_and_is_exact_at_the_true_ranks(dtype, method):
    rng = np.random.default_rng(4)
    X = np.einsum("abc,ia,jb,kc->ijk", rand(rng, (2, 3, 2), dtype), rand(rng, (6, 2), dtype),
                  rand(rng, (7, 3), dtype), rand(rng, (5, 2), dtype))
    result = decompose(X, "tucker", ranks=[2, 3, 2], method=method)
    assert result.tensors["G"].dtype == dtype and result.tensors["U1"].dtype == dtype
    assert rel(result.reconstruct(), X) < ACCURACY[dtype]
    noisy = X + 0.05 * rand(rng, X.shape, dtype)
    cut = decompose(noisy, "tucker", ranks=[2, 3, 2], method=method)
    # the best rank-(2,3,2) error is at most that of the true low-rank part
    assert cut.rel_error <= rel(X, noisy) * (1 + 1e-3)
    assert cut.rel_error == pytest.approx(rel(cut.reconstruct(), noisy), rel=1e-3)


def pauli_chain(L, J, D):
    """The dense XY + Dzyaloshinskii-Moriya Hamiltonian from Kronecker products
    (independent of the MPO)."""
    X, Y, one = np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.eye(2)

    def bond(i, A, B):
        out = np.ones((1, 1))
        for site in range(L):
            out = np.kron(out, A if site == i else B if site == i + 1 else one)
        return out
    return sum(J * (bond(i, X, X) + bond(i, Y, Y)) + D * (bond(i, X, Y) - bond(i, Y, X))
               for i in range(L - 1))


def test_xy_dm_mpo_is_the_complex_hermitian_chain():
    h = dense_hamiltonian(xy_dm_mpo(6, J=0.7, D=0.4))
    assert h.dtype == np.complex128 and np.abs(h.imag).max() > 0.1
    assert np.allclose(h, pauli_chain(6, 0.7, 0.4), atol=1e-14)


@pytest.mark.parametrize("L", [8, 9, 10])
def test_complex_ground_state_matches_exact_diagonalisation(L):
    mpo = xy_dm_mpo(L, J=1.0, D=0.6)
    exact = np.linalg.eigvalsh(pauli_chain(L, 1.0, 0.6))[0]
    result = tnc.ground_state(tnc.library("energy", N=L, D=32, W=4), mpo, progress=False)
    assert result.tensors["G[2]"].dtype == np.complex128
    assert abs(result.info["energy"] - exact) < 1e-10 * abs(exact)
    assert result.converged
    # the state is genuinely complex, and <psi|H|psi> / <psi|psi> of the dense state is E
    vector = _state(result, L).ravel()
    assert np.abs(vector.imag).max() > 1e-3
    energy = np.vdot(vector, pauli_chain(L, 1.0, 0.6) @ vector) / np.vdot(vector, vector)
    assert abs(energy - exact) < 1e-9 * abs(exact)


def _state(result, L):
    """The dense ground state from the result's cores, contracted in numpy."""
    cores = [result.tensors[f"G[{n}]"] for n in range(1, L + 1)]
    out = cores[0]
    for core in cores[1:]:
        out = np.tensordot(out, core, axes=([-1], [0]))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_single_precision_ground_state_stays_single(dtype):
    L = 8
    mpo = {k: v.astype(dtype) for k, v in (tnc.heisenberg_mpo(L) if dtype == np.float32
                                            else xy_dm_mpo(L)).items()}
    exact = np.linalg.eigvalsh(dense_hamiltonian(mpo).astype(np.complex128))[0]
    result = tnc.ground_state(tnc.library("energy", N=L, D=16, W=mpo["H[2]"].shape[0]), mpo,
                              progress=False)
    assert all(t.dtype == dtype for t in result.tensors.values())
    assert abs(result.info["energy"] - exact) < 1e-5 * abs(exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trains_of_torch_tensors_stay_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    a, b = low_rank(rng, dtype), low_rank(rng, dtype)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tol = ACCURACY[dtype]
    x, y = (TensorTrain.from_dense(t, rel_error=tol / 10) for t in (ta, tb))
    for t in (x, y, x + y, x * y, (x + y + x).round(rel_error=tol / 10)):
        assert all(isinstance(c, torch.Tensor) for c in t.cores) and t.dtype == dtype
    assert max(x.ranks) <= 3 and max((x + y + x).round(rel_error=tol / 10).ranks) <= 6
    dense = lambda t: t.to_dense().numpy()          # noqa: E731
    assert rel(dense(x + y), a + b) < tol and rel(dense(x * y), a * b) < tol
    assert rel(dense((x + y + x).round(rel_error=tol / 10)), 2 * a + b) < tol
    assert abs(x.dot(y) - np.vdot(a, b)) < tol * np.linalg.norm(a) * np.linalg.norm(b)
    assert x.norm() == pytest.approx(np.linalg.norm(a), rel=tol)
    M = rand(rng, (12, 12), dtype)
    A = TTMatrix.from_dense(torch.from_numpy(M.reshape(2, 3, 2, 2, 3, 2)))
    v = rand(rng, (2, 3, 2), dtype)
    out = A.apply(TensorTrain.from_dense(torch.from_numpy(v)), rel_error=tol / 10)
    assert isinstance(out.cores[0], torch.Tensor)
    assert rel(out.to_dense().numpy().ravel(), M @ v.ravel()) < tol
    cores = tt_round([torch.from_numpy(c) for c in TensorTrain.from_dense(a).cores], ranks=2)
    assert all(isinstance(c, torch.Tensor) and c.shape[-1] <= 2 for c in cores)
    with pytest.raises(tnc.TncError, match="numpy-only"):
        x.round(rel_error=0.1, method="gram")


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_lanczos_finds_the_lowest_eigenpair_in_the_vectors_backend(dtype):
    torch = pytest.importorskip("torch")
    from tnc.mps.lanczos import lowest_eigenpair
    rng = np.random.default_rng(6)
    a = rand(rng, (120, 120), dtype)
    h = a + a.conj().T
    exact = np.linalg.eigvalsh(h.astype(np.complex128))[0]
    tol = 1e-12 if dtype != np.float32 else 1e-5
    for matrix, start in ((h, rand(rng, 120, dtype)),
                          (torch.from_numpy(h), torch.from_numpy(rand(rng, 120, dtype)))):
        value, vector = lowest_eigenpair(lambda x: matrix @ x, start, tol=tol)
        assert type(vector) is type(start) and vector.dtype == start.dtype
        assert abs(value - exact) < 50 * tol * abs(exact)
        y = np.asarray(vector, dtype=np.complex128)
        assert np.linalg.norm(h @ y - exact * y) < 1e3 * tol * abs(exact)


@pytest.mark.parametrize("case", ["heisenberg", "xy_dm"])
def test_ground_state_on_torch_tensors_stays_torch(case):
    torch = pytest.importorskip("torch")
    L = 8
    mpo = tnc.heisenberg_mpo(L) if case == "heisenberg" else xy_dm_mpo(L, D=0.6)
    exact = np.linalg.eigvalsh(dense_hamiltonian(mpo))[0]
    net = tnc.library("energy", N=L, D=16, W=mpo["H[2]"].shape[0])
    result = tnc.ground_state(net, {k: torch.from_numpy(v) for k, v in mpo.items()},
                              progress=False)
    cores = [result.tensors[f"G[{n}]"] for n in range(1, L + 1)]
    assert all(isinstance(c, torch.Tensor) and c.dtype == torch.from_numpy(mpo["H[2]"]).dtype
               for c in cores)
    assert abs(result.info["energy"] - exact) < 1e-10 * abs(exact) and result.converged
    vector = _state(SimpleNamespace(tensors={k: v.numpy() for k, v in result.tensors.items()}),
                    L).ravel()
    energy = np.vdot(vector, dense_hamiltonian(mpo) @ vector) / np.vdot(vector, vector)
    assert abs(energy - exact) < 1e-9 * abs(exact)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("case", ["open", "ring", "masked"])
def test_dmrg_fit_of_complex_data_matches_the_dense_tensor(dtype, case):
    rng = np.random.default_rng(7)
    tol = ACCURACY[dtype]
    if case == "ring":
        true = tnc.library("ring", N=4, d=3, r=2)
        tensors = {k: rand(rng, v, dtype) for k, v in true.params.items()}
        X = np.einsum("aib,bjc,ckd,dla->ijkl", *(tensors[f"G[{n}]"] for n in range(1, 5)))
        net = tnc.library("ring", N=4, d=3, r=2)
    else:
        X = low_rank(rng, dtype, shape=(3, 4, 3, 4), rank=2)
        net = tnc.compile(
            "network t() { index i: 3, j: 4, k: 3, l: 4, a: 4, b: 4, c: 4\n"
            "tensor A(i, a), B(a, j, b), C(b, k, c), D(c, l)\n output i, j, k, l }")
    mask = rng.random(X.shape) < 0.85 if case == "masked" else None
    options = {"open": {}, "ring": {"max_iter": 200}, "masked": {"max_rank": 2, "max_iter": 60}}
    result = tnc.fit(net, X, method="dmrg", mask=mask, progress=False, tol=1e-14,
                     **options[case])
    model = result.reconstruct()
    assert model.dtype == dtype and all(t.dtype == dtype for t in result.tensors.values())
    assert rel(model, X) < (10 if case != "open" else 1) * tol
    assert result.rel_error == pytest.approx(rel(model, X) if mask is None
                                             else rel(model[mask], X[mask]), abs=tol)
