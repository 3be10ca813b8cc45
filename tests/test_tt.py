"""TensorTrain / TTMatrix against dense numpy on small sizes, real and complex."""
import numpy as np
import pytest

import tnc
from tnc.fitting.decompositions import tt_round
from tnc.mps.tt import TensorTrain, TTMatrix

SHAPE = (2, 3, 4, 2)


def random_cores(rng, sites, rank, complex_):
    ranks = [1] + [rank] * (len(sites) - 1) + [1]
    cores = []
    for k, site in enumerate(sites):
        shape = (ranks[k],) + tuple(site) + (ranks[k + 1],)
        core = rng.standard_normal(shape)
        cores.append(core + 1j * rng.standard_normal(shape) if complex_ else core)
    return cores


def train(rng, rank, complex_, shape=SHAPE):
    return TensorTrain(random_cores(rng, [(d,) for d in shape], rank, complex_))


def operator(rng, rank, complex_, shape=SHAPE):
    return TTMatrix(random_cores(rng, [(d, d) for d in shape], rank, complex_))


def close(a, b, tol=1e-11):
    return np.linalg.norm(a - b) <= tol * max(np.linalg.norm(b), 1e-300)


@pytest.fixture(params=[False, True], ids=["real", "complex"])
def complex_(request):
    return request.param


def test_sum_difference_scalar_and_hadamard_match_dense(complex_):
    rng = np.random.default_rng(1)
    a, b = train(rng, 3, complex_), train(rng, 2, complex_)
    A, B = a.to_dense(), b.to_dense()
    assert (a + b).ranks == [5, 5, 5] and (a * b).ranks == [6, 6, 6]
    assert close((a + b).to_dense(), A + B)
    assert close((a - b).to_dense(), A - B)
    assert close((-a).to_dense(), -A)
    c = 2.5 - 1j if complex_ else -2.5
    assert close((c * a).to_dense(), c * A) and close((a * c).to_dense(), c * A)
    assert close((a / 4).to_dense(), A / 4)
    assert close((a * b).to_dense(), A * B) and close(a.hadamard(b).to_dense(), A * B)
    assert close((np.float64(3.0) * a).to_dense(), 3 * A)


def test_dot_and_norm_match_numpy(complex_):
    rng = np.random.default_rng(2)
    a, b = train(rng, 3, complex_), train(rng, 4, complex_)
    A, B = a.to_dense(), b.to_dense()
    assert a.dot(b) == pytest.approx(np.vdot(A, B), rel=1e-12)
    assert a.norm() == pytest.approx(np.linalg.norm(A), rel=1e-12)
    assert isinstance(a.dot(b), complex if complex_ else float)
    tiny = 1e-200 * a                      # the norm from the orthogonalised train: no underflow
    assert tiny.norm() == pytest.approx(1e-200 * np.linalg.norm(A), rel=1e-12)


def test_round_recovers_the_rank_and_truncates_like_svd(complex_):
    rng = np.random.default_rng(3)
    a = train(rng, 2, complex_)
    A = a.to_dense()
    five = a + a + a + a + a                                # rank 10, exactly rank 2
    rounded = five.round(rel_error=1e-12)
    assert rounded.ranks == [2, 2, 2] and close(rounded.to_dense(), 5 * A)
    b = train(rng, 4, complex_)
    capped = b.round(max_rank=2)
    B = b.to_dense()
    # rank-2 rounding is quasi-optimal: within sqrt(N - 1) of the best (TT-SVD bound)
    best = TensorTrain.from_dense(B, max_rank=2)
    err = np.linalg.norm(capped.to_dense() - B)
    assert capped.ranks == [2, 2, 2]
    assert err <= np.sqrt(3) * np.linalg.norm(best.to_dense() - B) * (1 + 1e-9) + 1e-12
    loose = b.round(rel_error=0.3)
    assert np.linalg.norm(loose.to_dense() - B) <= 0.3 * np.linalg.norm(B)
    assert max(loose.ranks) < 4


def test_from_dense_is_tt_svd_and_exact_without_truncation(complex_):
    rng = np.random.default_rng(4)
    X = rng.standard_normal(SHAPE) + (1j * rng.standard_normal(SHAPE) if complex_ else 0)
    tt = TensorTrain.from_dense(X)
    assert tt.ranks == [2, 6, 2] and close(tt.to_dense(), X)
    assert tt.dtype == (np.complex128 if complex_ else np.float64)
    small = TensorTrain.from_dense(X, rel_error=0.5)
    assert np.linalg.norm(small.to_dense() - X) <= 0.5 * np.linalg.norm(X)


