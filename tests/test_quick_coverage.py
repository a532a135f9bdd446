"""The quick subset (pytest -m "not slow") tests every module of dltrain: each module is imported
by name (``import dltrain.x``, ``from dltrain.x import ...``, ``from dltrain import x``, or
importlib/runpy with the module's name) in at least one test file that is not marked slow as a
whole. A new module without a quick test fails here."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "dltrain"


def modules() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def slow_as_a_whole(tree: ast.Module) -> bool:
    """A module-level ``pytestmark = pytest.mark.slow`` (alone or in a list)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            return "mark.slow" in ast.unparse(node.value)
    return False


def imported(tree: ast.Module, known: set[str]) -> set[str]:
    """dltrain modules this file imports by name, anywhere in the file."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from pkg import submodule
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("import_module", "run_module") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found & known


def quick_imports() -> dict[str, set[str]]:
    known = modules()
    covered: dict[str, set[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        if slow_as_a_whole(tree):
            continue
        for module in imported(tree, known):
            covered.setdefault(module, set()).add(path.name)
    return covered


def test_every_dltrain_module_is_imported_by_a_quick_test_file():
    known = modules()
    assert len(known) > 40 and "dltrain.train.engine" in known
    missing = sorted(known - set(quick_imports()))
    assert missing == [], (
        f"no test file outside the slow ones imports {', '.join(missing)}; add a quick in-process "
        f"test of something each does (tests/test_units.py, or tests/test_<module>.py)")


def test_the_rule_sees_slow_files_and_every_import_form():
    slow = ast.parse("import pytest\npytestmark = pytest.mark.slow\n")
    listed = ast.parse("import pytest\npytestmark = [pytest.mark.slow, pytest.mark.filterwarnings('x')]\n")
    quick = ast.parse("import pytest\npytestmark = pytest.mark.filterwarnings('x')\n")
    assert slow_as_a_whole(slow) and slow_as_a_whole(listed) and not slow_as_a_whole(quick)
    known = {"dltrain", "dltrain.a", "dltrain.a.b", "dltrain.c", "dltrain.d", "dltrain.e"}
    code = ("import dltrain.a\nfrom dltrain.a import b\n"
            "def f():\n    from dltrain import c\n    import runpy, importlib\n"
            "    runpy.run_module('dltrain.d')\n    importlib.import_module('dltrain.e')\n")
    assert imported(ast.parse(code), known) == known
