"""mheval.asr has no import circle: weights.py is its bottom, every import (also one inside a function) points down,
and each module imports on its own in a fresh interpreter, in any order."""
import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mheval" / "asr"
MODULES = sorted(f"mheval.asr.{path.stem}" if path.stem != "__init__" else "mheval.asr"
                 for path in PACKAGE.glob("*.py"))
# The one upward reference: `load_asr`, the factory in the package, imports the engine it was asked for.
FACTORY_EDGES = {("mheval.asr", "mheval.asr.faster_whisper_engine"), ("mheval.asr", "mheval.asr.openai_whisper_engine")}
CIRCLE_OF_ISSUE_19 = ("mheval.asr.ct2_convert", "mheval.asr.weights", "mheval.asr.openai_whisper_engine")


def imported_asr_modules(module: str) -> set[str]:
    """Every mheval.asr module `module` imports, at module level or inside functions."""
    path = PACKAGE / ("__init__.py" if module == "mheval.asr" else f"{module.rsplit('.', 1)[1]}.py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mheval.asr")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mheval.asr"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= submodules or {node.module}
    return found - {module}


def test_the_asr_import_graph_has_no_circle():
    graph = {module: imported_asr_modules(module) for module in MODULES}
    edges = {(source, target) for source, targets in graph.items() for target in targets} - FACTORY_EDGES
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for source, target in sorted(edges):
            if source != module:
                continue
            assert state.get(target) != "open", f"import circle: {' -> '.join(path + [target])}"
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert imported_asr_modules("mheval.asr.weights") == set()


def fresh_import(*modules: str) -> subprocess.CompletedProcess:
    code = "import importlib\n" + "".join(f"importlib.import_module({name!r})\n" for name in modules)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE.parents[1])


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_each_asr_module_imports_alone_in_a_fresh_interpreter(module):
    result = fresh_import(module)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("order", list(itertools.permutations(CIRCLE_OF_ISSUE_19)))
def test_the_former_circle_imports_in_every_order(order):
    result = fresh_import(*order)
    assert result.returncode == 0, result.stderr
