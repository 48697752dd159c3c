"""The layers hold and no module imports itself back: a static import graph of the project.

Every ``import`` of ``nfnl/``, ``ctnetlink/`` and ``tools/`` (installed as
``conntrack_tools``) counts — at module level and inside functions alike, plus
``importlib.import_module("literal")`` — except those under ``if TYPE_CHECKING:``
(annotations only). ``nfnl`` must import neither ``ctnetlink`` nor ``conntrack_tools``,
``ctnetlink`` must not import ``conntrack_tools``, and the graph must have no cycle;
a failure prints every offending import with its file and line, and each cycle as a
chain of imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"nfnl": "nfnl", "ctnetlink": "ctnetlink", "tools": "conntrack_tools"}
"""Source directory -> import name."""
FORBIDDEN = {"nfnl": ("ctnetlink", "conntrack_tools"), "ctnetlink": ("conntrack_tools",)}
"""Layer -> the packages it must not import (lower layers never import higher ones)."""

Edge = tuple[str, str, int]  # (imported module, file, line)


def modules(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """{module name: (file, is a package __init__)} of the project."""
    out = {}
    for directory, name in packages.items():
        for path in sorted((root / directory).rglob("*.py")):
            parts = [name, *path.relative_to(root / directory).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(module: str, mods: dict[str, tuple[Path, bool]],
               aliases: dict[str, str]) -> list[Edge]:
    """The project modules ``module`` imports, with the line of each import."""
    path, is_pkg = mods[module]
    package = module if is_pkg else module.rpartition(".")[0]
    found: list[Edge] = []

    def add(name: str, line: int) -> None:
        name = resolve(name, aliases)
        while name and name not in mods:  # `from a.b import name`: the module a.b
            name = name.rpartition(".")[0]
        if name and name != module:
            found.append((name, str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                      else path), line))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import name`: the submodule pkg.name if
                add(f"{target}.{alias.name}", node.lineno)  # there is one, else pkg
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            add(node.args[0].value, node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def resolve(name: str, aliases: dict[str, str]) -> str:
    """The import name of ``name`` (``tools.x`` is installed as ``conntrack_tools.x``)."""
    for src, dst in aliases.items():
        if name == src or name.startswith(src + "."):
            return dst + name[len(src):]
    return name


def graph(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, list[Edge]]:
    mods = modules(root, packages)
    aliases = {d: n for d, n in packages.items() if d != n}
    return {m: imports_of(m, mods, aliases) for m in mods}


def cycles(g: dict[str, list[Edge]]) -> list[tuple[list[str], list[tuple]]]:
    """Per strongly connected component: its modules and one cycle through the first of
    them, as the chain of imports (importer, imported, file, line)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan, recursive: the graph is small
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, *_ in g[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(g):
        if v not in index:
            connect(v)
    out = []
    for comp in comps:  # the shortest way round from the component's first module
        start = min(comp)
        came: dict[str, tuple] = {}
        queue = [start]
        while queue and start not in came:
            v = queue.pop(0)
            for w, file, line in g[v]:
                if w in comp and w not in came:
                    came[w] = (v, w, file, line)
                    queue.append(w)
        chain = [came[start]]
        while chain[0][0] != start:
            chain.insert(0, came[chain[0][0]])
        out.append((sorted(comp), chain))
    return out


def layer_violations(g: dict[str, list[Edge]]) -> list[str]:
    out = []
    for module, edges in sorted(g.items()):
        banned = FORBIDDEN.get(module.split(".")[0], ())
        for target, file, line in edges:
            if target.split(".")[0] in banned:
                out.append(f"{file}:{line}: {module} imports {target}")
    return out


def describe_cycle(cycle: tuple[list[str], list[tuple]]) -> str:
    members, chain = cycle
    lines = [f"  {src} -> {dst}   ({file}:{line})" for src, dst, file, line in chain]
    if len(members) > len(chain):
        lines.append(f"  (the cycle's component: {', '.join(members)})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def project() -> dict[str, list[Edge]]:
    return graph()


def test_lower_layers_do_not_import_higher_ones(project) -> None:
    bad = layer_violations(project)
    assert not bad, "layer violations (nfnl < ctnetlink < conntrack_tools):\n" + "\n".join(bad)


def test_no_import_cycles(project) -> None:
    found = cycles(project)
    assert not found, "import cycles:\n" + "\n\n".join(describe_cycle(c) for c in found)


def test_the_graph_sees_what_it_must(tmp_path: Path) -> None:
    """The checker itself: imports inside functions, relative and ``import_module`` ones
    count and close cycles; ``TYPE_CHECKING`` imports do not; layers are checked."""
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    files = {
        "low/__init__.py": "",
        "low/a.py": "from . import b\n",
        "low/b.py": "def f():\n    from .c import x\n",
        "low/c.py": "import importlib\nm = importlib.import_module('low.a')\n",
        "low/d.py": "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from low import e\n",
        "low/e.py": "from low import d\n",
        "low/f.py": "def g():\n    import hi.x\n",
        "high/__init__.py": "",
        "high/x.py": "from low.a import y\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    g = graph(tmp_path, {"low": "low", "high": "hi"})
    assert [(e[0]) for e in g["low.b"]] == ["low.c"]
    assert g["low.d"] == []
    found = cycles(g)
    assert len(found) == 1
    assert found[0][0] == ["low.a", "low.b", "low.c"]
    assert [src for src, *_ in found[0][1]] == ["low.a", "low.b", "low.c"]
    assert "low/b.py:2" in describe_cycle(found[0])
    saved = dict(FORBIDDEN)
    FORBIDDEN.clear()
    FORBIDDEN["low"] = ("hi",)
    try:
        assert [v.split(": ")[1] for v in layer_violations(g)] == ["low.f imports hi.x"]
    finally:
        FORBIDDEN.clear()
        FORBIDDEN.update(saved)
