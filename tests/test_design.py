"""The package's shape: no import cycles, counting imports inside functions."""

import ast
import pathlib

import gpumlp

PACKAGE = pathlib.Path(gpumlp.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, name):
    """Package modules imported anywhere in ``path`` (top level or in functions)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gpumlp")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("gpumlp"):
                continue
            # ``from . import kernels`` imports a module; ``from .io import
            # save`` imports from one.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


FILES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = set(FILES)


def _graph():
    graph = {name: _imports(path, name) for name, path in FILES.items()}
    # Importing a package's module runs the package's __init__ first; that
    # edge is Python's, not ours, so only explicit imports count.
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = _graph()
    graph["gpumlp.kernels"] = graph["gpumlp.kernels"] | {"gpumlp.estimator"}
    cycle = _find_cycle(graph)
    assert cycle is not None and "gpumlp.kernels" in cycle


def test_function_level_imports_are_seen():
    graph = _graph()
    # estimator imports distributed only inside _fit, for dask arrays.
    assert "gpumlp.distributed" in graph["gpumlp.estimator"]


def test_every_subpackage_is_packaged():
    """A wheel built from pyproject.toml holds every package under gpumlp/.

    (``packages = ["gpumlp"]`` once left ``gpumlp.fastpath`` out of wheels;
    an editable install hid it.)
    """
    import fnmatch

    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["packages"]["find"]["include"]
    packages = [".".join(path.parent.relative_to(root).parts)
                for path in (root / "gpumlp").rglob("__init__.py")]
    assert "gpumlp.fastpath" in packages
    for package in packages:
        assert any(fnmatch.fnmatchcase(package, p) for p in patterns), package
