"""The package's layout: its modules import each other without a cycle, so each can be
read, and imported, after the ones below it."""

import ast
from pathlib import Path

import pyro_bnn

ROOT = Path(pyro_bnn.__file__).resolve().parent


def _name(path: Path, root: Path = ROOT) -> str:
    """The dotted module name of a file of the package: pyro_bnn/attacks/__init__.py ->
    pyro_bnn.attacks."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, package: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``source``, a module of ``package``, imports anywhere,
    function-local imports included: ``from .a import b`` counts as a, and as a.b where b
    is a module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            found |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return found & modules


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports, for every module under root."""
    files = sorted(root.rglob("*.py"))
    modules = {_name(p, root) for p in files}
    graph = {}
    for path in files:
        name = _name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(path.read_text(), package, modules) - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # 'open' while on the path, 'done' after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_the_import_graph_is_read_from_every_module():
    graph = _graph()
    assert {"pyro_bnn", "pyro_bnn.attacks", "pyro_bnn.attacks.apgd", "pyro_bnn.train"} <= set(graph)
    assert "pyro_bnn.stack" in graph["pyro_bnn.train"]
    assert "pyro_bnn.attacks.pgd" in graph["pyro_bnn.attacks.apgd"]
    assert "pyro_bnn.data" in graph["pyro_bnn.attacks.base"]  # from ..data


def test_a_function_local_import_closes_a_cycle():
    modules = {"pyro_bnn", "pyro_bnn.stack", "pyro_bnn.train"}
    local = "def fit_svi():\n    from .stack import fit_stack\n"
    assert _imports(local, "pyro_bnn", modules) == {"pyro_bnn.stack"}
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_itself_through_others():
    cycle = _cycle(_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"
