"""Every fitting front through the same checks, so that they cannot drift apart.

Each method below is run on a small problem with the shared names (``data``,
``mask``, ``init``, ``max_iter``, ``tol``, ``seed``, ``progress``, ``callback``);
the checks are the same for all: no deprecation warning under the new names,
``rel_error`` equal to a dense numpy recomputation over the observed entries,
``iterations``/``converged``/``history`` alike (records with ``iteration`` from
1, ``loss``, ``rel_error``, ``time`` first), the callback numbered from 1 and
able to stop, the old names still working with a DeprecationWarning, options
checked by name and range, and save/load through ``tnc.load``.
"""
import math
import warnings

import numpy as np
import pytest

import tnc
from tnc.fitting.records import RECORD_KEYS
from tnc.fitting.result import Result
from tnc.models.stratified import ntf, stratified_ntf
from tnc.mps.mps_classifier import feature_map, train_classifier

QUIET = {"progress": False}
CP = tnc.library("cp", I=4, J=5, K=6, R=2)
TT = tnc.library("tt", N=4, d=3, r=2)
X = CP.contract(CP.random(seed=1)) + 0.05 * np.random.default_rng(0).standard_normal((4, 5, 6))
MASK = np.random.default_rng(1).random(X.shape) > 0.2
Y = TT.contract(TT.random(seed=2))
COUPLED = tnc.coupled_model([(CP, "X")])
STRATA = [np.random.default_rng(s).random((3 + s, 4, 5)) for s in range(2)]
rng = np.random.default_rng(3)
PIXELS = rng.random((60, 5))
LABELS = (PIXELS[:, 0] + PIXELS[:, 4] > 1).astype(int)


def dense_rel_error(data, model, mask=None):
    """||W (X - M)|| / ||W X|| by plain numpy: the independent reference."""
    keep = np.ones(data.shape, bool) if mask is None else mask
    return np.linalg.norm((data - model)[keep]) / np.linalg.norm(data[keep])


# name -> (run(**keywords) -> result, reference rel_error of a result or None, saveable)
METHODS = {
    "als": (lambda **kw: tnc.fit(CP, X, "als", mask=MASK, **kw),
            lambda r: dense_rel_error(X, r.reconstruct(), MASK), True),
    "nls": (lambda **kw: tnc.fit(CP, X, "nls", mask=MASK, **kw),
            lambda r: dense_rel_error(X, r.reconstruct(), MASK), True),
    "gcp-lbfgs": (lambda **kw: tnc.fit(CP, X, "gcp", mask=MASK, **kw),
                  lambda r: dense_rel_error(X, r.reconstruct(), MASK), True),
    "gcp-adam": (lambda **kw: tnc.fit(CP, X, "gcp", optimizer="adam", epoch_iters=10,
                                      batch_size=40, **kw),
                 lambda r: dense_rel_error(X, r.reconstruct()), True),
    "dmrg": (lambda **kw: tnc.fit(TT, Y, "dmrg", **kw),
             lambda r: dense_rel_error(Y, r.reconstruct()), True),
    "coupled-als": (lambda **kw: tnc.fit_model(COUPLED, {"X": X}, mask={"X": MASK}, **kw),
                    lambda r: dense_rel_error(X, r.reconstruct("X"), MASK), True),
    "coupled-gcp": (lambda **kw: tnc.fit_model(COUPLED, {"X": X}, "gcp", **kw),
                    lambda r: dense_rel_error(X, r.reconstruct("X")), True),
    "stratified": (lambda **kw: stratified_ntf(STRATA, 1, 2, **kw),
                   lambda r: dense_rel_error(np.concatenate(STRATA), np.concatenate(
                       [r.reconstruct(s) for s in range(len(STRATA))])), True),
    "ntf": (lambda **kw: ntf(STRATA[0], 2, **kw),
            lambda r: dense_rel_error(STRATA[0], r.reconstruct(0)), True),
    "classifier": (lambda **kw: train_classifier(feature_map(PIXELS), LABELS, max_rank=3, **kw),
                   lambda r: np.linalg.norm(r.scores(feature_map(PIXELS))
                                            - np.eye(2)[LABELS]) / math.sqrt(len(LABELS)),
                   False),
    "ground_state": (lambda **kw: tnc.ground_state(tnc.library("energy", N=6, D=8, W=5),
                                                   tnc.heisenberg_mpo(6), **kw),
                     None, True),
}


def run(name, **keywords):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)   # the new names never warn
        return METHODS[name][0](**{"max_iter": 3, "seed": 0, **QUIET, **keywords})


@pytest.fixture(scope="module", params=list(METHODS))
def fitted(request):
    return request.param, run(request.param)


