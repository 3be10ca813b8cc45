"""Draw a network as a diagram: tensors as nodes, legs as edges.

Each tensor use is a labelled node (parameters as round blue nodes, data as
orange squares). An index shared by two tensors is an edge labelled
``name:size``; an open index is an edge to a small open marker; an index with
three or more legs (a hyperedge, or an index traced on one tensor) is a small
black hub joined to each of its tensors. networkx loads when a scene is laid out,
matplotlib when it is drawn::

    >>> import tnc
    >>> scene = layout_scene(tnc.library("cp", R=2))
    >>> sorted(scene.hubs), len(scene.open_markers)
    ([('hub', 'r')], 3)
"""
from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

from tnc.errors import TncError
from tnc.engine.graph import index_nodes, legs, tensor_nodes

LAYOUTS = ("auto", "grid", "chain", "kamada_kawai", "spring", "circular", "spectral")
PARAM_STYLE = {"facecolor": "#cfe3f7", "edgecolor": "#1f5f9f", "boxstyle": "circle,pad=0.35"}
DATA_STYLE = {"facecolor": "#fbd9a8", "edgecolor": "#b2620b", "boxstyle": "square,pad=0.45"}
_GRID_NAME = re.compile(r"[^\[]+\[(-?\d+),(-?\d+)\]\Z")
_CHAIN_NAME = re.compile(r"([^\[]+)\[(-?\d+)\]\Z")
MAX_CHAIN_ROWS = 6


@dataclass
class Scene:
    """What is drawn, before any coordinates: a networkx Graph plus edge labels.

    Nodes are ``("tensor", k)`` per use, ``("hub", index)`` per hyperedge and
    ``("open", index)`` per open leg; ``edges`` lists ``(u, v, label)``, parallel
    edges included (a plain Graph cannot hold them).
    """

    graph: "networkx.Graph"
    edges: list[tuple[object, object, str]] = field(default_factory=list)
    hubs: list = field(default_factory=list)
    open_markers: list = field(default_factory=list)


def layout_scene(network) -> Scene:
    """The nodes and labelled edges of the diagram of ``network``."""
    import networkx as nx
    graph = network.graph
    scene = Scene(nx.Graph())
    scene.graph.add_nodes_from(tensor_nodes(graph))
    for node in index_nodes(graph):
        attrs, index = graph.nodes[node], node[1]
        _add_index(scene, index, f"{index}:{attrs['size']}", legs(graph, index), attrs["open"])
    return scene


def _add_index(scene: Scene, index: str, label: str, ends: list, is_open: bool) -> None:
    if len(ends) == 2 and ends[0] != ends[1] and not is_open:
        _connect(scene, ends[0], ends[1], label)
        return
    if len(ends) == 1 and is_open:
        marker = ("open", index)
        scene.open_markers.append(marker)
        _connect(scene, ends[0], marker, label)
        return
    hub = ("hub", index)
    scene.hubs.append(hub)
    for k, end in enumerate(ends):
        _connect(scene, end, hub, label if k == 0 else "")
    if is_open:
        marker = ("open", index)
        scene.open_markers.append(marker)
        _connect(scene, hub, marker, "")


def _connect(scene: Scene, u, v, label: str) -> None:
    scene.edges.append((u, v, label))
    scene.graph.add_edge(u, v)


# -- coordinates -------------------------------------------------------------------
def positions(network, scene: Scene, layout="auto", seed: int = 0) -> dict:
    """Node -> (x, y). ``layout`` is a name of :data:`LAYOUTS` or a dict of tensor positions."""
    import networkx as nx
    if isinstance(layout, dict):
        return _around_fixed(scene, {("tensor", k): layout[occ.name]
                                     for k, occ in enumerate(network.occurrences)}, seed)
    if layout not in LAYOUTS:
        raise TncError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout in ("auto", "grid", "chain"):
        fixed = _grid_positions(network) or _chain_positions(network, scene)
        if fixed is not None:
            return _around_fixed(scene, fixed, seed)
        if layout != "auto":
            raise TncError(f"layout={layout!r} needs tensors named like `A[x, y]` (grid) or "
                           "`G[n]` joined to their neighbours n-1 and n+1 (chain)")
    if layout in ("auto", "kamada_kawai"):
        return nx.kamada_kawai_layout(scene.graph) if len(scene.graph) > 1 else _single(scene)
    if layout == "spring":
        return nx.spring_layout(scene.graph, seed=seed)
    return getattr(nx, f"{layout}_layout")(scene.graph)


