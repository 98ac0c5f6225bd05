"""The house: imports run one way between the top-level packages, and no module cycles.

warping ← factory ← distill ← casting ← toonfactory (the command line). A package may import only
those to its left; nothing imports the command line. Within the product, modules import each other
without cycles at module level (a cycle would mean two modules that cannot be understood apart).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LAYERS = ("warping", "factory", "distill", "casting", "toonfactory")


def imports(path: Path, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(module imported, line) for every absolute import in a file (or only its module-level ones)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module, node.lineno)]
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_files(root: Path = REPO) -> list[Path]:
    return sorted(p for layer in LAYERS for p in (root / layer).rglob("*.py"))


def direction_violations(root: Path = REPO) -> list[str]:
    """Imports of a package to the right of the importer's (or of the command line)."""
    bad = []
    for path in product_files(root):
        own = LAYERS.index(path.relative_to(root).parts[0])
        for name, line in imports(path):
            top = name.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > own:
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def module_cycles(root: Path = REPO) -> list[list[str]]:
    """Cycles in the graph of module-level imports between the product's modules."""
    modules = {module_name(p, root): p for p in product_files(root)}
    graph = {m: sorted({n for n, _ in imports(p, top_level_only=True) if n in modules and n != m})
             for m, p in modules.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    return cycles


def test_imports_run_one_way():
    assert direction_violations() == []


def test_no_module_imports_another_that_imports_it_back():
    assert module_cycles() == []


def test_the_check_catches_a_single_reversed_import(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "factory" / "a.py").write_text("import warping\n")
    assert direction_violations(tmp_path) == []
    (tmp_path / "factory" / "b.py").write_text("def f():\n    from distill import train\n")
    assert direction_violations(tmp_path) == ["factory/b.py:2 imports distill", "factory/b.py:2 imports distill.train"]
    (tmp_path / "factory" / "c.py").write_text("import factory.d\n")
    (tmp_path / "factory" / "d.py").write_text("from factory import c\n")
    assert module_cycles(tmp_path) == [["factory.c", "factory.d", "factory.c"]]


def test_the_command_line_is_one_package_and_python_dash_m_works():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "toonfactory", "--help"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for command in ("validate", "generate", "run", "inspect", "train", "export", "infer", "cast", "warp"):
        assert command in run.stdout
