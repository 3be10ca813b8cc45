"""GCP fits: recovery under the data's own loss, masks, sampled networks, sparse Adam, callbacks."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

import tnc
from tnc import TncError
from tnc.fitting.gcp import (Packing, SampledModel, StratifiedSampler, UniformSampler, lower_bounds,
                     sampled_spec)
from tnc.fitting.losses import get_loss
from tnc.engine.sparse import SparseTensor


def poisson_cp(size=30, rank=5, seed=0):
    rng = np.random.default_rng(seed)
    factors = [rng.gamma(1.0, 1.0, (size, rank)) for _ in range(3)]
    mean = np.einsum("ir,jr,kr->ijk", *factors)
    return mean, rng.poisson(mean).astype(float)


def correlation(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_poisson_cp_recovers_the_true_means():
    mean, counts = poisson_cp(size=60, rank=5)          # the case, about 0.3 s
    result = tnc.fit(tnc.library("cp", R=5), counts, method="gcp", loss="poisson",
                     progress=False)
    assert result.converged and result.info["optimizer"] == "lbfgsb"
    assert min(min(v.min() for v in result.tensors.values()), 0) == 0   # bounded at 0
    assert correlation(result.reconstruct(), mean) >= 0.99


@pytest.mark.parametrize("network", [
    tnc.library("tucker", I=25, J=25, K=25, R1=3, R2=3, R3=3),
    tnc.library("tt", N=3, d=20, r=3),
])
def test_bernoulli_logit_predicts_held_out_entries(network):
    rng = np.random.default_rng(1)
    logits = network.contract(network.random(seed=5))
    logits *= 4 / logits.std()
    data = (rng.random(logits.shape) < expit(logits)).astype(float)
    observed = rng.random(logits.shape) >= 0.2
    result = tnc.fit(network, np.where(observed, data, np.nan), method="gcp",
                     loss="bernoulli_logit", mask="nan", progress=False)
    held = ~observed
    predicted = result.reconstruct()[held] > 0
    accuracy = np.mean(predicted == (data[held] > 0.5))
    oracle = np.mean((logits[held] > 0) == (data[held] > 0.5))
    chance = max(data[held].mean(), 1 - data[held].mean())
    assert accuracy > chance + 0.2 and accuracy > oracle - 0.05


def test_missing_entries_never_enter_the_loss():
    mean, counts = poisson_cp(size=12, rank=2)
    mask = np.random.default_rng(2).random(counts.shape) > 0.3
    net = tnc.library("cp", R=2)
    fits = [tnc.fit(net, np.where(mask, counts, garbage), method="gcp", loss="poisson",
                    mask=mask, progress=False) for garbage in (0.0, 1e6)]
    np.testing.assert_allclose(fits[0].reconstruct(), fits[1].reconstruct())
    assert fits[0].loss == pytest.approx(fits[1].loss)


NETWORKS = {
    "tt": tnc.library("tt", N=3, d=4, r=3),
    "tied": tnc.library("sym_cp", n=5, R=2),
    "ttm": tnc.library("ttm", N=2, m=3, k=2, r=2),
    "data": tnc.compile("""network d(I = 4, J = 5, R = 3) {
        index i: I, j: J, r: R
        tensor A(i, r), B(r, j)
        data W(i, j)
        output i, j
    }"""),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_sampled_network_gives_values_and_gradients_of_the_dense_model(name):
    net = NETWORKS[name]
    tensors = net.random(seed=1, include_data=True)
    inputs = {k: tensors.pop(k) for k in net.data}
    coords = np.argwhere(np.ones(net.output_shape, bool))      # every entry, in order
    model = SampledModel(net, inputs)
    values, tape = model.forward(tensors, coords)
    dense = net.contract({**tensors, **inputs})
    np.testing.assert_allclose(values, dense.reshape(-1), atol=1e-12)
    upstream = np.random.default_rng(0).normal(size=dense.shape)
    grads = model.backward(tape, upstream.reshape(-1), coords)
    expected = net.grad({**tensors, **inputs}, upstream)
    for key in net.params:
        np.testing.assert_allclose(grads[key], expected[key], atol=1e-10)


def test_sampled_spec_replaces_output_legs_by_one_sample_index():
    spec = sampled_spec(tnc.library("cp", I=3, J=4, K=5, R=2).spec, 7)
    assert [o.indices for o in spec.occurrences] == [("#sample", "r")] * 3
    assert spec.index_sizes == {"r": 2, "#sample": 7}


def test_stratified_sampler_is_unbiased_and_draws_true_zeros():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((20, 20, 20)) < 0.05, rng.poisson(3.0, (20, 20, 20)) + 1, 0.0)
    data = SparseTensor.from_dense(dense)
    sampler = StratifiedSampler(data, rng)
    model = rng.gamma(2.0, 1.0, dense.shape)
    loss = get_loss("poisson")
    exact = loss.value(model, dense).sum()
    estimates = []
    for _ in range(300):
        sample = sampler.draw(400)
        assert (sample.values == dense[tuple(sample.coords.T)]).all()
        assert (sample.values[200:] == 0).all()
        estimates.append(np.sum(sample.weights * loss.value(model[tuple(sample.coords.T)],
                                                            sample.values)))
    assert np.mean(estimates) == pytest.approx(exact, rel=0.02)


def test_uniform_sampler_draws_only_observed_entries():
    rng = np.random.default_rng(0)
    mask = rng.random((6, 7)) > 0.5
    sample = UniformSampler(np.arange(42.0).reshape(6, 7), mask, rng).draw(500)
    assert mask[tuple(sample.coords.T)].all()
    assert (sample.values == np.ravel_multi_index(tuple(sample.coords.T), (6, 7))).all()
    assert sample.weights.sum() == pytest.approx(mask.sum())


def test_sparse_adam_fits_a_sparse_count_tensor():
    rng = np.random.default_rng(3)
    factors = [rng.gamma(1.0, 1.0, (30, 3)) * 0.4 for _ in range(3)]
    mean = np.einsum("ir,jr,kr->ijk", *factors)
    counts = rng.poisson(mean).astype(float)
    data = SparseTensor.from_dense(counts)
    result = tnc.fit(tnc.library("cp", R=3), data, method="gcp", loss="poisson",
                     optimizer="adam", epoch_iters=100, max_iter=30, lr=0.01, progress=False)
    assert result.info["sampler"] == "stratified"
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert correlation(result.reconstruct(), mean) > 0.9


def test_sparse_input_as_coo_triples_and_errors():
    coords, values = np.array([[0, 1, 2], [3, 0, 1]]), np.array([2.0, 5.0])
    data = SparseTensor.from_coo(coords.T, values, (4, 3, 3))         # pydata's (ndim, nnz)
    assert data.coords.tolist() == coords.tolist() and data.nnz == 2
    with pytest.raises(TncError, match="listed twice"):
        SparseTensor.from_coo([[0, 0, 0], [0, 0, 0]], [1.0, 2.0], (2, 2, 2))
    with pytest.raises(TncError, match="outside the shape"):
        SparseTensor.from_coo([[0, 0, 5]], [1.0], (2, 2, 2))
    with pytest.raises(TncError, match="needs dense data"):          # ALS takes sparse CP now
        tnc.fit(tnc.library("tt", N=3, d=3, r=2), data, method="dmrg")
    with pytest.raises(TncError, match="does not accept zeros"):
        tnc.fit(tnc.library("cp", R=2), data, method="gcp", loss="gamma", progress=False)
    bad = SparseTensor.from_coo([[1, 1, 1], [2, 2, 2]], [3.0, -1.0], (4, 3, 3))
    with pytest.raises(TncError, match=r"\(2, 2, 2\)=-1.0"):
        tnc.fit(tnc.library("cp", R=2), bad, method="gcp", loss="poisson", progress=False)


def test_pydata_sparse_array_is_accepted():
    sparse = pytest.importorskip("sparse")
    dense = np.zeros((5, 4, 3))
    dense[1, 2, 0], dense[4, 3, 2] = 3.0, 1.0
    result = tnc.fit(tnc.library("cp", R=2), sparse.COO.from_numpy(dense), method="gcp",
                     loss="poisson", progress=False, max_iter=5)
    assert result.reconstruct().shape == (5, 4, 3)


@pytest.mark.parametrize("optimizer", ["lbfgsb", "adam"])
def test_callback_stops_the_fit(optimizer):
    _, counts = poisson_cp(size=10, rank=2)
    seen = []

    def callback(state):
        seen.append(state["loss"])
        assert set(state["tensors"]) == {"A", "B", "C"}
        return len(seen) == 2

    result = tnc.fit(tnc.library("cp", R=2), counts, method="gcp", loss="poisson",
                     optimizer=optimizer, epoch_iters=20, callback=callback, progress=False)
    assert len(seen) == 2 and not result.converged


def test_result_saves_and_loads(tmp_path):
    _, counts = poisson_cp(size=8, rank=2)
    result = tnc.fit(tnc.library("cp", R=2), counts, method="gcp", loss="negative_binomial(4)",
                     progress=False)
    result.save(tmp_path / "fit.npz")
    loaded = tnc.load_result(tmp_path / "fit.npz")
    assert loaded.info["loss"] == "negative_binomial(4)" and loaded.method == "gcp"
    np.testing.assert_allclose(loaded.reconstruct(), result.reconstruct())


@pytest.mark.parametrize("options, phrase", [
    ({"optimizer": "newton"}, "optimizer must be one of"),
    ({"optimizer": "adam", "sampler": "gibbs"}, "sampler must be one of"),
    ({"init": "svd"}, "init must be 'random'"),
    ({"loss": "huber"}, "needs its parameter"),
])
def test_option_errors(options, phrase):
    _, counts = poisson_cp(size=6, rank=2)
    with pytest.raises(TncError) as info:
        tnc.fit(tnc.library("cp", R=2), counts, method="gcp", progress=False,
                **{"loss": "poisson", **options})
    assert phrase in str(info.value)


def test_dense_adam_with_a_mask_predicts_held_out_entries():
    rng = np.random.default_rng(0)
    net = tnc.library("tt", N=3, d=20, r=3)
    logits = net.contract(net.random(seed=5))
    logits *= 4 / logits.std()
    data = (rng.random(logits.shape) < expit(logits)).astype(float)
    observed = rng.random(logits.shape) >= 0.2
    result = tnc.fit(net, data, mask=observed, method="gcp", loss="bernoulli_logit",
                     optimizer="adam", epoch_iters=100, lr=0.01, max_iter=15, progress=False)
    assert result.info["sampler"] == "uniform"
    held = ~observed
    accuracy = np.mean((result.reconstruct()[held] > 0) == (data[held] > 0.5))
    assert accuracy > max(data[held].mean(), 1 - data[held].mean()) + 0.2


def test_huge_sparse_tensor_is_never_made_dense():
    rng = np.random.default_rng(0)
    shape = (100_000, 100_000, 100_000)                       # 1e15 entries
    coords = rng.integers(0, 100_000, (2000, 3))
    data = SparseTensor.from_coo(np.unique(coords, axis=0), np.ones(len(np.unique(coords, axis=0))),
                                 shape)
    result = tnc.fit(tnc.library("cp", R=2), data, method="gcp", loss="bernoulli_odds",
                     epoch_iters=5, max_iter=2, batch_size=400, estimate_samples=2000,
                     progress=False)
    assert result.info["optimizer"] == "adam" and np.isfinite(result.loss)
    assert result.tensors["A"].shape == (100_000, 2)


def test_weights_count_entries_several_times():
    _, counts = poisson_cp(size=8, rank=2)
    net = tnc.library("cp", R=2)
    weights = np.full(counts.shape, 2.0)
    weighted = tnc.fit(net, counts, method="gcp", loss="poisson", weights=weights,
                       progress=False)
    plain = tnc.fit(net, counts, method="gcp", loss="poisson", progress=False)
    assert weighted.loss == pytest.approx(2 * plain.loss, rel=1e-4)
    with pytest.raises(TncError, match="non-negative"):
        tnc.fit(net, counts, method="gcp", loss="poisson", weights=-weights, progress=False)


def test_command_line_fits_with_a_loss(tmp_path, capsys):
    from tnc.cli import main
    _, counts = poisson_cp(size=10, rank=2)
    np.save(tmp_path / "counts.npy", counts)
    sparse = SparseTensor.from_dense(counts)
    np.savez(tmp_path / "sparse.npz", coords=sparse.coords, values=sparse.values,
             shape=np.array(sparse.shape))
    out = tmp_path / "fit.npz"
    assert main(["fit", "cp", str(tmp_path / "counts.npy"), "--method", "gcp", "--loss",
                 "poisson", "--size", "R=2", "-q", "-o", str(out)]) == 0
    assert tnc.load_result(out).info["loss"] == "poisson"
    assert main(["fit", "cp", str(tmp_path / "sparse.npz"), "--method", "gcp", "--loss",
                 "negative_binomial(r=3)", "--size", "R=2", "-q", "--option", "optimizer=adam",
                 "--option", "max_iter=2", "--option", "epoch_iters=10"]) == 0
    np.save(tmp_path / "bad.npy", counts - 1)
    assert main(["fit", "cp", str(tmp_path / "bad.npy"), "--method", "gcp", "--loss",
                 "poisson", "--size", "R=2", "-q"]) == 2
    assert "loss 'poisson' needs non-negative integer counts" in capsys.readouterr().err


def test_lower_bounds_per_tensor_or_flat():
    packing = Packing({"A": (2,), "B": (1,)})
    assert lower_bounds(packing, None) is None
    assert lower_bounds(packing, {"A": None, "B": None}) is None
    np.testing.assert_array_equal(lower_bounds(packing, {"B": 0.0}).lb, [-np.inf, -np.inf, 0.0])
    np.testing.assert_array_equal(lower_bounds(packing, np.array([0.0, -np.inf, 1.0])).lb,
                                  [0.0, -np.inf, 1.0])
    with pytest.raises(TncError, match="`C`"):
        lower_bounds(packing, {"C": 0.0})
    with pytest.raises(TncError, match="expected 3 entries"):
        lower_bounds(packing, np.zeros(2))


# -- scale: the stopping tests are relative to the data --------------------------------------
def planted_cp(seed=1, noise=0.01):
    net = tnc.library("cp", I=10, J=11, K=12, R=3)
    x = net.contract(net.random(seed=seed))
    return net, x + noise * np.random.default_rng(0).standard_normal(x.shape)


@pytest.mark.parametrize("c", [1e-200, 1e-4, 3.7, 1e160, 1e200])
def test_gaussian_gcp_of_scaled_data_is_the_scaled_fit(c):
    """GCP on c * X (noiseless: the 1e-4 case stopped after one step, 101 % error) returns
    c times the fit of X: same convergence, the model's error the same to the stopping tol."""
    net = tnc.library("cp", I=10, J=11, K=12, R=3)
    x = net.contract(net.random(seed=1))
    base = tnc.fit(net, x, method="gcp", progress=False)
    scaled = tnc.fit(net, c * x, method="gcp", progress=False)
    assert base.converged and scaled.converged
    # rounding of c * x alone can move L-BFGS-B's last step: iterations agree to one or two
    assert abs(scaled.iterations - base.iterations) <= 2
    error = np.linalg.norm(scaled.reconstruct() / c - x) / np.linalg.norm(x)
    assert error < 1e-4
    for name, tensor in scaled.tensors.items():
        assert np.allclose(tensor / c ** (1 / 3), base.tensors[name], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["lbfgsb", "adam"])
