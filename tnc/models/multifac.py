"""MULTIFAC: linked tensor factorization with L2-induced rank sparsity (Kang, Rao, Lock 2025).

K tensors ``X_k`` share their first mode (the same samples). Each gets a CP
model whose first-mode factor ``U`` (I x R) is shared by all of them::

    X_k ≈ [[U, F_k2, ..., F_kN_k]]      (R components, R deliberately too large)

fitted by penalised ALS on ``sum_k ||X_k - M_k||^2 + sigma (||U||^2 + sum_kn ||F_kn||^2)``.
The L2 penalty on the factors acts on each component like a penalty on its
weight to the power ``2/N``, so for tensors it drives unneeded components to
exactly zero (rank sparsity). A component left with a nonzero weight in every
tensor is *shared*; one alive in a single tensor is *individual* to it. The
model is a tnc text (networks ``X1..XK``, a ``model`` block) fitted by
:func:`tnc.fit_model`; nothing here is specific to CP beyond building that text.

    >>> for line in linked_cp_text([(4, 3, 2), (4, 5)], rank=2).splitlines()[1:]:
    ...     print(line[:72].rstrip())
    network X1(I = 4, R = 2, N1_2 = 3, N1_3 = 2) { index i: I, r: R, m2: N1_
    network X2(I = 4, R = 2, N2_2 = 5) { index i: I, r: R, m2: N2_2  tensor
    model multifac(sigma = 1.0) {
        fit X1 to T1
        fit X2 to T2
        penalty l2(sigma) U, F1_2, F1_3, F2_2
    }

Missing data: entries are filled by EM from the current model; a *missing
slice* (sample i absent from tensor k, every entry of ``X_k[i]`` missing) is
filled from the shared components only, as the paper does (individual
structure of sample i in tensor k is not identifiable from the other tensors).

Component weights: ``d_kr = ||U[:, r]|| prod_n ||F_kn[:, r]||``. Unneeded
components are shrunk to exactly zero, but an individual component of one
tensor can *leak* into another: its ``U`` column is paid for by its own
tensor, so the other tensor may borrow it at the cost of its own factors only,
and fits noise with it. Given the unit sample loading ``u``, the most a leak
can fit in tensor k is the top singular value of the noise contracted with
``u``: for i.i.d. noise of standard deviation ``s_k`` about
``s_k * sum_{n>=2} sqrt(I_kn)`` (exact asymptotically for matrices). So by
default (``threshold="noise"``) a component counts as present in tensor k when
``d_kr`` exceeds that *noise floor*, ``s_k`` estimated from the fit's residual
with a degrees-of-freedom correction (:func:`noise_floors`). A number
``threshold`` instead keeps the components with ``d_kr > threshold * max_r
d_kr``; that relative rule (0.25 before) suits components of similar size but
drops real components ten times smaller than the largest, which occur when the
factors are N(0, 1) draws as in the authors' simulations. The floor separates
leaks from real components only when ``sigma`` keeps leaks small: with too
small a penalty (below the cross-validated one) many leaks exceed it.

Penalty choice: :func:`cross_validate` holds out folds of observed entries
(each entry in one fold), fits every ``sigma`` of a grid on the rest, and picks
the largest ``sigma`` whose mean held-out error is within one standard error of
the best (the one-standard-error rule: the sparsest model the data cannot tell
from the best). The held-out error of a fold is, as in the authors' code, the
mean over tensors of each tensor's relative error ``||X_k - M_k|| / ||X_k||``
on its held-out entries (``score="relative"``), so a large tensor does not
outvote a small one; ``score="sse"`` sums squared errors instead.

Rank choice: :func:`two_step_cv` tunes in two steps, the rank then the
penalty: step 1 cross-validates the fitted rank at a mild penalty, step 2
cross-validates ``sigma`` at the chosen rank. (The authors' code reads its
"step 1" differently: it cross-validates ``sigma`` at rank 20 and takes the
ranks from that fit, which is :func:`cross_validate` then :func:`multifac`;
its step 2 re-tunes ``sigma`` for a model constrained to those ranks, which
changes the signal estimate, not the ranks.) On the simulation of
``examples/multifac_simulation.py`` (seed 0, 20 replicates, tuned on each, the
fit at the chosen rank with 10 starts: ALS at a rank near the true total has
more local minima) the two-step choice recovers the true ranks about as often
as ``sigma`` alone at rank 20: N(0, 1) factors 10/20 against 9/20, unit
factors 17/20 against 20/20, at a larger signal error (0.043 against 0.038
and 0.041 against 0.034) and eight times the time. With the
one-standard-error rule over ranks it is worse (7/20 and 19/20): the weakest
components barely lower the held-out error, so the rule drops them.

For rank recovery, the example's default cross-validates ``sigma`` at rank 20 on
every replicate and takes the least held-out error (:attr:`CrossValidation.best`)
rather than the one-SE choice: on the N(0, 1) design that recovered the true
ranks in 12, 12, 13 and 11 of four blocks of 20 replicates, against 10, 11, 11
and 8 with one-SE. The one-SE rule errs towards the larger penalty, which here
kills the weakest true component; the noise floor already drops the leaks a
smaller penalty lets through.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tnc.fitting.coupled import CoupledResult, fit_model
from tnc.errors import TncError
from tnc.models.model import CoupledModel, compile_model

THRESHOLD = 0.25       # the relative rule's default (see the module docstring)


def linked_cp_text(shapes, rank: int, sigma: float = 1.0) -> str:
    """tnc text of K CP networks ``X1..XK`` sharing the first-mode factor ``U``, and a
    ``model multifac(sigma)`` block with an L2 penalty on every factor."""
    shapes = [tuple(int(n) for n in s) for s in shapes]
    if not shapes or any(len(s) < 2 for s in shapes):
        raise TncError("MULTIFAC needs tensors of at least two modes")
    if len({s[0] for s in shapes}) != 1:
        raise TncError(f"the tensors must share their first mode; got sizes "
                       f"{[s[0] for s in shapes]}")
    lines = ["# MULTIFAC: CP models linked through the shared first-mode factor U"]
    factors = ["U"]
    for k, shape in enumerate(shapes, start=1):
        sizes = [f"N{k}_{n} = {shape[n - 1]}" for n in range(2, len(shape) + 1)]
        indices = [f"m{n}: N{k}_{n}" for n in range(2, len(shape) + 1)]
        tensors = ["U(i, r)"] + [f"F{k}_{n}(m{n}, r)" for n in range(2, len(shape) + 1)]
        factors += [f"F{k}_{n}" for n in range(2, len(shape) + 1)]
        legs = ["i"] + [f"m{n}" for n in range(2, len(shape) + 1)]
        lines.append(f"network X{k}(I = {shape[0]}, R = {rank}, {', '.join(sizes)}) "
                     f"{{ index i: I, r: R, {', '.join(indices)}  tensor {', '.join(tensors)}"
                     f"  output {', '.join(legs)} }}")
    fits = "\n".join(f"    fit X{k} to T{k}" for k in range(1, len(shapes) + 1))
    lines.append(f"model multifac(sigma = {float(sigma)!r}) {{\n{fits}\n"
                 f"    penalty l2(sigma) {', '.join(factors)}\n}}")
    return "\n".join(lines) + "\n"


def multifac_model(shapes, rank: int, sigma: float) -> CoupledModel:
    """The compiled linked CP model (data sets ``T1..TK``)."""
    return compile_model(linked_cp_text(shapes, rank, sigma))


@dataclass
class MultifacResult:
    """A MULTIFAC fit: the coupled fit, the component weights and their classes.

    ``weights``: (K, R) component weights per tensor; ``classes``: one label per
    component: ``"shared"``, ``"individual k"`` (1-based), ``"partial"`` (alive in
    some but not all of K > 2 tensors) or ``"zero"``; ``ranks``: counts
    ``{"shared": s, "individual": [r_1, ..., r_K]}``; ``floors``: (K,) the weight a
    component must exceed to count as present in each tensor.
    """

    fit: CoupledResult
    sigma: float
    weights: np.ndarray
    classes: list[str]
    ranks: dict
    threshold: float | str = "noise"
    floors: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def tensors(self) -> dict:
        return self.fit.tensors

    def signal(self, k: int, part: str = "all") -> np.ndarray:
        """Tensor k's (0-based) fitted signal: ``"all"``, ``"shared"`` or ``"individual"``
        components (individual: those classed ``individual k+1``)."""
        keep = {"all": [c != "zero" for c in self.classes],
                "shared": [c == "shared" for c in self.classes],
                "individual": [c == f"individual {k + 1}" for c in self.classes]}
        if part not in keep:
            raise TncError(f"part must be 'all', 'shared' or 'individual', got {part!r}")
        return cp_signal(factors_of(self.tensors, k), np.array(keep[part]))


def factors_of(tensors: dict, k: int) -> list[np.ndarray]:
    """The CP factors of tensor k (0-based): ``[U, F_k2, ...]``."""
    names = sorted((n for n in tensors if n.startswith(f"F{k + 1}_")),
                   key=lambda n: int(n.split("_")[1]))
    return [tensors["U"], *(tensors[n] for n in names)]


def cp_signal(factors, keep=None) -> np.ndarray:
    """``sum_r prod_n factors[n][:, r]`` over the components ``keep`` (a boolean mask).

    >>> cp_signal([np.ones((2, 1)), np.arange(3.0)[:, None]]).tolist()
    [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]
    """
    if keep is not None:
        factors = [f[:, keep] for f in factors]
    letters = "abcdefghijklmnopq"[:len(factors)]
    return np.einsum(",".join(f"{c}z" for c in letters) + "->" + letters, *factors)


def component_weights(tensors: dict, count: int) -> np.ndarray:
    """(K, R) weights ``||U[:, r]|| prod_n ||F_kn[:, r]||`` of the K = ``count`` tensors."""
    return np.array([np.prod([np.linalg.norm(f, axis=0) for f in factors_of(tensors, k)],
                             axis=0) for k in range(count)])


def noise_floors(data, tensors: dict, masks=None) -> np.ndarray:
    """(K,) noise floors ``s_k * sum_{n>=2} sqrt(I_kn)`` of the fit ``tensors`` to ``data``.

    ``s_k``: the residual root mean square over observed entries, corrected for
    the parameters of tensor k's nonzero components (``sum_n I_kn - N_k + 1``
    each). See the module docstring.
    """
    weights = component_weights(tensors, len(data))
    masks = list(masks) if masks is not None else [None] * len(data)
    floors = []
    for k, (x, mask) in enumerate(zip(data, masks)):
        x = np.asarray(x, dtype=float)
        residual = x - cp_signal(factors_of(tensors, k))
        observed = x.size if mask is None else int(np.count_nonzero(mask))
        rss = float(np.sum(residual ** 2 if mask is None else residual[mask] ** 2))
        live = int(np.count_nonzero(weights[k] > 1e-8 * max(weights[k].max(), 1e-300)))
        params = live * (sum(x.shape) - x.ndim + 1)
        std = math.sqrt(rss / max(observed - params, observed / 4, 1))
        floors.append(std * sum(math.sqrt(n) for n in x.shape[1:]))
    return np.array(floors)


def classify(weights: np.ndarray, threshold: float = THRESHOLD, floors=None) -> list[str]:
    """Label each component from its (K, R) weights; see the module docstring.

    ``floors``: (K,) absolute thresholds (e.g. :func:`noise_floors`); otherwise a
    component is present in tensor k above ``threshold`` times its largest weight.

    >>> classify(np.array([[5.0, 4.0, 0.0, 1e-9], [3.0, 0.0, 2.0, 0.0]]))
    ['shared', 'individual 1', 'individual 2', 'zero']
    >>> classify(np.array([[5.0, 0.5, 0.2], [9.0, 0.0, 1.5]]), floors=[0.4, 1.0])
    ['shared', 'individual 1', 'individual 2']
    """
    floors = thresholds(weights, threshold) if floors is None else np.asarray(floors, float)
    alive = weights > floors[:, None]
    labels = []
    for column in alive.T:
        count = int(column.sum())
        labels.append("zero" if count == 0 else "shared" if count == len(column) else
                      f"individual {int(np.argmax(column)) + 1}" if count == 1 else "partial")
    return labels


def thresholds(weights: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(K,) the relative rule's absolute thresholds ``threshold * max_r d_kr``."""
    scale = weights.max(axis=1)
    return threshold * np.where(scale > 0, scale, np.inf)


