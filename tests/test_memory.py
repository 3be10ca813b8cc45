"""Every large allocation is checked against the memory limit first: a MemoryLimitError
with the size, never numpy's MemoryError (nor a machine swapping itself to death)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tnc
from tnc.engine.plan import check_allocation, limit_bytes
from tnc.engine.sparse import SparseTensor

HUGE = 10 ** 8          # a CP rank whose factors alone are gigabytes


def test_check_allocation_names_the_size_and_what():
    check_allocation(2 ** 20, "a small array", memory_limit=2 ** 21)
    check_allocation(10 ** 30, "anything", memory_limit=None)        # None: no limit
    with pytest.raises(tnc.MemoryLimitError, match=r"a test array needs 2 GiB but the memory "
                                                   r"limit is 1 GiB"):
        check_allocation(2 * 2 ** 30, "a test array", memory_limit=2 ** 30)


@pytest.mark.parametrize("bad", ["lots", -1, math.nan, True])
def test_memory_limit_itself_is_checked(bad):
    with pytest.raises(tnc.TncError, match="memory_limit must be a number of bytes >= 0"):
        limit_bytes(bad)


def test_network_random_checks_before_drawing():
    net = tnc.library("cp", I=10, J=10, K=10, R=HUGE)
    with pytest.raises(tnc.MemoryLimitError) as caught:
        net.random(memory_limit=2 ** 30)
    message = str(caught.value)
    assert "random tensors of network `cp`" in message and "(10, 100000000)" in message
    assert "22.35 GiB" in message          # 3 * 10 * 1e8 float64 entries
    with pytest.raises(tnc.MemoryLimitError):
        tnc.library("cp", I=10 ** 6, J=10 ** 6, K=10 ** 6, R=10 ** 6).random()   # 'auto'
    small = tnc.library("cp", I=3, J=4, K=5, R=2).random(memory_limit=2 ** 20)
    assert {k: v.shape for k, v in small.items()} == {"A": (3, 2), "B": (4, 2), "C": (5, 2)}


def test_fit_with_a_huge_rank_is_a_memory_limit_error():
    X = np.random.default_rng(0).random((10, 10, 10))
    with pytest.raises(tnc.MemoryLimitError, match="parameter tensors of network `cp`"):
        tnc.fit(tnc.library("cp", R=10 ** 11), X, progress=False)
    if limit_bytes("auto") >= 8 * 10 ** 10:
        pytest.skip("this machine could hold an 80 GB Gram")
    # factors that fit, but an R x R Gram of 80 GB: refused before any sweep
    with pytest.raises(tnc.MemoryLimitError, match=r"ALS on network `cp` \(an intermediate of "
                                                   r"shape \(100000, 100000\)\) needs 74.51 GiB"):
        tnc.fit(tnc.library("cp", R=10 ** 5), X, progress=False)


def test_ground_state_with_a_huge_bond_is_a_memory_limit_error():
    net = tnc.library("energy", N=4, D=10 ** 5)
    with pytest.raises(tnc.MemoryLimitError, match="MPS cores and eigensolver vectors of "
                                                   "ground_state"):
        tnc.ground_state(net, tnc.heisenberg_mpo(4), progress=False)


def test_sparse_to_dense_checks_the_dense_size():
    x = SparseTensor.from_coo([[0, 0, 0]], [1.0], (10 ** 5, 10 ** 5, 10 ** 3))
    with pytest.raises(tnc.MemoryLimitError, match=r"sparse data of shape \(100000, 100000, "
                                                   r"1000\) made dense \(1e\+13 entries\)"):
        x.to_dense()
    small = SparseTensor.from_coo([[1, 0]], [2.0], (2, 3))
    np.testing.assert_array_equal(small.to_dense(memory_limit=48), [[0, 0, 0], [2, 0, 0]])
    with pytest.raises(tnc.MemoryLimitError):
        small.to_dense(memory_limit=47)


def test_coupled_model_random_checks_all_its_tensors():
    a = tnc.library("cp", I=10, J=10, K=10, R=10 ** 10)
    model = tnc.coupled_model([(a, "T")])
    with pytest.raises(tnc.MemoryLimitError, match="random tensors of coupled model"):
        model.random()
