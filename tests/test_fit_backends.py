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


# -- native ALS and Adam (tnc/fitting/native.py, the backend= policy of backends.py) ------
WELL = tnc.library("cp", I=10, J=9, K=8, R=3)


def well_posed(dtype=np.float64, seed=0, noise=0.01):
    """Planted CP data with near-orthogonal factors: ALS converges fast and to one point."""
    rng = np.random.default_rng(seed)
    factors = [np.linalg.qr(rng.standard_normal((n, 3)))[0] * np.array([3.0, 2.0, 1.5]) ** (1 / 3)
               for n in (10, 9, 8)]
    data = np.einsum("ir,jr,kr->ijk", *factors)
    return (data + noise * np.std(data) * rng.standard_normal(data.shape)).astype(dtype)


def assert_same_fit(result, reference, rtol, library="torch", key="rel_error"):
    """The same tensors (to ``rtol`` of their largest entry) and history ``key`` values."""
    for name, tensor in result.tensors.items():
        value = tensor.numpy() if library == "torch" else np.asarray(tensor)
        scale = np.max(np.abs(reference.tensors[name]))
        np.testing.assert_allclose(value, reference.tensors[name], rtol=0, atol=rtol * scale)
    assert [h[key] for h in result.history] == pytest.approx(
        [h[key] for h in reference.history], rel=rtol)


NATIVE_CASES = {"dense": {}, "l2": {"l2": 0.1}, "em": {"missing": "em"},
                "wls": {"missing": "wls"}, "tt": {}}


@pytest.mark.parametrize("case", NATIVE_CASES)
def test_native_torch_als_equals_the_numpy_fit_in_float64(case):
    net = tnc.library("tt", N=4, d=4, r=2) if case == "tt" else NET
    data = planted() if case != "tt" else net.contract(net.random(seed=2))
    mask = (np.random.default_rng(4).random(data.shape) > 0.2) if case in ("em", "wls") else None
    options = NATIVE_CASES[case]
    reference = tnc.fit(net, data, "als", mask=mask, progress=False, **options)
    result = tnc.fit(net, torch.from_numpy(data), "als", backend="native", progress=False,
                     mask=None if mask is None else torch.from_numpy(mask), **options)
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float64
               for t in result.tensors.values())
    assert all(isinstance(h["loss"], float) for h in result.history)
    assert_same_fit(result, reference, 1e-10)


def test_native_torch_als_in_float32_stays_float32_and_matches():
    data = well_posed(np.float32)
    options = dict(progress=False, normalize=False, max_iter=10, tol=0, init="svd")  # 10 sweeps
    reference = tnc.fit(WELL, data, "als", **options)
    result = tnc.fit(WELL, torch.from_numpy(data), "als", backend="native", **options)
    assert all(t.dtype == torch.float32 for t in result.tensors.values())
    for name, tensor in result.tensors.items():
        scale = np.max(np.abs(reference.tensors[name]))
        np.testing.assert_allclose(tensor.numpy(), reference.tensors[name], atol=1e-5 * scale)
    # the loss formula in float32 resolves rel_error to ~1e-3 of itself (its cancellation);
    # the residual of the final tensors, computed here in float64, agrees to 1e-5
    residual = lambda ts: np.linalg.norm(data - WELL.contract(  # noqa: E731
        {k: np.asarray(v, np.float64) for k, v in ts.items()}))
    assert residual({k: t.numpy() for k, t in result.tensors.items()}) == pytest.approx(
        residual(reference.tensors), rel=1e-5)
    assert result.rel_error == pytest.approx(reference.rel_error, rel=1e-2)


def test_native_runs_on_the_backend(monkeypatch):
    """The native path really solves with torch: numpy's solve_rows is never called."""
    import tnc.fitting.als as als
    called = []
    monkeypatch.setattr(als, "solve_tensor", lambda *a, **k: called.append(1))
    data = planted()
    tnc.fit(NET, torch.from_numpy(data), "als", backend="native", progress=False, max_iter=3)
    assert not called
    with pytest.raises(TypeError):       # the numpy path does call it (and gets None)
        tnc.fit(NET, torch.from_numpy(data), "als", backend="numpy", progress=False,
                max_iter=3)


def test_native_jax_als_equals_the_numpy_fit(jnp):
    data = planted()
    reference = tnc.fit(NET, data, "als", progress=False)
    result = tnc.fit(NET, jnp.asarray(data), "als", backend="native", progress=False)
    assert all(type(t).__module__.startswith("jax") for t in result.tensors.values())
    assert_same_fit(result, reference, 1e-10, library="jax")


