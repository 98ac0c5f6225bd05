"""The house: imports run one way between the top-level packages, and no module cycles.

warping ← factory ← (distill, casting, curate, adapt) ← toonfactory (the command line); casting may
also use the student (``distill``) to realify. A package imports only those ``MAY_IMPORT`` names for
it; nothing imports the command line. Within the product, modules import each other without cycles,
counting imports inside functions too (a deferred import hides a cycle from Python, not from a reader:
two modules that cannot be understood apart).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

MAY_IMPORT = {
    "warping": set(),
    "factory": {"warping"},
    "distill": {"warping", "factory"},
    "casting": {"warping", "factory", "distill"},
    "curate": {"warping", "factory"},
    "adapt": {"warping", "factory"},
    "toonfactory": {"warping", "factory", "distill", "casting", "curate", "adapt"},
}
PACKAGES = tuple(MAY_IMPORT)


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
    return sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))


def direction_violations(root: Path = REPO) -> list[str]:
    """Imports of a project package that the importer's package may not use (the command line included)."""
    bad = []
    for path in product_files(root):
        own = path.relative_to(root).parts[0]
        for name, line in imports(path):
            top = name.split(".")[0]
            if top in MAY_IMPORT and top != own and top not in MAY_IMPORT[own]:
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def module_cycles(root: Path = REPO) -> list[list[str]]:
    """Cycles in the graph of imports between the product's modules, those inside functions included."""
    modules = {module_name(p, root): p for p in product_files(root)}
    graph = {m: sorted({n for n, _ in imports(p) if n in modules and n != m}) for m, p in modules.items()}
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


def test_curation_and_adaptation_are_packages_beside_casting():
    for package in ("curate", "adapt"):
        assert (REPO / package / "__init__.py").is_file()
        assert not (REPO / "factory" / package).exists()
    pyproject = (REPO / "pyproject.toml").read_text()
    for package in PACKAGES:
        assert f'"{package}*"' in pyproject, f"pyproject's package list leaves out {package}"


MESH_HOME = Path("warping/landmarks.py")


def mesh_indices(root: Path = REPO) -> list[str]:
    """Places outside ``MESH_HOME`` that spell face-mesh indices: a subscript by a literal index of the
    478-point mesh beyond dlib's 68 (``points[468]``), or a literal list of 4+ distinct indices, 3+ of them
    beyond 68 (a region of the mesh)."""
    found = []
    for path in product_files(root):
        if path.relative_to(root) == MESH_HOME:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Subscript):
                items = node.slice.elts if isinstance(node.slice, (ast.List, ast.Tuple)) else [node.slice]
                if any(isinstance(i, ast.Constant) and type(i.value) is int and 68 <= i.value < 478 for i in items):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)}")
            elif isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) >= 4 and \
                    all(isinstance(e, ast.Constant) and type(e.value) is int for e in node.elts):
                values = [e.value for e in node.elts]
                if all(0 <= v < 478 for v in values) and sum(v >= 68 for v in values) >= 3 and len(set(values)) == len(values):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node)[:40]}")
    return found


def test_face_mesh_indices_live_in_one_module(tmp_path):
    assert mesh_indices() == []
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "factory" / "a.py").write_text("LIPS = [61, 185, 40, 409, 291]\nKERNEL = [1, 3, 3, 1]\ndef f(p):\n    return p[468], p[3]\n")
    assert mesh_indices(tmp_path) == ["factory/a.py:1 [61, 185, 40, 409, 291]", "factory/a.py:4 p[468]"]


def test_the_check_catches_a_single_reversed_import(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "factory" / "a.py").write_text("import warping\n")
    (tmp_path / "casting" / "a.py").write_text("from distill import infer\n")
    assert direction_violations(tmp_path) == []
    (tmp_path / "factory" / "b.py").write_text("def f():\n    from distill import train\n")
    (tmp_path / "curate" / "b.py").write_text("import casting.rank\n")
    (tmp_path / "adapt" / "b.py").write_text("def f():\n    import curate\n")
    assert direction_violations(tmp_path) == ["adapt/b.py:2 imports curate", "curate/b.py:1 imports casting.rank",
                                              "factory/b.py:2 imports distill", "factory/b.py:2 imports distill.train"]


def test_the_check_catches_a_cycle_hidden_inside_a_function(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "factory" / "c.py").write_text("import factory.d\n")
    (tmp_path / "factory" / "d.py").write_text("from factory import e\n")
    (tmp_path / "factory" / "e.py").write_text("")
    assert module_cycles(tmp_path) == []
    (tmp_path / "factory" / "e.py").write_text("def f():\n    from factory.c import g\n")
    assert module_cycles(tmp_path) == [["factory.c", "factory.d", "factory.e", "factory.c"]]


def test_the_command_line_is_one_package_and_python_dash_m_works():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "toonfactory", "--help"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for command in ("validate", "generate", "run", "inspect", "train", "export", "infer", "cast", "warp", "curate"):
        assert command in run.stdout
