"""Stratified-NTF and NTF: monotone updates, recovery of a planted model, TV smoothing, errors."""
import numpy as np
import pytest

import tnc
from tnc.models.stratified import (model_text, ntf, parameter_count, stratified_ntf, stratum_networks,
                            total_variation)


def random_strata(seed=0, sizes=(7, 9, 4), modes=(5, 6)):
    rng = np.random.default_rng(seed)
    return [rng.random((m, *modes)) for m in sizes]


def planted_strata(seed=0, sizes=(20, 30, 25), modes=(6, 7), rank_specific=1, n_topics=3):
    """Strata built exactly from non-negative factors of the Stratified-NTF model."""
    rng = np.random.default_rng(seed)
    topics = [rng.random((d, n_topics)) for d in modes]
    strata = []
    for m in sizes:
        features = [rng.random((d, rank_specific)) for d in modes]
        weights = rng.random((m, n_topics))
        strata.append(np.einsum("il,jl->ij", *features)[None]
                      + np.einsum("ar,ir,jr->aij", weights, *topics))
    return strata


def losses(result):
    """The loss at the start (``info["initial"]``) and after each iteration."""
    return np.array([result.info["initial"]["loss"]] + [h["loss"] for h in result.history])


@pytest.mark.parametrize("rank_specific, n_topics, tv", [(2, 3, 0.0), (0, 2, 0.0), (1, 4, 0.3)])
def test_loss_never_increases(rank_specific, n_topics, tv):
    result = stratified_ntf(random_strata(), rank_specific, n_topics, tv=tv, max_iter=60,
                            tol=0, progress=False, seed=3)
    loss = losses(result)
    assert len(loss) == 61
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1])
    assert loss[-1] < 0.9 * loss[0]


def test_factors_stay_non_negative():
    result = stratified_ntf(random_strata(), 2, 3, max_iter=20, progress=False)
    arrays = [*result.topics, *result.weights, *[f for fs in result.features for f in fs]]
    assert all((a >= 0).all() for a in arrays)


def test_planted_model_is_recovered_to_small_error():
    strata = planted_strata()
    result = stratified_ntf(strata, 1, 3, max_iter=400, tol=1e-12, progress=False, seed=1)
    assert result.rel_error < 5e-3
    dense = np.concatenate([result.reconstruct(s) for s in range(len(strata))])
    truth = np.concatenate(strata)
    assert np.linalg.norm(dense - truth) / np.linalg.norm(truth) == pytest.approx(
        result.rel_error, rel=1e-9)


def test_tv_penalty_reduces_topic_total_variation():
    strata = planted_strata()
    tvs = [total_variation(stratified_ntf(strata, 1, 3, tv=weight, max_iter=150,
                                          progress=False, seed=1).topics)
           for weight in (0.0, 1.0, 10.0)]
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[2] < 0.5 * tvs[0]


def test_parameter_count_matches_the_factors():
    strata = random_strata()
    result = stratified_ntf(strata, 2, 3, max_iter=1, progress=False)
    count = (sum(f.size for fs in result.features for f in fs)
             + sum(w.size for w in result.weights) + sum(h.size for h in result.topics))
    assert result.parameter_count == count == parameter_count([a.shape for a in strata], 2, 3)


def test_ntf_is_nonnegative_cp():
    rng = np.random.default_rng(2)
    factors = [rng.random((n, 2)) for n in (8, 5, 6)]
    tensor = np.einsum("ir,jr,kr->ijk", *factors)
    result = ntf(tensor, rank=2, max_iter=500, tol=1e-12, progress=False)
    assert result.rel_error < 1e-2
    assert result.parameter_count == 2 * (8 + 5 + 6)
    assert result.features == [[]]


def test_matrix_strata_are_stratified_nmf():
    rng = np.random.default_rng(4)
    strata = [rng.random((6, 9)), rng.random((5, 9))]
    result = stratified_ntf(strata, 1, 2, max_iter=30, tol=0, progress=False)
    assert np.all(np.diff(losses(result)) <= 1e-12 * losses(result)[:-1])
    assert result.reconstruct(0).shape == (6, 9)


def test_callback_can_stop_and_sees_each_iteration():
    seen = []
    result = stratified_ntf(random_strata(), 1, 2, max_iter=50, progress=False,
                            callback=lambda state: seen.append(state["iteration"]) or
                            state["iteration"] >= 3)
    assert seen == [1, 2, 3] and result.iterations == 3 and not result.converged


def test_model_is_made_of_tnc_networks():
    nets = stratum_networks((5, 3, 4), 2, 3)
    assert {"topics", "features", "env_W", "env_H1", "env_V2"} <= set(nets)
    assert nets["topics"].output_shape == (5, 3, 4)
    assert "network env_H2" in model_text(2, 1)


@pytest.mark.parametrize("strata, message", [
    ([], "non-empty list"),
    (np.ones((3, 4, 5)), "non-empty list"),
    ([np.ones(4)], "shape (m_s, d_1"),
    ([np.ones((3, 4)), np.ones((3, 5))], "only the sample count may differ"),
    ([-np.ones((3, 4))], "negative entries"),
    ([np.full((3, 4), np.nan)], "NaN"),
])
def test_bad_strata_are_clear_errors(strata, message):
    with pytest.raises(tnc.TncError, match=message.replace("(", r"\(")):
        stratified_ntf(strata, progress=False)


@pytest.mark.parametrize("options, message", [
    ({"n_topics": 0}, "n_topics must be an integer >= 1"),
    ({"rank_specific": -1}, "rank_specific must be"),
    ({"rank_specific": 1.5}, "rank_specific must be"),
    ({"tv": -1.0}, "tv must be"),
    ({"strata_updates": 0}, "strata_updates must be an integer >= 1"),
    ({"max_iter": -1}, "max_iter must be"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(tnc.TncError, match=message):
        stratified_ntf(random_strata(), **options, progress=False)


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    strata = [rng.random((5, 4, 3)), rng.random((7, 4, 3))]
    result = stratified_ntf(strata, rank_specific=2, n_topics=2, tv=0.1, max_iter=5,
                            progress=False)
    path = tmp_path / "strat.npz"
    result.save(path)
    loaded = tnc.models.stratified.load_stratified(path)
    assert loaded.history == result.history and loaded.info == result.info
    assert (loaded.parameter_count, loaded.converged, loaded.iterations) == (
        result.parameter_count, result.converged, result.iterations)
    for s in range(2):
        np.testing.assert_array_equal(loaded.reconstruct(s), result.reconstruct(s))
        for mine, theirs in zip(loaded.features[s], result.features[s]):
            np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(loaded.topics, result.topics):
        np.testing.assert_array_equal(mine, theirs)
    plain = tnc.models.stratified.ntf(strata[0], rank=2, max_iter=3, progress=False)   # no features
    plain.save(path)
    assert tnc.models.stratified.load_stratified(path).features == [[]]
    with pytest.raises(tnc.TncError, match="a stratified one; read it with tnc.models.stratified"):
        tnc.load_result(path)
    with pytest.raises(tnc.TncError, match="not a coupled fit result"):
        tnc.load_coupled(path)
    with pytest.raises(tnc.TncError, match="not a tnc result archive: not an .npz"):
        (tmp_path / "junk.npz").write_bytes(b"junk")
        tnc.models.stratified.load_stratified(tmp_path / "junk.npz")