def test_canonical_forms_are_orthonormal_and_keep_the_tensor(complex_):
    rng = np.random.default_rng(5)
    a = train(rng, 3, complex_)
    for centre in range(len(a)):
        c = a.canonical(centre)
        assert close(c.to_dense(), a.to_dense())
        for k, core in enumerate(c.cores):
            if k < centre:
                m = core.reshape(-1, core.shape[-1])
                assert np.allclose(m.conj().T @ m, np.eye(m.shape[1]))
            elif k > centre:
                m = core.reshape(core.shape[0], -1)
                assert np.allclose(m @ m.conj().T, np.eye(m.shape[0]))


def test_operator_times_train_and_operator_match_einsum(complex_):
    rng = np.random.default_rng(6)
    A, B, x = operator(rng, 2, complex_), operator(rng, 3, complex_), train(rng, 3, complex_)
    DA, DB, X = A.to_dense(), B.to_dense(), x.to_dense()
    assert DA.shape == SHAPE + SHAPE
    Ax = A @ x
    assert isinstance(Ax, TensorTrain) and Ax.ranks == [6, 6, 6]
    assert close(Ax.to_dense(), np.einsum("abcdefgh,efgh->abcd", DA, X))
    AB = A @ B
    assert isinstance(AB, TTMatrix) and AB.ranks == [6, 6, 6]
    assert close(AB.to_dense(), np.einsum("abcdefgh,efghijkl->abcdijkl", DA, DB))
    assert close(A.T.to_dense(), np.einsum("abcdefgh->efghabcd", DA))
    applied = A.apply(x, rel_error=1e-12)
    assert max(applied.ranks) <= 6 and close(applied.to_dense(), Ax.to_dense(), 1e-10)
    assert close((A + B).to_dense(), DA + DB) and close((A * B).to_dense(), DA * DB)
    assert A.dot(B) == pytest.approx(np.vdot(DA, DB), rel=1e-12)
    assert A.norm() == pytest.approx(np.linalg.norm(DA), rel=1e-12)
    dense = TTMatrix.from_dense(DA, rel_error=1e-13)
    assert dense.ranks == [2, 2, 2] and close(dense.to_dense(), DA)


def test_entries_match_dense():
    rng = np.random.default_rng(7)
    a = train(rng, 3, True)
    idx = np.stack([rng.integers(0, d, 50) for d in SHAPE], axis=1)
    assert close(a.entries(idx), a.to_dense()[tuple(idx.T)])


def test_round_trips_with_networks_decompose_and_dmrg():
    rng = np.random.default_rng(8)
    net = tnc.library("tt", N=4, d=3, r=2)
    tensors = net.random(seed=0)
    X = net.contract(tensors)
    assert close(TensorTrain.from_network(net, tensors).to_dense(), X)
    tt = TensorTrain.from_result(tnc.decompose(X, "tt", rel_error=1e-12))
    assert tt.ranks == [2, 2, 2] and close(tt.to_dense(), X)
    fitted = tnc.fit(tnc.library("tt", N=4, d=3, r=3), X, method="dmrg", progress=False)
    assert close(TensorTrain.from_result(fitted).to_dense(), fitted.reconstruct())
    result = tt.to_result()
    assert close(result.reconstruct(), X)
    again = tnc.fit(result.network, X, method="als", init=result, progress=False)
    assert again.rel_error < 1e-10
    mpo = tnc.library("ttm", N=3, m=2, k=3, r=2)
    weights = mpo.random(seed=1)
    W = TTMatrix.from_network(mpo, weights)
    assert close(W.to_dense(), mpo.contract(weights))
    assert close(W.to_result().reconstruct(), mpo.contract(weights))
    x = train(rng, 2, False, shape=(3, 3, 3))
    assert close((W @ x).to_dense(), np.einsum("abcdef,def->abc", W.to_dense(), x.to_dense()))


def test_tt_round_takes_decompose_end_cores():
    X = np.random.default_rng(9).random((3, 4, 5))
    cores = list(tnc.decompose(X, "tt", rel_error=1e-12).tensors.values())
    rounded = tt_round(cores, rel_error=1e-12)
    assert [c.ndim for c in rounded] == [2, 3, 2]
    assert close(np.einsum("ia,ajb,bk->ijk", *rounded), X)