def test_power_of_two_scales_give_the_same_fit_exactly(optimizer):
    """c = 2**k: the scaled data are bit for bit X's, so every step is the same."""
    net, x = planted_cp()
    options = dict(optimizer=optimizer, progress=False)
    if optimizer == "adam":
        options.update(max_iter=4, epoch_iters=20, batch_size=100)
    base = tnc.fit(net, x, method="gcp", **options)
    for c in (2.0 ** -660, 2.0 ** 600):
        scaled = tnc.fit(net, c * x, method="gcp", **options)
        assert (scaled.iterations, scaled.converged) == (base.iterations, base.converged)
        for name, tensor in scaled.tensors.items():
            assert np.allclose(tensor / c ** (1 / 3), base.tensors[name], rtol=1e-13, atol=0)
    assert base.info["data_scale"] == pytest.approx(1 / np.sqrt(np.mean(x ** 2)))   # data times this


def test_scaled_fit_reports_losses_and_callbacks_in_the_data_units():
    net, x = planted_cp()
    seen = []
    result = tnc.fit(net, 1e-4 * x, method="gcp", progress=False,
                     callback=lambda state: seen.append(state) and False)
    model = result.reconstruct()
    assert result.loss == pytest.approx(float(np.sum((model - 1e-4 * x) ** 2)), rel=1e-9)
    last = seen[-1]
    recomputed = net.contract(last["tensors"])
    assert last["loss"] == pytest.approx(float(np.sum((recomputed - 1e-4 * x) ** 2)), rel=1e-9)


