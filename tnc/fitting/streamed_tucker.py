"""Tucker decompositions (HOSVD, st-HOSVD, HOOI) of out-of-core data, streamed in blocks.

``tnc.decompose(data, "tucker", ranks=..., method=...)`` with ``data`` an ``np.memmap``, a
zarr array, an h5py dataset or a dask array comes here (the hook in
:func:`tnc.fitting.decompositions.decompose`). Blocks of rows along the first axis
(:mod:`tnc.engine.blocks`) give every product the in-memory algorithm takes: the Gram of
an unfolding is a sum over blocks (along the first axis, or the second for the first
mode's), the projection ``X ×_m Uₘᵀ (m ≠ n)`` of HOOI's update of mode ``n`` a sum of
block projections (mode 0: their rows stacked), so each HOOI sweep reads the data once per
mode and the result equals the in-memory decomposition (factors up to sign). The
first mode's st-HOSVD core ``X ×_0 U₀ᵀ`` is held in memory (checked against
``memory_limit``). Other decompositions (TT, ``rel_error=``) load the data when it fits.

    >>> import numpy as np, tnc, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> X = np.einsum("abc,ia,jb,kc->ijk", rng.random((2, 2, 2)), rng.random((9, 2)),
    ...               rng.random((6, 2)), rng.random((7, 2)))
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, X)
    >>> result = tnc.decompose(np.load(path, mmap_mode="r"), "tucker", ranks=2, method="hooi")
    >>> result.rel_error < 1e-12, result.info["streamed"]["kind"]
    (True, 'memmap')
"""
from __future__ import annotations

import math
import time

import numpy as np

from tnc.engine.blocks import BlockSource
from tnc.engine.plan import check_allocation
from tnc.errors import TncError
from tnc.fitting import decompositions as dec
from tnc.fitting.progress import Progress
from tnc.fitting.result import FitResult
from tnc.fitting.streamed import Stream, _start_grams_of, squares_block


def decompose_streamed(data, kind: str, ranks=None, rel_error=None, *, method=None,
                       max_sweeps: int = 50, tol: float = 1e-10, memory_limit="auto",
                       executor=None):
    """:func:`tnc.decompose` of out-of-core ``data`` (see the module docstring)."""
    source = BlockSource(data)
    why = ("a TT decomposition is not streamed" if kind == "tt" else
           "rel_error= is not streamed (give ranks=)" if rel_error is not None or ranks is None
           else "")
    if kind not in ("tucker", "tt"):
        raise TncError(f"unknown decomposition {kind!r}; choose 'tucker' or 'tt'")
    if why:
        return dec.decompose(source.load(why, memory_limit), kind, ranks, rel_error, method=method,
                             max_sweeps=max_sweeps, tol=tol)
    method = method or "sthosvd"
    if method not in dec.TUCKER_METHODS:
        raise TncError(f"unknown Tucker method {method!r}; choose one of "
                       + ", ".join(dec.TUCKER_METHODS))
    dec._check_sweeps(max_sweeps, tol)
    ranks = _checked_ranks(ranks, source.shape)
    started = time.perf_counter()
    with Progress(0, enabled=False) as bar:
        stream = Stream(source, source.layout(0, memory_limit=memory_limit), executor, bar,
                        memory_limit)
        parts = stream.run(squares_block)
        xx, largest = sum(p[0] for p in parts), max(p[1] for p in parts)
        exponent = int(np.frexp(largest)[1]) if largest > 0 else 0
        source.scale = math.ldexp(1.0, -exponent)
        xx *= source.scale ** 2
        core, factors, history, converged = _tucker(stream, ranks, method, max_sweeps, tol, xx,
                                                    memory_limit)
        network, tensors = dec.tucker_network(core, factors)
        result = FitResult(network, tensors, method, history, converged, len(history),
                           time.perf_counter() - started, info={"kind": "tucker"})
        loss = sum(stream.run(residual_block, core, factors))
    norm = math.sqrt(xx)
    result.history[-1].update(loss=loss, rel_error=math.sqrt(loss) / norm if norm else 0.0,
                              time=result.wall_time)
    result.info["streamed"] = {"kind": source.kind, "blocks": len(stream.blocks),
                               "passes": stream.passes}
    dec._scale_back(result, "G", exponent)
    return result


