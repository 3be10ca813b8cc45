"""MULTIFAC (tnc.models.multifac): rank recovery, classification, missing slices, cross-validation."""
import numpy as np
import pytest

import tnc
from tnc.models.multifac import (classify, cp_signal, cross_validate, fold_masks, impute, linked_cp_text,
                          multifac, multifac_model, noise_floors, one_standard_error,
                          two_step_cv)


def unit(a):
    return a / np.linalg.norm(a, axis=0)


def linked_data(seed, shapes=((8, 7, 6), (8, 9, 5)), shared=1, individual=(2, 1), snr=10.0):
    """Equal-weight CP signals sharing ``shared`` first-mode columns, scaled to unit mean square."""
    rng = np.random.default_rng(seed)
    U = unit(rng.standard_normal((shapes[0][0], shared + sum(individual))))
    data, signal, start = [], [], shared
    for k, shape in enumerate(shapes):
        cols = list(range(shared)) + list(range(start, start + individual[k]))
        start += individual[k]
        s = cp_signal([U[:, cols], *(unit(rng.standard_normal((n, len(cols)))) for n in shape[1:])])
        x = s + rng.standard_normal(shape) * np.sqrt(s.var() / snr)
        scale = 1 / np.sqrt(np.mean(x ** 2))
        data.append(x * scale)
        signal.append(s * scale)
    return data, signal


def test_recovers_shared_and_individual_ranks():
    data, signal = linked_data(0)
    result = multifac(data, rank=8, sigma=2.0, restarts=2)
    assert result.ranks == {"shared": 1, "individual": [2, 1]}
    assert result.weights.shape == (2, 8)
    for k in range(2):
        err = np.sum((result.signal(k) - signal[k]) ** 2) / np.sum(signal[k] ** 2)
        assert err < 0.05
    # the unpenalised fit of the same rank overfits the noise
    plain = multifac(data, rank=8, sigma=0.0, max_iter=200)
    rse = lambda r: sum(np.sum((r.signal(k) - signal[k]) ** 2) for k in range(2))  # noqa: E731
    assert rse(result) < rse(plain)


def unequal_data(seed, shapes=((8, 7, 6), (8, 9, 5)), scales=((1.0, 1.0, 0.4), (1.0, 0.3)),
                 snr=10.0):
    """One shared and 2 + 1 individual components, the last of each tensor weak (``scales``)."""
    rng = np.random.default_rng(seed)
    U = unit(rng.standard_normal((shapes[0][0], 4)))
    cols = [[0, 1, 2], [0, 3]]
    data = []
    for k, shape in enumerate(shapes):
        F = [unit(rng.standard_normal((n, len(cols[k])))) for n in shape[1:]]
        F[0] = F[0] * np.array(scales[k])
        s = cp_signal([U[:, cols[k]], *F])
        x = s + rng.standard_normal(shape) * np.sqrt(s.var() / snr)
        data.append(x / np.sqrt(np.mean(x ** 2)))
    return data


def test_noise_floor_keeps_weak_components_the_relative_rule_drops():
    data = unequal_data(2)
    result = multifac(data, rank=8, sigma=1.0, restarts=2)
    assert result.threshold == "noise"
    assert result.ranks == {"shared": 1, "individual": [2, 1]}
    # the weak individual component of tensor 2 is a quarter of its largest weight
    relative = multifac(data, rank=8, sigma=1.0, restarts=2, threshold=0.25)
    assert relative.ranks == {"shared": 1, "individual": [2, 0]}
    floors = noise_floors(data, result.tensors)
    assert np.allclose(floors, result.floors)
    # noise std 1/sqrt(11) of unit-mean-square data at SNR 10, times sum sqrt(I_n), n >= 2
    for k, x in enumerate(data):
        expected = np.sqrt(1 / 11) * sum(np.sqrt(n) for n in x.shape[1:])
        assert 0.8 * expected < floors[k] < 1.25 * expected
    # leaks (a tensor borrowing another's U column) stay below the floor
    alive = result.weights > 1e-6 * result.weights.max()
    assert alive.sum() > 5 and len([c for c in result.classes if c != "zero"]) == 4
    with pytest.raises(tnc.TncError, match="threshold"):
        multifac(data, rank=2, sigma=1.0, threshold="nois", max_iter=2)


def test_missing_slice_imputation_beats_the_mean():
    data, signal = linked_data(1, shared=2, individual=(1, 1))
    rng = np.random.default_rng(5)
    masks = [rng.random(x.shape) > 0.05 for x in data]
    gone = [2, 5]
    masks[1][gone] = False
    result = multifac(data, rank=8, sigma=2.0, masks=masks, restarts=2)
    completed = impute(result, data, masks)
    truth = signal[1][gone]
    mean = np.delete(data[1], gone, axis=0).mean(axis=0)
    ours = np.sum((completed[1][gone] - truth) ** 2)
    baseline = np.sum((mean - truth) ** 2)
    assert ours < 0.7 * baseline
    assert np.array_equal(completed[0][masks[0]], data[0][masks[0]])   # observed entries kept


def test_classify_and_text():
    weights = np.array([[5.0, 4.0, 0.0, 1e-9, 3.0], [3.0, 0.0, 2.0, 0.0, 0.1]])
    assert classify(weights) == ["shared", "individual 1", "individual 2", "zero", "individual 1"]
    assert classify(weights, floors=[3.5, 0.05]) == ["shared", "individual 1", "individual 2",
                                                     "zero", "individual 2"]
    text = linked_cp_text([(4, 3, 2), (4, 5, 2, 2)], rank=3, sigma=0.5)
    model = tnc.compile_model(text)
    assert [t.data for t in model.terms] == ["T1", "T2"]
    assert set(model.l2) == {"U", "F1_2", "F1_3", "F2_2", "F2_3", "F2_4"}
    assert all(v == 0.5 for v in model.l2.values())
    assert multifac_model([(4, 3), (4, 2)], 2, 1.0).params["U"] == (4, 2)
    with pytest.raises(tnc.TncError, match="share their first mode"):
        linked_cp_text([(4, 3), (5, 3)], rank=2)


