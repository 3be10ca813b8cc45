"""The package's layout: no import cycles, a light ``import tnc``, small modules, documented
subpackages. Each check reads the source (``ast``) or a fresh interpreter, never a timer."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import tnc

PACKAGE = Path(tnc.__file__).parent
MAX_LINES = 850
HEAVY = ("numpy", "scipy", "networkx", "lark", "opt_einsum")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_time_statements(tree: ast.Module):
    """Import statements run when the module is imported: those of the module body and
    of class bodies, ``if``/``try``/``with`` blocks included; not those in functions or
    under ``if TYPE_CHECKING:``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


def imported_modules(name: str, path: Path) -> set[str]:
    """The tnc modules ``name`` imports at import time (``from P import m`` counts as
    module ``P.m`` when that is a module, else as ``P``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in import_time_statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for name, path in MODULES.items():
        graph.add_edges_from((name, other) for other in imported_modules(name, path))
    return graph


def test_import_graph_sees_imports():
    """The reader finds the imports it must (so an empty cycle list means something)."""
    graph = import_graph()
    assert ("tnc.engine.network", "tnc.engine.plan") in graph.edges
    assert ("tnc.lang.compiler", "tnc.lang.parser") in graph.edges
    tree = ast.parse("import tnc.errors\nif TYPE_CHECKING:\n    import tnc.options\n"
                     "def f():\n    import tnc.engine.plan\nclass C:\n    import tnc.lang.ast\n")
    assert sorted(a.name for n in import_time_statements(tree) for a in n.names) == [
        "tnc.errors", "tnc.lang.ast"]


def test_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == [], f"modules importing each other at import time: {cycles}"


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout
    return json.loads(out.splitlines()[-1])


def test_import_tnc_loads_no_heavy_library():
    code = ("import json, sys, tnc; print(json.dumps([m for m in %r if m in sys.modules]))"
            % (HEAVY,))
    assert _fresh(code) == []


def test_compiling_a_network_loads_neither_scipy_nor_networkx():
    code = ("import json, sys, tnc; tnc.library('cp', R=2); "
            "print(json.dumps([m for m in ('scipy', 'networkx', 'threadpoolctl', "
            "'matplotlib', 'torch') if m in sys.modules]))")
    assert _fresh(code) == []


def test_an_als_fit_loads_neither_scipy_nor_networkx():
    """tnc.fit loads every method's module; their scipy and networkx load where used."""
    code = ("import json, sys, tnc; net = tnc.library('cp', I=3, J=4, K=5, R=2); "
            "tnc.fit(net, net.contract(net.random(seed=0)), method='als', max_iter=2, "
            "progress=False); print(json.dumps([m for m in ('scipy', 'networkx') "
            "if m in sys.modules]))")
    assert _fresh(code) == []


def test_public_names_resolve():
    assert [n for n in tnc.__all__ if getattr(tnc, n, None) is None] == []
    assert set(tnc.__all__) <= set(dir(tnc))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        tnc.nonexistent


def test_no_module_over_the_line_limit():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("package", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_subpackages_say_what_they_hold(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text()))
    assert doc and len(doc.split()) >= 3, f"{package} has no docstring"


# -- the one graph builder (tnc.engine.graph), against counts taken from the occurrences
@pytest.mark.parametrize("name", tnc.library_names())
def test_graph_legs_and_hyperedges_match_the_occurrences(name):
    from tnc.engine.graph import hyperedges, legs
    net = tnc.library(name)
    graph = net.graph
    for index, size in net.spec.index_sizes.items():
        expected = [("tensor", k) for k, occ in enumerate(net.occurrences)
                    for i in occ.indices if i == index]
        assert legs(graph, index) == expected
        assert graph.nodes["index", index] == {"type": "index", "size": size,
                                               "open": index in net.output}
    count = {i: sum(o.indices.count(i) for o in net.occurrences) for i in net.spec.index_sizes}
    assert sorted(n[1] for n in hyperedges(graph)) == sorted(
        i for i, c in count.items() if c + (i in net.output) >= 3)
    assert [graph.nodes["tensor", k]["shape"] for k in range(len(net.occurrences))] == list(
        net.shapes)


def test_bond_graph_joins_first_uses_by_their_two_leg_indices():
    from tnc.engine.graph import bond_graph, first_uses
    net = tnc.library("energy", N=3)          # <psi|H|psi>: bra and ket are the same cores
    first = first_uses(net.graph)
    assert list(first.values()) == list(net.params)
    bonds = bond_graph(net.graph)
    assert sorted(bonds.edges(data="index")) == [("G[1]", "G[2]", "a[1]"), ("G[2]", "G[3]", "a[2]")]
    two = tnc.compile("network two(D = 2) { index a: D, b: D, p: 3\n tensor A(p, a, b), B(a, b)\n"
                      " output p }")
    assert bond_graph(two.graph).edges["A", "B"]["indices"] == ("a", "b")
    assert bond_graph(two.graph).edges["A", "B"]["sizes"] == (2, 2)
    assert bonds.edges["G[1]", "G[2]"]["sizes"] == (net.spec.index_sizes["a[1]"],)
