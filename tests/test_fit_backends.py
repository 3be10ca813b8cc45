"""tnc.fit on torch and jax data: the same fit as on the numpy values, tensors returned in
the data's library, device and dtype (tnc/fitting/backends.py), bad mixes refused."""
from __future__ import annotations

import numpy as np
import pytest

import tnc
from tnc.errors import TncError

torch = pytest.importorskip("torch")

NET = tnc.library("cp", I=9, J=8, K=7, R=3)
ADAM = dict(optimizer="adam", max_iter=5, epoch_iters=30, batch_size=100, lr=0.02)
CASES = {"als": ("als", {}), "als masked": ("als", {"missing": "wls"}),
         "gcp lbfgsb": ("gcp", {"optimizer": "lbfgsb"}), "gcp adam": ("gcp", ADAM),
         "nls": ("nls", {})}


def planted(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    data = NET.contract(NET.random(seed=seed + 1))
    return (data + 0.05 * np.std(data) * rng.standard_normal(data.shape)).astype(dtype)


def mask_for(case, data):
    if "masked" not in case:
        return None
    return np.random.default_rng(4).random(data.shape) > 0.2


@pytest.fixture(scope="module")
def jnp():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    return jnp


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_fit_equals_the_numpy_fit(case, dtype):
    method, options = CASES[case]
    data = planted(dtype)
    mask = mask_for(case, data)
    reference = tnc.fit(NET, data, method, mask=mask, progress=False, **options)
    result = tnc.fit(NET, torch.from_numpy(data), method, progress=False,
                     mask=None if mask is None else torch.from_numpy(mask), **options)
    for name, tensor in result.tensors.items():
        assert isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu"
        assert tensor.dtype == {np.float64: torch.float64, np.float32: torch.float32}[dtype]
        np.testing.assert_allclose(tensor.numpy(), reference.tensors[name], rtol=1e-10,
                                   atol=1e-12)
    assert result.rel_error == pytest.approx(reference.rel_error, rel=1e-10)
    assert isinstance(result.reconstruct(), torch.Tensor)


@pytest.mark.parametrize("case", ["als", "gcp adam"])
def test_jax_fit_equals_the_numpy_fit(case, jnp):
    method, options = CASES[case]
    data = planted()
    reference = tnc.fit(NET, data, method, progress=False, **options)
    result = tnc.fit(NET, jnp.asarray(data), method, progress=False, **options)
    for name, tensor in result.tensors.items():
        assert type(tensor).__module__.startswith("jax")
        np.testing.assert_allclose(np.asarray(tensor), reference.tensors[name], rtol=1e-10)


def test_complex_torch_data_fitted_in_complex():
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3)) for n in (9, 8, 7)]
    data = np.einsum("ir,jr,kr->ijk", *factors)
    result = tnc.fit(NET, torch.from_numpy(data), "als", progress=False)
    assert result.tensors["A"].dtype == torch.complex128
    assert result.rel_error < 1e-10


def test_a_tensor_that_requires_grad_is_fitted_on_its_value():
    data = planted()
    tensor = torch.tensor(data, requires_grad=True)
    result = tnc.fit(NET, tensor, "als", progress=False, init={
        k: torch.from_numpy(v).requires_grad_() for k, v in NET.random(seed=3).items()})
    reference = tnc.fit(NET, data, "als", progress=False, init=NET.random(seed=3))
    assert not result.tensors["A"].requires_grad
    np.testing.assert_allclose(result.tensors["A"].numpy(), reference.tensors["A"], rtol=1e-10)


def test_torch_start_tensors_and_data_tensors_are_taken():
    data = planted()
    start = {k: torch.from_numpy(v) for k, v in NET.random(seed=5).items()}
    result = tnc.fit(NET, torch.from_numpy(data), "als", init=start, progress=False)
    reference = tnc.fit(NET, data, "als", init=NET.random(seed=5), progress=False)
    np.testing.assert_allclose(result.tensors["B"].numpy(), reference.tensors["B"], rtol=1e-10)


def test_two_libraries_in_one_call_name_both():
    data = planted()
    with pytest.raises(TncError, match="torch.*numpy|numpy.*torch"):
        tnc.fit(NET, torch.from_numpy(data), "als", init=NET.random(seed=0), progress=False)
    with pytest.raises(TncError, match="`mask` is numpy"):
        tnc.fit(NET, torch.from_numpy(data), "als", mask=np.ones(data.shape, bool),
                progress=False)


def test_torch_and_jax_in_one_call_name_both(jnp):
    data = planted()
    with pytest.raises(TncError, match="torch.*jax|jax.*torch"):
        tnc.fit(NET, torch.from_numpy(data), "als", progress=False,
                init={k: jnp.asarray(v) for k, v in NET.random(seed=0).items()})
