"""dask.distributed: sliced contractions summed on a LocalCluster's workers and streamed ALS
on a dask array whose blocks are computed there (only factor-sized results travel back);
a block that fails or a worker that dies stops the fit with a TncError naming it.

Clusters are small (2 workers, 1 thread each): threads in most tests, processes in one.
"""
from __future__ import annotations

import os

import numpy as np
import opt_einsum as oe
import pytest

import tnc
from tnc.errors import TncError
from test_slicing import PEPS_NORM     # the sliced-contraction case of test_slicing

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

CP = tnc.library("cp", I=16, J=7, K=6, R=3)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as connected:
        yield connected


def noisy(network, seed=1):
    x = network.contract(network.random(seed=seed))
    return x + 0.02 * np.std(x) * np.random.default_rng(seed).standard_normal(x.shape)


def row_limit(x, rows: int) -> int:
    from tnc.engine.blocks import BUDGET_SHARE
    return int(BUDGET_SHARE * 8 * x[0].size * 3 * rows)


def test_sliced_contraction_on_the_cluster_equals_the_unsliced_value(client):
    net = tnc.compile(PEPS_NORM)
    tensors = net.random(seed=8)
    operands = net.operands(tensors)
    path, _ = oe.contract_path(net.equation, *operands, optimize="greedy")
    reference = np.einsum(net.equation, *operands, optimize=["einsum_path", *path])
    limit = int(net.cost().peak_bytes * 0.2)
    assert net.cost(memory_limit=limit).slices > 1
    value = net.contract(tensors, memory_limit=limit, executor=client)
    assert abs(float(value) - float(reference)) <= 1e-12 * abs(float(reference))


def test_sliced_contraction_with_open_legs_on_the_cluster(client):
    net = tnc.library("peps", Lx=2, Ly=3, D=3)
    tensors = net.random(seed=9)
    unsliced = net.contract(tensors, memory_limit=None)
    limit = int(net.cost().peak_bytes * 0.3)
    value = net.contract(tensors, memory_limit=limit, executor=client)
    np.testing.assert_allclose(value, unsliced, rtol=0, atol=1e-12 * np.abs(unsliced).max())


def test_streamed_fit_on_the_cluster_equals_the_in_memory_fit(client):
    x = noisy(CP)
    memory = tnc.fit(CP, x, progress=False, init="svd")     # screening: test_out_of_core
    data = da.from_array(x, chunks=(4, 7, 6))
    result = tnc.fit(CP, data, progress=False, memory_limit=row_limit(x, 4), executor=client,
                     init="svd")
    assert result.iterations == memory.iterations and result.converged
    assert result.rel_error == pytest.approx(memory.rel_error, rel=1e-10)
    np.testing.assert_allclose(result.reconstruct(), memory.reconstruct(), rtol=0,
                               atol=1e-8 * np.abs(x).max())
    assert result.info["streamed"] == {**result.info["streamed"], "kind": "dask", "blocks": 4,
                                       "executor": "Client"}


def test_masked_streamed_fit_on_the_cluster(client):
    """A dask mask's blocks are computed on the workers beside the data's (EM and WLS)."""
    x = noisy(CP)
    mask = np.random.default_rng(3).random(x.shape) > 0.25
    data = da.from_array(np.where(mask, x, np.nan), chunks=(4, 7, 6))
    stored = da.from_array(mask, chunks=(4, 7, 6))
    for missing in ("em", "wls"):
        memory = tnc.fit(CP, x, mask=mask, missing=missing, progress=False, init="svd")
        result = tnc.fit(CP, data, mask=stored, missing=missing, progress=False, init="svd",
                         memory_limit=row_limit(x, 8), executor=client)
        assert result.iterations == memory.iterations
        assert result.rel_error == pytest.approx(memory.rel_error, rel=1e-10)
        assert result.info["streamed"]["mask"] == "dask"
        assert result.info["streamed"]["executor"] == "Client"


def test_the_default_client_is_used_for_a_dask_array(client):
    x = noisy(CP)
    data = da.from_array(x, chunks=(4, 7, 6))
    with distributed.Client(client.scheduler.address, set_as_default=True):
        result = tnc.fit(CP, data, progress=False, memory_limit=row_limit(x, 4), max_iter=3,
                         init="svd")
    assert result.info["streamed"]["executor"] == "Client"


def marks_after_two_sweeps(marker: str, seen: list):
    """A fit callback that creates ``marker`` after the second sweep (so blocks fail mid-fit)."""
    def callback(state):
        seen.append(state["iteration"])
        if state["iteration"] == 2:
            open(marker, "w").close()
    return callback


def test_a_block_that_raises_on_a_worker_stops_the_fit(client, tmp_path):
    marker, seen = str(tmp_path / "fail"), []
    x = noisy(CP)

    def fails_when_marked(block):
        if os.path.exists(marker):
            raise ValueError("disk read failed")
        return block
    data = da.from_array(x, chunks=(4, 7, 6)).map_blocks(fails_when_marked, dtype=float)
    with pytest.raises(TncError, match=r"block rows \d+:\d+ failed on the executor \(Client\): "
                       r"ValueError: disk read failed; the fit stopped and nothing was saved"):
        tnc.fit(CP, data, progress=False, memory_limit=row_limit(x, 4), executor=client,
                tol=0.0, max_iter=10, init="svd", callback=marks_after_two_sweeps(marker, seen))
    assert seen == [1, 2]                    # it failed mid-fit, in the third sweep


def test_a_worker_process_that_dies_mid_fit_stops_the_fit(tmp_path):
    import dask
    marker, seen = str(tmp_path / "kill"), []
    x = noisy(CP)

    def dies_when_marked(block):
        if os.path.exists(marker):
            os._exit(1)                 # the worker process dies (no exception to send)
        return block
    data = da.from_array(x, chunks=(4, 7, 6)).map_blocks(dies_when_marked, dtype=float)

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, \
            pytest.raises(TncError, match=r"block rows \d+:\d+ failed on the executor "
                          r"\(Client\): KilledWorker"):
        tnc.fit(CP, data, progress=False, memory_limit=row_limit(x, 4), executor=client,
                tol=0.0, max_iter=10, init="svd", callback=marks_after_two_sweeps(marker, seen))
    assert seen == [1, 2]


def test_streamed_gcp_on_the_cluster_equals_the_in_memory_fit(client):
    from tnc.engine.blocks import BUDGET_SHARE
    x = noisy(CP)
    mask = np.random.default_rng(5).random(x.shape) > 0.25
    memory = tnc.fit(CP, x, mask=mask, method="gcp", progress=False, max_iter=30)
    limit = int(BUDGET_SHARE * 8 * x[0].size * 6 * 4)     # 4 rows a block
    result = tnc.fit(CP, da.from_array(x, chunks=(4, 7, 6)), method="gcp", progress=False,
                     mask=da.from_array(mask, chunks=(4, 7, 6)), max_iter=30,
                     memory_limit=limit, executor=client)
    assert result.iterations == memory.iterations
    assert result.rel_error == pytest.approx(memory.rel_error, rel=1e-6)
    np.testing.assert_allclose(result.reconstruct(), memory.reconstruct(), rtol=0,
                               atol=1e-6 * np.abs(x).max())
    assert result.info["streamed"] == {**result.info["streamed"], "kind": "dask", "blocks": 4,
                                       "mask": "dask", "executor": "Client"}
