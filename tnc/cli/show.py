"""``tnc show FILE``: every network of a file with its tensors, indices, equation, path and cost.

A saved fit result (``.npz``: one network's, a coupled model's or a
Stratified-NTF's) is summarised instead.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tnc.lang.compiler import library_names
from tnc.engine.graph import first_uses, hyperedges, index_nodes, tensor_nodes
from tnc.engine.plan import resolve_optimizer
from tnc.cli._common import add_network_options, add_optimize_option, load_networks
from tnc.cli.contract import add_memory_option

HELP = "print networks: tensors, indices, einsum equation, contraction path and cost"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "show", help=HELP, description=HELP.capitalize() + ". Given a saved fit result "
        "(.npz), print its summary instead.",
        epilog="example: tnc show peps.tn --size Lx=4 --size Ly=4 --optimize dp")
    add_network_options(parser, "a .tn file, the name of a built-in network ("
                        + ", ".join(library_names()) + ") or a saved fit result (.npz)")
    add_optimize_option(parser)
    parser.add_argument("--steps", action="store_true",
                        help="also print opt_einsum's step-by-step contraction table")
    add_memory_option(parser, None, "also show how a contraction over this memory is sliced: "
                      "the sliced indices, the number of slices and the flops overhead")
    parser.set_defaults(run=run)


def run(args) -> int:
    if Path(args.file).suffix == ".npz":
        print(describe_result(args.file))
        return 0
    networks = load_networks(args)
    for k, net in enumerate(networks.values()):
        if k:
            print()
        print(describe(net, args.optimize, args.steps, args.memory_limit))
    return 0


def describe_result(path) -> str:
    """A summary of any result archive tnc writes, read by :func:`tnc.load` (the one
    loader, which names a file that is no archive or of an unknown kind): a fit's
    network and tensors, a coupled model's terms, a Stratified-NTF's topics and
    weights, else (a Born machine) the result itself and its tensors."""
    from tnc.fitting.records import load
    loaded = load(path)
    describer = next((RESULT_DESCRIBERS[kind.__name__] for kind in type(loaded).__mro__
                      if kind.__name__ in RESULT_DESCRIBERS), _describe_other)
    return describer(loaded)


def _describe_other(loaded) -> str:
    """A result with no describer of its own (a Born machine): its fields, the arrays
    among them by shape, the history by its length."""
    import dataclasses
    import numpy as np
    if not dataclasses.is_dataclass(loaded):
        return repr(loaded)
    facts, arrays = [], {}
    for name in (f.name for f in dataclasses.fields(loaded)):
        value = getattr(loaded, name)
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif name == "history":
            facts.append(f"{len(value)} iterations")
        elif isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
            arrays.update({f"{name}[{k}]": v for k, v in enumerate(value)})
        else:
            facts.append(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}")
    return "\n".join([f"{type(loaded).__name__}: {', '.join(facts)}",
                      _tensors_line(arrays, "tensors")])


def _describe_fit(loaded) -> str:
    return "\n".join([repr(loaded), "", describe(loaded.network, "auto", False),
                      _tensors_line(loaded.tensors)])


def _describe_coupled(loaded) -> str:
    model = loaded.model
    errors = loaded.history[-1].get("rel_errors", {}) if loaded.history else {}
    lines = [repr(loaded), "", f"model {model.name or '<python>'}"]
    for term in model.terms:
        error = f"  rel error {errors[term.data]:.4g}" if term.data in errors else ""
        lines.append(f"  fit {term.network.name} to {term.data}  loss {term.loss.name}  "
                     f"weight {term.weight:g}{error}")
    by_weight: dict = {}
    for name, weight in model.l2.items():
        if weight:
            by_weight.setdefault(weight, []).append(name)
    lines += [f"  penalty l2({weight:g}) {', '.join(names)}" for weight, names in by_weight.items()]
    lines += [f"  penalty tv({weight:g}) {name} along {_leg(model, name, axis)}"
              for name, (weight, axis) in model.tv.items()]
    if model.nonneg:
        lines.append(f"  nonneg {', '.join(sorted(model.nonneg))}")
    for term in model.terms:
        lines += ["", describe(term.network, "auto", False)]
    lines.append(_tensors_line(loaded.tensors))
    return "\n".join(lines)


def _leg(model, name: str, axis: int) -> str:
    """The index name of axis ``axis`` of tensor ``name`` in the first network using it."""
    return next(occ.indices[axis] for term in model.terms
                for occ in term.network.occurrences if occ.name == name)


def _describe_stratified(loaded) -> str:
    return "\n".join([repr(loaded), _tensors_line(
        {f"H{k}": h for k, h in enumerate(loaded.topics, 1)}, "topics"), _tensors_line(
        {f"W{s}": w for s, w in enumerate(loaded.weights)}, "weights")])


RESULT_DESCRIBERS = {"FitResult": _describe_fit, "CoupledResult": _describe_coupled,
                     "StratifiedResult": _describe_stratified}   # by the loaded class's name


def _tensors_line(tensors: dict, what: str = "fitted tensors") -> str:
    return f"{what}: " + ", ".join(f"{name} {tuple(array.shape)}"
                                   for name, array in tensors.items())


# planning a 300-tensor train takes 3.5 s, 1000 tensors 10 s (a ring 44 s), 30000 over 200 s
SHOW_PLAN_MAX_TENSORS = 500


def describe(net, optimize="auto", steps=False, memory_limit=None) -> str:
    """The text ``tnc show`` prints for one network; its path and cost only up to
    ``SHOW_PLAN_MAX_TENSORS`` tensor uses, with the slicing under ``memory_limit``."""
    sizes = ", ".join(f"{k}={v}" for k, v in net.sizes.items())
    lines = [f"network {net.name}({sizes})"]
    lines += _tensor_lines(net)
    lines += _index_lines(net)
    lines.append(f"  equation  {net.equation}")
    lines.append(f"  output    {', '.join(net.output) or '(scalar)'}  shape {net.output_shape}")
    if len(net.occurrences) > SHOW_PLAN_MAX_TENSORS:
        lines.append(f"  path      not planned: {len(net.occurrences)} tensor uses, over the "
                     f"{SHOW_PLAN_MAX_TENSORS} tnc show plans (a path search takes minutes "
                     "there); plan it in Python with net.plan()")
        return "\n".join(lines)
    plan = net.plan(optimize)
    chosen = resolve_optimizer(optimize, len(net.occurrences))
    chosen = chosen if isinstance(chosen, str) else type(chosen).__name__
    lines.append(f"  optimizer {optimize}" + (f" ({chosen})" if chosen != optimize else ""))
    lines.append("  path      " + " ".join(f"({','.join(map(str, p))})" for p in plan.cost.path))
    lines.append(f"  cost      {plan.cost}")
    if memory_limit is not None:
        lines.append(f"  sliced    {_slicing_line(net, optimize, memory_limit)}")
    if steps:
        lines += ["", *("  " + row for row in str(plan.info).splitlines())]
    return "\n".join(lines)


def _slicing_line(net, optimize, memory_limit) -> str:
    """How ``net`` is contracted under ``memory_limit``: unsliced, sliced, or not at all."""
    from tnc.engine.plan import format_bytes, limit_bytes
    from tnc.errors import MemoryLimitError
    limit = format_bytes(limit_bytes(memory_limit))
    try:
        cost = net.cost(optimize, memory_limit=memory_limit)
    except MemoryLimitError as error:
        return f"does not fit {limit}: {error}"
    if not getattr(cost, "sliced", ()):
        return f"not needed: the plan fits {limit}"
    return (f"over {', '.join(cost.sliced)}: {cost.slices} slices, flops overhead "
            f"x{cost.overhead:.4g}, peak {format_bytes(cost.peak_bytes)} of {limit}")


def _table(rows) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return ["    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in rows]


def _tensor_lines(net) -> list[str]:
    graph = net.graph
    uses = Counter(graph.nodes[node]["name"] for node in tensor_nodes(graph))
    first = {**first_uses(graph, "param"), **first_uses(graph, "data")}
    rows = []
    for node in sorted(first, key=lambda node: node[1]):
        name, attrs = first[node], graph.nodes[node]
        tied = f"used {uses[name]}x" if uses[name] > 1 else ""
        indices = sorted(graph.edges(node, keys=True), key=lambda edge: edge[2])
        rows.append((name, attrs["kind"], str(attrs["shape"]),
                     "(" + ", ".join(index for _, (_, index), _ in indices) + ")", tied))
    head = (f"  tensors: {len(net.params)} param, {len(net.data)} data, "
            f"{len(net.occurrences)} uses")
    return [head, *_table(rows)]


def _index_lines(net) -> list[str]:
    graph = net.graph
    hubs = set(hyperedges(graph))
    rows = []
    for node in index_nodes(graph):
        notes = ["open"] if graph.nodes[node]["open"] else []
        if node in hubs:
            notes.append(f"hyperedge ({graph.degree(node)} legs)")
        rows.append((node[1], str(graph.nodes[node]["size"]), ", ".join(notes)))
    return [f"  indices: {len(rows)}", *_table(rows)]

