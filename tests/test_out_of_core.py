"""Out-of-core dense data: ``tnc.fit`` streams an np.memmap, a zarr array, an h5py dataset
or a dask array in blocks (tnc/fitting/streamed.py, tnc/engine/blocks.py) and gives the
in-memory fit; bad input is refused by name; ``tnc fit`` reads .npy (memory-mapped),
.zarr and .h5 files."""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import tnc
from tnc.cli import main
from tnc.engine import blocks
from tnc.errors import MemoryLimitError, TncError
from tnc.fitting import screening, streamed, streamed_gcp

NETWORKS = {
    "cp": tnc.library("cp", I=13, J=7, K=6, R=3),
    "tucker": tnc.library("tucker", I=12, J=7, K=6, R1=2, R2=3, R3=2),
    "tt": tnc.library("tt", N=4, d=5, r=2),
}
KINDS = ["memmap", "zarr", "h5py", "dask"]


def noisy(network, seed=1, noise=0.02):
    x = network.contract(network.random(seed=seed))
    return x + noise * np.std(x) * np.random.default_rng(seed).standard_normal(x.shape)


def on_disk(kind: str, x: np.ndarray, tmp_path, rows: int = 2):
    """``x`` stored as ``kind``, chunked by ``rows`` along axis 0 where chunks exist."""
    chunks = (rows,) + x.shape[1:]
    if kind == "memmap":
        np.save(tmp_path / "x.npy", x)
        return np.load(tmp_path / "x.npy", mmap_mode="r")
    if kind == "zarr":
        zarr = pytest.importorskip("zarr")
        array = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape,
                                chunks=chunks, dtype=x.dtype)
        array[:] = x
        return array
    if kind == "h5py":
        h5py = pytest.importorskip("h5py")
        file = h5py.File(tmp_path / "x.h5", "w")
        file.create_dataset("x", data=x, chunks=chunks)
        return file["x"]
    da = pytest.importorskip("dask.array")
    return da.from_array(x, chunks=chunks)


def row_limit(x, rows: int) -> int:
    """A memory_limit whose blocks hold ``rows`` rows of float64 ``x``."""
    return int(blocks.BUDGET_SHARE * 8 * x[0].size * 3 * rows)


def same_fit(streamed_result, memory_result, rtol=1e-6):
    assert streamed_result.iterations == memory_result.iterations
    assert streamed_result.converged == memory_result.converged
    assert streamed_result.rel_error == pytest.approx(memory_result.rel_error, rel=rtol)
    want = memory_result.reconstruct()
    np.testing.assert_allclose(streamed_result.reconstruct(), want, rtol=0,
                               atol=rtol * np.max(np.abs(want)))


@pytest.fixture
def reads(monkeypatch):
    """The row counts of every block read."""
    seen = []
    read = blocks.BlockSource.read

    def spy(self, start, stop, axis=0, buffers=None):
        seen.append((axis, stop - start))
        return read(self, start, stop, axis, buffers)
    monkeypatch.setattr(blocks.BlockSource, "read", spy)
    return seen


# -- the streamed fit equals the in-memory fit --------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_streamed_als_equals_the_in_memory_fit(kind, network, tmp_path, reads):
    net = NETWORKS[network]
    x = noisy(net)
    memory = tnc.fit(net, x, progress=False)
    data = on_disk(kind, x, tmp_path)
    result = tnc.fit(net, data, progress=False, memory_limit=row_limit(x, 4))
    same_fit(result, memory)
    if x.size <= screening.SCREEN_SMALL:           # init="auto" screened in both, alike
        assert result.info["init"] == memory.info["init"] == "screened"
        assert result.info["screened"] == memory.info["screened"]
    info = result.info["streamed"]
    assert info["kind"] == kind and info["blocks"] >= 2 and info["block_rows"] <= 4
    assert max(rows for axis, rows in reads if axis == 0) <= 4    # never the whole data


