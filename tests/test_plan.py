"""Planning: costs agree with opt_einsum, peak memory, optimizers, and the path cache."""
from __future__ import annotations

from unittest import mock

import numpy as np
import opt_einsum as oe
import pytest

import tnc
from tnc.engine import plan as plan_module
from tnc.engine import program
from tnc.engine.plan import Cost, check_memory, peak_intermediate_elements, plan_contraction, \
    resolve_optimizer

CHAIN = "ab,bc,cd,de->ae"
CHAIN_SHAPES = [(2, 3), (3, 4), (4, 5), (5, 6)]


@pytest.mark.parametrize("name, sizes", [("cp", {}), ("tt", {"N": 5}), ("peps", {}),
                                         ("ring", {}), ("tucker", {})])
@pytest.mark.parametrize("optimize", ["greedy", "dp", "optimal", "auto"])
def test_cost_agrees_with_opt_einsum(name, sizes, optimize):
    net = tnc.library(name, **sizes)
    if optimize == "optimal" and len(net.occurrences) > 6:
        pytest.skip("exhaustive search is for small networks")
    cost = net.cost(optimize)
    path, info = oe.contract_path(net.equation, *net.shapes, shapes=True,
                                  optimize=[tuple(p) for p in cost.path])
    assert cost.flops == int(info.opt_cost)
    assert cost.largest_intermediate == int(info.largest_intermediate)
    assert path == [tuple(p) for p in cost.path]
    same_search = oe.contract_path(net.equation, *net.shapes, shapes=True,
                                   optimize=resolve_optimizer(optimize, len(net.shapes)))[1]
    assert cost.flops == int(same_search.opt_cost)


def test_optimal_is_no_worse_than_greedy():
    net = tnc.library("tucker")
    assert net.cost("optimal").flops <= net.cost("greedy").flops
    assert net.cost("dp").flops == net.cost("optimal").flops


def test_peak_memory_of_a_chain():
    # ab,bc->ac (8 elements); cd,de->ce (24, ac alive: 32); ac,ce->ae (12, both alive: 44)
    plan = plan_contraction(CHAIN, CHAIN_SHAPES, [(0, 1), (0, 1), (0, 1)])
    assert plan.cost.peak_bytes == 44 * 8
    assert plan.cost.largest_intermediate == 24
    # left to right: ac (8); ac,cd->ad (10, with ac: 18); ad,de->ae (12, with ad: 22)
    left_to_right = plan_contraction(CHAIN, CHAIN_SHAPES, [(0, 1), (0, 2), (0, 1)])
    assert left_to_right.cost.peak_bytes == 22 * 8


def test_peak_counts_the_result_and_not_the_inputs():
    assert peak_intermediate_elements([((0, 1), 6)], [100, 100]) == 6
    assert peak_intermediate_elements([], [100]) == 0


def test_cost_scales_with_dtype():
    net = tnc.library("tt", N=4)
    assert net.cost(dtype=np.float32).peak_bytes * 2 == net.cost().peak_bytes
    assert net.cost(dtype=np.complex128).peak_bytes == 2 * net.cost().peak_bytes
    assert "flops" in str(net.cost()) and "peak memory" in str(net.cost())


@pytest.mark.parametrize("optimize", ["greedy", "dp", "optimal", "branch-1", "random-greedy",
                                      "auto-hq", "auto", "cotengra"])
def test_every_optimizer_contracts_correctly(optimize):
    if optimize == "cotengra":
        pytest.importorskip("cotengra")
    net = tnc.library("ring", N=4, d=2, r=3)
    tensors = net.random(seed=2)
    want = np.einsum(net.equation, *net.operands(tensors))
    np.testing.assert_allclose(net.contract(tensors, optimize=optimize), want, rtol=1e-10)


def test_explicit_path_is_accepted():
    net = tnc.library("tt", N=3, d=2, r=2)
    tensors = net.random()
    got = net.contract(tensors, optimize=[(0, 1), (0, 1)])
    np.testing.assert_allclose(got, net.contract(tensors))