def _floors(threshold, data, tensors, masks, weights) -> np.ndarray:
    if isinstance(threshold, str):
        if threshold != "noise":
            raise TncError(f"threshold must be a number or 'noise', got {threshold!r}")
        return noise_floors(data, tensors, masks)
    return thresholds(weights, threshold)


def count_ranks(classes: list[str], count: int) -> dict:
    return {"shared": classes.count("shared"),
            "individual": [classes.count(f"individual {k + 1}") for k in range(count)]}


def missing_slices(mask) -> np.ndarray | None:
    """First-mode indices whose whole slice is missing (None when nothing is)."""
    if mask is None:
        return None
    gone = ~mask.reshape(mask.shape[0], -1).any(axis=1)
    return np.flatnonzero(gone) if gone.any() else None


def _shared_imputer(names: list[str], arrays, masks: dict, threshold):
    """EM values for data set ``name``: the model, except shared-only on missing slices."""
    slices = {name: missing_slices(masks.get(name)) for name in names}
    mask_list = [masks.get(name) for name in names]

    def imputer(name, tensors, value):
        rows = slices[name]
        if rows is None:
            return value
        k = names.index(name)
        weights = component_weights(tensors, len(names))
        floors = _floors(threshold, arrays, tensors, mask_list, weights)
        keep = np.array([c == "shared" for c in classify(weights, floors=floors)])
        value = value.copy()
        value[rows] = cp_signal(factors_of(tensors, k), keep)[rows]
        return value

    return imputer