@pytest.mark.parametrize("options", [
    {"nonneg": True, "init": "random", "max_iter": 40},
    {"l2": 0.1, "order": ["C", "A", "B"]},
    {"restarts": 2, "init": "random", "seed": 3},
], ids=["nonneg", "l2-order", "restarts"])
def test_streamed_options_match_in_memory(options, tmp_path):
    net = NETWORKS["cp"]
    x = np.abs(noisy(net)) if options.get("nonneg") else noisy(net)
    memory = tnc.fit(net, x, progress=False, **options)
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), progress=False,
                     memory_limit=row_limit(x, 5), **options)
    same_fit(result, memory)


def test_tiny_and_huge_data_are_rescaled_like_in_memory(tmp_path):
    net = NETWORKS["cp"]
    x = 1e-200 * noisy(net)
    memory = tnc.fit(net, x, progress=False)
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), progress=False,
                     memory_limit=row_limit(x, 5))
    same_fit(result, memory)
    assert result.info["data_scale"] == memory.info["data_scale"]


def test_float32_data_stream_as_float32_blocks(tmp_path):
    """float32 data: float32 block products (sums in float64), the fit's thresholds floored
    at float32's resolution and float32 tensors out, as the in-memory float32 fit."""
    net = NETWORKS["cp"]
    x = noisy(net).astype(np.float32)
    memory = tnc.fit(net, x, progress=False)
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), progress=False,
                     memory_limit=row_limit(x, 4))
    assert result.converged and result.iterations < 100
    assert {t.dtype for t in result.tensors.values()} == {np.dtype(np.float32)}
    exact = tnc.fit(net, x.astype(np.float64), progress=False)
    # float32's loss formula reports the error to ~1e-4 of itself (the in-memory fit's too)
    for fitted in (result, memory):
        assert fitted.rel_error == pytest.approx(exact.rel_error, rel=1e-3)
    # float32 fits stop where their loss formula stops resolving progress (about
    # eps / (2 rel) in rel_error, als.Limits.converged), so the in-memory float32 model is
    # itself ~1.3e-4 of max|x| off the float64 one: the streamed model is held to the
    # in-memory float32 fit's distance (twice it, or 1e-4), not to a fixed figure
    def distance(fitted):
        return np.abs(fitted.reconstruct() - exact.reconstruct()).max() / np.abs(x).max()
    assert distance(result) <= 2 * max(distance(memory), 1e-4)


def test_thread_pool_executor_reads_blocks_in_its_workers(tmp_path):
    net = NETWORKS["cp"]
    x = noisy(net)
    memory = tnc.fit(net, x, progress=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        result = tnc.fit(net, on_disk("zarr", x, tmp_path), progress=False,
                         memory_limit=row_limit(x, 4), executor=pool)
    same_fit(result, memory)
    assert result.info["streamed"]["executor"] == "ThreadPoolExecutor"


def test_a_process_pool_reopens_a_memory_mapped_file(tmp_path):
    import pickle
    net = NETWORKS["cp"]
    x = noisy(net)
    data = on_disk("memmap", x, tmp_path)
    assert len(pickle.dumps(blocks.BlockSource(data))) < 1000        # its name, not its data
    memory = tnc.fit(net, x, progress=False)
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        result = tnc.fit(net, data, progress=False, memory_limit=row_limit(x, 5),
                         executor=pool)
    same_fit(result, memory)


def test_progress_bar_counts_blocks(monkeypatch, tmp_path):
    bars = []

    class Recorder:
        def __init__(self, total, desc="", enabled=True):
            self.total, self.postfixes = total, []
            bars.append(self)

        def update(self, **postfix):
            self.postfixes.append(postfix)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass
    monkeypatch.setattr(streamed, "Progress", Recorder)
    net = NETWORKS["cp"]
    x = noisy(net)
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), progress=False, max_iter=5, tol=0.0,
                     memory_limit=row_limit(x, 5), init="svd")     # no screening sweeps
    n_blocks = result.info["streamed"]["blocks"]
    bar, = bars
    assert bar.total == 5 * n_blocks * 2          # 3-way CP: two passes a sweep
    in_sweeps = [p for p in bar.postfixes if "sweep" in p]
    assert len(in_sweeps) == 5 * 2 * n_blocks
    assert [p["sweep"] for p in in_sweeps[::2 * n_blocks]] == [1, 2, 3, 4, 5]
    assert "rel_error" in in_sweeps[-1]