def test_mismatched_trains_name_both_shapes():
    rng = np.random.default_rng(10)
    a, b = train(rng, 2, False), train(rng, 2, False, shape=(2, 3, 5, 2))
    short = train(rng, 2, False, shape=(2, 3, 4))
    for bad in (lambda: a + b, lambda: a * short, lambda: a.dot(short), lambda: a - b):
        with pytest.raises(tnc.TncError, match=r"\(2, 3, 4, 2\).*\(2, 3, (5, 2|4)\)"):
            bad()
    with pytest.raises(tnc.TncError, match=r"\(2, 3, 4, 2, 2, 3, 4, 2\).*\(2, 3, 4\)"):
        operator(rng, 2, False) @ short
    with pytest.raises(tnc.TncError, match="core 2 has shape"):
        TensorTrain([np.ones((1, 2, 2)), np.ones((3, 2, 1))])
    with pytest.raises(tnc.TncError, match="max_rank"):
        a.round(max_rank=0)
    with pytest.raises(tnc.TncError, match="rel_error"):
        a.round(rel_error=2.0)


def test_to_dense_is_memory_checked():
    big = TensorTrain([np.ones((1, 64, 1))] * 10)
    with pytest.raises(tnc.MemoryLimitError, match=r"dense form .* needs"):
        big.to_dense(memory_limit=2 ** 30)
    assert big.norm() == pytest.approx(8.0 ** 10)


def test_gram_rounding_matches_qr_rounding(complex_):
    rng = np.random.default_rng(11)
    a, b = train(rng, 3, complex_), train(rng, 3, complex_)
    s = a + b + a                                          # rank 9, exactly rank 6: Grams singular
    S = s.to_dense()
    for max_rank in (None, 2):
        gram = s.round(rel_error=None if max_rank else 1e-6, max_rank=max_rank, method="gram")
        qr = s.round(rel_error=None if max_rank else 1e-6, max_rank=max_rank, method="qr")
        assert gram.ranks == qr.ranks
        assert np.linalg.norm(gram.to_dense() - S) == pytest.approx(
            np.linalg.norm(qr.to_dense() - S), rel=1e-6, abs=1e-7 * np.linalg.norm(S))
    assert s.round(rel_error=1e-6, method="gram").ranks == [2, 6, 2]
    with pytest.raises(tnc.TncError, match="method"):
        s.round(method="svd")


@pytest.mark.parametrize("rel_error", [1e-2, 1e-4, 1e-6])
def test_gram_rounding_of_a_sum_meets_rel_error_against_dense(complex_, rel_error):
    """A sum of 8 rank-2 trains with weights 10^-j (singular values spread over 14
    decades): the Gram rounding's error against the dense sum is within ``rel_error``
    and its ranks are those of the QR rounding."""
    rng = np.random.default_rng(5)
    shape = (3, 4, 2, 3, 4)
    s = train(rng, 2, complex_, shape)
    for j in range(1, 8):
        s = s + 10.0 ** -j * train(rng, 2, complex_, shape)
    S = s.to_dense()
    gram = s.round(rel_error=rel_error, method="gram")
    qr = s.round(rel_error=rel_error, method="qr")
    assert np.linalg.norm(gram.to_dense() - S) <= rel_error * np.linalg.norm(S)
    assert gram.ranks == qr.ranks
    assert s.round(rel_error=rel_error).ranks == qr.ranks          # auto
    assert max(gram.ranks) < max(s.ranks)                            # it did truncate


def test_train_as_dmrg_init_matches_dense():
    """chain_init lays a TensorTrain out as the network's cores (checked by contracting
    the network against the dense train); tnc.fit(method='dmrg') starts from it and its
    result converts back to the dense data."""
    from tnc.mps.chain import find_chain
    from tnc.mps.tt import chain_init
    rng = np.random.default_rng(8)
    net = tnc.library("tt", N=4, d=3, r=3)
    start = TensorTrain(random_cores(rng, [(3,)] * 4, 3, False))
    cores = chain_init(net, find_chain(net), start, "fit")
    assert close(net.contract(cores), start.to_dense())
    X = train(rng, 2, False, (3, 3, 3, 3)).to_dense()
    fitted = tnc.fit(net, X, method="dmrg", init=start, progress=False)
    assert close(TensorTrain.from_result(fitted).to_dense(), X, 1e-8)
    with pytest.raises(tnc.TncError, match=r"init core 1 of shape \(1, 2, 3\)"):
        chain_init(net, find_chain(net), train(rng, 3, False, (2, 3, 3, 3)), "fit")