def multifac(data, rank: int = 20, sigma: float = 1.0, masks=None,
             threshold: float | str = "noise", restarts: int = 1, **options) -> MultifacResult:
    """Fit MULTIFAC to the list ``data`` of K arrays sharing their first mode.

    ``masks``: None or a list (one per tensor, None = fully observed) of boolean
    arrays, True = observed; whole missing slices are imputed from the shared
    structure. ``threshold``: ``"noise"`` (the noise floor) or a number (the
    relative rule), see the module docstring. ``restarts``: fits from seeds ``seed, seed+1, ...``, the lowest
    objective kept (ALS finds local minima where a shared component splits in
    two individual ones). ``options``: :class:`tnc.fitting.coupled.CoupledOptions`
    fields (``max_iter``, ``tol``, ``seed``, ``progress`` ...).

        >>> rng = np.random.default_rng(0)
        >>> U = rng.standard_normal((6, 1))
        >>> X1 = cp_signal([U, rng.standard_normal((5, 1)), rng.standard_normal((4, 1))])
        >>> X2 = cp_signal([U, rng.standard_normal((3, 1)), rng.standard_normal((2, 1))])
        >>> result = multifac([X1, X2], rank=4, sigma=0.1, progress=False)
        >>> result.ranks
        {'shared': 1, 'individual': [0, 0]}
    """
    arrays = [np.asarray(x, dtype=float) for x in data]
    model = multifac_model([x.shape for x in arrays], rank, sigma)
    names = [f"T{k + 1}" for k in range(len(arrays))]
    mask_dict = {n: m for n, m in zip(names, masks or []) if m is not None}
    options.setdefault("progress", False)
    options.setdefault("max_iter", 2000)
    options.setdefault("tol", 1e-10)
    seed = options.pop("seed", 0)
    fitted = None
    for k in range(restarts):
        candidate = fit_model(model, dict(zip(names, arrays)), "als", mask=mask_dict,
                              imputer=_shared_imputer(names, arrays, mask_dict, threshold),
                              seed=None if seed is None else seed + k, **options)
        if fitted is None or candidate.loss < fitted.loss:
            fitted = candidate
    weights = component_weights(fitted.tensors, len(arrays))
    floors = _floors(threshold, arrays, fitted.tensors, [mask_dict.get(n) for n in names],
                     weights)
    classes = classify(weights, floors=floors)
    return MultifacResult(fitted, sigma, weights, classes, count_ranks(classes, len(arrays)),
                          threshold, floors)