# -- methods and options that do not stream ------------------------------------------------------
def test_a_method_that_does_not_stream_gets_the_data_loaded_when_it_fits(tmp_path):
    net = NETWORKS["cp"]
    x = noisy(net)
    options = dict(method="gcp", optimizer="adam", max_iter=2, epoch_iters=5, progress=False)
    memory = tnc.fit(net, x, **options)
    result = tnc.fit(net, on_disk("h5py", x, tmp_path), **options)
    np.testing.assert_allclose(result.reconstruct(), memory.reconstruct(), rtol=1e-12)
    with pytest.raises(MemoryLimitError, match="optimizer='adam' samples entries"):
        tnc.fit(net, on_disk("memmap", x, tmp_path), memory_limit=4096, **options)


def test_a_mask_streams_with_dask_data(tmp_path):
    """Masked ALS streams (tests/test_streamed_masks.py): no longer loaded whole."""
    net = NETWORKS["cp"]
    x = noisy(net)
    mask = np.random.default_rng(2).random(x.shape) > 0.2
    memory = tnc.fit(net, x, mask=mask, progress=False)
    result = tnc.fit(net, on_disk("dask", x, tmp_path), mask=mask, progress=False)
    same_fit(result, memory, rtol=1e-10)
    assert result.info["streamed"]["mask"] == "array"


