"""Gauss-Newton / Levenberg-Marquardt for any network: ``tnc.fit(net, X, method="nls")``.

Minimises ``0.5 ||W (X - M(T))||^2`` over every parameter tensor ``T`` at once
(``W``: the observed entries). The network's Jacobian is its delete-the-node
environments: for a direction ``p`` (one array per tensor),

* ``J p`` is the sum, over the parameter uses, of the network with that use
  replaced by ``p_t`` (one contraction per use, :class:`Jacobian.apply`);
* ``J^T v`` is the gradient of ``<v, M>``, one reverse sweep
  (:class:`Jacobian.transpose`, :mod:`tnc.engine.grad`).

Each iteration solves ``(J^T W J + lambda I) p = -g`` (``g = J^T W (M - X)``) by
conjugate gradients, preconditioned block-Jacobi: the diagonal blocks
``J_t^T W J_t + lambda I`` are the ALS Gram operators of :mod:`tnc.fitting.als`
(for CP the Hadamard product of the other factors' Grams; with missing entries
one weighted Gram per row), inverted exactly. Networks ALS cannot plan (a tensor
used twice, a summed leg only one tensor carries) run unpreconditioned, as
``info["preconditioner"]`` says. The damping ``lambda`` follows the gain ratio
(actual over predicted decrease) by Nielsen's rule (Madsen, Nielsen & Tingleff
2004), as Tensorlab's ``cpd_nls`` anchors (Sorber, Van Barel & De Lathauwer 2013).

    >>> import tnc
    >>> net = tnc.library("cp", I=6, J=5, K=4, R=2)
    >>> X = net.contract(net.random(seed=1))
    >>> result = tnc.fit(net, X, method="nls", progress=False)
    >>> result.converged, result.rel_error < 1e-8, result.info["preconditioner"]
    (True, True, 'block-jacobi')
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from tnc.errors import TncError
from tnc.engine.grad import grad_plan
from tnc.fitting.dtypes import REAL, balanced, random_start, resolution
from tnc.fitting.front import (FitProblem, check_finite, observed_rel_error, register_method,
                               squared_norm)
from tnc.fitting.optimizers import Packing
from tnc.fitting.identifiable import check_identifiable, check_slices
from tnc.fitting.progress import Progress, wants_stop
from tnc.fitting.records import record, state
from tnc.fitting.result import FitResult

EXACT_FIT = 1e-13       # a relative error this small counts as an exact fit (as ALS)
ROUNDING = 1e-15        # a predicted decrease below this times the loss is rounding noise


@dataclass
class NLSOptions:
    """Options of ``tnc.fit(..., method="nls")``.

    ``max_iter``: Levenberg-Marquardt steps tried (accepted or not); ``tol``: stop
    when an accepted step lowers the loss ``||W (X - M)||^2`` by less than ``tol``
    times itself, or the relative error falls below 1e-13; ``cg_iter``: conjugate
    gradient steps per iteration at most (each one ``J p`` and ``J^T v``);
    ``damping``: the first ``lambda`` relative to the Rayleigh quotient of
    ``J^T W J`` at the start; ``preconditioner``: ``"auto"`` (block-Jacobi where ALS
    can plan the network, else none), ``"block-jacobi"`` or ``"none"``; ``seed``,
    ``init``: ``"random"`` (scaled so ``||M|| = ||X||``), a dict name -> array or a
    FitResult (float32 data: fitted in float32, with ``tol``, the exact-fit and the
    rounding tests floored at float32's resolution; complex data: refused); ``callback(state)``: after each iteration, True stops;
    ``progress``: show a progress bar; ``optimize``: contraction path optimizer.

    A least-squares method: :func:`tnc.fit` runs it on the data rescaled to unit RMS
    (:mod:`tnc.fitting.rescale`).
    """

    least_squares: ClassVar[bool] = True
    max_iter: int = field(default=500, metadata={"min": 1})
    tol: float = 1e-10
    cg_iter: int = field(default=20, metadata={"min": 1})
    damping: float = field(default=1e-3, metadata={"above": 0})
    preconditioner: str = field(default="auto",
                                metadata={"choices": {"auto", "block-jacobi", "none"}})
    seed: int | None = 0
    init: object = "random"
    callback: Callable | None = None
    progress: bool = True
    optimize: str = "auto"


# -- the Jacobian of a network ------------------------------------------------------------
class Jacobian:
    """``J`` and ``J^T`` of a network's output with respect to its parameters at ``tensors``.

    Directions and gradients are dicts name -> array of the parameters' shapes.

        >>> import tnc
        >>> net = tnc.library("cp", I=3, J=4, K=2, R=2)
        >>> t = net.random(seed=0)
        >>> jac = Jacobian(net, {})
        >>> np.allclose(jac.apply(t, t), 3 * net.contract(t))   # M is 3-linear in t
        True
    """

    def __init__(self, network, inputs: dict, optimize="auto"):
        self.network, self.inputs = network, inputs
        self.forward = grad_plan(network, optimize, wrt=())
        self.backward = grad_plan(network, optimize)
        self.uses = [k for k, occ in enumerate(network.occurrences) if occ.kind == "param"]

    def _arrays(self, tensors: dict) -> list:
        everything = {**tensors, **self.inputs}
        return [everything[occ.name] for occ in self.network.occurrences]

    def model(self, tensors: dict) -> np.ndarray:
        """``M(tensors)``, the network's output."""
        return np.array(self.forward.forward(self._arrays(tensors))[0])

    def apply(self, tensors: dict, direction: dict) -> np.ndarray:
        """``J p``: the network with each parameter use in turn replaced by ``p_t``, summed."""
        base, total = self._arrays(tensors), None
        for k in self.uses:
            arrays = list(base)
            arrays[k] = direction[self.network.occurrences[k].name]
            value = self.forward.forward(arrays)[0]
            total = np.array(value) if total is None else total + value
        return total

    def transpose(self, tensors: dict, vector: np.ndarray) -> dict[str, np.ndarray]:
        """``J^T v``: the gradient of ``<v, M>`` with respect to every parameter."""
        _, tape = self.backward.forward(self._arrays(tensors))
        return self.backward.backward(tape, np.ascontiguousarray(vector))


# -- the block-Jacobi preconditioner ---------------------------------------------------------
class BlockJacobi:
    """``(J_t^T W J_t + lambda I)^{-1}`` per tensor, from the ALS Gram operators.

    :meth:`refresh` takes the Grams at new tensors; :meth:`inverse` a damping and
    returns the function applying the inverse to a packed vector.
    """

    def __init__(self, problem: FitProblem, tensors: dict, packing: Packing, optimize):
        from tnc.fitting.als import Fit, Settings, als_model
        names = list(problem.network.params)
        model = als_model(problem.network, names, optimize)
        settings = Settings(names, {n: 0.0 for n in names}, set(),
                            None if problem.mask is None else "wls")
        self.fit = Fit(problem, model, settings, dict(tensors), problem.mask)
        self.packing, self.blocks = packing, {}

    def refresh(self, tensors: dict) -> None:
        """The Grams ``(batches, b, b)`` and row layout of every tensor at ``tensors``."""
        for name in self.packing.shapes:
            self.fit.set_tensor(name, tensors[name])
        for name in self.packing.shapes:
            _, gram, axes = self.fit.contributions(name)     # its right-hand side unused
            self.blocks[name] = (gram, axes)

    def scale(self) -> float:
        """The largest diagonal entry of the blocks (of ``J^T W J``)."""
        return max(float(np.max(np.diagonal(g, axis1=1, axis2=2))) for g, _ in
                   self.blocks.values())

    def inverse(self, damping: float) -> Callable[[np.ndarray], np.ndarray]:
        inverses = {name: np.linalg.inv(gram + damping * np.eye(gram.shape[-1]))
                    for name, (gram, _) in self.blocks.items()}

        def apply(vector: np.ndarray) -> np.ndarray:
            parts = self.packing.unpack(vector)
            out = {}
            for name, part in parts.items():
                inverse, axes = inverses[name], self.blocks[name][1]
                rows = np.transpose(part, axes)
                solved = rows.reshape(inverse.shape[0], -1, inverse.shape[-1]) @ inverse
                out[name] = np.transpose(solved.reshape(rows.shape), np.argsort(axes))
            return self.packing.pack(out)
        return apply


def block_jacobi(problem: FitProblem, tensors: dict, packing: Packing, options):
    """A :class:`BlockJacobi`, or None (no preconditioner) when not asked for or ALS
    cannot plan the network; asked for explicitly, the reason is an error."""
    if options.preconditioner == "none":
        return None
    uses = Counter(occ.name for occ in problem.network.occurrences if occ.kind == "param")
    tied = [name for name, n in uses.items() if n > 1]
    try:
        if tied:
            raise TncError(f"`{tied[0]}` is used {uses[tied[0]]} times, so its diagonal "
                           "block is no ALS Gram")
        return BlockJacobi(problem, tensors, packing, options.optimize)
    except TncError as error:
        if options.preconditioner == "block-jacobi":
            raise TncError(f"nls: no block-Jacobi preconditioner for network "
                           f"`{problem.network.name}`: {error}") from None
        return None


# -- conjugate gradients ------------------------------------------------------------------------
def pcg(operator: Callable, b: np.ndarray, precondition: Callable | None, max_iter: int,
        rtol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, r, steps)``: preconditioned CG from 0 on ``A x = b`` (``A`` symmetric positive
    definite, applied by ``operator``), stopped when ``||b - A x|| <= rtol ||b||``;
    ``r = b - A x``.

        >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x, r, steps = pcg(lambda v: A @ v, np.array([1.0, 2.0]), None, 5, 1e-12)
        >>> np.allclose(A @ x, [1.0, 2.0]), steps
        (True, 2)
    """
    x, r = np.zeros_like(b), b.copy()
    z = r if precondition is None else precondition(r)
    d, rz, bound, steps = z.copy(), float(r @ z), rtol * float(np.linalg.norm(b)), 0
    while steps < max_iter and float(np.linalg.norm(r)) > bound:
        ad = operator(d)
        curvature = float(d @ ad)
        if not curvature > 0:
            break
        alpha = rz / curvature
        x += alpha * d
        r -= alpha * ad
        steps += 1
        z = r if precondition is None else precondition(r)
        rz, previous = float(r @ z), rz
        d = z + (rz / previous) * d
    return x, r, steps


# -- the method --------------------------------------------------------------------------------
class Residual:
    """The loss ``0.5 ||W (X - M)||^2`` and its residual ``W (M - X)`` at given tensors."""

    def __init__(self, problem: FitProblem, jacobian: Jacobian):
        self.problem, self.jacobian = problem, jacobian
        self.target = problem.target
        self.xx = squared_norm(self.observed(self.target))

    def observed(self, array: np.ndarray) -> np.ndarray:
        return array if self.problem.mask is None else np.where(self.problem.mask, array, 0.0)

    def __call__(self, tensors: dict) -> tuple[float, np.ndarray]:
        residual = self.observed(self.jacobian.model(tensors) - self.target)
        return 0.5 * squared_norm(residual), residual

    def rel_error(self, half_loss: float) -> float:
        return math.sqrt(2 * half_loss / self.xx) if self.xx > 0 else math.sqrt(2 * half_loss)


def initial_tensors(problem: FitProblem, jacobian: Jacobian, init, seed) -> dict:
    """Given tensors (checked), or random ones scaled so ``||W M|| = ||W X||``."""
    net = problem.network
    init = getattr(init, "tensors", init)
    if isinstance(init, dict):
        net.check_tensors(init, required=net.params)
        tensors = {k: np.array(init[k], dtype=problem.dtype) for k in net.params}
        for name, tensor in tensors.items():
            check_finite(tensor, f"init: `{name}`")
        return tensors
    if not (isinstance(init, str) and init == "random"):
        raise TncError(f"init must be 'random', a dict of arrays or a FitResult, got {init!r}")
    tensors = balanced(random_start(net, seed, problem.dtype))
    residual = Residual(problem, jacobian)
    mm = float(np.sum(residual.observed(jacobian.model(tensors)) ** 2))
    if mm <= 0 or residual.xx <= 0:
        return tensors
    factor = (residual.xx / mm) ** (0.5 / len(jacobian.uses))
    return {k: v * factor for k, v in tensors.items()}


class LevenbergMarquardt:
    """One run: tensors, loss, gradient, damping; :meth:`step` tries one damped step."""

    def __init__(self, problem: FitProblem, options: NLSOptions):
        self.problem, self.options = problem, options
        self.jacobian = Jacobian(problem.network, problem.inputs, options.optimize)
        self.loss = Residual(problem, self.jacobian)
        self.tensors = initial_tensors(problem, self.jacobian, options.init, options.seed)
        # the CG vectors stay float64; float32 tensors are converted at the boundary
        self.packing = Packing({k: v.shape for k, v in self.tensors.items()}, problem.dtype)
        eps = resolution(problem.dtype)     # float32: tests floored at its resolution
        self.exact_fit, self.rounding = max(EXACT_FIT, 30 * eps), max(ROUNDING, eps)
        self.tol = max(options.tol, eps) if options.tol else options.tol
        self.blocks = block_jacobi(problem, self.tensors, self.packing, options)
        self.f, self.residual = self.loss(self.tensors)
        self.damping, self.growth = None, 2.0
        self._moved()

    def _moved(self) -> None:
        """Gradient (and Grams) at the current tensors."""
        self.g = self.packing.pack(self.jacobian.transpose(self.tensors, self.residual))
        if self.blocks is not None:
            self.blocks.refresh(self.tensors)
        if self.damping is None:
            self.damping = self.options.damping * self._curvature_scale()

    def _curvature_scale(self) -> float:
        """Largest diagonal entry of ``J^T W J`` (its blocks), else its Rayleigh quotient
        at the current tensors."""
        if self.blocks is not None:
            return self.blocks.scale()
        x = self.packing.pack(self.tensors)
        jx = self.loss.observed(self.jacobian.apply(self.tensors, self.tensors))
        return float(np.vdot(jx, jx)) / max(float(x @ x), 1e-300)

    def gauss_newton(self, vector: np.ndarray) -> np.ndarray:
        """``(J^T W J + lambda I) v``."""
        direction = self.packing.unpack(vector)
        jv = self.loss.observed(self.jacobian.apply(self.tensors, direction))
        return self.packing.pack(self.jacobian.transpose(self.tensors, jv)) + self.damping * vector

    def step(self) -> dict:
        """Try one step; returns what happened (accepted, decrease, predicted, CG steps)."""
        precondition = None if self.blocks is None else self.blocks.inverse(self.damping)
        gnorm = float(np.linalg.norm(self.g))
        forcing = min(0.5, math.sqrt(gnorm / max(self.gnorm0, 1e-300)))
        b = -self.g
        p, r, steps = pcg(self.gauss_newton, b, precondition, self.options.cg_iter, forcing)
        # decrease predicted by the undamped model: b.p - 0.5 |W J p|^2, where
        # |W J p|^2 = p.(A p) - lambda |p|^2 and A p = b - r
        predicted = 0.5 * float(b @ p + p @ r + self.damping * (p @ p))
        trial = {k: v + d for (k, v), d in zip(self.tensors.items(),
                                                self.packing.unpack(p).values())}
        f_new, residual = self.loss(trial)
        decrease = self.f - f_new
        gain = decrease / predicted if predicted > 0 else -1.0
        accepted = bool(gain > 0 and math.isfinite(f_new))
        info = {"accepted": accepted, "decrease": decrease, "predicted": predicted,
                "loss_before": self.f, "cg_iter": steps, "damping": self.damping}
        if accepted:
            self.tensors, self.f, self.residual = trial, f_new, residual
            self.damping *= max(1 / 3, 1 - (2 * gain - 1) ** 3)
            self.growth = 2.0
            self._moved()
        else:
            self.damping *= self.growth
            self.growth *= 2.0
        return info

    def run(self, bar: Progress) -> tuple[list[dict], bool, str]:
        start, history = time.perf_counter(), []
        self.gnorm0 = float(np.linalg.norm(self.g))
        if self.loss.rel_error(self.f) < self.exact_fit:
            return [record(1, 2 * self.f, self.loss.rel_error(self.f), 0.0)], True, "exact fit"
        for iteration in range(1, self.options.max_iter + 1):
            info = self.step()
            entry = record(iteration, 2 * self.f, self.loss.rel_error(self.f),
                           time.perf_counter() - start, damping=info["damping"],
                           cg_iter=info["cg_iter"], accepted=info["accepted"])
            history.append(entry)
            bar.update(loss=entry["loss"])
            stopped = wants_stop(self.options.callback, state(entry, tensors=self.tensors))
            reason = self._stop_reason(info)
            if reason is not None:
                return history, True, reason
            if stopped:
                return history, False, "stopped by the callback"
        return history, False, f"max_iter={self.options.max_iter} steps tried"

    def _stop_reason(self, info: dict) -> str | None:
        """Why the fit has converged after a step, or None."""
        if self.loss.rel_error(self.f) < self.exact_fit:
            return "exact fit"
        if info["accepted"] and info["decrease"] <= self.tol * info["loss_before"]:
            return f"an accepted step lowered the loss by less than tol={self.tol:g}"
        if not info["accepted"] and info["predicted"] <= self.rounding * info["loss_before"]:
            return "no step lowers the loss beyond rounding"
        return None


def run_nls(problem: FitProblem, options: NLSOptions) -> FitResult:
    """Fit ``problem`` by Levenberg-Marquardt; see the module docstring."""
    if not isinstance(problem.target, np.ndarray):
        raise TncError("method 'nls' needs dense data")
    if not problem.network.params:
        raise TncError(f"network `{problem.network.name}` has no parameters to fit")
    check_slices(problem.network, problem.mask)
    check_identifiable(problem.network)
    start = time.perf_counter()
    solver = LevenbergMarquardt(problem, options)
    with Progress(options.max_iter, desc="nls", enabled=options.progress) as bar:
        history, converged, message = solver.run(bar)
    history[-1]["rel_error"] = observed_rel_error(problem, solver.tensors)
    info = {"message": message, "seed": options.seed,
            "preconditioner": "none" if solver.blocks is None else "block-jacobi",
            "accepted": sum(bool(e.get("accepted", True)) for e in history),
            "cg_iter": sum(e.get("cg_iter", 0) for e in history)}
    return FitResult(problem.network, solver.tensors, "nls", history, converged,
                     len(history), time.perf_counter() - start, dict(problem.inputs), info)


register_method("nls", NLSOptions, run_nls, dtypes=REAL)