def test_train_as_ground_state_init_matches_dense():
    """<x|H|x> of the energy network on chain_init's cores is the dense x H x; the ground
    state started from a TensorTrain is the exact lowest eigenvalue."""
    from tnc.mps.dmrg import energy_sites
    from tnc.mps.mpo import dense_hamiltonian
    from tnc.mps.tt import chain_init
    rng = np.random.default_rng(9)
    L, H = 6, tnc.heisenberg_mpo(6)
    net = tnc.library("energy", N=L, D=4)
    x = TensorTrain(random_cores(rng, [(2,)] * L, 4, False))
    cores = chain_init(net, energy_sites(net).chain, x, "ground_state")
    dense = x.to_dense().reshape(-1)
    exact = dense_hamiltonian(H)
    assert float(net.contract({**cores, **H})) == pytest.approx(dense @ exact @ dense, rel=1e-10)
    result = tnc.ground_state(tnc.library("energy", N=L, D=8), H, init=x, progress=False)
    assert result.info["energy"] == pytest.approx(np.linalg.eigvalsh(exact)[0], abs=1e-8)


def test_qr_rounding_is_tt_svd_of_the_dense_tensor_with_left_orthonormal_cores(complex_):
    """Rounding to fixed ranks equals the TT-SVD of the dense tensor (Oseledets 2011:
    the same truncated SVDs of the same unfoldings), and its cores are left-orthonormal."""
    rng = np.random.default_rng(11)
    b = train(rng, 4, complex_) + train(rng, 3, complex_)
    B = b.to_dense()
    for ranks in ([1, 3, 2], [2, 5, 2]):
        rounded = b.round(max_rank=ranks, method="qr")
        dense_svd = TensorTrain.from_dense(B, max_rank=ranks)
        assert rounded.ranks == dense_svd.ranks
        assert close(rounded.to_dense(), dense_svd.to_dense())
        for core in rounded.cores[:-1]:
            q = core.reshape(-1, core.shape[-1])
            assert np.allclose(q.conj().T @ q, np.eye(q.shape[1]), atol=1e-12)


def test_the_no_truncation_proof_never_keeps_a_value_the_singular_values_cut():
    """:func:`_keeps_every_vector` answers True only where the singular values keep them
    all: matrices with singular values spread over 1 .. 1e-14 and tails at each of them."""
    from tnc.fitting.decompositions import _keeps_every_vector, _truncation
    rng = np.random.default_rng(5)
    proved = 0
    for trial in range(300):
        n = int(rng.integers(1, 9))
        values = np.sort(10.0 ** rng.uniform(-14, 0, n))[::-1]
        u, _ = np.linalg.qr(rng.standard_normal((n, n)))
        v, _ = np.linalg.qr(rng.standard_normal((n + 2, n)))
        small = (u * values) @ v.T
        tail = float(values[int(rng.integers(0, n))]) * float(rng.choice([0.5, 0.999, 1.001, 2]))
        if _keeps_every_vector(small, tail, None):
            proved += 1
            assert _truncation(np.linalg.svd(small, compute_uv=False), None, tail) == n
    assert proved > 10                                 # the proof does fire


@pytest.mark.parametrize("complex_", [False, True])
def test_qr_rounding_with_and_without_the_no_truncation_proof_agree(complex_, monkeypatch):
    from tnc.fitting import decompositions
    rng = np.random.default_rng(12)
    a, b = train(rng, 3, complex_), train(rng, 2, complex_)
    for x, rel_error in [(a + b, 1e-10), (a + a, 1e-10), (a + 1e-7 * b, 1e-6), (a + b, None)]:
        proved = x.round(rel_error=rel_error, max_rank=None if rel_error else 4, method="qr")
        with monkeypatch.context() as patch:
            patch.setattr(decompositions, "_keeps_every_vector", lambda *args: False)
            computed = x.round(rel_error=rel_error, max_rank=None if rel_error else 4,
                               method="qr")
        assert proved.ranks == computed.ranks
        assert close(proved.to_dense(), computed.to_dense())
    assert (a + a).round(rel_error=1e-10, method="qr").ranks == a.round(
        rel_error=1e-10, method="qr").ranks                # x + x: the rank of x