def test_cross_validation_one_standard_error_rule():
    data, _ = linked_data(2)
    cv = cross_validate(data, [0.5, 2.0, 50.0], rank=6, folds=3, max_iter=300)
    assert cv.mean.shape == (3,) and cv.se.shape == (3,)
    assert cv.chosen >= cv.best and cv.chosen in cv.sigmas
    best = cv.sigmas.index(cv.best)
    assert cv.mean[cv.sigmas.index(cv.chosen)] <= cv.mean[best] + cv.se[best]
    assert cv.chosen != 50.0            # a penalty that kills everything is clearly worse
    assert np.all((cv.mean > 0) & (cv.mean < 1.5))      # mean relative error per tensor
    sse = cross_validate(data, [0.5, 2.0, 50.0], rank=6, folds=3, max_iter=300, score="sse")
    assert sse.chosen != 50.0 and sse.mean.min() > 1.0
    with pytest.raises(tnc.TncError, match="score"):
        cross_validate(data, [1.0], rank=2, folds=2, score="mse")


def test_one_standard_error_rule_on_a_handcrafted_table():
    ranks = [2, 4, 6, 8, 10]
    mean = [0.90, 0.64, 0.61, 0.60, 0.605]
    se = [0.03, 0.02, 0.02, 0.015, 0.02]
    # best 8 (0.60 + 0.015): 6 is within one SE, 4 is not -> the smallest within is 6
    assert one_standard_error(ranks, mean, se, "smallest") == 6
    assert one_standard_error(ranks, mean, se, "largest") == 10
    # a smaller standard error of the best excludes 6 as well
    assert one_standard_error(ranks, mean, [0.03, 0.02, 0.02, 0.005, 0.02], "smallest") == 8
    with pytest.raises(tnc.TncError, match="prefer"):
        one_standard_error(ranks, mean, se, "middle")


def test_two_step_cv_picks_enough_rank_and_the_fit_classifies_right():
    data, signal = linked_data(0)                 # shared 1, individual 2 and 1: 4 in all
    cv = two_step_cv(data, ranks=(2, 4, 6), sigmas=(1.0, 2.0), folds=3, seed=0, max_iter=500)
    assert cv.rank_mean.shape == (3,) and cv.sigma_mean.shape == (2,)
    assert cv.rank_sigma == 1.0 and cv.sigma in (1.0, 2.0)
    # rank 2 cannot hold 4 components: clearly worse, never chosen
    assert cv.rank >= 4 and cv.rank_mean[0] > cv.rank_mean[1:].max()
    assert cv.rank == cv.ranks[int(np.argmin(cv.rank_mean))]              # rank_rule "best"
    assert cv.sigma == cv.sigmas[int(np.argmin(cv.sigma_mean))]           # sigma_rule "best"
    result = multifac(data, cv.rank, cv.sigma, restarts=3)
    assert result.ranks == {"shared": 1, "individual": [2, 1]}
    assert "step 1" in cv.table() and f"* {cv.rank:4d}" in cv.table()
    # the one-standard-error rules on the same folds: the same step-1 table
    sparse = two_step_cv(data, ranks=(2, 4, 6), sigmas=(1.0, 2.0), folds=3, seed=0, max_iter=500,
                         rank_rule="smallest", sigma_rule="largest")
    assert np.allclose(sparse.rank_mean, cv.rank_mean)
    assert sparse.rank == one_standard_error(cv.ranks, cv.rank_mean, cv.rank_se, "smallest") >= 4
    assert sparse.sigma == one_standard_error(sparse.sigmas, sparse.sigma_mean, sparse.sigma_se,
                                              "largest")
    with pytest.raises(tnc.TncError, match="sigma_rule"):
        two_step_cv(data, ranks=(2,), sigmas=(1.0,), folds=2, sigma_rule="smallest")
    with pytest.raises(tnc.TncError, match="rank_rule"):
        two_step_cv(data, ranks=(2,), sigmas=(1.0,), folds=2, rank_rule="largest")


def test_slice_folds_hold_out_each_sample_once_per_tensor_never_from_all():
    shapes, folds = [(6, 4, 3), (6, 5)], 3
    observed = [np.ones(shapes[0], bool), np.random.default_rng(1).random(shapes[1]) > 0.2]
    splits = fold_masks(shapes, folds, seed=0, masks=observed, holdout="slices")
    times_held = [np.zeros(6, int), np.zeros(6, int)]
    for train, held in splits:
        whole = [h.reshape(6, -1).sum(1) == o.reshape(6, -1).sum(1) for h, o in
                 zip(held, observed)]
        assert not np.any(whole[0] & whole[1])           # never a sample gone from both
        for k in range(2):
            assert not np.any(train[k] & held[k]) and np.all(train[k] | held[k] | ~observed[k])
            assert not np.any(held[k] & ~observed[k])
            slice_entries = held[k][whole[k]].sum()
            assert held[k][~whole[k]].sum() == slice_entries   # as many random entries
            times_held[k] += whole[k]
    assert all(np.all(t == 1) for t in times_held)
    with pytest.raises(tnc.TncError, match="folds"):
        fold_masks(shapes, 7, seed=0, holdout="slices")
    with pytest.raises(tnc.TncError, match="holdout"):
        fold_masks(shapes, 3, seed=0, holdout="rows")