def test_native_fit_of_a_requires_grad_tensor_uses_its_value():
    data = planted()
    result = tnc.fit(NET, torch.tensor(data, requires_grad=True), "als", backend="native",
                     progress=False, max_iter=20)
    reference = tnc.fit(NET, data, "als", progress=False, max_iter=20)
    assert not any(t.requires_grad for t in result.tensors.values())
    assert_same_fit(result, reference, 1e-10)


@pytest.mark.parametrize("option, value, named", [
    ("nonneg", True, "nonneg"), ("extrapolate", True, "extrapolate"),
    ("holdout", 0.1, "holdout")])
def test_native_refuses_numpy_only_options_naming_option_and_backend(option, value, named):
    data = torch.from_numpy(np.abs(planted()))
    with pytest.raises(TncError, match=f"native.*torch.*{named}"):
        tnc.fit(NET, data, "als", backend="native", progress=False, **{option: value})
    result = tnc.fit(NET, data, "als", progress=False, max_iter=3, **{option: value})
    assert isinstance(result.tensors["A"], torch.Tensor)     # auto: the numpy path


def test_native_refuses_complex_and_bad_choices():
    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.standard_normal((9, 8, 7)) + 1j * rng.standard_normal((9, 8, 7)))
    with pytest.raises(TncError, match="native.*torch.*complex"):
        tnc.fit(NET, data, "als", backend="native", progress=False)
    with pytest.raises(TncError, match="backend"):
        tnc.fit(NET, torch.from_numpy(planted()), "als", backend="gpu", progress=False)


def test_backend_policy():
    from tnc.fitting.backends import choose
    cpu = torch.zeros(1)
    assert not choose("auto", cpu, {}, np.dtype("float64"))          # CPU torch: numpy path
    assert choose("native", cpu, {}, np.dtype("float64"))
    assert not choose("numpy", cpu, {}, np.dtype("float64"))
    assert not choose("native", None, {}, np.dtype("float64"))       # numpy data: numpy
    meta = torch.zeros(1, device="meta")                             # a non-CPU device
    assert choose("auto", meta, {}, np.dtype("float32"))
    assert not choose("auto", meta, {"nonneg": True}, np.dtype("float32"))


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_adam_on_backend_tensors_repeats_numpy_adam(library, request):
    from tnc.fitting.optimizers import Adam
    rng = np.random.default_rng(0)
    start = {"A": rng.standard_normal((4, 3)), "B": rng.standard_normal(5)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(6)]
    if library == "torch":
        put, back = torch.from_numpy, lambda t: t.numpy()
    else:
        jnp = request.getfixturevalue("jnp")
        put, back = jnp.asarray, np.asarray
    ours = {k: put(v.copy()) for k, v in start.items()}
    theirs = {k: v.copy() for k, v in start.items()}
    a, b = Adam(ours, 0.0), Adam(theirs, 0.0)
    for step, g in enumerate(grads):
        a.step(ours, {k: put(v) for k, v in g.items()}, 0.05)
        b.step(theirs, g, 0.05)
        if step == 2:
            saved_a, saved_b = a.state(), b.state()
    for k in start:
        assert type(ours[k]).__module__.startswith(library)
        np.testing.assert_allclose(back(ours[k]), theirs[k], rtol=1e-10, atol=1e-14)
        assert (theirs[k] >= 0).all()
    a.restore(saved_a), b.restore(saved_b)
    assert a.t == b.t == 3
    np.testing.assert_allclose(back(a.m["A"]), b.m["A"], rtol=1e-10)


def test_native_takes_torch_starts_and_shows_the_callback_torch_tensors():
    data = planted()
    start = NET.random(seed=5)
    seen = []
    result = tnc.fit(NET, torch.from_numpy(data), "als", backend="native", progress=False,
                     init={k: torch.from_numpy(v) for k, v in start.items()}, max_iter=8,
                     callback=lambda state: seen.append(type(state["tensors"]["A"])))
    reference = tnc.fit(NET, data, "als", progress=False, init=start, max_iter=8)
    assert seen and all(kind is torch.Tensor for kind in seen)
    assert_same_fit(result, reference, 1e-10)


# -- GCP's Adam on the data's library (tnc/fitting/gcp.py, the same backend= policy) -------
NATIVE_ADAM = {"gaussian": {}, "poisson masked": {"loss": "poisson"},
               "tt weighted": {"weights": True}}


