"""ALS on sparse data for any network: Tucker, tensor trains, your own.

``tnc.fit(network, sparse_tensor, method="als")`` on a network that is not plain CP
(CP has its own compiled MTTKRP, :mod:`tnc.fitting.sparse_als`) runs the dense ALS's
sweep (:func:`tnc.fitting.als.fit_once`: same order, solves, penalties, gauge rule,
stopping rule and records) with :class:`SparseFit` in place of the dense state. The
loss is least squares over ALL entries, the zeros included. Only the data-dependent
products change (:class:`SparseProducts`):

* the right-hand side of a parameter ``P`` is ``sum_e x_e E_P(c_e)``: the network
  without ``P`` with every output index fixed at the nonzero's coordinates ``c_e``.
  Each other tensor with an output leg is gathered at the nonzeros (one row per
  nonzero: a batch index ``e``); those rows are contracted per nonzero down to the bonds
  still needed (``P``'s own bonds and those of the tensors without output legs, like
  a Tucker core); a sparse scatter matrix ``S[row(e), e] = x_e`` (scipy CSC) sums them
  into ``P``'s output coordinates; that dense result meets the tensors without output
  legs (opt_einsum). A ``P`` without output legs (a Tucker core) scatters on the output
  legs of one other tensor instead, which joins the dense step: ``U_1^T (S_1 (U_2 (x)
  U_3))``, ``R_1`` times fewer products per nonzero than the full outer product. Blocks
  of nonzeros bound the scratch (``BLOCK_BYTES``);
* the Gram is the dense ALS's (the model-norm network without ``P``: no data);
* the loss after an update is the dense formula ``||X||^2 - 2<X,M> + <M,M>``; near an
  exact fit it is recomputed as ``sum_e (x_e - m_e)^2 + (<M,M> - sum_e m_e^2)`` from the
  model at the nonzeros.

So a Tucker factor's RHS is the sparse TTM chain ``X x_2 U_2 x_3 U_3`` (``nnz R^2``
per nonzero pass) times the core, a Tucker core's ``sum_e x_e U_1[i_e] (x) U_2[j_e] (x)
U_3[k_e]``, a TT core's the per-nonzero products of the cores left and right of it.
Vectorised numpy and scipy rather than compiled kernels: every step is a batched
einsum, a gather or a sparse matrix product, generic over networks; CP (where speed
was measured against pyttb) keeps its compiled loop.

    >>> import numpy as np, tnc
    >>> from tnc.engine.sparse import SparseTensor
    >>> net = tnc.library("tucker", I=6, J=5, K=4, R1=2, R2=2, R3=2)
    >>> dense = net.contract(net.random(seed=1)) * (np.arange(120).reshape(6, 5, 4) % 3 > 0)
    >>> kwargs = dict(method="als", max_iter=10, tol=0.0, progress=False, seed=0)
    >>> sparse = tnc.fit(net, SparseTensor.from_dense(dense), **kwargs)
    >>> full = tnc.fit(net, dense, **kwargs)
    >>> abs(sparse.rel_error - full.rel_error) < 1e-10, sparse.info["sparse"]
    (True, True)
"""
from __future__ import annotations

import math

import numpy as np
import opt_einsum as oe

from tnc.engine.plan import check_allocation
from tnc.engine.sparse import SparseTensor
from tnc.engine.trees import arrange, evaluate
from tnc.errors import TncError
from tnc.fitting.als import Fit

BLOCK_BYTES = 32 << 20      # scratch per block of nonzeros (gathered rows and their products)
MIN_BLOCK = 1024            # nonzeros per block at least
BATCH = oe.get_symbol(0)    # the einsum letter of the nonzeros' batch index


class SparseFit(Fit):
    """The state of one ALS run on a :class:`SparseTensor` (``problem.target``): the
    dense :class:`~tnc.fitting.als.Fit` with its RHS, model and loss taken from the
    nonzeros. ``reconstruct()`` is the model at the nonzeros, a vector ``(nnz,)``."""

    windowed = False        # the windowed RHS trees of the dense ALS read a dense X

    def __init__(self, problem, model, settings, tensors: dict, mask):
        # mask is None: tnc.fit refuses a mask with sparse data and run_als a holdout
        self.problem, self.model, self.settings = problem, model, settings
        self.tensors, self.mask = tensors, None
        data = problem.target
        self.xx = float(np.vdot(data.values, data.values).real)
        self.cache: dict = {}
        self.mode = "dense"
        no_target = np.empty(0, dtype=problem.dtype)        # X is never a leaf here
        self.values = model.values(tensors, problem.inputs, no_target, None)
        self.products = SparseProducts(problem.network, data)

    def contributions(self, name: str, rhs_tree=None):
        """As :meth:`tnc.fitting.als.Fit.contributions`; ``rhs_tree`` is not used."""
        u = self.model.updates[name]
        n_diag, n_free, n_bond = u.sizes(self.problem.network.spec.index_sizes)
        rhs, legs = self.products.rhs(u.label, self._arrays(conjugated=True))
        rhs = arrange(rhs, legs, u.diag + u.free + u.bond)
        gram = self._gram(u, n_diag, n_free, n_bond)
        return rhs.reshape(gram.shape[0], -1, n_bond), gram, u.axes

    def reconstruct(self) -> np.ndarray:
        """The model at the nonzeros, ``(nnz,)``."""
        return self.products.model_at_nonzeros(self._arrays(conjugated=False))

    def residual_loss(self, model_value=None) -> float:
        """``sum_e |x_e - m_e|^2 + (<M, M> - sum_e |m_e|^2)``: every entry, zeros included."""
        at = self.reconstruct() if model_value is None else model_value
        values = self.problem.target.values
        mm = float(np.real(evaluate(self.model.norm_tree, self.values, {})))
        on_nonzeros = float(np.vdot(values - at, values - at).real)
        return on_nonzeros + max(mm - float(np.vdot(at, at).real), 0.0)

    def _arrays(self, conjugated: bool) -> dict:
        """Occurrence label -> its array, conjugated as in ``<X, M>`` or as in the model."""
        return {label: self.values[label if conjugated else ("1", label)]
                for label in self.model.name_of}


