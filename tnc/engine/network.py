"""A compiled tensor network: shapes, equation, cost, and cached contraction.

    >>> import tnc
    >>> net = tnc.compile('''
    ...     network mm(I = 2, J = 3, K = 4) {
    ...         index i: I, j: J, k: K
    ...         tensor A(i, j), B(j, k)
    ...         output i, k
    ...     }''')
    >>> net.equation, net.params
    ('ab,bc->ac', {'A': (2, 3), 'B': (3, 4)})
    >>> net.contract(net.random(seed=0)).shape
    (2, 4)
"""
from __future__ import annotations

import functools
import math
import string

import numpy as np

from tnc.errors import TensorError, TncError
from tnc.lang.expand import NetworkSpec, Occurrence, einsum_symbol
from tnc.engine import backend as bk
from tnc.engine.graph import build_graph
from tnc.engine.plan import Cost, Plan, check_arrays_fit, limit_bytes

LETTERS = string.ascii_letters


def index_symbols(indices) -> dict[str, str]:
    """Map index names to einsum symbols: letters while they last, then opt_einsum's
    (without surrogates)."""
    indices = list(indices)
    pick = (lambda k: LETTERS[k]) if len(indices) <= len(LETTERS) else einsum_symbol
    return {index: pick(k) for k, index in enumerate(indices)}