def test_results_fill_the_same_fields(fitted):
    name, result = fitted
    assert isinstance(result.converged, bool)
    assert result.iterations == result.history[-1]["iteration"] >= 1
    reference = METHODS[name][1]
    if reference is None:                 # a ground state has no data to compare with
        assert result.rel_error is None and result.loss == result.info["energy"]
    else:
        assert result.rel_error == pytest.approx(reference(result), rel=1e-9, abs=1e-12)
    assert isinstance(result, Result)            # one result family
    assert f"{result.iterations} iterations" in result.summary() and repr(result).startswith(
        f"<tnc.{type(result).__name__} ")


def test_history_records_share_their_first_keys(fitted):
    _, result = fitted
    numbers = [h["iteration"] for h in result.history]
    assert numbers[0] == 1
    assert all(b - a in (0, 1) for a, b in zip(numbers, numbers[1:]))   # a restored or final
    assert all(b - a == 1 for a, b in zip(numbers[:-1], numbers[1:-1]))  # record may repeat
    for entry in result.history:
        assert tuple(entry)[:len(RECORD_KEYS)] == RECORD_KEYS
        assert isinstance(entry["loss"], float) and entry["time"] >= 0
    assert result.loss == result.history[-1]["loss"]


@pytest.mark.parametrize("name", list(METHODS))
def test_callback_counts_from_one_and_can_stop(name):
    seen = []

    def callback(state):
        seen.append(state["iteration"])
        assert set(RECORD_KEYS) <= set(state)
        return state["iteration"] >= 2

    stop_early = {} if name.startswith("gcp") else {"tol": 0.0}    # GCP: ftol and gtol
    result = run(name, max_iter=5, callback=callback, **stop_early)
    assert seen == [1, 2]
    assert result.history[1]["iteration"] == 2 and result.iterations == 2


@pytest.mark.parametrize("name", list(METHODS))
def test_callback_sees_every_record_including_the_converged_last(name):
    """The callback runs before the convergence test stops a fit, so it sees the final
    record too (the ground state of 6 sites converges in 2 sweeps: it missed sweep 2)."""
    seen = []
    result = run(name, max_iter=40, callback=lambda state: seen.append(state["iteration"]))
    assert seen == [record["iteration"] for record in result.history]


# each front's old spelling: (method, old keywords, the run with the new ones)
OLD_NAMES = [
    ("als", lambda: tnc.fit(CP, target=X, mask=MASK, max_sweeps=2, **QUIET), {"max_iter": 2}),
    ("dmrg", lambda: tnc.fit(TT, Y, "dmrg", max_sweeps=2, **QUIET), {"max_iter": 2}),
    ("coupled-als", lambda: tnc.fit_model(COUPLED, {"X": X}, masks={"X": MASK}, max_iter=2,
                                          **QUIET), {"max_iter": 2}),
    ("stratified", lambda: stratified_ntf(strata=STRATA, rank_specific=1, n_topics=2,
                                          max_iter=2, **QUIET), {"max_iter": 2}),
    ("ntf", lambda: ntf(tensor=STRATA[0], rank=2, max_iter=2, **QUIET), {"max_iter": 2}),
    ("classifier", lambda: train_classifier(phi=feature_map(PIXELS), labels=LABELS, max_rank=3,
                                            sweeps=2, **QUIET), {"max_iter": 2}),
    ("ground_state", lambda: tnc.ground_state(
        tnc.library("energy", N=6, D=8, W=5), tnc.heisenberg_mpo(6), max_sweeps=2,
        initial=tnc.library("energy", N=6, D=8, W=5).random(seed=0), **QUIET),
     {"max_iter": 2, "init": tnc.library("energy", N=6, D=8, W=5).random(seed=0)}),
]