def test_executor_with_a_method_that_does_not_stream_is_refused(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(1) as pool, \
            pytest.raises(TncError, match="executor= runs the blocks of a streamed fit"):
        tnc.fit(NETWORKS["cp"], on_disk("memmap", noisy(NETWORKS["cp"]), tmp_path),
                method="gcp", optimizer="adam", executor=pool)


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zarr", "h5py", "dask"])
def test_chunks_longer_than_a_block_are_refused_by_name(kind, tmp_path):
    x = noisy(NETWORKS["cp"])
    data = on_disk(kind, x, tmp_path, rows=8)
    with pytest.raises(TncError, match=r"chunks along axis 0 hold up to 8 rows \(chunks \(8, 5\)\)"
                       r" but a block under memory_limit holds at most 4; rechunk"):
        tnc.fit(NETWORKS["cp"], data, progress=False, memory_limit=row_limit(x, 4))


def test_blocks_join_whole_uneven_chunks():
    da = pytest.importorskip("dask.array")
    x = da.zeros((10, 3), chunks=((3, 1, 2, 4), (3,)))
    assert blocks.BlockSource(x).layout(0, rows=4) == [(0, 4), (4, 6), (6, 10)]


def test_rechunked_dask_data_stream(tmp_path):
    net = NETWORKS["cp"]
    x = noisy(net)
    data = on_disk("dask", x, tmp_path, rows=8).rechunk({0: 4})
    same_fit(tnc.fit(net, data, progress=False, memory_limit=row_limit(x, 4)),
             tnc.fit(net, x, progress=False))


def test_unsupported_kinds_are_named(tmp_path):
    with pytest.raises(TncError, match="cannot stream data of type builtins.list"):
        blocks.BlockSource([[1.0]])
    np.save(tmp_path / "z.npy", np.ones((2, 2), complex))
    with pytest.raises(TncError, match="must be real numeric, got dtype complex128"):
        blocks.BlockSource(np.load(tmp_path / "z.npy", mmap_mode="r"))


def test_a_zarr_group_or_h5_file_names_its_arrays(tmp_path):
    zarr = pytest.importorskip("zarr")
    h5py = pytest.importorskip("h5py")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("first", shape=(13, 7, 6), dtype="f8")
    with pytest.raises(TncError, match=r"a zarr group, not an array.*members: first"):
        tnc.fit(NETWORKS["cp"], group, progress=False)
    with h5py.File(tmp_path / "f.h5", "w") as file:
        file["one"] = np.zeros((13, 7, 6))
        with pytest.raises(TncError, match=r"an? h5py file, not an array.*members: one"):
            tnc.fit(NETWORKS["cp"], file, progress=False)


def test_non_finite_entries_name_their_block(tmp_path):
    x = noisy(NETWORKS["cp"])
    x[9, 2, 1] = np.nan
    with pytest.raises(TncError, match=r"1 NaN or infinite entries in rows 8:12 along axis 0"):
        tnc.fit(NETWORKS["cp"], on_disk("memmap", x, tmp_path), progress=False,
                memory_limit=row_limit(x, 4))


def test_a_row_over_the_memory_limit_is_refused():
    with pytest.raises(MemoryLimitError, match="a row of the data needs"):
        blocks.block_rows(10 ** 6, memory_limit=1000)


# -- the command line ----------------------------------------------------------------------------
def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize("kind, suffix, extra", [
    ("memmap", "x.npy", []), ("zarr", "x.zarr", []), ("h5py", "x.h5", ["--dataset", "x"])])
def test_tnc_fit_streams_files_on_disk(capsys, tmp_path, kind, suffix, extra):
    net = NETWORKS["cp"]
    x = noisy(net)
    data = on_disk(kind, x, tmp_path)
    if kind == "h5py":
        data.file.close()
    code, out, _ = cli(capsys, "fit", "cp", tmp_path / suffix, "-s", "R=3", "-q", *extra,
                       "-o", tmp_path / "fit.npz")
    assert code == 0
    saved = tnc.load(tmp_path / "fit.npz")
    assert saved.info["streamed"]["kind"] == kind
    memory = tnc.fit(net, x, progress=False)
    assert saved.rel_error == pytest.approx(memory.rel_error, rel=1e-6)


def test_tnc_fit_names_the_datasets_of_an_h5_file(capsys, tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "two.h5", "w") as file:
        file["a"] = noisy(NETWORKS["cp"])
        file.create_group("g")["b"] = noisy(NETWORKS["cp"])
    code, _, err = cli(capsys, "fit", "cp", tmp_path / "two.h5", "-s", "R=3", "-q")
    assert code != 0 and "holding 2 arrays (a, g/b); pick one with --dataset NAME" in err
    code, _, err = cli(capsys, "fit", "cp", tmp_path / "two.h5", "-s", "R=3", "--dataset", "c")
    assert code != 0 and "has no dataset 'c'; the HDF5 file holds: a, g/b" in err
    code, out, _ = cli(capsys, "fit", "cp", tmp_path / "two.h5", "-s", "R=3", "-q",
                       "--dataset", "g/b")
    assert code == 0 and "final relative error" in out


# -- Tucker decompositions (HOSVD, st-HOSVD, HOOI) --------------------------------------------
def tucker_data():
    rng = np.random.default_rng(0)
    x = np.einsum("abc,ia,jb,kc->ijk", rng.random((3, 2, 2)), rng.random((13, 3)),
                  rng.random((8, 2)), rng.random((7, 2)))
    return x + 0.05 * rng.standard_normal(x.shape)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_streamed_tucker_equals_the_in_memory_decomposition(kind, method, tmp_path, reads,
                                                           monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES_CAP", 8 * 56 * 4)      # blocks of 4 rows
    x = tucker_data()
    memory = tnc.decompose(x, "tucker", ranks=[3, 2, 2], method=method)
    result = tnc.decompose(on_disk(kind, x, tmp_path), "tucker", ranks=[3, 2, 2], method=method)
    assert result.iterations == memory.iterations and result.converged == memory.converged
    assert result.rel_error == pytest.approx(memory.rel_error, rel=1e-10)
    np.testing.assert_allclose(result.reconstruct(), memory.reconstruct(), rtol=0, atol=1e-10)
    assert result.info["streamed"]["blocks"] == 4
    assert max(rows for axis, rows in reads if axis == 0) <= 4


def test_tt_and_rel_error_decompositions_load_the_data_when_it_fits(tmp_path):
    x = tucker_data()
    for args in [("tt", None, 1e-2), ("tucker", None, 0.06)]:
        memory = tnc.decompose(x, *args)
        result = tnc.decompose(on_disk("memmap", x, tmp_path), *args)
        np.testing.assert_allclose(result.reconstruct(), memory.reconstruct(), atol=1e-12)
    with pytest.raises(MemoryLimitError, match=r"loading the memmap data .* whole \(a TT "
                       "decomposition is not streamed\\)"):
        from tnc.fitting.streamed_tucker import decompose_streamed
        decompose_streamed(on_disk("memmap", x, tmp_path), "tt", rel_error=1e-2,
                           memory_limit=1000)


# -- GCP: the full gradient streamed (tnc/fitting/streamed_gcp.py) ------------------------------
def gcp_row_limit(x, rows: int, mask: bool = False) -> int:
    """A memory_limit whose GCP blocks hold ``rows`` rows of float64 ``x``."""
    return int(blocks.BUDGET_SHARE * 8 * x[0].size * (5 + mask) * rows)


def test_gcp_blocks_follow_the_row_limit():
    x = noisy(NETWORKS["cp"])
    source = blocks.BlockSource(x.view(np.memmap))
    assert max(b - a for a, b in source.layout(0, memory_limit=gcp_row_limit(x, 4),
                                               row_factor=5.0)) == 4


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_gcp_equals_the_in_memory_fit(kind, tmp_path, reads):
    net = NETWORKS["cp"]
    x = noisy(net)
    memory = tnc.fit(net, x, method="gcp", progress=False, max_iter=40)
    result = tnc.fit(net, on_disk(kind, x, tmp_path), method="gcp", progress=False,
                     max_iter=40, memory_limit=gcp_row_limit(x, 4))
    same_fit(result, memory)
    info = result.info["streamed"]
    assert info["kind"] == kind and info["blocks"] >= 2 and info["block_rows"] <= 4
    assert info["passes"] >= result.iterations         # one pass per evaluation
    assert max(rows for axis, rows in reads if axis == 0) <= 4    # never the whole data
    assert result.info["evaluations"] == memory.info["evaluations"]


def test_streamed_gcp_bar_shows_the_blocks_of_each_pass(monkeypatch, tmp_path):
    from tnc.fitting import progress
    bars = []

    class Recorder(progress.Progress):
        def __init__(self, total, desc="fit", enabled=True, position=0):
            self.total, self.desc, self.position, self.steps, self.restarts = (
                total, desc, position, 0, 0)
            self.bar = self if enabled else None
            bars.append(self)

        def update(self, **postfix):
            self.steps += 1

        def restart(self):
            self.restarts += 1

        def close(self):
            pass
    monkeypatch.setattr(streamed_gcp, "Progress", Recorder)
    monkeypatch.setattr(progress, "Progress", Recorder)
    x = noisy(NETWORKS["cp"])
    result = tnc.fit(NETWORKS["cp"], on_disk("memmap", x, tmp_path), method="gcp",
                     progress=True, max_iter=5, memory_limit=gcp_row_limit(x, 4))
    info = result.info["streamed"]
    outer = next(b for b in bars if b.position == 0 and b.desc.startswith("gcp"))
    inner = next(b for b in bars if b.position == 1)
    assert outer.total == 5 and outer.steps == result.iterations
    assert inner.total == info["blocks"] and inner.desc == "blocks"
    # every pass inside the fit restarts the block bar and steps it once per block
    assert inner.restarts >= result.iterations and inner.steps == inner.restarts * info["blocks"]


@pytest.mark.parametrize("loss", ["poisson", "huber(0.25)", "bernoulli_logit"])
def test_streamed_gcp_losses_equal_in_memory(loss, tmp_path):
    net = tnc.library("tt", N=3, d=6, r=2)          # the generic backward sweep, not CP kernels
    x = np.abs(noisy(net, noise=0.3))
    x = (x > np.median(x)).astype(float) if loss == "bernoulli_logit" else (
        np.round(3 * x) if loss == "poisson" else x)
    memory = tnc.fit(net, x, method="gcp", loss=loss, progress=False, max_iter=30)
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), method="gcp", loss=loss,
                     progress=False, max_iter=30, memory_limit=gcp_row_limit(x, 2))
    assert result.info["streamed"]["blocks"] == 3
    same_fit(result, memory)
    assert result.loss == pytest.approx(memory.loss, rel=1e-9)


