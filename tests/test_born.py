"""Born machines (tnc.mps.born): exact normalisation, training, exact sampling, gradients, archives.

References are independent: dense numpy contractions of the raw (non-canonical)
cores over all d**N strings, finite differences, and chi-square tests of
sample counts against the dense probabilities.
"""
import numpy as np
import pytest
from scipy.stats import chisquare

import tnc
from tnc.mps.born import (BornMachine, all_sequences, bars_and_stripes, canonical, encode,
                          load_born, nll_and_grad, train_born)
from tnc.mps.uniform_born import UniformMPS, _by_length, train_uniform, uniform_nll_and_grad

LN30 = float(np.log(30))


def random_chain(bonds, d, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((bonds[k], d, bonds[k + 1])) for k in range(len(bonds) - 1)]


def dense_probabilities(cores):
    """psi(x)^2 / sum psi^2 by numpy.einsum over the raw cores, C order over (d,) * N."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    terms = [letters[k] + letters[13 + k] + letters[k + 1] for k in range(len(cores))]
    out = letters[0] + letters[13:13 + len(cores)] + letters[len(cores)]
    psi = np.einsum(",".join(terms) + "->" + out, *cores, optimize=True).reshape(-1)
    return psi ** 2 / np.sum(psi ** 2)


@pytest.mark.parametrize("length, d, rank", [(2, 2, 2), (7, 2, 5), (12, 2, 6), (5, 3, 4)])
def test_probabilities_sum_to_one_over_every_string(length, d, rank):
    bonds = [1] + [min(rank, d ** min(k, length - k)) for k in range(1, length)] + [1]
    cores = random_chain(bonds, d, seed=length)
    model = BornMachine(canonical(cores, length // 2), length // 2)
    every = all_sequences(length, d)
    assert len(every) == d ** length
    p = np.exp(model.log_prob(every))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(p, dense_probabilities(cores), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(model.probabilities().reshape(-1), p, rtol=1e-10)


def test_z_is_the_centre_norm_of_the_canonical_form():
    cores = random_chain([1, 2, 4, 3, 1], 2, seed=3)
    fixed = canonical(cores, 2)
    fixed[2] = 3.0 * fixed[2]                      # Z = 9, read off the centre core
    model = BornMachine(fixed, 2)
    raw = dense_probabilities(fixed)               # normalised by its own sum
    assert model.norm_squared() == pytest.approx(9.0)
    np.testing.assert_allclose(np.exp(model.log_prob(all_sequences(4, 2))), raw, rtol=1e-10)


def test_sweeps_reach_the_bars_and_stripes_floor():
    x = bars_and_stripes()
    assert len(x) == 30
    model = train_born(x, 2, max_rank=16, max_iter=10, progress=False)
    losses = [record["loss"] for record in model.history]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))    # the NLL decreases
    assert losses[0] > LN30 + 1.0
    assert model.nll(x) == pytest.approx(losses[-1], abs=1e-9)
    assert LN30 - 1e-9 < model.nll(x) < LN30 + 0.01                  # floor: uniform on 30
    assert 2 < max(model.ranks) <= 16
    samples = model.sample(2000, seed=0)
    known = {tuple(row) for row in x}
    assert np.mean([tuple(row) in known for row in samples]) > 0.99


def test_gradient_training_lowers_the_nll_and_stays_normalised():
    x = bars_and_stripes()
    model = train_born(x, 2, method="gradient", rank=4, max_iter=60, lr=0.05, progress=False)
    losses = [record["loss"] for record in model.history]
    assert losses[-1] < losses[0] - 3
    assert model.nll(x) < losses[0] - 3
    assert np.exp(model.log_prob(all_sequences(16, 2))).sum() == pytest.approx(1.0, abs=1e-9)
    # sweeps can continue a gradient-trained model
    more = train_born(x, 2, start=model, max_iter=2, progress=False)
    assert more.nll(x) < model.nll(x)


def test_sampling_frequencies_match_the_exact_probabilities():
    cores = random_chain([1, 3, 4, 4, 3, 1], 3, seed=7)
    model = BornMachine(canonical(cores, 4), 4)      # sampling re-gauges to centre 0
    draws = 30000
    samples = model.sample(draws, seed=11)
    counts = np.bincount(np.ravel_multi_index(samples.T, (3,) * 5), minlength=3 ** 5)
    expected = draws * dense_probabilities(cores)
    assert chisquare(counts, expected).pvalue > 1e-3
    biased = expected * (1 + 0.2 * (np.arange(3 ** 5) % 2))      # the test can fail
    assert chisquare(counts, biased / biased.sum() * draws).pvalue < 1e-6


def test_nll_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    cores = random_chain([1, 3, 4, 2, 1], 3, seed=1)
    x = rng.integers(0, 3, (40, 4))
    loss, grads = nll_and_grad(cores, x)
    assert loss == pytest.approx(-np.mean(np.log(dense_probabilities(cores))[
        np.ravel_multi_index(x.T, (3,) * 4)]), rel=1e-12)
    eps = 1e-6
    for j, core in enumerate(cores):
        for index in np.ndindex(core.shape):
            shifted = [[c.copy() for c in cores] for _ in range(2)]
            shifted[0][j][index] += eps
            shifted[1][j][index] -= eps
            fd = (nll_and_grad(shifted[0], x)[0] - nll_and_grad(shifted[1], x)[0]) / (2 * eps)
            assert grads[j][index] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_uniform_mps_probabilities_for_every_length():
    model = UniformMPS.random(3, 4, seed=2)
    for n in (1, 2, 5, 7):
        every = all_sequences(n, 3)
        p = np.exp(model.log_prob(every))
        psi = np.array([model.alpha @ np.linalg.multi_dot(
            [np.eye(4)] + [model.core[:, s, :] for s in row]) @ model.omega for row in every])
        np.testing.assert_allclose(p, psi ** 2 / np.sum(psi ** 2), rtol=1e-10)
        assert np.exp(model.log_z(n)) == pytest.approx(np.sum(psi ** 2), rel=1e-10)


def test_uniform_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    model = UniformMPS.random(2, 3, seed=5)
    sequences = [rng.integers(0, 2, rng.integers(1, 7)) for _ in range(30)]
    groups = list(_by_length(sequences, 2))
    loss, grads = uniform_nll_and_grad(model, groups)
    assert loss == pytest.approx(model.nll(sequences), rel=1e-12)
    eps = 1e-6
    for key in ("A", "alpha", "omega"):
        arrays = {"A": model.core, "alpha": model.alpha, "omega": model.omega}
        for index in np.ndindex(arrays[key].shape):
            values = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in arrays.items()}
                moved[key][index] += sign * eps
                values.append(uniform_nll_and_grad(
                    UniformMPS(moved["A"], moved["alpha"], moved["omega"]), groups)[0])
            fd = (values[0] - values[1]) / (2 * eps)
            assert grads[key][index] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_uniform_sampling_frequencies_and_training():
    model = UniformMPS.random(2, 3, seed=8)
    samples = model.sample(20000, 6, seed=3)
    counts = np.bincount(np.ravel_multi_index(samples.T, (2,) * 6), minlength=64)
    assert chisquare(counts, 20000 * model.probabilities(6).reshape(-1)).pvalue > 1e-3
    # a language of any length: a^k b^k (k = 1..4) is learnt by one tied core
    words = ["ab", "aabb", "aaabbb", "aaaabbbb"]
    fitted = train_uniform(encode(words * 5, "ab"), 2, rank=5, max_iter=150, lr=0.05,
                           progress=False)
    assert fitted.history[-1]["loss"] < 0.2 * fitted.history[0]["loss"]
    draws = fitted.sample(200, 4, seed=0)
    assert np.mean([tuple(row) == (0, 0, 1, 1) for row in draws]) > 0.9


def test_save_and_load_both_kinds(tmp_path):
    x = bars_and_stripes()
    model = train_born(x, 2, max_rank=6, max_iter=2, progress=False)
    model.save(tmp_path / "born.npz")
    loaded = load_born(tmp_path / "born.npz")
    assert isinstance(loaded, BornMachine) and loaded.history == model.history
    np.testing.assert_allclose(loaded.log_prob(x), model.log_prob(x), rtol=1e-12)
    uniform = UniformMPS.random(2, 3, seed=1)
    uniform.save(tmp_path / "u.npz")
    back = load_born(tmp_path / "u.npz")
    np.testing.assert_allclose(back.probabilities(4), uniform.probabilities(4), rtol=1e-12)
    # a damaged chain and a foreign archive are errors naming the problem
    from tnc.fitting.result import write_archive
    cores = {f"A{k}": c for k, c in enumerate(model.cores)}
    cores["A1"] = cores["A1"][:1]
    write_archive(tmp_path / "bad.npz", model._meta("born"), {"core": cores})
    with pytest.raises(tnc.TncError, match="core A1 has shape"):
        load_born(tmp_path / "bad.npz")
    net = tnc.library("cp", I=3, J=4, K=5, R=2)
    tnc.FitResult(net, net.random(), "als", [{"loss": 1.0}], True, 1, 0.1).save(
        tmp_path / "fit.npz")
    with pytest.raises(tnc.TncError, match="not a born fit result but a network one"):
        load_born(tmp_path / "fit.npz")


def test_symbols_outside_the_alphabet_name_the_first_bad_entry():
    with pytest.raises(tnc.TncError, match=r"data\[1, 2\] is 2, not a symbol of the alphabet "
                                           r"0\.\.1 \(d=2\)"):
        train_born([[0, 1, 1], [1, 0, 2], [5, 0, 0]], 2, progress=False)
    with pytest.raises(tnc.TncError, match=r"data\[0, 1\] is 0\.5"):
        train_born([[0, 0.5, 1]], 2, progress=False)
    with pytest.raises(tnc.TncError, match=r"data\[0, 0\] is -1"):
        BornMachine(canonical(random_chain([1, 2, 1], 2, 0))).log_prob([[-1, 0]])
    with pytest.raises(tnc.TncError, match=r"sequence 2 \('\(x\)'\) has 'x' at position 1"):
        encode(["()", "(())", "(x)"], "()")
    with pytest.raises(tnc.TncError, match=r"sequence 1\[2\] is 3"):
        train_uniform([[0, 1], [1, 0, 3], [0, 2, 2]], 3, progress=False)
    with pytest.raises(tnc.TncError, match="2 sites per sequence, but the Born machine has 3"):
        BornMachine(canonical(random_chain([1, 2, 2, 1], 2, 0))).log_prob([[0, 1]])


@pytest.mark.parametrize("call, message", [
    (lambda x: train_born(x, 2, max_rank=0), "option max_rank must be an integer >= 1"),
    (lambda x: train_born(x, 2, lr=-0.1), "option lr must be a finite number > 0"),
    (lambda x: train_born(x, 2, max_iter="3"), "option max_iter must be an integer >= 1"),
    (lambda x: train_born(x, 2, rank=3), "unknown option"),
    (lambda x: train_born(x, 2, method="gradient", batch_size=0), "option batch_size"),
    (lambda x: train_born(x, 2, method="newton"), "method must be one of 'sweep', 'gradient'"),
    (lambda x: train_born(x, 1), "option d must be an integer >= 2"),
    (lambda x: train_uniform(list(x), 2, max_iter=0), "option max_iter must be an integer"),
    (lambda x: UniformMPS.random(2, 2).sample(0, 3), "option n must be an integer >= 1"),
])
def test_options_are_validated(call, message):
    with pytest.raises(tnc.TncError, match=message):
        call(bars_and_stripes())


def test_conversion_with_tensor_trains():
    X = np.random.default_rng(9).standard_normal((3, 3, 3, 3))
    model = BornMachine.from_train(tnc.TensorTrain.from_dense(X))
    np.testing.assert_allclose(model.probabilities(), X ** 2 / np.sum(X ** 2), rtol=1e-10)
    psi = model.to_train().to_dense()
    np.testing.assert_allclose(psi ** 2, model.probabilities(), rtol=1e-10, atol=1e-14)
    with pytest.raises(tnc.TncError, match="real train of at least 2 sites"):
        BornMachine.from_train(tnc.TensorTrain.from_dense(X + 1j))


def test_uniform_mps_against_the_tied_network_and_its_gradient_engine():
    """The language's tied-core network contracts to the same psi, and tnc's gradient
    engine (summing over the tied uses) gives the same NLL gradient on one length."""
    rng = np.random.default_rng(6)
    model = UniformMPS.random(2, 3, seed=7)
    net, tensors = model.network(5)
    psi = net.contract(tensors)
    np.testing.assert_allclose(psi ** 2 / np.sum(psi ** 2), model.probabilities(5), rtol=1e-10)
    x = rng.integers(0, 2, (25, 5))
    counts = np.bincount(np.ravel_multi_index(x.T, (2,) * 5), minlength=32).reshape((2,) * 5)
    # NLL = -(1/m) sum_x counts log psi^2 + log sum psi^2: its upstream on psi
    upstream = -(2 / len(x)) * counts / psi + 2 * psi / np.sum(psi ** 2)
    engine = net.grad(tensors, upstream)
    loss, grads = uniform_nll_and_grad(model, list(_by_length(x, 2)))
    assert loss == pytest.approx(model.nll(x), rel=1e-12)
    for key in ("A", "alpha", "omega"):
        np.testing.assert_allclose(grads[key], engine[key], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("sweeps", [3, 4])          # ending rightward and leftward
def test_sweep_loss_is_the_nll_of_the_returned_model(sweeps):
    """Each sweep's loss comes from its last environment, not a fresh pass: it must be the
    NLL of the model after that sweep (checked on the final one by a full evaluation)."""
    x = np.random.default_rng(4).integers(0, 3, (60, 6))
    model = train_born(x, 3, max_rank=5, max_iter=sweeps, tol=0.0, progress=False)
    assert len(model.history) == sweeps
    assert model.history[-1]["loss"] == pytest.approx(model.nll(x), rel=1e-12)


@pytest.mark.parametrize("train, old", [
    (lambda x, **kw: train_born(x, 2, max_rank=4, tol=0.0, progress=False, **kw), "sweeps"),
    (lambda x, **kw: train_born(x, 2, method="gradient", rank=2, progress=False, **kw),
     "iterations"),
    (lambda x, **kw: train_uniform(list(x), 2, rank=2, progress=False, **kw), "iterations"),
])
def test_the_budget_is_max_iter_and_the_old_names_warn(train, old):
    x = bars_and_stripes(3)
    model = train(x, max_iter=3)
    assert model.iterations == len(model.history) == 3
    assert [h["iteration"] for h in model.history] == [1, 2, 3]
    with pytest.warns(DeprecationWarning, match=f"{old}= is deprecated, use max_iter="):
        again = train(x, **{old: 3})
    assert [h["loss"] for h in again.history] == [h["loss"] for h in model.history]
    with pytest.raises(tnc.TncError, match="budget once"):
        train(x, max_iter=3, **{old: 3})
    with pytest.warns(DeprecationWarning), pytest.raises(tnc.TncError,
                                                         match=f"option {old} must be"):
        train(x, **{old: 0})      # the error names the option as the caller wrote it


def test_born_machines_are_results_with_records_and_a_summary():
    from tnc.fitting.result import Result
    x = bars_and_stripes(3)
    seen = []
    model = train_born(x, 2, max_rank=4, max_iter=4, tol=0.0, progress=False,
                       callback=lambda state: seen.append(state["iteration"]) or len(seen) == 2)
    assert isinstance(model, Result) and seen == [1, 2] and model.iterations == 2
    assert model.loss == model.history[-1]["loss"] == pytest.approx(model.nll(x), rel=1e-12)
    assert model.rel_error is None and model.wall_time >= model.history[-1]["time"] >= 0
    assert "Born machine of 9 sites" in repr(model) and "2 iterations" in model.summary()
    uniform = train_uniform(list(x), 2, rank=2, max_iter=2, progress=False)
    assert isinstance(uniform, Result) and "uniform MPS" in uniform.summary()