@pytest.mark.parametrize("name, sizes", [("cp", dict(I=30, J=30, K=30, R=4)),
                                         ("tucker", dict(I=7, J=6, K=5, R1=2, R2=3, R3=2))])
def test_dense_objective_model_is_laid_out_in_the_output_order(name, sizes):
    """The grad plan's last product writes the model in the output's leg order (C-ordered,
    not a transposed view), so the elementwise loss reads it contiguously; its values
    and the gradient stay those of einsum / the generic reverse sweep."""
    from tnc.engine.grad import grad_plan
    net = tnc.library(name, **sizes)
    t = net.random(seed=3)
    plan = grad_plan(net, "auto")
    model, tape = plan.forward([t[o.name] for o in net.occurrences])
    assert model.flags.c_contiguous
    np.testing.assert_allclose(model, net.contract(t), rtol=1e-12)
    upstream = np.random.default_rng(0).standard_normal(model.shape)
    grads = plan.backward(tape, upstream)
    if name == "cp":
        expected = np.einsum("ijk,jr,kr->ir", upstream, t["B"], t["C"])
        np.testing.assert_allclose(grads["A"], expected, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_gcp_from_its_random_start_reaches_the_least_squares_fit(seed):
    """Modes of very different sizes (400 x 5 x 10): an unbalanced Gaussian start (factor
    norms ~ sqrt of each size) drifted further apart under L-BFGS-B and ended at relative
    errors 0.32-0.41 against ALS's 0.115; the balanced start (gcp.balanced) reaches it."""
    net = tnc.library("cp", I=400, J=5, K=10, R=4)
    rng = np.random.default_rng(0)
    X = net.contract(net.random(seed=1)) + 3.0
    X = X + 0.3 * np.std(X) * rng.standard_normal(X.shape)
    reference = tnc.fit(net, X, method="als", progress=False).rel_error
    fit = tnc.fit(net, X, method="gcp", progress=False, seed=seed)
    assert fit.rel_error == pytest.approx(reference, rel=1e-3)