def _single(scene: Scene) -> dict:
    return {node: (0.0, 0.0) for node in scene.graph}


def _grid_positions(network) -> dict | None:
    """Tensors at their subscripts when every tensor is ``NAME[x,y]`` and used once."""
    where = {}
    for k, occ in enumerate(network.occurrences):
        match = _GRID_NAME.match(occ.name)
        if match is None:
            return None
        where[("tensor", k)] = (float(match.group(1)), -float(match.group(2)))
    if len(set(where.values())) != len(where):
        return None
    return where


def _chain_positions(network, scene: Scene) -> dict | None:
    """Rows of ``G[n]`` tensors at x = n when bonds only join neighbours (TT, MPO, <psi|H|psi>).

    One row per family and use (a tied tensor's second use is a second row); the
    row order with the shortest vertical bonds wins.
    """
    rows, where = {}, {}
    seen: dict[str, int] = defaultdict(int)
    for k, occ in enumerate(network.occurrences):
        match = _CHAIN_NAME.match(occ.name)
        if match is None:
            return None
        row = rows.setdefault((match.group(1), seen[occ.name]), len(rows))
        seen[occ.name] += 1
        where[("tensor", k)] = (float(match.group(2)), row)
    if len(rows) > MAX_CHAIN_ROWS:
        return None
    bonds = [(u, v) for u, v, _ in scene.edges if u in where and v in where]
    if any(abs(where[u][0] - where[v][0]) > 1 for u, v in bonds):
        return None
    order = min(itertools.permutations(range(len(rows))),
                key=lambda perm: sum(abs(perm[where[u][1]] - perm[where[v][1]]) for u, v in bonds))
    return {node: (x, -float(order[row])) for node, (x, row) in where.items()}


def _around_fixed(scene: Scene, fixed: dict, seed: int) -> dict:
    """Pin tensors, put open legs just outside them, spread hubs with a spring layout."""
    import networkx as nx
    spacing = _min_distance(list(fixed.values()))
    start = dict(fixed)
    for marker in scene.open_markers:
        owner = next(iter(scene.graph[marker]))
        if owner in fixed:
            start[marker] = _outside(scene, fixed, owner, 0.45 * spacing)
    pinned = list(start)
    for node in scene.graph:
        if node not in start:
            near = [start[n] for n in scene.graph[node] if n in start] or [(0.0, 0.0)]
            start[node] = (sum(p[0] for p in near) / len(near) + 0.1 * spacing,
                           sum(p[1] for p in near) / len(near) + 0.1 * spacing)
    if len(pinned) == len(start):
        return start
    return nx.spring_layout(scene.graph, pos=start, fixed=pinned, seed=seed,
                            k=0.35 * spacing, iterations=80)


def _outside(scene: Scene, fixed: dict, owner, length: float) -> tuple[float, float]:
    """A point ``length`` away from ``owner``, opposite its pinned neighbours (else up-right)."""
    x, y = fixed[owner]
    dx = dy = 0.0
    for other in scene.graph[owner]:
        if other in fixed:
            ox, oy = fixed[other]
            norm = math.dist((x, y), (ox, oy)) or 1.0
            dx, dy = dx + (x - ox) / norm, dy + (y - oy) / norm
    norm = math.hypot(dx, dy)
    if norm < 1e-9:
        dx, dy, norm = 1.0, 1.0, math.sqrt(2.0)
    return x + length * dx / norm, y + length * dy / norm


def _min_distance(points) -> float:
    best = math.inf
    for i, p in enumerate(points):
        for q in points[i + 1:]:
            best = min(best, math.dist(p, q))
    return 1.0 if best in (0.0, math.inf) else best


