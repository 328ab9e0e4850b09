"""ARCHITECTURE.md: "A function-level import is only for a heavy optional dependency, or for a module
that needs one. It is never a way around a cycle." Every import inside a function of anonlens (found
over ``ast``) must keep something costly from loading that its module does not already load at its
top: a package of an optional extra, a core package that is slow to import in a module that
``anonlens --help`` imports, an anonlens module that imports one of those at its top, or (in the
command modules only) one of the command implementations listed below. A new function-level import
of a light module (json, numpy, Pillow, ``..io``...) fails here: move it to the top."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import package_modules as _modules

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SRC = ROOT / "src"
PACKAGE = "anonlens"
CLI_ENTRY = "anonlens.cli.main"  # what `anonlens --help` imports

#: the optional extras' packages (pyproject.toml: learn, tensorboard, video, ray, service) and the
#: test/bench-only ones; a dotted name covers its submodules (torch.utils.tensorboard needs tensorboard)
HEAVY_OPTIONAL = {
    "torch", "torchvision", "torchmetrics", "pytorch_fid", "captum", "sklearn", "safetensors", "matplotlib", "lpips",
    "tensorboard", "torch.utils.tensorboard", "av", "ray", "fastapi", "starlette", "uvicorn", "playwright",
    "rapidocr_onnxruntime", "onnxruntime",
}

#: core dependencies that are slow to import; lazy only in a module that `anonlens --help` imports
#: (seconds measured after `import anonlens.cli.main`, on the 2-core CI machine)
SLOW_AT_CLI_START = {
    "pandas": "0.4 s",
    "scipy": "scipy.linalg 0.4 s, scipy.stats 1.4 s",
    "openvino": "0.17 s (and its telemetry is blocked before it is imported)",
    "dlib": "0.02 s, with the face models it loads",
    "cv2": "0.05 s (loaded by `import anonlens` today, so no lazy import of it is justified)",
}

#: what a command module (anonlens.cli.*) may import when its command runs: each is light, but
#: together they add about 90 ms of imports to every `anonlens --help` when the command modules import
#: them at the top (`-X importtime`, the least of 7 runs: batch 14 ms, assess.gate 14 ms, A-GAN's data
#: 9 ms, the service's app with asyncio and ssl 30 ms...). The implementations of correlate, report,
#: calibrate and benchmark need no entry: they import pandas or scipy at their top.
COMMAND_IMPLEMENTATIONS = {
    "anonlens.batch": "anonymize, demo",
    "anonlens.samples": "demo (scikit-image's samples, Pillow's fonts)",
    "anonlens.assess.gate": "check, report",
    "anonlens.edi.tradeoff": "tradeoff, report --tradeoff",
    "anonlens.generative.agan.data": "agan prepare",
    "anonlens.service": "serve (the service extra's app)",
}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """``(node, in_function)`` for every import that runs (``if TYPE_CHECKING:`` blocks never do)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for node in child.orelse:
                yield from _imports(ast.Module(body=[node], type_ignores=[]))
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, False
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from ((node, True) for node, _ in _imports(child))
        else:
            yield from _imports(child)