class SparseProducts:
    """The data-dependent products of ALS on ``data`` for ``network``, per occurrence label
    (the index of the occurrence in ``network.occurrences``).

    ``rhs(label, arrays)`` is ``(array, legs)``: ``sum_e x_e E(c_e)``, the network without
    occurrence ``label`` at the nonzeros' coordinates, its axes named by ``legs``;
    ``model_at_nonzeros(arrays)`` the network's value at each nonzero. ``arrays``:
    occurrence label -> array.

        >>> import numpy as np, tnc
        >>> net = tnc.library("tt", N=3, d=3, r=2)
        >>> arrays = dict(enumerate(net.random(seed=0)[o.name] for o in net.occurrences))
        >>> x = SparseTensor.from_dense(np.arange(27.0).reshape(3, 3, 3) % 4)
        >>> at = SparseProducts(net, x).model_at_nonzeros(arrays)
        >>> model = net.contract({o.name: arrays[k] for k, o in enumerate(net.occurrences)})
        >>> bool(np.allclose(at, model[tuple(x.coords.T)]))
        True
    """

    def __init__(self, network, data: SparseTensor):
        self.data = data
        self.sizes = dict(network.spec.index_sizes)
        self.output = list(network.output)
        self.legs = {k: tuple(occ.indices) for k, occ in enumerate(network.occurrences)}
        for k, legs in self.legs.items():
            if len(set(legs)) != len(legs):
                raise TncError(f"ALS on sparse data: `{network.occurrences[k].name}` repeats "
                               "a leg; pass data.to_dense()")
        self.symbols = {ix: oe.get_symbol(n + 1) for n, ix in enumerate(self.sizes)}
        self.rows: dict = {}        # output legs -> linear row of each nonzero
        self.plans: dict = {}       # label (None: the model) -> its plan

    def rhs(self, label: int, arrays: dict):
        plan = self._plan(label)
        out, kept = plan["scatter"], plan["kept"]
        total = np.zeros((self._size(out), self._size(kept)), dtype=self._dtype(arrays))
        matrices = self._matrices(plan, arrays)
        for block in plan["blocks"]:
            rows = self._stage_one(plan, arrays, matrices, block).reshape(
                block.stop - block.start, -1)
            weights = self._scatter(out, block) if out else self.data.values[None, block]
            total += weights @ rows
        dense = total.reshape(tuple(self.sizes[ix] for ix in out + kept))
        if not plan["dense"]:
            return dense, out + kept
        final = oe.contract(plan["final"], dense, *(arrays[k] for k in plan["dense"]))
        return final, plan["final_legs"]

    def model_at_nonzeros(self, arrays: dict) -> np.ndarray:
        """The network's value at every nonzero's coordinates, ``(nnz,)``."""
        plan = self._plan(None)
        values = np.empty(self.data.nnz, dtype=self._dtype(arrays))
        matrices = self._matrices(plan, arrays)
        for block in plan["blocks"]:
            values[block] = self._stage_one(plan, arrays, matrices, block).reshape(-1)
        return values

    # -- planning -------------------------------------------------------------------------
    def _plan(self, label):
        """Which tensors are gathered, the per-nonzero einsum and the dense one after it.
        For the model (``label`` None) the tensors without output legs join the einsum."""
        if label in self.plans:
            return self.plans[label]
        others = [k for k in self.legs if k != label]
        gathered = [k for k in others if self._out(k)]
        dense = [k for k in others if not self._out(k)]
        own = () if label is None else self.legs[label]
        out = tuple(ix for ix in own if ix in self.output)
        own_bonds = tuple(ix for ix in own if ix not in self.output)
        scatter = out
        if label is not None and not out and gathered:
            # no output legs (a Tucker core): scatter on the widest gathered tensor's output
            # legs and contract it after the scatter, saving its bond size per nonzero
            pivot = max(gathered, key=lambda k: self._size(self._bonds(k)))
            gathered.remove(pivot)
            dense.append(pivot)
            scatter = self._out(pivot)
        later = set(own_bonds) | {ix for k in dense for ix in self.legs[k]}
        have = {ix for k in gathered for ix in self._bonds(k)}
        kept = () if label is None else tuple(ix for ix in self.sizes
                                              if ix in have and ix in later)
        terms = [BATCH + self._word(self._bonds(k)) for k in gathered]
        joined = dense if label is None else []
        terms += [self._word(self.legs[k]) for k in joined]
        plan = {"gathered": gathered, "joined": joined, "scatter": scatter, "kept": kept,
                "dense": [] if label is None else dense,
                "equation": ",".join(terms) + "->" + BATCH + self._word(kept)}
        per_nonzero, plan["path"] = self._per_nonzero(plan)
        plan["blocks"] = self._blocks(per_nonzero)
        if plan["dense"]:
            plan["final_legs"] = out + own_bonds
            plan["final"] = (",".join([self._word(scatter + kept)] + [
                self._word(self.legs[k]) for k in dense]) + "->" + self._word(out + own_bonds))
        self.plans[label] = plan
        return plan

    def _out(self, k) -> tuple:
        return tuple(ix for ix in self.legs[k] if ix in self.output)

    def _bonds(self, k) -> tuple:
        return tuple(ix for ix in self.legs[k] if ix not in self.output)

    def _word(self, legs) -> str:
        return "".join(self.symbols[ix] for ix in legs)

    def _size(self, legs) -> int:
        return math.prod(self.sizes[ix] for ix in legs)

    def _per_nonzero(self, plan) -> tuple:
        """``(entries of scratch per nonzero, path)``: the gathered rows and the largest
        intermediate of the per-nonzero einsum, and its path (planned once, here, for a
        block of ``MIN_BLOCK`` nonzeros; every block reuses it)."""
        gathered = [(MIN_BLOCK, *(self.sizes[ix] for ix in self._bonds(k)))
                    for k in plan["gathered"]]
        joined = [tuple(self.sizes[ix] for ix in self.legs[k]) for k in plan["joined"]]
        rows = sum(math.prod(shape[1:]) for shape in gathered) + self._size(plan["kept"])
        if len(gathered) + len(joined) < 2:
            return max(1, rows), None
        path, info = oe.contract_path(plan["equation"], *gathered, *joined, shapes=True)
        return max(1, rows + int(info.largest_intermediate) // MIN_BLOCK), path

    def _blocks(self, per_nonzero: int) -> list:
        nnz = self.data.nnz
        size = max(MIN_BLOCK, BLOCK_BYTES // (16 * per_nonzero))
        check_allocation(16 * per_nonzero * min(size, max(nnz, 1)),
                         "sparse ALS's block of gathered rows")
        return [slice(start, min(start + size, nnz)) for start in range(0, nnz, size)]

    # -- the passes over the nonzeros -------------------------------------------------------
    def _stage_one(self, plan, arrays, matrices, block) -> np.ndarray:
        """Per nonzero of ``block``: the gathered tensors (``matrices``: :meth:`_matrices`)
        contracted to the kept bonds, ``(nonzeros, *kept)``; ones when none is gathered."""
        operands = [self._gathered(k, matrices[k], block) for k in plan["gathered"]]
        operands += [arrays[k] for k in plan["joined"]]
        if not operands:
            return np.ones((block.stop - block.start, 1), dtype=self.data.values.dtype)
        return oe.contract(plan["equation"], *operands, optimize=plan["path"] or "auto")

    def _matrices(self, plan, arrays) -> dict:
        """Each gathered tensor as a matrix: output legs (rows) by bond legs."""
        return {k: arrange(arrays[k], self.legs[k], self._out(k) + self._bonds(k)).reshape(
            self._size(self._out(k)), -1) for k in plan["gathered"]}

    def _gathered(self, label, matrix, block) -> np.ndarray:
        """Occurrence ``label``'s rows at the nonzeros of ``block``: ``(e, *bond legs)``."""
        rows = np.take(matrix, self._rows(self._out(label))[block], axis=0)  # 4x matrix[...]
        return rows.reshape((len(rows), *(self.sizes[ix] for ix in self._bonds(label))))

    def _rows(self, legs: tuple) -> np.ndarray:
        """The linear index of each nonzero's coordinates on ``legs`` (output indices)."""
        if legs not in self.rows:
            axes = [self.output.index(ix) for ix in legs]
            self.rows[legs] = np.ravel_multi_index(tuple(self.data.coords[:, axes].T),
                                                   tuple(self.sizes[ix] for ix in legs))
        return self.rows[legs]

    def _scatter(self, legs: tuple, block):
        """``S`` with ``S[row(e), e] = x_e`` over the nonzeros of ``block``: one entry per
        column, so a CSC matrix straight from the arrays (no sort, nothing kept)."""
        import scipy.sparse
        rows = self._rows(legs)[block]
        return scipy.sparse.csc_matrix(
            (self.data.values[block], rows, np.arange(len(rows) + 1)),
            shape=(self._size(legs), len(rows)))

    def _dtype(self, arrays):
        return np.result_type(self.data.values, *arrays.values())