@pytest.mark.parametrize("mask_kind", ["memmap", "numpy", "zarr"])
def test_streamed_gcp_with_a_mask_equals_the_in_memory_fit(mask_kind, tmp_path):
    net = NETWORKS["cp"]
    x = noisy(net)
    mask = np.random.default_rng(4).random(x.shape) > 0.3
    memory = tnc.fit(net, x, mask=mask, method="gcp", progress=False, max_iter=40)
    hidden = np.where(mask, x, np.nan)                 # missing entries may hold NaN
    data = on_disk("memmap", hidden, tmp_path)
    if mask_kind == "numpy":
        stored = mask
    else:
        (tmp_path / "m").mkdir()
        stored = on_disk(mask_kind, mask, tmp_path / "m")
    result = tnc.fit(net, data, mask=stored, method="gcp", progress=False, max_iter=40,
                     memory_limit=gcp_row_limit(x, 4, mask=True))
    assert result.info["streamed"]["mask"] == ("array" if mask_kind == "numpy" else mask_kind)
    assert result.info["streamed"]["blocks"] >= 2
    same_fit(result, memory)
    # an observed NaN is refused by its rows
    bad = np.array(hidden)
    bad[5, 0, 0], mask[5, 0, 0] = np.nan, True
    with pytest.raises(TncError, match="NaN or infinite observed entries in rows 4:8"):
        tnc.fit(net, on_disk("zarr", bad, tmp_path / "m"), mask=mask, method="gcp",
                memory_limit=gcp_row_limit(x, 4, mask=True))
    with pytest.raises(TncError, match="the mask has shape"):
        tnc.fit(net, data, mask=mask[:3], method="gcp")


