"""The code's layers: lower layers never import higher ones, and one module holds each shared fact (issue 12, items
17, 18 and 19)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

from mheval.dashboard_command import APP, streamlit_command

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(result.stdout.split())


def test_nothing_in_mheval_imports_dashboards():
    """Item 18: the harness never depends on its dashboard."""
    offenders = {str(path.relative_to(REPO)): names for path in sorted((REPO / "mheval").rglob("*.py"))
                 if (names := {name for name in imported_modules(path) if name.split(".")[0] == "dashboards"})}
    assert not offenders


def test_the_generator_never_imports_the_harness():
    """The bundled generator stands alone: `model/` imports neither mheval nor dashboards (the mp4 writer and the
    audio decoder both need live in model/video_io.py, which mheval.media re-exports)."""
    offenders = {str(path.relative_to(REPO)): names for path in sorted((REPO / "model").rglob("*.py"))
                 if (names := {name for name in imported_modules(path)
                               if name.split(".")[0] in ("mheval", "dashboards")})}
    assert not offenders


def test_the_cli_builds_without_loading_the_dashboard_and_launches_the_app_by_path():
    """Item 18: `mheval dashboard` is parsed by mheval's CLI, which starts dashboards/app.py as a file."""
    assert not {name for name in loaded_after_import("mheval.cli") if name.startswith("dashboards")}
    assert APP == REPO / "dashboards" / "app.py" and APP.is_file()
    assert str(APP) in streamlit_command(["runs/x"], 8501, "localhost")


def test_the_dashboard_compares_through_the_comparison_library_not_the_gate():
    """Item 17: comparisons (scores per prompt, baselines, comparability, verdicts) live in mheval.baselines; the gate
    module is only the gate's output formats and command line."""
    assert "mheval.gate" not in loaded_after_import("dashboards.data")
    for path in (REPO / "dashboards").glob("*.py"):
        assert "mheval.gate" not in imported_modules(path), path


def test_one_file_hasher_and_one_atomic_writer():
    """Item 19: file sha256 and atomic writes are defined once, in mheval.files."""
    shared = {"sha256_file", "sha256_file_cached", "write_atomically", "write_bytes_atomic", "write_json_atomic"}
    for path in [*(REPO / "mheval").rglob("*.py"), *(REPO / "dashboards").glob("*.py")]:
        defined = {node.name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(node, ast.FunctionDef)}
        if path != REPO / "mheval" / "files.py":
            assert not defined & shared, path


def test_every_reader_of_a_run_reads_through_the_one_results_model():
    """Issue 19 item 1: only the store (which owns the database), the runner (its one writer) and mheval.results
    (`RunResults`, the typed read model) touch a run's database; report, gate, compare, paper table, review, exports
    and dashboard read a run through RunResults, so they cannot decode it differently."""
    allowed = {REPO / "mheval" / name for name in ("store.py", "results.py", "runner.py")}
    offenders = {}
    for path in [*(REPO / "mheval").rglob("*.py"), *(REPO / "dashboards").glob("*.py")]:
        if path in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        found = [token for token in ("RunStore", "run.sqlite", "store.DATABASE", "latest_run(") if token in text]
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders


def test_statuses_are_the_enum_not_string_literals():
    """Issue 19: the status of a clip or score is `mheval.status.Status` wherever the harness compares one."""
    values = "ok|failed|not_applicable|stale|missing"
    comparison = re.compile(rf"""status\W{{0,3}}\s*[!=]=\s*["']({values})["']|isin\(\[[^\]]*["']({values})["']""")
    offenders = {}
    for path in [*(REPO / "mheval").rglob("*.py"), *(REPO / "dashboards").glob("*.py")]:
        found = comparison.findall(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(REPO))] = found
    assert not offenders
