"""Constant-only subtrees contracted once (tnc.engine.constants) give what the plain
program gives, and numpy.einsum; GCP with fixed inputs fits alike with and without them."""
import numpy as np
import pytest

import tnc
from tnc.engine.constants import Folded
from tnc.engine.grad import grad_plan

# F and G share the kept leg i: their face-splitting product (i, a, b) is a constant
SIDE = ("network m(I = 6, A = 3, B = 4, J = 5) { index i: I, a: A, b: B, j: J "
        "data F(i, a), G(i, b) tensor W(a, b, j) output i, j }")


def _names(net):
    return [o.name for o in net.occurrences]


def test_folded_gradients_match_the_plain_program_and_einsum():
    net = tnc.compile(SIDE)
    rng = np.random.default_rng(1)
    fixed = {"F": rng.standard_normal((6, 3)), "G": rng.standard_normal((6, 4))}
    W = rng.standard_normal((3, 4, 5))
    upstream = rng.standard_normal((6, 5))
    plan = grad_plan(net, wrt={"W"})
    folded = Folded(plan, _names(net), fixed)
    assert folded.saved_flops == 6 * 3 * 4 and len(folded.steps) < len(plan.steps)
    arrays = [{**fixed, "W": W}[name] for name in _names(net)]
    plain_value, tape = plan.forward(arrays)
    plain = plan.backward(tape, upstream)
    for _ in range(2):                       # the kept intermediates survive a call
        value, tape = plan.forward([None, None, W], folded)
        grads = plan.backward(tape, upstream)
        np.testing.assert_allclose(value, plain_value, rtol=1e-13)
        np.testing.assert_allclose(grads["W"], plain["W"], rtol=1e-13)
    np.testing.assert_allclose(value, np.einsum("ia,ib,abj->ij", fixed["F"], fixed["G"], W))
    np.testing.assert_allclose(grads["W"], np.einsum("ia,ib,ij->abj", fixed["F"], fixed["G"],
                                                     upstream))


def test_an_energy_network_with_its_mpo_fixed():
    """<psi|H|psi>: the MPO blocks are constants; the gradient of psi is unchanged."""
    net = tnc.library("energy", N=4, D=3, W=2)
    tensors = net.random(seed=2, include_data=True)
    fixed = {name: tensors[name] for name in net.data}
    plan = grad_plan(net)
    folded = Folded(plan, _names(net), fixed)
    arrays = [tensors[name] for name in _names(net)]
    value, tape = plan.forward(arrays)
    plain = plan.backward(tape, np.array(1.0))
    value_f, tape = plan.forward([None if n in fixed else tensors[n] for n in _names(net)],
                                 folded)
    grads = plan.backward(tape, np.array(1.0))
    np.testing.assert_allclose(value_f, value, rtol=1e-12)
    assert set(grads) == set(plain)
    for name in plain:
        np.testing.assert_allclose(grads[name], plain[name], rtol=1e-12)
    np.testing.assert_allclose(value, np.einsum(net.equation, *net.operands(tensors)),
                               rtol=1e-12)


def test_a_tensor_whose_gradient_is_wanted_is_no_constant():
    net = tnc.compile(SIDE)
    plan = grad_plan(net, wrt={"W", "F"})
    with pytest.raises(tnc.TncError, match="`F` cannot be a constant"):
        Folded(plan, _names(net), {"F": np.ones((6, 3))})


def test_gcp_with_fixed_inputs_fits_alike_folded_or_not(monkeypatch):
    import tnc.fitting.gcp as gcp
    net = tnc.compile(SIDE)
    rng = np.random.default_rng(3)
    fixed = {"F": rng.standard_normal((6, 3)), "G": rng.standard_normal((6, 4))}
    data = np.einsum("ia,ib,abj->ij", fixed["F"], fixed["G"], rng.standard_normal((3, 4, 5)))
    fit = lambda: tnc.fit(net, data, method="gcp", inputs=fixed, seed=0,  # noqa: E731
                          max_iter=30, progress=False)
    made = []
    monkeypatch.setattr(gcp, "Folded", lambda *a: made.append(Folded(*a)) or made[-1])
    folded = fit()
    assert made and made[0].saved_flops > 0
    monkeypatch.setattr(gcp, "Folded", lambda *a: None)
    plain = fit()
    np.testing.assert_allclose([h["loss"] for h in folded.history],
                               [h["loss"] for h in plain.history], rtol=1e-12)
    assert folded.rel_error < 0.5 * np.linalg.norm(data) and folded.rel_error == plain.rel_error