def test_streamed_gcp_on_a_thread_pool_and_in_float32(tmp_path):
    net = NETWORKS["cp"]
    x = noisy(net)
    memory = tnc.fit(net, x, method="gcp", progress=False, max_iter=25)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        result = tnc.fit(net, on_disk("memmap", x, tmp_path), method="gcp", progress=False,
                         max_iter=25, memory_limit=gcp_row_limit(x, 4), executor=pool)
    same_fit(result, memory)
    assert result.info["streamed"]["executor"] == "ThreadPoolExecutor"
    x32 = x.astype(np.float32)
    memory = tnc.fit(net, x32, method="gcp", progress=False, max_iter=25)
    (tmp_path / "f").mkdir()
    result = tnc.fit(net, on_disk("memmap", x32, tmp_path / "f"), method="gcp",
                     progress=False, max_iter=25, memory_limit=gcp_row_limit(x, 4))
    assert all(t.dtype == np.float32 for t in result.tensors.values())
    assert result.rel_error == pytest.approx(memory.rel_error, rel=1e-3)


def test_streamed_gcp_on_a_process_pool_with_a_mask(tmp_path):
    """The workers reopen the mapped data and mask; the loss travels by name."""
    net = NETWORKS["cp"]
    x = noisy(net)
    mask = np.random.default_rng(6).random(x.shape) > 0.2
    memory = tnc.fit(net, x, mask=mask, method="gcp", loss="huber(0.5)", progress=False,
                     max_iter=15)
    (tmp_path / "m").mkdir()
    data, stored = on_disk("memmap", x, tmp_path), on_disk("memmap", mask, tmp_path / "m")
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        result = tnc.fit(net, data, mask=stored, method="gcp", loss="huber(0.5)",
                         progress=False, max_iter=15, executor=pool,
                         memory_limit=gcp_row_limit(x, 4, mask=True))
    assert result.info["streamed"]["executor"] == "ProcessPoolExecutor"
    same_fit(result, memory)