def _checked_ranks(ranks, shape) -> list[int]:
    ranks = dec.per_mode(ranks, len(shape), "Tucker")
    size = math.prod(shape)
    for mode, (r, n) in enumerate(zip(ranks, shape)):
        if r > min(n, size // n):
            raise TncError(f"Tucker rank {r} of mode {mode + 1} is larger than the data allows "
                           f"(mode size {n}, other modes {size // n}); use at most "
                           f"{min(n, size // n)}")
    return ranks


def _tucker(stream: Stream, ranks, method, max_sweeps, tol, xx, memory_limit):
    """``(core, factors, history, converged)`` as :func:`tnc.fitting.decompositions._tucker`."""
    ndim = len(ranks)
    if method == "hosvd":
        grams = _start_grams_of(stream, {n: (n,) for n in range(ndim)})
        factors = [_leading(grams[n], ranks[n]) for n in range(ndim)]
        return _project(stream, factors, None), factors, [{"sweep": 1}], True
    first = _leading(_start_grams_of(stream, {0: (0,)})[0], ranks[0])
    shape = (ranks[0],) + stream.source.shape[1:]
    check_allocation(8 * math.prod(shape), f"st-HOSVD's first core (shape {shape})",
                     memory_limit)
    core, factors = _project(stream, [first] + [None] * (ndim - 1), None), [first]
    for n in range(1, ndim):
        U, _ = dec.leading_vectors(dec.unfold(core, n), ranks[n])
        factors.append(U)
        core = dec.mode_product(core, U, n)
    if method == "sthosvd":
        return core, factors, [{"sweep": 1}], True
    return _hooi(stream, factors, max_sweeps, tol, xx)


def _hooi(stream: Stream, factors: list, max_sweeps: int, tol: float, xx: float):
    """HOOI sweeps (:func:`tnc.fitting.decompositions.hooi`), one pass over the data a mode."""
    history, previous, started = [], None, time.perf_counter()
    for sweep in range(1, max_sweeps + 1):
        for n in range(len(factors)):
            projected = _project(stream, factors, n)
            rows = np.moveaxis(projected, n, 0)
            factors[n], _ = dec.leading_vectors(rows.reshape(rows.shape[0], -1),
                                                factors[n].shape[1])
        core = np.moveaxis(np.tensordot(factors[n], rows, axes=([0], [0])), 0, n)
        norm = float(np.linalg.norm(core))
        loss = max(xx - norm ** 2, 0.0)
        converged = previous is not None and abs(norm - previous) <= tol * norm
        history.append({"sweep": sweep, "loss": loss,
                        "rel_error": math.sqrt(loss / xx) if xx else 0.0,
                        "time": time.perf_counter() - started, "converged": converged})
        if converged:
            break
        previous = norm
    return core, factors, history, history[-1]["converged"]


def _leading(gram, rank: int):
    """The ``rank`` leading eigenvectors of ``gram`` (the left singular vectors of the
    unfolding it is the Gram of)."""
    _, vectors = np.linalg.eigh(gram)
    return np.ascontiguousarray(vectors[:, ::-1][:, :rank])


def _project(stream: Stream, factors: list, skip):
    """``X ×_m factors[m]ᵀ`` for every mode ``m`` but ``skip`` (and those whose factor is
    None): a sum of block projections, or their rows stacked when mode 0 is skipped."""
    parts = stream.run(project_block, factors, skip)
    return np.concatenate(parts, axis=0) if skip == 0 else sum(parts[1:], parts[0])


def project_block(block, start, stop, factors, skip):
    """One block's ``X ×_m factors[m]ᵀ`` (mode 0's factor cut to rows ``start:stop``)."""
    out = block
    for m, U in enumerate(factors):
        if m != skip and U is not None:
            out = dec.mode_product(out, U[start:stop] if m == 0 else U, m)
    return out


def residual_block(block, start, stop, core, factors) -> float:
    """``||X_block - core ×_m factors[m]||^2``."""
    model = core
    for m, U in enumerate(factors):
        model = dec.mode_product(model, (U[start:stop] if m == 0 else U).T, m)
    diff = block - model
    return float(np.vdot(diff, diff))