class Network:
    """One network of a tnc text with all sizes bound.

    Build it with :func:`tnc.compile` or :func:`tnc.library`. Tensors are passed
    as a dict ``name -> array`` holding every parameter and data tensor.
    """

    def __init__(self, spec: NetworkSpec, source: str | None, filename: str | None = None,
                 pinned=()):
        self.spec = spec
        self.source = source
        self.filename = filename
        self.pinned = frozenset(pinned) & set(spec.sizes)

    # -- description -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sizes(self) -> dict[str, int]:
        """Size parameters as bound (header defaults with the caller's overrides)."""
        return dict(self.spec.sizes)

    @property
    def pinned_sizes(self) -> dict[str, int]:
        """The size parameters the caller gave explicitly when compiling (``tnc.compile(text,
        I=4)``, :meth:`with_sizes`): fitting never reads these off the data, while header
        defaults may be (see :func:`tnc.fit`)."""
        return {k: v for k, v in self.spec.sizes.items() if k in self.pinned}

    @functools.cached_property
    def params(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each fitted tensor, in order of first use."""
        return self.spec.tensor_shapes("param")

    @functools.cached_property
    def data(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of each data tensor (inputs that are never fitted)."""
        return self.spec.tensor_shapes("data")

    @property
    def occurrences(self) -> tuple[Occurrence, ...]:
        return self.spec.occurrences

    @property
    def output(self) -> tuple[str, ...]:
        return self.spec.output

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.index_sizes[i] for i in self.output)

    @functools.cached_property
    def symbols(self) -> dict[str, str]:
        """Index name -> single-character einsum symbol used in :attr:`equation`."""
        return index_symbols(self.spec.index_sizes)

    @functools.cached_property
    def equation(self) -> str:
        """The einsum equation, one operand per tensor occurrence, in order."""
        terms = ["".join(self.symbols[i] for i in occ.indices) for occ in self.occurrences]
        return ",".join(terms) + "->" + "".join(self.symbols[i] for i in self.output)

    @functools.cached_property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.spec.shape_of(occ) for occ in self.occurrences)

    @functools.cached_property
    def graph(self):
        """The network as a networkx MultiGraph (see :mod:`tnc.engine.graph`)."""
        return build_graph(self.spec)

    def draw(self, path=None, ax=None, layout="auto"):
        """Draw the network (needs matplotlib); see :func:`tnc.engine.draw.draw`."""
        from tnc.engine.draw import draw
        return draw(self, path=path, ax=ax, layout=layout)

    def with_sizes(self, **sizes) -> "Network":
        """The same network re-expanded from its text with other size parameters (those
        given are pinned, see :attr:`pinned_sizes`); only this network is expanded, by
        :mod:`tnc.lang.expand` itself, so the engine never imports the compiler.

            >>> import tnc
            >>> tnc.library("cp").with_sizes(I=3, R=2).params["A"]
            (3, 2)
        """
        from tnc.lang.expand import expand
        from tnc.lang.parser import parse           # cached: the text was parsed to build this
        if self.source is None:
            raise TncError(f"network `{self.name}` was built in code (e.g. an environment), "
                           "not from tnc text, so it cannot be recompiled with other sizes; "
                           "call with_sizes on the network it came from")
        try:
            definition = next(d for d in parse(self.source, self.filename).networks
                              if d.name == self.name)
            spec = expand(definition, **{**self.sizes, **sizes})
        except TncError as error:
            raise error.located(self.source, self.filename) from None
        return Network(spec, self.source, self.filename, self.pinned | frozenset(sizes))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return (f"<tnc.Network {self.name}({sizes}): {len(self.params)} params, "
                f"{len(self.data)} data, output {self.output_shape}>")

    # -- planning --------------------------------------------------------------------
    def plan(self, optimize="auto") -> Plan:
        """The planned contraction for ``optimize``, searched once and kept in the shared
        program cache (:mod:`tnc.engine.program`; an optimizer object searches anew)."""
        from tnc.engine.program import program_of
        return program_of(self, optimize).plan

    def cost(self, optimize="auto", dtype=np.float64, memory_limit=None,
             slicer="greedy") -> Cost:
        """Flops, largest intermediate and peak bytes, known before anything is allocated.

        The peak counts the intermediates alive at once on the path and the copies
        the engine makes of operands (reduced leaves, the largest transposed layout of
        one product); the inputs themselves are not counted.

        With ``memory_limit`` (bytes or ``"auto"``) a plan over it is costed as
        :meth:`contract` runs it, sliced: a :class:`~tnc.engine.slicing.SlicedCost`
        naming the sliced indices, the number of slices and the flops overhead."""
        itemsize = np.dtype(dtype).itemsize
        if memory_limit is not None:
            from tnc.engine.slicing import choose_slicing
            slicing = choose_slicing(self, optimize, itemsize, memory_limit, slicer)
            if slicing is not None:
                return slicing.cost
        from tnc.engine.program import program_of
        return program_of(self, optimize).contract_cost.for_itemsize(itemsize)

    # -- arrays ----------------------------------------------------------------------
    def random(self, seed=0, include_data: bool = False, dtype=np.float64,
               memory_limit="auto") -> dict[str, np.ndarray]:
        """Gaussian parameter arrays scaled so that output entries are of order one.

        Each of the ``n`` tensor uses gets standard deviation
        ``(prod of contracted index sizes) ** (-1 / (2 n))``, so the variance of an
        output entry (a sum of that many products) is about one. Arrays that
        would not fit ``memory_limit`` (as in :meth:`contract`) raise
        :class:`~tnc.errors.MemoryLimitError` before any is drawn.
        """
        shapes = dict(self.params)
        if include_data:
            shapes.update(self.data)
        self.check_arrays_fit(shapes, "random tensors", memory_limit, dtype)
        rng = np.random.default_rng(seed)
        contracted = [i for i in self.spec.index_sizes if i not in self.output]
        log_terms = sum(math.log(self.spec.index_sizes[i]) for i in contracted)
        scale = math.exp(-log_terms / (2 * len(self.occurrences)))
        return {name: (scale * rng.standard_normal(shape)).astype(dtype)
                for name, shape in shapes.items()}

    def check_arrays_fit(self, shapes: dict, what: str, memory_limit="auto",
                         dtype=np.float64) -> None:
        """Raise :class:`~tnc.errors.MemoryLimitError` when arrays of ``shapes`` (name ->
        shape), e.g. :attr:`params`, would not fit ``memory_limit`` together."""
        check_arrays_fit(shapes, f"the {what} of network `{self.name}`", memory_limit, dtype)

    def operands(self, tensors: dict) -> list:
        """The arrays in occurrence order, after checking names and shapes."""
        self.check_tensors(tensors)
        return [tensors[occ.name] for occ in self.occurrences]

    def check_tensors(self, tensors: dict, required=None) -> None:
        if not isinstance(tensors, dict):
            raise TensorError("tensors must be a dict name -> array, e.g. net.random(); got "
                              f"{type(tensors).__name__}")
        expected = {**self.params, **self.data} if required is None else required
        missing = [n for n in expected if n not in tensors]
        unknown = [n for n in tensors if n not in self.params and n not in self.data]
        if missing or unknown:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(f"`{n}`" for n in missing))
            if unknown:
                parts.append("unknown " + ", ".join(f"`{n}`" for n in unknown))
            raise TensorError(f"tensors for network `{self.name}`: {'; '.join(parts)}; "
                              f"it takes {', '.join(expected)}")
        for name, shape in expected.items():
            got = getattr(tensors[name], "shape", None)
            if got is None or tuple(got) != shape:
                raise TensorError(f"tensor `{name}` of network `{self.name}` must have shape "
                                  f"{shape}, got {got if got is not None else type(tensors[name]).__name__}")

    def contract(self, tensors: dict, optimize="auto", backend="auto", memory_limit="auto",
                 executor=None, slicer="greedy"):
        """Contract the network: ``tensors`` maps every param and data name to an array.

        The path is searched once per ``optimize`` and reused. A contraction whose
        planned peak exceeds ``memory_limit`` (bytes, ``"auto"`` or None) is sliced
        (:mod:`tnc.engine.slicing`; ``slicer`` ``"greedy"`` or ``"cotengra"``) and
        its slices summed, on ``executor`` when given (a ``concurrent.futures``
        executor or a dask.distributed Client); :class:`~tnc.errors.MemoryLimitError`
        only when no slicing fits, before anything is allocated.
        The backend follows the arrays (one library and device per call, else a
        :class:`TncError` naming both): numpy, torch, jax and cupy arrays run the
        path as matrix products laid out to avoid copies (the forward pass of
        :mod:`tnc.engine.grad`; torch autograd and ``jax.jit`` see through it), the
        result in their library, device and dtype (mixed dtypes promote by numpy's
        rules); other arrays (dask, ...) or an explicit ``backend`` go through
        opt_einsum.
        """
        arrays = self.operands(tensors)
        numpy = bk.all_numpy(arrays)
        library = "numpy" if numpy else bk.backend_of(
            arrays, f"contracting network `{self.name}`", [o.name for o in self.occurrences])
        from tnc.engine.program import program_of
        program = program_of(self, optimize)
        if memory_limit is not None:
            itemsize = bk.result_dtype(*arrays).itemsize
            limit = limit_bytes(memory_limit)
            if limit is not None and \
                    program.contract_cost.for_itemsize(itemsize).peak_bytes > limit:
                from tnc.engine.slicing import choose_slicing, contract_sliced
                slicing = choose_slicing(self, optimize, itemsize, limit, slicer)
                return contract_sliced(self, arrays, slicing, backend, executor)
        if backend in ("auto", "numpy") and numpy:
            return self._contract_numpy(arrays, optimize)
        if backend == "auto" and library in bk.ENGINE_BACKENDS:
            return self._contract_engine(bk.promote(*arrays), optimize)
        return program.plan.expression(*arrays, backend=backend)

    def _contract_numpy(self, arrays: list, optimize) -> np.ndarray:
        from tnc.engine import kernels
        from tnc.engine.grad import grad_plan
        with kernels.blas_serial(*arrays, math.prod(self.output_shape), on_kernels=False):
            result, _ = grad_plan(self, optimize, wrt=()).forward(arrays)
        if any(result is a or result.base is a for a in arrays):
            return result.copy()       # never hand back a view of the caller's array
        return result

    def _contract_engine(self, arrays: list, optimize):
        """The engine's forward pass on torch, jax or cupy ``arrays`` (of one dtype)."""
        from tnc.engine.grad import grad_plan
        result, _ = grad_plan(self, optimize, wrt=()).forward(arrays)
        for a in arrays:
            result = bk.owned(result, a)   # never a view of the caller's tensor
        return result

    # -- gradients (see tnc.engine.grad) ----------------------------------------------------
    def grad(self, tensors: dict, upstream=None, wrt=None, optimize="auto",
             memory_limit="auto", slicer="greedy") -> dict[str, np.ndarray]:
        """Gradients of ``sum(upstream * contract(tensors))``, one array per tensor.

        ``upstream`` has the output's shape (default: ones; 1 for a scalar
        network). ``wrt``: the tensor names to differentiate (default: every
        parameter; data tensors may be named too). A tied tensor gets the sum
        over its uses. All gradients come from one forward and one backward
        pass over the planned contraction tree, on the tensors' library (numpy,
        torch, jax, cupy; torch tensors that require grad are used through their
        values) and in their promoted dtype (complex: the holomorphic derivative,
        see :mod:`tnc.engine.grad`); the plan is cached per ``optimize`` and ``wrt``. ``memory_limit`` as in
        :meth:`contract`, counting the kept intermediates: over it, the gradients
        are summed over slices (``slicer`` as in :meth:`contract`).

            >>> import numpy as np, tnc
            >>> net = tnc.compile("network d(n = 3) { index i: n  tensor x(i), y(i)  output }")
            >>> net.grad({"x": np.arange(3.0), "y": np.ones(3)})["x"]
            array([1., 1., 1.])
        """
        from tnc.engine import kernels
        from tnc.engine.grad import grad
        from tnc.engine.slicing import grad_if_sliced
        sliced = grad_if_sliced(self, tensors, upstream, wrt, optimize, memory_limit, slicer)
        if sliced is not None:
            return sliced
        with kernels.blas_serial(*tensors.values(), math.prod(self.output_shape),
                                 on_kernels=False):   # small: serial BLAS (see kernels)
            return grad(self, tensors, upstream, wrt, optimize, memory_limit)

    def value_and_grad(self, tensors: dict, loss, target, mask=None, wrt=None,
                       optimize="auto", memory_limit="auto"):
        """``(loss value, gradients)`` of an elementwise loss between output and ``target``.

        ``loss``: a registered loss name (``"gaussian"``: least squares) or a
        :class:`~tnc.fitting.losses.Loss`. The value is ``loss.value(output, target)``
        summed over the entries where ``mask`` is True (all when None); the
        gradients are :meth:`grad` with upstream ``mask * loss.derivative``, and for
        complex tensors the descent direction ``dL/dRe T + i dL/dIm T`` (see
        :mod:`tnc.engine.grad`). Over ``memory_limit`` the value and the gradients are
        summed over slices as in :meth:`grad` (leaving room for the model and the
        loss's entries, two arrays of the output's size).

            >>> import numpy as np, tnc
            >>> net = tnc.compile("network v(n = 2) { index i: n  tensor x(i)  output i }")
            >>> value, g = net.value_and_grad({"x": np.ones(2)}, "gaussian", np.zeros(2))
            >>> value, g["x"]
            (2.0, array([2., 2.]))
        """
        from tnc.engine.grad import value_and_grad
        return value_and_grad(self, tensors, loss, target, mask, wrt, optimize, memory_limit)

    def environment(self, name: str, occurrence: int | None = None) -> "Network":
        """The network with one use of tensor ``name`` deleted, as a network of its own.

        Its output is the deleted tensor's distinct legs (in the tensor's leg
        order) followed by this network's output legs not already among them;
        legs no remaining tensor carries are left out (the environment is
        constant along them). Contracting it with ``upstream`` over the original
        output gives that use's share of :meth:`grad`. A tensor used several
        times needs ``occurrence=k`` (its k-th use, from 0).

            >>> import numpy as np, tnc
            >>> net = tnc.library("tt", N=3, d=2, r=4)
            >>> env = net.environment("G[2]")
            >>> env.equation, env.output_shape
            ('ac,db->cdab', (4, 4, 2, 2))
        """
        from tnc.engine.grad import environment_spec
        return Network(environment_spec(self.spec, name, occurrence), None, self.filename)