def test_auto_policy():
    assert resolve_optimizer("auto", 3) == "optimal"
    assert resolve_optimizer("auto", 16) == "dp"
    many = resolve_optimizer("auto", 48)
    if plan_module.cotengra_available():
        assert type(many).__name__ == "HyperOptimizer"
    else:
        assert many == "random-greedy-128"


def test_cotengra_requested_without_cotengra():
    with mock.patch.object(plan_module, "cotengra_available", return_value=False):
        with pytest.raises(tnc.TncError, match=r"pip install 'tnc\[cotengra\]'"):
            resolve_optimizer("cotengra", 10)


# -- the path cache --------------------------------------------------------------------------
def test_second_contract_does_not_search_again():
    net = tnc.library("tt", N=5, d=2, r=3)
    tensors = net.random()
    program.clear_cache()
    with mock.patch.object(plan_module.oe, "contract_path", wraps=oe.contract_path) as spy:
        first = net.contract(tensors)
        assert spy.call_count == 1
        second = net.contract(net.random(seed=7))
        net.cost()
        net.contract(tensors, memory_limit=None)
        assert spy.call_count == 1
        net.contract(tensors, optimize="greedy")
        assert spy.call_count == 2
        net.contract(tensors, optimize="greedy")
        assert spy.call_count == 2
    assert first.shape == second.shape == net.output_shape


def test_plans_are_shared_by_structure_not_by_instance():
    program.clear_cache()
    with mock.patch.object(plan_module.oe, "contract_path", wraps=oe.contract_path) as spy:
        a, b = tnc.library("cp", R=2), tnc.library("cp", R=2)
        a.cost(), b.cost(), a.cost()
        assert spy.call_count == 1          # same text and sizes: one program
        tnc.library("cp", R=3).cost()
        assert spy.call_count == 2          # other sizes: another


def test_cost_is_known_before_allocation():
    net = tnc.library("cp", I=10 ** 4, J=10 ** 4, K=10 ** 4, R=2)
    assert net.cost().largest_intermediate == 10 ** 12


# -- memory checks ---------------------------------------------------------------------------
def test_check_memory():
    cost = Cost(flops=10, largest_intermediate=100, peak_bytes=800, path=())
    check_memory(cost, None)
    check_memory(cost, 800)
    with pytest.raises(tnc.MemoryLimitError, match="needs 800 B .* memory limit is 799 B"):
        check_memory(cost, 799)


def test_auto_memory_limit_rejects_the_impossible():
    net = tnc.library("cp", I=10 ** 5, J=10 ** 5, K=10 ** 5, R=1)
    tensors = {name: np.zeros(shape) for name, shape in net.params.items()}
    with pytest.raises(tnc.MemoryLimitError):
        net.contract(tensors)


def test_available_memory_is_read_at_most_once_a_second():
    plan_module._memory_reading[0] = float("-inf")
    with mock.patch.object(plan_module, "_read_available_memory", return_value=10 ** 9) as read:
        assert plan_module.available_memory() == 10 ** 9
        assert plan_module.available_memory() == 10 ** 9
        assert read.call_count == 1
    plan_module._memory_reading[0] = float("-inf")


def test_contract_checks_memory_for_the_arrays_dtype():
    net = tnc.library("cp", I=100, J=100, K=100, R=2)
    tensors = {n: np.zeros(s, dtype=np.float32) for n, s in net.params.items()}
    limit = net.cost().peak_bytes - 1                  # float64 would not fit, float32 does
    assert net.contract(tensors, memory_limit=limit).dtype == np.float32
    assert not hasattr(net.cost(dtype=np.float32, memory_limit=limit), "sliced")
    assert net.cost(memory_limit=limit).sliced     # float64 is sliced (tnc.engine.slicing)


def test_peps_4x4_auto_plan_is_near_the_best_and_quick():
    import time
    net = tnc.library("peps", Lx=4, Ly=4, D=3)
    start = time.perf_counter()
    flops = net.cost("auto").flops
    assert time.perf_counter() - start < 10
    _, dp = oe.contract_path(net.equation, *net.shapes, shapes=True, optimize="dp")
    assert flops <= 1.1 * int(dp.opt_cost)