def impute(result: MultifacResult, data, masks) -> list[np.ndarray]:
    """``data`` with missing entries filled: entry-wise from the whole model, missing
    slices from the shared components only (the paper's rule)."""
    completed = []
    for k, (x, mask) in enumerate(zip(data, masks)):
        x = np.asarray(x, dtype=float)
        if mask is None:
            completed.append(x.copy())
            continue
        value = result.signal(k, "all")
        rows = missing_slices(mask)
        if rows is not None:
            value[rows] = result.signal(k, "shared")[rows]
        completed.append(np.where(mask, x, value))
    return completed


@dataclass
class CrossValidation:
    """``sigmas``, mean and standard error of the held-out error per sigma (see
    :func:`cross_validate`'s ``score``), the best sigma and the one chosen by the
    one-standard-error rule."""

    sigmas: list[float]
    mean: np.ndarray
    se: np.ndarray
    best: float
    chosen: float


def fold_masks(shapes, folds: int, seed: int, masks=None, holdout: str = "entries"
               ) -> list[tuple[list, list]]:
    """Per fold, the (train, held-out) boolean masks of every tensor.

    ``holdout="entries"``: each observed entry is held out in exactly one of
    ``folds`` random folds. ``"slices"`` (the authors' scheme): the samples are
    split into ``folds`` groups; fold f holds out whole sample slices, group
    ``f + k`` (cyclically) from tensor k, so no sample is missing from every
    tensor, plus as many random entries of each tensor's other observed entries.
    A held-out slice is predicted from the shared components only, so this
    score also checks which components the fit calls shared.
    """
    masks = list(masks) if masks is not None else [None] * len(shapes)
    rng = np.random.default_rng(seed)
    if holdout == "slices":
        return _slice_folds(shapes, folds, rng, masks)
    if holdout != "entries":
        raise TncError(f"holdout must be 'entries' or 'slices', got {holdout!r}")
    assignment = [rng.integers(0, folds, shape) for shape in shapes]
    observed = [m if m is not None else True for m in masks]
    return [([(a != f) & m for a, m in zip(assignment, observed)],
             [(a == f) & m for a, m in zip(assignment, observed)]) for f in range(folds)]