def _targets(module: str, is_package: bool, node, modules) -> set[str]:
    """What the import loads: the package's modules with their parent packages (their ``__init__``
    runs first), and other packages' dotted names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = (module if is_package else module.rsplit(".", 1)[0]).split(".")
            prefix = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{prefix}.{base}" if node.module else prefix
        names = [base, *(f"{base}.{a.name}" for a in node.names)]
    out = set()
    for name in names:
        if name.split(".")[0] != PACKAGE:
            out.add(name)
            continue
        while name and name not in modules:
            name = name.rpartition(".")[0]
        while name:
            out.add(name)
            name = name.rpartition(".")[0]
    return out


def walk(src: Path = SRC, package: str = PACKAGE):
    """``(top, inner)``: module -> what its module-level imports load; and one
    ``(module, line, statement, loads)`` per import inside a function."""
    modules = _modules(src, package)
    top, inner = {}, []
    for module, path in modules.items():
        parts = module.split(".")
        top[module] = {".".join(parts[:i]) for i in range(1, len(parts))}
        for node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            loads = _targets(module, path.name == "__init__.py", node, modules)
            if in_function:
                inner.append((module, node.lineno, ast.unparse(node), loads))
            else:
                top[module] |= loads
    return top, inner


def closure(start, top) -> set[str]:
    """Everything that importing ``start`` loads, following module-level imports."""
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += top.get(name, ())
    return seen


def _costly(names, costly) -> set[str]:
    return {c for n in names if n.split(".")[0] != PACKAGE for c in costly if n == c or n.startswith(c + ".")}


def unjustified(src: Path = SRC, package: str = PACKAGE, cli_entry: str = CLI_ENTRY,
                commands: dict = COMMAND_IMPLEMENTATIONS) -> list[str]:
    """The function-level imports that keep nothing costly from loading, as ``module:line: statement``."""
    top, inner = walk(src, package)
    at_cli_start = closure([cli_entry], top) if cli_entry in top else set()
    bad = []
    for module, line, statement, loads in inner:
        costly = set(HEAVY_OPTIONAL) | (set(SLOW_AT_CLI_START) if module in at_cli_start else set())
        if _costly(closure(loads, top), costly) - _costly(closure([module], top), costly):
            continue
        if module.startswith(f"{package}.cli.") and (closure(loads, top) - at_cli_start) & set(commands):
            continue
        bad.append(f"{module}:{line}: {statement}")
    return sorted(bad)


def test_function_level_imports_are_for_heavy_dependencies_only():
    bad = unjustified()
    assert not bad, ("imports inside functions that load nothing heavy: move them to the module's top "
                     "(tests/test_import_rules.py says what may stay):\n" + "\n".join(bad))


def test_each_command_implementation_is_kept_out_of_help_by_a_lazy_import():
    """The list stays short: every entry is imported inside a command, and `--help` does not load it."""
    top, inner = walk()
    at_cli_start = closure([CLI_ENTRY], top)
    assert not set(COMMAND_IMPLEMENTATIONS) & at_cli_start
    used = {m for module, _, _, loads in inner if module.startswith("anonlens.cli.") for m in closure(loads, top)}
    assert set(COMMAND_IMPLEMENTATIONS) <= used, set(COMMAND_IMPLEMENTATIONS) - used


def test_the_walk_predicts_what_help_imports():
    """The static walk agrees with a real `import anonlens.cli.main`: the same heavy and slow packages
    (none of the optional ones; cv2 today), and none of the command implementations."""
    top, _ = walk()
    costly = set(HEAVY_OPTIONAL) | set(SLOW_AT_CLI_START)
    predicted = _costly(closure([CLI_ENTRY], top), costly)
    code = ("import json, sys; import anonlens.cli.main; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'anonlens' or '.' not in m)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout)
    assert _costly(loaded, costly) == predicted
    assert not predicted & set(HEAVY_OPTIONAL)
    assert not set(COMMAND_IMPLEMENTATIONS) & set(loaded)


def test_the_rule_sees_a_light_import_in_a_function(tmp_path):
    files = {
        "demo/__init__.py": "",
        "demo/light.py": "import numpy as np\n\ndef f():\n    import json\n    from . import heavy\n    return json, heavy\n",
        "demo/heavy.py": "import torch\n\ndef g():\n    import torch.nn.functional as F\n    from torch.utils.tensorboard import SummaryWriter\n",
        "demo/cli/__init__.py": "",
        "demo/cli/main.py": "from . import cmd\n",
        "demo/cli/cmd.py": "import typing\nif typing.TYPE_CHECKING:\n    import demo.heavy\n\n"
                           "def run():\n    import pandas\n    from ..light import f\n    from ..batch import go\n",
        "demo/batch.py": "def go():\n    import scipy\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    bad = unjustified(tmp_path, "demo", "demo.cli.main", commands={"demo.batch": "go"})
    # json: light; torch.nn.functional: torch is loaded at the top already; from ..light: light;
    # scipy in batch: slow, but batch is not loaded by the CLI's start, so scipy could be at its top
    assert bad == ["demo.batch:2: import scipy", "demo.cli.cmd:7: from ..light import f",
                   "demo.heavy:4: import torch.nn.functional as F", "demo.light:4: import json"]
