"""The tensor network as a networkx graph: tensor nodes, index nodes, leg edges.

Bipartite ``MultiGraph``: a node ``("tensor", k)`` per occurrence ``k`` (attributes
``name``, ``kind`` ``"param"``/``"data"``, ``shape``) and a node ``("index", name)``
per index (``size``, ``open``). One edge per leg, keyed by its axis, so a tensor
carrying an index twice has two parallel edges; an index node of degree three or
more is a hyperedge.

    >>> import tnc
    >>> g = tnc.library("cp").graph
    >>> sorted(n[1] for n in hyperedges(g))
    ['r']
"""
from __future__ import annotations

import networkx as nx

from tnc.lang.expand import NetworkSpec


def build_graph(spec: NetworkSpec) -> nx.MultiGraph:
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


def tensor_nodes(graph: nx.MultiGraph) -> list:
    return [n for n, d in graph.nodes(data=True) if d["type"] == "tensor"]


def hyperedges(graph: nx.MultiGraph) -> list:
    """Index nodes shared by three or more legs (open legs count as one)."""
    return [n for n, d in graph.nodes(data=True)
            if d["type"] == "index" and graph.degree(n) + int(d["open"]) >= 3]