def _slice_folds(shapes, folds: int, rng, masks) -> list[tuple[list, list]]:
    samples = shapes[0][0]
    if not 2 <= folds <= samples or len(shapes) < 2:
        raise TncError(f"slice folds need 2 <= folds <= {samples} (the samples) and at "
                       f"least two tensors; got folds={folds}")
    groups = np.array_split(rng.permutation(samples), folds)
    observed = [np.ones(shape, bool) if m is None else np.asarray(m, bool)
                for shape, m in zip(shapes, masks)]
    splits = []
    for f in range(folds):
        train, held = [], []
        for k, seen in enumerate(observed):
            out = np.zeros(seen.shape, bool)
            out[groups[(f + k) % folds]] = True
            out &= seen
            rest = np.flatnonzero(seen & ~out)
            picked = rng.choice(rest, size=min(int(out.sum()), rest.size), replace=False)
            out.flat[picked] = True
            train.append(seen & ~out)
            held.append(out)
        splits.append((train, held))
    return splits


def held_out_error(result: MultifacResult, arrays, held, score: str = "relative") -> float:
    """A fit's error on the ``held`` entries: the mean over tensors of the relative
    error (``"relative"``) or the summed squared error (``"sse"``)."""
    sse = [float(np.sum((x - result.signal(k, "all"))[h] ** 2))
           for k, (x, h) in enumerate(zip(arrays, held))]
    if score == "sse":
        return sum(sse)
    return float(np.mean([math.sqrt(e / max(float(np.sum(x[h] ** 2)), 1e-300))
                          for e, x, h in zip(sse, arrays, held)]))


