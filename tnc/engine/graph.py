"""The tensor network as a networkx graph: the one builder that drawing, chains and ``tnc show`` read.

:func:`build_graph` makes a bipartite ``MultiGraph``: a node ``("tensor", k)`` per
occurrence ``k`` (attributes ``name``, ``kind`` ``"param"``/``"data"``, ``shape``)
and a node ``("index", name)`` per index (``size``, ``open``: in the output). One
edge per leg, keyed by its axis, so a tensor carrying an index twice has two
parallel edges; an index node of degree three or more is a hyperedge. Views of it:
:func:`legs` (the tensor at each leg of an index), :func:`first_uses` and
:func:`bond_graph` (tensors joined by the indices that link exactly two of them).
networkx is imported on first use, so compiling a network never loads it::

    >>> import tnc
    >>> g = tnc.library("cp", I=2, J=3, K=4, R=2).graph
    >>> sorted(n[1] for n in hyperedges(g)), g.nodes["index", "i"]
    (['r'], {'type': 'index', 'size': 2, 'open': True})
    >>> [g.nodes[n]["shape"] for n in legs(g, "r")]
    [(2, 2), (3, 2), (4, 2)]
    >>> sorted(bond_graph(tnc.library("tt", N=3).graph).edges(data="index"))
    [('G[1]', 'G[2]', 'b[1]'), ('G[2]', 'G[3]', 'b[2]')]
"""
from __future__ import annotations

from tnc.lang.expand import NetworkSpec


def build_graph(spec: NetworkSpec):
    """The bipartite ``networkx.MultiGraph`` of ``spec`` (see the module docstring);
    index nodes in the order of ``spec.index_sizes``, tensor nodes in occurrence order."""
    import networkx as nx
    graph = nx.MultiGraph(name=spec.name)
    output = set(spec.output)
    for index, size in spec.index_sizes.items():
        graph.add_node(("index", index), type="index", size=size, open=index in output)
    for k, occ in enumerate(spec.occurrences):
        graph.add_node(("tensor", k), type="tensor", name=occ.name, kind=occ.kind,
                       shape=spec.shape_of(occ))
        for axis, index in enumerate(occ.indices):
            graph.add_edge(("tensor", k), ("index", index), key=axis, axis=axis)
    return graph


def tensor_nodes(graph) -> list:
    """The ``("tensor", k)`` nodes, in occurrence order."""
    return [n for n, d in graph.nodes(data=True) if d["type"] == "tensor"]


def index_nodes(graph) -> list:
    """The ``("index", name)`` nodes, in declaration order."""
    return [n for n, d in graph.nodes(data=True) if d["type"] == "index"]


def legs(graph, index: str) -> list:
    """The tensor node at each leg of ``index``, in occurrence order (a tensor carrying
    it twice appears twice)."""
    return [tensor for _, tensor, _ in graph.edges(("index", index), keys=True)]


def hyperedges(graph) -> list:
    """Index nodes shared by three or more legs (open legs count as one)."""
    return [n for n in index_nodes(graph)
            if graph.degree(n) + int(graph.nodes[n]["open"]) >= 3]


def first_uses(graph, kind: str = "param") -> dict:
    """Tensor node of the first use of each ``kind`` tensor -> its name."""
    first: dict = {}
    for node in tensor_nodes(graph):
        attrs = graph.nodes[node]
        if attrs["kind"] == kind and attrs["name"] not in first.values():
            first[node] = attrs["name"]
    return first


def bond_graph(graph, among: dict | None = None):
    """Tensors joined by their bonds: a ``networkx.Graph`` with a node per label of
    ``among`` (tensor node -> label; default :func:`first_uses` of the params) and an
    edge per pair joined by a *bond*: a closed index with exactly two legs, on two
    tensors of ``among`` with different labels. Edge attributes: ``indices`` (every
    bond of the pair, declaration order), their ``sizes``, and ``index`` (the first)."""
    import networkx as nx
    among = first_uses(graph) if among is None else among
    bonds = nx.Graph()
    bonds.add_nodes_from(among.values())
    for node in index_nodes(graph):
        ends = legs(graph, node[1])
        if (graph.nodes[node]["open"] or len(ends) != 2 or ends[0] == ends[1]
                or not all(end in among for end in ends)):
            continue
        a, b = (among[end] for end in ends)
        if a == b:
            continue
        size = graph.nodes[node]["size"]
        if bonds.has_edge(a, b):
            bonds.edges[a, b]["indices"] += (node[1],)
            bonds.edges[a, b]["sizes"] += (size,)
        else:
            bonds.add_edge(a, b, index=node[1], indices=(node[1],), sizes=(size,))
    return bonds