def on(put, options):
    """``options`` with the mask and weights as arrays of the library ``put`` makes."""
    return {k: put(v) if k in ("mask", "weights") else v for k, v in options.items()}


def adam_case(case, dtype=np.float64):
    net = tnc.library("tt", N=3, d=6, r=2) if case.startswith("tt") else NET
    data = np.abs(net.contract(net.random(seed=2))).astype(dtype)
    options = dict(ADAM, **{k: v for k, v in NATIVE_ADAM[case].items() if k != "weights"})
    if case == "poisson masked":
        data = np.round(3 * data / data.mean())
        options["mask"] = np.random.default_rng(4).random(data.shape) > 0.2
    if NATIVE_ADAM[case].get("weights"):
        options["weights"] = np.random.default_rng(5).uniform(0.5, 2.0, data.shape)
    return net, data, options


@pytest.mark.parametrize("case", NATIVE_ADAM)
def test_native_torch_adam_repeats_the_numpy_adam(case):
    net, data, options = adam_case(case)
    reference = tnc.fit(net, data, "gcp", progress=False, **options)
    result = tnc.fit(net, torch.from_numpy(data), "gcp", backend="native", progress=False,
                     **on(torch.from_numpy, options))
    assert result.info["backend"] == "torch" and reference.info["backend"] == "numpy"
    assert all(isinstance(t, torch.Tensor) for t in result.tensors.values())
    assert_same_fit(result, reference, 1e-10, key="loss")
    assert result.loss == pytest.approx(reference.loss, rel=1e-10)


def test_native_adam_really_steps_torch_tensors(monkeypatch):
    from tnc.fitting import gcp
    seen = []
    real = gcp.Adam.step

    def step(self, tensors, grads, lr):
        seen.append({type(v).__module__.split(".")[0] for v in (*tensors.values(),
                                                                 *grads.values())})
        return real(self, tensors, grads, lr)
    monkeypatch.setattr(gcp.Adam, "step", step)
    net, data, options = adam_case("gaussian")
    tnc.fit(net, torch.from_numpy(data), "gcp", backend="native", progress=False, **options)
    assert seen and all(s == {"torch"} for s in seen)
    seen.clear()
    tnc.fit(net, torch.from_numpy(data), "gcp", progress=False, **options)   # auto, CPU
    assert seen and all(s == {"numpy"} for s in seen)


def test_native_torch_adam_in_float32_stays_float32():
    net, data, options = adam_case("gaussian", np.float32)
    reference = tnc.fit(net, data, "gcp", progress=False, **options)
    result = tnc.fit(net, torch.from_numpy(data), "gcp", backend="native", progress=False,
                     **options)
    assert all(t.dtype == torch.float32 for t in result.tensors.values())
    assert_same_fit(result, reference, 1e-4, key="loss")


def test_native_jax_adam_repeats_the_numpy_adam(jnp):
    net, data, options = adam_case("poisson masked")
    reference = tnc.fit(net, data, "gcp", progress=False, **options)
    result = tnc.fit(net, jnp.asarray(data), "gcp", backend="native", progress=False,
                     **on(jnp.asarray, options))
    assert result.info["backend"] == "jax"
    assert_same_fit(result, reference, 1e-10, library="jax", key="loss")


def test_native_adam_refuses_what_it_lacks_by_name():
    with pytest.raises(TncError, match="native.*torch.*sampler='stratified'.*GCP's Adam"):
        tnc.fit(NET, torch.from_numpy(planted()), "gcp", backend="native", progress=False,
                sampler="stratified", **ADAM)
    with pytest.raises(TncError, match="backend"):
        tnc.fit(NET, torch.from_numpy(planted()), "gcp", backend="gpu", progress=False, **ADAM)


@pytest.mark.parametrize("kind,method", [("tt", None), ("tucker", "sthosvd"), ("tucker", "hooi")])
def test_decompose_of_torch_data_returns_torch_tensors_equal_to_numpy(kind, method):
    data = planted(np.float32)
    on_numpy = tnc.decompose(data, kind, ranks=2, method=method)
    on_torch = tnc.decompose(torch.from_numpy(data).requires_grad_(), kind, ranks=2,
                             method=method)
    assert on_torch.rel_error == pytest.approx(on_numpy.rel_error, rel=1e-6)
    for name, tensor in on_torch.tensors.items():
        assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32, name
        np.testing.assert_allclose(tensor.numpy(), on_numpy.tensors[name], rtol=1e-6, atol=1e-6)