# -- matplotlib --------------------------------------------------------------------
def _new_axes(pos: dict):
    """Axes of a pyplot-free Figure, about 1.3 inch per tensor spacing (5 to 22 inches)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TncError("drawing needs matplotlib: pip install 'tnc[draw]'") from None
    tensors = [p for node, p in pos.items() if node[0] == "tensor"]
    spacing = _min_distance(tensors)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    width = min(22.0, max(5.0, 1.3 * ((max(xs) - min(xs)) / spacing + 1.5)))
    height = min(22.0, max(4.0, 1.3 * ((max(ys) - min(ys)) / spacing + 1.5)))
    return Figure(figsize=(width, height), dpi=110).add_subplot()


def draw(network, path=None, ax=None, layout="auto", seed: int = 0):
    """Draw ``network``; save to ``path`` (``.png``, ``.svg``, ``.pdf``) when given.

    Returns the matplotlib Axes drawn on (a new one when ``ax`` is None; no
    pyplot state is touched, so it works without a display). ``layout``: one
    of :data:`LAYOUTS` (``"auto"``: a grid for tensors named ``A[x, y]``, rows
    for chains of ``G[n]``, else Kamada-Kawai) or a dict tensor name -> (x, y).
    """
    scene = layout_scene(network)
    pos = positions(network, scene, layout, seed)
    ax = _new_axes(pos) if ax is None else ax
    label_points = _draw_edges(ax, scene, pos)
    _draw_nodes(ax, network, scene, pos)
    _frame(ax, [*pos.values(), *label_points], network)
    if path is not None:
        try:
            ax.figure.savefig(path, bbox_inches="tight")
        except (OSError, ValueError) as error:
            raise TncError(f"cannot save the drawing to {str(path)!r}: {error}") from None
    return ax


def _draw_edges(ax, scene: Scene, pos: dict) -> list:
    """Draw every leg (parallel ones as arcs) and its label; return the label points."""
    from matplotlib.patches import FancyArrowPatch
    groups = defaultdict(list)
    for u, v, label in scene.edges:
        groups[frozenset((u, v))].append((u, v, label))
    points = []
    for group in groups.values():
        for k, (u, v, label) in enumerate(group):
            rad = 0.25 * (k - (len(group) - 1) / 2)
            ax.add_patch(FancyArrowPatch(pos[u], pos[v], arrowstyle="-", color="#555555",
                                         linewidth=1.4, connectionstyle=f"arc3,rad={rad}",
                                         shrinkA=0, shrinkB=0, zorder=1))
            if label:
                x, y = _label_point(pos[u], pos[v], rad, v[0] == "open")
                points.append((x, y))
                ha = _outward_alignment(pos[u], pos[v]) if v[0] == "open" else "center"
                ax.text(x, y, label, fontsize=7, ha=ha, va="center", color="#333333",
                        zorder=3, bbox={"facecolor": "white", "edgecolor": "none",
                                        "alpha": 0.8, "pad": 0.5})
    return points


def _label_point(a, b, rad: float, beyond: bool) -> tuple[float, float]:
    """Where a leg's label goes: past the open end of an open leg, else mid-curve."""
    if beyond:
        return b[0] + 0.2 * (b[0] - a[0]), b[1] + 0.35 * (b[1] - a[1])
    return _curve_midpoint(a, b, rad)


def _outward_alignment(a, b) -> str:
    """Text alignment that keeps an open leg's label clear of its line."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if abs(dx) < 0.3 * abs(dy):
        return "center"
    return "left" if dx > 0 else "right"


def _curve_midpoint(a, b, rad: float) -> tuple[float, float]:
    """Midpoint of matplotlib's ``arc3`` curve from ``a`` to ``b``."""
    (x1, y1), (x2, y2) = a, b
    dx, dy = x2 - x1, y2 - y1
    return (x1 + x2) / 2 + rad * dy / 2, (y1 + y2) / 2 - rad * dx / 2


def _draw_nodes(ax, network, scene: Scene, pos: dict) -> None:
    for k, occ in enumerate(network.occurrences):
        style = PARAM_STYLE if occ.kind == "param" else DATA_STYLE
        x, y = pos[("tensor", k)]
        ax.text(x, y, occ.name, ha="center", va="center", fontsize=8, zorder=4,
                bbox={**style, "linewidth": 1.2})
    for hub in scene.hubs:
        ax.plot(*pos[hub], marker="o", markersize=6, color="black", zorder=4)
    for marker in scene.open_markers:
        ax.plot(*pos[marker], marker="o", markersize=5, markerfacecolor="white",
                markeredgecolor="#555555", zorder=4)


def _frame(ax, points: list, network) -> None:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    pad_x = 0.12 * (max(xs) - min(xs) or 1.0)
    pad_y = 0.12 * (max(ys) - min(ys) or 1.0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.update_datalim([(min(xs) - pad_x, min(ys) - pad_y), (max(xs) + pad_x, max(ys) + pad_y)])
    ax.autoscale_view()
    ax.set_axis_off()
    sizes = ", ".join(f"{k}={v}" for k, v in network.sizes.items())
    ax.set_title(f"{network.name}({sizes})", fontsize=10)