def cv_errors(arrays, settings, splits, seed: int = 0, score: str = "relative",
              **options) -> np.ndarray:
    """(len(settings), folds) held-out errors of a fit per ``(rank, sigma)`` setting
    and fold ``splits`` (from :func:`fold_masks`); fold f fits from seed ``seed + f``."""
    if score not in ("relative", "sse"):
        raise TncError(f"score must be 'relative' or 'sse', got {score!r}")
    errors = np.zeros((len(settings), len(splits)))
    for f, (train, held) in enumerate(splits):
        for s, (rank, sigma) in enumerate(settings):
            result = multifac(arrays, rank, sigma, masks=train, seed=seed + f, **options)
            errors[s, f] = held_out_error(result, arrays, held, score)
    return errors


def mean_and_se(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (settings, folds) ``errors``: the mean and its standard error."""
    folds = errors.shape[1]
    se = errors.std(axis=1, ddof=1) / math.sqrt(folds) if folds > 1 else np.zeros(len(errors))
    return errors.mean(axis=1), se


def one_standard_error(values, mean, se, prefer: str) -> float:
    """The one-standard-error rule: among ``values`` whose ``mean`` error is within one
    standard error (``se`` of the best) of the best, the ``"smallest"`` or ``"largest"``.

    >>> one_standard_error([4, 6, 8, 10], [0.9, 0.62, 0.6, 0.61], [0.02, 0.02, 0.03, 0.02],
    ...                    "smallest")
    6
    """
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    best = int(np.argmin(mean))
    ok = [values[i] for i in range(len(values)) if mean[i] <= mean[best] + se[best]]
    if prefer not in ("smallest", "largest"):
        raise TncError(f"prefer must be 'smallest' or 'largest', got {prefer!r}")
    return min(ok) if prefer == "smallest" else max(ok)


def cross_validate(data, sigmas, rank: int = 20, folds: int = 5, seed: int = 0, masks=None,
                   score: str = "relative", holdout: str = "entries",
                   **options) -> CrossValidation:
    """Pick ``sigma`` by ``folds``-fold cross-validation over observed entries with the
    one-standard-error rule (see the module docstring). ``score``: a fold's error,
    ``"relative"`` (mean over tensors of the relative error on held-out entries, the
    authors' score) or ``"sse"`` (the summed squared error). ``holdout``: what a fold
    holds out, ``"entries"`` or ``"slices"`` (whole sample slices plus as many
    entries, the authors' scheme; see :func:`fold_masks`). On the example's N(0,1)
    design, 10 slice folds per replicate over a log grid of 8 sigmas in [1, 8]
    recovered the true ranks in 9/20 replicates (one-SE choice; 10/20 with the
    least error): no better than entry folds."""
    arrays = [np.asarray(x, dtype=float) for x in data]
    splits = fold_masks([x.shape for x in arrays], folds, seed, masks, holdout)
    errors = cv_errors(arrays, [(rank, s) for s in sigmas], splits, seed, score, **options)
    mean, se = mean_and_se(errors)
    sigmas = list(map(float, sigmas))
    return CrossValidation(sigmas, mean, se, sigmas[int(np.argmin(mean))],
                           float(one_standard_error(sigmas, mean, se, "largest")))


@dataclass
class TwoStepCV:
    """The two-step cross-validation of :func:`two_step_cv`.

    Step 1: ``ranks``, the mean and standard error of the held-out error per rank
    (``rank_mean``, ``rank_se``) at the penalty ``rank_sigma``, and ``rank`` chosen by
    ``rank_rule``. Step 2: ``sigmas`` and their ``sigma_mean``, ``sigma_se`` at that
    rank, and ``sigma`` chosen by ``sigma_rule``.
    """

    ranks: list[int]
    rank_mean: np.ndarray
    rank_se: np.ndarray
    rank_sigma: float
    rank: int
    sigmas: list[float]
    sigma_mean: np.ndarray
    sigma_se: np.ndarray
    sigma: float
    rank_rule: str
    sigma_rule: str

    def table(self) -> str:
        """Both steps' CV tables, one line per rank or sigma, the chosen ones starred."""
        lines = [f"step 1 (sigma {self.rank_sigma:g}): rank  mean held-out error  (se)"]
        lines += [f"  {'*' if r == self.rank else ' '} {r:4d}  {m:.4f}  ({e:.4f})"
                  for r, m, e in zip(self.ranks, self.rank_mean, self.rank_se)]
        lines.append(f"step 2 (rank {self.rank}): sigma  mean held-out error  (se)")
        lines += [f"  {'*' if s == self.sigma else ' '} {s:5g}  {m:.4f}  ({e:.4f})"
                  for s, m, e in zip(self.sigmas, self.sigma_mean, self.sigma_se)]
        return "\n".join(lines)


def two_step_cv(data, ranks=(4, 6, 8, 10, 12), sigmas=(1.0, 2.0, 3.0, 4.0, 6.0, 8.0),
                rank_sigma: float | None = None, folds: int = 5, seed: int = 0, masks=None,
                score: str = "relative", rank_rule: str = "best", sigma_rule: str = "best",
                **options) -> TwoStepCV:
    """The paper's two-step tuning: the rank, then the penalty at that rank.

    Step 1 fits every rank of ``ranks`` at the penalty ``rank_sigma`` (default the
    smallest of ``sigmas``: mild, it keeps ALS stable without shrinking real
    components much) and keeps, by ``rank_rule``, the rank of least mean held-out
    error (``"best"``) or the ``"smallest"`` within one standard error of it (the
    one-standard-error rule). Step 2 fits every ``sigma`` of ``sigmas`` at that
    rank and keeps, by ``sigma_rule``, the ``"best"`` or the ``"largest"`` within
    one standard error of it. Both steps use the same ``folds`` folds of observed
    entries (:func:`fold_masks`) and the error ``score`` of
    :func:`cross_validate`; ``options`` go to :func:`multifac`. Cost: ``folds *
    (len(ranks) + len(sigmas))`` fits.

    The defaults (``"best"`` twice) were chosen on simulations with seeds apart
    from the example's (N(0, 1) factors, seeds 100-119, true ranks recovered by
    the fit at the chosen rank and sigma): best/best 12/20, best rank with the
    largest sigma 10/20, smallest rank with the best sigma 9/20, both
    one-standard-error rules 7/20. The penalty already prunes spare components,
    so the one-standard-error rule over ranks prunes twice and drops weak real
    ones; step 2's ``"best"`` is what the authors' code uses for its step 2.
    """
    rules = {"rank_rule": (rank_rule, ("best", "smallest")),
             "sigma_rule": (sigma_rule, ("best", "largest"))}
    for name, (rule, allowed) in rules.items():
        if rule not in allowed:
            raise TncError(f"{name} must be one of {', '.join(allowed)}, got {rule!r}")
    arrays = [np.asarray(x, dtype=float) for x in data]
    ranks, sigmas = [int(r) for r in ranks], [float(s) for s in sigmas]
    rank_sigma = min(sigmas) if rank_sigma is None else float(rank_sigma)
    splits = fold_masks([x.shape for x in arrays], folds, seed, masks)
    rank_mean, rank_se = mean_and_se(cv_errors(arrays, [(r, rank_sigma) for r in ranks],
                                               splits, seed, score, **options))
    rank = (ranks[int(np.argmin(rank_mean))] if rank_rule == "best"
            else int(one_standard_error(ranks, rank_mean, rank_se, "smallest")))
    sigma_mean, sigma_se = mean_and_se(cv_errors(arrays, [(rank, s) for s in sigmas],
                                                 splits, seed, score, **options))
    sigma = (sigmas[int(np.argmin(sigma_mean))] if sigma_rule == "best"
             else float(one_standard_error(sigmas, sigma_mean, sigma_se, "largest")))
    return TwoStepCV(ranks, rank_mean, rank_se, rank_sigma, rank, sigmas, sigma_mean, sigma_se,
                     sigma, rank_rule, sigma_rule)
