"""Masked ALS on out-of-core data streams (tnc/fitting/streamed.py): the mask (a numpy
array, an out-of-core array of any kind, or "nan") is read in the data's blocks, EM fills
each block's unobserved entries from the model of the sweep's start, weighted least squares
sums the weighted Grams block by block, and the fit equals the in-memory masked fit; the
data are never loaded whole."""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import tnc
from tnc.engine import blocks
from tnc.errors import MemoryLimitError, TncError
from test_out_of_core import NETWORKS, noisy, on_disk, reads, same_fit  # noqa: F401 (fixture)


def masked_limit(x, rows: int) -> int:
    """A memory_limit whose masked blocks hold ``rows`` rows of float64 ``x``."""
    return int(blocks.BUDGET_SHARE * 8 * x[0].size * 5.3 * rows)


def folder(tmp_path, name: str):
    (tmp_path / name).mkdir()
    return tmp_path / name


def masked_case(network="cp", seed=2, hidden=0.2):
    net = NETWORKS[network]
    x = noisy(net)
    mask = np.random.default_rng(seed).random(x.shape) > hidden
    return net, x, mask


@pytest.mark.parametrize("missing", ["em", "wls", "auto"])
@pytest.mark.parametrize("network", list(NETWORKS))
def test_streamed_masked_als_equals_the_in_memory_fit(network, missing, tmp_path, reads):
    net, x, mask = masked_case(network)
    memory = tnc.fit(net, x, mask=mask, missing=missing, progress=False, init="svd")
    data = on_disk("memmap", np.where(mask, x, np.nan), tmp_path)   # hidden entries: NaN
    result = tnc.fit(net, data, mask=mask, missing=missing, progress=False, init="svd",
                     memory_limit=masked_limit(x, 4))
    same_fit(result, memory)
    assert result.info["missing"] == memory.info["missing"] != "dense"
    info = result.info["streamed"]
    assert info["blocks"] >= 2 and info["block_rows"] <= 4 and info["mask"] == "array"
    assert max(rows for axis, rows in reads if axis == 0) <= 4    # never the whole data


@pytest.mark.parametrize("kind", ["memmap", "zarr", "h5py", "dask"])
def test_a_stored_mask_streams_with_screened_starts(kind, tmp_path):
    """init='auto' on small masked data screens the same starts out of core."""
    net, x, mask = masked_case("cp")
    memory = tnc.fit(net, x, mask=mask, progress=False)
    stored = on_disk(kind, mask, folder(tmp_path, "m"))
    result = tnc.fit(net, on_disk(kind, x, folder(tmp_path, "d")), mask=stored, progress=False,
                     memory_limit=masked_limit(x, 4))
    same_fit(result, memory)
    assert result.info["screened"] == memory.info["screened"]
    assert result.info["streamed"]["mask"] == kind


def test_mask_nan_reads_the_mask_from_the_data(tmp_path):
    net, x, mask = masked_case("tucker")
    hidden = np.where(mask, x, np.nan)
    memory = tnc.fit(net, hidden, mask="nan", missing="em", progress=False, init="svd")
    result = tnc.fit(net, on_disk("zarr", hidden, tmp_path), mask="nan", missing="em",
                     progress=False, init="svd", memory_limit=masked_limit(x, 4))
    same_fit(result, memory)
    assert result.info["streamed"]["mask"] == "nan"
    gcp = dict(method="gcp", max_iter=20, progress=False)     # GCP takes mask="nan" too
    same_fit(tnc.fit(net, on_disk("memmap", hidden, tmp_path), mask="nan", **gcp),
             tnc.fit(net, hidden, mask="nan", **gcp))


def test_a_masked_fit_runs_under_a_limit_the_data_exceed(tmp_path):
    """Before this change, masked out-of-core data were loaded whole and refused here."""
    net, x, mask = masked_case("cp")
    limit = masked_limit(x, 2)
    assert 8 * x.size > limit / blocks.BUDGET_SHARE
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), mask=mask, progress=False,
                     memory_limit=limit, init="svd", missing="em")
    same_fit(result, tnc.fit(net, x, mask=mask, progress=False, init="svd", missing="em"))


def test_float32_masked_data_stream(tmp_path):
    net, x, mask = masked_case("cp")
    x = x.astype(np.float32)
    memory = tnc.fit(net, x, mask=mask, progress=False, init="svd", missing="wls")
    result = tnc.fit(net, on_disk("memmap", x, tmp_path), mask=mask, progress=False,
                     init="svd", missing="wls", memory_limit=masked_limit(x, 4))
    assert {t.dtype for t in result.tensors.values()} == {np.dtype(np.float32)}
    exact = tnc.fit(net, x.astype(np.float64), mask=mask, progress=False, init="svd",
                    missing="wls")
    # float32's loss formula knows the error to ~1e-4 of itself; the streamed blocks sum in
    # float64, so each float32 fit is held to the float64 one (as in test_out_of_core)
    for fitted in (result, memory):
        assert fitted.rel_error == pytest.approx(exact.rel_error, rel=1e-3)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_masked_blocks_on_an_executor(pool, tmp_path):
    net, x, mask = masked_case("cp")
    memory = tnc.fit(net, x, mask=mask, progress=False, init="svd", missing="em")
    data, stored = on_disk("memmap", x, tmp_path), on_disk("memmap", mask, folder(tmp_path, "m"))
    kind = (concurrent.futures.ThreadPoolExecutor if pool == "threads"
            else concurrent.futures.ProcessPoolExecutor)
    with kind(2) as executor:
        result = tnc.fit(net, data, mask=stored, progress=False, init="svd", missing="em",
                         memory_limit=masked_limit(x, 4), executor=executor)
    same_fit(result, memory)


def test_masked_bad_input_is_named(tmp_path):
    net, x, mask = masked_case("cp")
    data = on_disk("memmap", np.where(mask, x, np.inf), tmp_path)    # hidden: fine
    bad, x_bad = mask.copy(), np.where(mask, x, np.nan)      # one NaN made observed:
    x_bad[5, 0, 0], bad[5, 0, 0] = np.nan, True
    with pytest.raises(TncError, match=r"1 NaN or infinite observed entries in rows 4:8"):
        tnc.fit(net, on_disk("zarr", x_bad, folder(tmp_path, "z"), rows=4), mask=bad,
                progress=False, memory_limit=masked_limit(x, 4))
    empty = mask.copy()
    empty[:, 3, :] = False
    with pytest.raises(TncError, match=r"slice 3 of axis 1 \(index `j`\) has no observed"):
        tnc.fit(net, data, mask=empty, progress=False, memory_limit=masked_limit(x, 4))
    with pytest.raises(TncError, match="the mask has shape"):
        tnc.fit(net, data, mask=mask[:3], progress=False)
    with pytest.raises(TncError, match="mask must be a boolean array or 'nan'"):
        tnc.fit(net, data, mask="zeros", progress=False)
    with pytest.raises(MemoryLimitError, match="holdout= is not streamed"):
        tnc.fit(net, data, mask=mask, holdout=0.1, memory_limit=4096)