@pytest.mark.parametrize("name, old, new", OLD_NAMES, ids=[o[0] for o in OLD_NAMES])
def test_old_names_warn_and_give_the_same_fit(name, old, new):
    with pytest.warns(DeprecationWarning, match="is deprecated, use"):
        before = old()
    after = run(name, **{"seed": 0, **new})
    assert [h["loss"] for h in before.history] == pytest.approx(
        [h["loss"] for h in after.history], rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert before.history[-1]["sweep"] == before.history[-1]["iteration"]   # old key reads


@pytest.mark.parametrize("name", list(METHODS))
def test_unknown_and_invalid_options_are_named(name):
    with pytest.raises(tnc.TncError, match="bogus"):
        run(name, bogus=1)
    with pytest.raises(tnc.TncError, match="max_iter"):
        run(name, max_iter=0)


def test_an_invalid_old_name_is_named_as_written_and_both_spellings_refused():
    with pytest.warns(DeprecationWarning), pytest.raises(
            tnc.TncError, match="option max_sweeps must be an integer >= 1"):
        tnc.fit(CP, X, max_sweeps=0, **QUIET)
    with pytest.raises(tnc.TncError, match="only max_iter"):
        tnc.fit(CP, X, max_sweeps=2, max_iter=2, **QUIET)
    with pytest.warns(DeprecationWarning), pytest.raises(tnc.TncError, match="given twice"):
        tnc.fit(CP, X, target=X, **QUIET)


def test_the_suite_fails_on_old_names_outside_pytest_warns():
    """pyproject's filterwarnings: an old keyword or history key is an error in the suite,
    whether a test uses it or tnc itself does (code compiled as a tnc file, so renamed()
    attributes the warning to the test that called it, past the tnc frame)."""
    with pytest.raises(DeprecationWarning, match="max_sweeps= is deprecated"):
        tnc.fit(CP, X, max_sweeps=1, **QUIET)
    from tnc.fitting import front
    inside_tnc = compile("tnc.fit(CP, target=X, max_iter=1, progress=False)", front.__file__,
                         "exec")
    with pytest.raises(DeprecationWarning, match="target= is deprecated"):
        exec(inside_tnc, {"tnc": tnc, "CP": CP, "X": X})
    with pytest.raises(DeprecationWarning, match="history key 'sweep'"):
        tnc.fit(CP, X, max_iter=1, **QUIET).history[0]["sweep"]


def test_tnc_load_reads_every_archive_kind(fitted, tmp_path):
    name, result = fitted
    if not METHODS[name][2]:
        pytest.skip(f"{name} results have no archive")
    path = tmp_path / "result.npz"
    result.save(path)
    loaded = tnc.load(path)
    assert type(loaded) is type(result)
    assert loaded.history == result.history and loaded.iterations == result.iterations
    assert loaded.rel_error == result.rel_error and loaded.converged == result.converged


def test_tnc_load_reads_born_machines_and_refuses_unknown_kinds(tmp_path):
    from tnc.fitting.result import write_archive
    bits = (np.random.default_rng(0).random((40, 4)) > 0.5).astype(int)
    model = tnc.train_born(bits, 2, max_rank=2, max_iter=1, **QUIET)
    model.save(tmp_path / "born.npz")
    loaded = tnc.load(tmp_path / "born.npz")
    assert type(loaded) is type(model)
    assert np.allclose(loaded.probabilities(), model.probabilities(), rtol=1e-12, atol=0)
    write_archive(tmp_path / "odd.npz", {"format": 1, "kind": "hologram"}, {})
    with pytest.raises(tnc.TncError, match="kind 'hologram'"):
        tnc.load(tmp_path / "odd.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(tnc.TncError, match="not a tnc result archive"):
        tnc.load(tmp_path / "text.npz")


def test_gcp_rel_error_on_sparse_data_matches_the_dense_one():
    dense = np.where(np.random.default_rng(4).random(X.shape) > 0.7, np.abs(X), 0.0)
    sparse = tnc.SparseTensor.from_coo(np.argwhere(dense), dense[dense != 0], dense.shape)
    result = tnc.fit(CP, sparse, "gcp", optimizer="lbfgsb", max_iter=5, **QUIET)
    assert result.rel_error == pytest.approx(dense_rel_error(dense, result.reconstruct()),
                                             rel=1e-9)


def test_memory_limit_bounds_the_parameter_tensors_of_a_fit():
    with pytest.raises(tnc.MemoryLimitError, match="parameter tensors of network `cp`"):
        tnc.fit(CP, X, memory_limit=100, **QUIET)
    assert tnc.fit(CP, X, memory_limit=10 ** 6, max_iter=1, **QUIET).iterations == 1


@pytest.mark.parametrize("name", list(METHODS))
def test_memory_limit_reaches_every_front(name):
    with pytest.raises(tnc.MemoryLimitError):
        run(name, memory_limit=64)                    # 64 bytes: any fit's tensors exceed it
    with pytest.raises(tnc.TncError, match="memory_limit"):
        run(name, memory_limit="lots")
    assert run(name, memory_limit=None).iterations >= 1


def test_an_archive_with_old_history_keys_loads_with_iteration_first(tmp_path):
    from tnc.fitting.result import read_archive, write_archive
    result = run("als")
    result.save(tmp_path / "new.npz")
    meta, groups = read_archive(tmp_path / "new.npz")
    meta["history"] = [{"sweep": h["iteration"], "loss": h["loss"], "rel_error": h["rel_error"],
                        "time": h["time"]} for h in result.history]    # as tnc 0.1 wrote it
    write_archive(tmp_path / "old.npz", meta, groups)
    loaded = tnc.load(tmp_path / "old.npz")
    assert [tuple(h)[:4] for h in loaded.history] == [RECORD_KEYS] * len(result.history)
    assert [h["iteration"] for h in loaded.history] == [h["iteration"] for h in result.history]
    assert loaded.rel_error == result.rel_error
