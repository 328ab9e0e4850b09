"""The import structure of ARCHITECTURE.md: no import cycle between anonlens' modules, counting the
imports inside functions; no import of another module's private (``_name``) names; the layers
contract of pyproject.toml (import-linter's ``lint-imports``) kept. The walk over ``ast`` is the same
as /work/shared/tools/import_cycles.py (kept here, so that the suite checks it on its own)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import package_modules as _modules

ROOT = Path(__file__).resolve().parents[3]  # tests/unit/kernel/ -> the repository
SRC = ROOT / "src"
PACKAGE = "anonlens"


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    """What an import statement may name: the module, and each imported name as a submodule."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module if is_package else module.rsplit(".", 1)[0]
    if node.level:
        parts = base.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph(src: Path = SRC, package: str = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the package's modules it imports (anywhere in the file, functions included; an
    import of a module's parent package is not an edge), and the private names imported across modules."""
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, node, is_package):
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(package)):
                private += [f"{module} imports {a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_counting_imports_inside_functions():
    graph, _ = import_graph()
    assert len(graph) > 100 and graph["anonlens.batch"], "the walk did not find anonlens' modules"
    assert cycles(graph) == []


def test_no_private_name_imported_from_another_module():
    _, private = import_graph()
    assert private == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_checks_see_a_cycle_hidden_in_a_function_and_a_private_import(tmp_path):
    _write(tmp_path, {
        "demo/__init__.py": "",
        "demo/a.py": "from . import b\nx = 1\n",
        "demo/b.py": "def f():\n    from .a import x\n    return x\n",
        "demo/c.py": "from .sub.d import _hidden\n",
        "demo/sub/__init__.py": "",
        "demo/sub/d.py": "from .. import c  # the parent package's module: an edge\n_hidden = 0\n",
    })
    graph, private = import_graph(tmp_path, "demo")
    assert graph["demo.b"] == {"demo.a"}
    assert cycles(graph) == [["demo.a", "demo.b"], ["demo.c", "demo.sub.d"]]
    assert private == ["demo.c imports _hidden"]


def test_layers_contract_is_kept():
    """``lint-imports`` (import-linter) with pyproject.toml's contracts, on this checkout's sources."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)}
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout and " kept" in r.stdout
