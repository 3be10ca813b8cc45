"""Coupled models: several networks of one text fitted together through shared tensors.

A ``model`` block names networks of the same text and ties each to a data
tensor, with a loss and a weight; penalties and constraints apply to tensors
(one parameter per name across all the networks)::

    network X1(I = 4, J = 3, R = 2) { index i: I, j: J, r: R  tensor A(i, r), B(j, r)  output i, j }
    network X2(I = 4, K = 5, R = 2) { index i: I, k: K, r: R  tensor A(i, r), C(k, r)  output i, k }
    model linked(lambda = 0.1) {
        fit X1 to T1                       # loss gaussian, weight 1 unless given
        fit X2 to T2 loss poisson weight 0.5
        penalty l2(lambda) A, B, C         # lambda * ||G||^2 for each listed tensor
        penalty tv(0.01) C along k         # smoothed total variation along index k
        nonneg C
    }

This module resolves a block against the compiled networks (unknown names,
a tensor penalised twice, TV along an index the tensor does not carry: each a
:class:`~tnc.errors.TncSemanticError` with line and column) into a
:class:`CoupledModel`, the one object both ways of building a model produce:

    >>> import tnc
    >>> text = '''
    ... network X1(I = 4, J = 3) { index i: I, j: J, r: 2  tensor A(i, r), B(j, r)  output i, j }
    ... network X2(I = 4, K = 5) { index i: I, k: K, r: 2  tensor A(i, r), C(k, r)  output i, k }
    ... model m { fit X1 to T1  fit X2 to T2 weight 2  penalty l2(0.1) A }'''
    >>> model = tnc.compile_model(text)
    >>> [(t.network.name, t.data, t.weight) for t in model.terms], model.l2
    ([('X1', 'T1', 1.0), ('X2', 'T2', 2.0)], {'A': 0.1})
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from tnc.lang import ast
from tnc.lang.compiler import compile_all, pick_named, read_source
from tnc.errors import TncError, TncSemanticError
from tnc.lang.expand import _Scope, evaluate, member_name
from tnc.fitting.losses import Loss, get_loss
from tnc.engine.network import Network
from tnc.lang.parser import parse
from tnc.engine.plan import check_arrays_fit

PENALTIES = ("l2", "tv")


@dataclass(frozen=True)
class Term:
    """One data set of a coupled model: ``weight * sum loss(network output, data)``."""

    network: Network
    data: str
    loss: Loss
    weight: float = 1.0


@dataclass
class CoupledModel:
    """Networks sharing tensors by name, each fitted to its data set.

    ``terms``: one :class:`Term` per data set; ``l2``: name -> lambda (penalty
    ``lambda * ||G||^2``); ``tv``: name -> ``(weight, axis)`` (smoothed total
    variation of G along ``axis``); ``nonneg``: names kept non-negative.
    ``source``/``filename``/``name`` locate the model text (None when built
    from Python), so a fitted model can be saved with its source; ``sizes``
    and ``settings`` (values given to the block's header parameters) are what
    it was compiled with.
    """

    terms: list[Term]
    l2: dict[str, float] = field(default_factory=dict)
    tv: dict[str, tuple[float, int]] = field(default_factory=dict)
    nonneg: set = field(default_factory=set)
    name: str | None = None
    source: str | None = None
    filename: str | None = None
    sizes: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def params(self) -> dict[str, tuple[int, ...]]:
        """Every parameter of every network (shared names once): name -> shape."""
        shapes: dict[str, tuple[int, ...]] = {}
        for term in self.terms:
            shapes.update(term.network.params)
        return shapes

    @property
    def data_names(self) -> list[str]:
        return [term.data for term in self.terms]

    def random(self, seed=0) -> dict:
        """Random tensors for every parameter (a shared name drawn once), after checking
        they fit in memory together (:class:`~tnc.errors.MemoryLimitError` otherwise)."""
        check_arrays_fit(self.params, f"the random tensors of coupled model "
                                      f"`{self.name or '<python>'}`")
        tensors: dict = {}
        for k, term in enumerate(self.terms):
            for name, array in term.network.random(seed=None if seed is None
                                                   else seed + k).items():
                tensors.setdefault(name, array)
        return tensors

    def contract(self, tensors: dict) -> dict:
        """Each data set's model value: data name -> array of its network's output."""
        return {term.data: term.network.contract(
            {n: tensors[n] for n in term.network.params}) for term in self.terms}


def coupled_model(terms, l2=None, tv=None, nonneg=(), **where) -> CoupledModel:
    """A :class:`CoupledModel` from Python: ``terms`` is a list of ``(network, data
    name[, loss[, weight]])``; ``l2``: one float for every tensor or a dict;
    ``tv``: dict name -> ``(weight, axis)``; ``nonneg``: True or names.

    >>> import tnc
    >>> net = tnc.library("cp", I=3, J=4, K=5, R=2)
    >>> coupled_model([(net, "X")], l2=0.5).l2
    {'A': 0.5, 'B': 0.5, 'C': 0.5}
    """
    built = []
    for item in terms:
        if isinstance(item, Term):
            built.append(item)
            continue
        network, data, *rest = item
        loss = get_loss(rest[0] if rest else "gaussian")
        weight = float(rest[1]) if len(rest) > 1 else 1.0
        built.append(Term(network, str(data), loss, weight))
    model = CoupledModel(built, **where)
    names = model.params
    l2 = l2 or {}
    model.l2 = {n: float(l2) for n in names} if isinstance(l2, (int, float)) else {
        n: float(v) for n, v in l2.items()}
    model.tv = {n: (float(w), int(axis)) for n, (w, axis) in (tv or {}).items()}
    model.nonneg = set(names) if nonneg is True else set(nonneg or ())
    check_model(model)
    return model


def check_model(model: CoupledModel) -> None:
    """Names, weights and axes of a model built from Python (blocks are checked with spans)."""
    if not model.terms:
        raise TncError("a coupled model needs at least one `fit NETWORK to DATA` term")
    data = [t.data for t in model.terms]
    if len(set(data)) != len(data):
        raise TncError(f"data set `{next(d for d in data if data.count(d) > 1)}` is fitted twice")
    shapes: dict = {}
    for term in model.terms:
        if not 0 <= term.weight < math.inf:
            raise TncError(f"the weight of data set `{term.data}` must be a finite number "
                           f">= 0, got {term.weight}")
        for name, shape in term.network.params.items():
            if shapes.setdefault(name, shape) != shape:
                raise TncError(f"`{name}` has shape {shapes[name]} in one network and {shape} "
                               f"in `{term.network.name}`; a shared name is one tensor")
    for what, names in (("l2", model.l2), ("tv", model.tv), ("nonneg", model.nonneg)):
        unknown = [n for n in names if n not in shapes]
        if unknown:
            raise TncError(f"{what}: `{unknown[0]}` is not a parameter of the model; its "
                           f"parameters are {', '.join(shapes)}")
    for name, value in [*model.l2.items(), *((n, w) for n, (w, _) in model.tv.items())]:
        if not 0 <= value < math.inf:
            raise TncError(f"the penalty on `{name}` must be a finite number >= 0 (non-negative), "
                           f"got {value}")
    for name, (_, axis) in model.tv.items():
        if not 0 <= axis < len(shapes[name]):
            raise TncError(f"tv: `{name}` has {len(shapes[name])} axes; axis {axis} is out "
                           "of range")


# -- model blocks ---------------------------------------------------------------------------
def compile_model(text_or_path, name: str | None = None, filename: str | None = None,
                  settings: dict | None = None, *, allow_path: bool = True,
                  **sizes) -> CoupledModel:
    """The coupled model of a ``model`` block; ``name`` picks one of several blocks;
    ``settings`` give values to the block's header parameters (``{"lambda": 0.5}``
    for ``model m(lambda = 0.1)``); ``sizes`` override the networks' header
    defaults (as :func:`tnc.compile_all`). ``allow_path=False``: ``text_or_path`` is
    always text, never read as a file (for sources that come from data).

    >>> net = "network X() { index i: 4, j: 3, r: 2  tensor A(i, r), B(j, r)  output i, j }"
    >>> text = net + " model m(lambda = 0.1) { fit X to T  penalty l2(lambda) A }"
    >>> compile_model(text, settings={"lambda": 0.5}).l2
    {'A': 0.5}
    """
    text, path = read_source(text_or_path, allow_path=allow_path)
    filename = filename or path
    module = parse(text, filename)
    definition = pick_model(module, name)
    networks = compile_all(text, filename=filename, **sizes)
    try:
        model = resolve(definition, networks, settings or {})
    except TncError as error:
        raise error.located(text, filename) from None
    model.name, model.source, model.filename, model.sizes, model.settings = (
        definition.name, text, filename, dict(sizes), dict(settings or {}))
    return model


def pick_model(module: ast.Module, name) -> ast.ModelDef:
    if not module.models:
        raise TncError(f"{module.filename or 'the text'} declares no model block; add "
                       "`model NAME { fit NETWORK to DATA ... }`")
    return pick_named({m.name: m for m in module.models}, name, "model")


def resolve(definition: ast.ModelDef, networks: dict[str, Network],
            settings: dict | None = None) -> CoupledModel:
    """Check a model block against the compiled networks and build its :class:`CoupledModel`
    (``settings``: values for the block's header parameters)."""
    params = _model_params(definition, settings or {})
    terms = [_term(s, networks, params) for s in definition.statements
             if isinstance(s, ast.FitStmt)]
    if not terms:
        raise TncSemanticError(f"model `{definition.name}` fits no data; add "
                               "`fit NETWORK to DATA`", definition.span)
    seen_data: dict[str, ast.FitStmt] = {}
    for statement in (s for s in definition.statements if isinstance(s, ast.FitStmt)):
        if seen_data.setdefault(statement.data, statement) is not statement:
            raise TncSemanticError(f"data set `{statement.data}` is fitted twice", statement.span)
    model = CoupledModel(terms)
    shapes = model.params
    owners = {name: [t.network for t in terms if name in t.network.params] for name in shapes}
    penalised: dict[tuple[str, str], ast.Span] = {}
    for statement in definition.statements:
        if isinstance(statement, ast.PenaltyStmt):
            _penalty(statement, model, owners, params, penalised)
        elif isinstance(statement, ast.NonnegStmt):
            for ref in statement.tensors:
                model.nonneg.add(_tensor_name(ref, owners))
    return model


def _model_params(definition: ast.ModelDef, settings: dict) -> dict[str, float]:
    params: dict[str, float] = {}
    for param in definition.params:
        if param.name in params:
            raise TncSemanticError(f"model parameter `{param.name}` is declared twice", param.span)
        params[param.name] = param.default.value
    unknown = [key for key in settings if key not in params]
    if unknown:
        raise TncError(f"model `{definition.name}` has no parameter `{unknown[0]}`; "
                       + (f"its parameters are {', '.join(params)}" if params else
                          "it declares none (e.g. `model m(lambda = 0.1) { ... }`)"))
    for key, value in settings.items():
        try:
            params[key] = float(value)
        except (TypeError, ValueError):
            raise TncError(f"model parameter `{key}` must be a number, got {value!r}") from None
    return params


def _amount(amount: ast.Amount, params: dict) -> float:
    """A weight or penalty amount: a number, or a header parameter's value; finite, >= 0."""
    if isinstance(amount, ast.Number):
        value = amount.value
    elif amount.name not in params:
        raise TncSemanticError(f"`{amount.name}` is not a parameter of the model; declare it "
                               f"in the header, e.g. `model m({amount.name} = 0.1)`", amount.span)
    else:
        value = params[amount.name]
    if not 0 <= value < math.inf:
        where = "" if isinstance(amount, ast.Number) else f"`{amount.name}` = "
        raise TncSemanticError(f"weights and penalties must be finite numbers >= 0, got "
                               f"{where}{value}", amount.span)
    return value


def _term(statement: ast.FitStmt, networks: dict, params: dict) -> Term:
    if statement.network not in networks:
        raise TncSemanticError(f"no network `{statement.network}`; the text declares "
                               + ", ".join(networks), statement.network_span)
    try:
        loss = get_loss(statement.loss)
    except TncError as error:
        raise TncSemanticError(error.message, statement.span) from None
    weight = 1.0 if statement.weight is None else _amount(statement.weight, params)
    return Term(networks[statement.network], statement.data, loss, weight)


def _tensor_name(ref: ast.Ref, owners: dict) -> str:
    name = _ref_text(ref)
    if name not in owners:
        raise TncSemanticError(f"`{name}` is not a parameter of the fitted networks; they "
                               f"have {', '.join(owners)}", ref.span)
    return name


def _penalty(statement: ast.PenaltyStmt, model: CoupledModel, owners, params, penalised) -> None:
    if statement.kind not in PENALTIES:
        raise TncSemanticError(f"unknown penalty `{statement.kind}`; the penalties are "
                               + ", ".join(PENALTIES), statement.span)
    amount = _amount(statement.amount, params)
    if statement.kind == "tv" and statement.along is None:
        raise TncSemanticError("a tv penalty needs the index it runs along: "
                               "`penalty tv(0.01) H along k`", statement.span)
    if statement.kind == "l2" and statement.along is not None:
        raise TncSemanticError("`along` belongs to tv penalties only", statement.along.span)
    for ref in statement.tensors:
        name = _tensor_name(ref, owners)
        if (statement.kind, name) in penalised:
            first = penalised[(statement.kind, name)]
            raise TncSemanticError(f"`{name}` already has a {statement.kind} penalty (line "
                                   f"{first.line}); penalise a tensor once", ref.span)
        penalised[(statement.kind, name)] = ref.span
        if statement.kind == "l2":
            model.l2[name] = amount
        else:
            model.tv[name] = (amount, _axis(name, statement.along, owners))


def _axis(name: str, along: ast.Ref, owners) -> int:
    """The axis of ``name`` that carries index ``along`` in a network that uses it."""
    index = _ref_text(along)
    for network in owners[name]:
        for occ in network.occurrences:
            if occ.name == name and index in occ.indices:
                return list(occ.indices).index(index)
    legs = sorted({ix for net in owners[name] for occ in net.occurrences if occ.name == name
                   for ix in occ.indices})
    raise TncSemanticError(f"`{name}` does not carry index `{index}`; its legs are "
                           + ", ".join(f"`{ix}`" for ix in legs), along.span)


def _ref_text(ref: ast.Ref) -> str:
    """``G[2]`` for the reference ``G[2]`` (subscripts are integer constants here)."""
    if not ref.subscripts:
        return ref.name
    try:
        values = tuple(evaluate(s, _Scope({})) for s in ref.subscripts)
    except (TncError, AttributeError, TypeError):
        raise TncSemanticError(f"subscripts of `{ref.name}` in a model block must be integers",
                               ref.span) from None
    return member_name(ref.name, values)
