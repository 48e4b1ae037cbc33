"""House rules of docs/ARCHITECTURE.md: the layer contracts, Qt only in gui/, numpy-only core/,
no import circles, and a package top that holds only sub-packages and a few helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fundus_review"


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_is_numpy_only() -> None:
    # Stricter than the import contract: any third-party package but numpy is refused.
    allowed_third_party = {"numpy"}
    stdlib = set(sys.stdlib_module_names)
    offenders = {}
    for f in sorted((PACKAGE / "core").rglob("*.py")):
        third = {m for m in _imported_top_modules(f) if m not in stdlib and m != "fundus_review"}
        bad = third - allowed_third_party
        if bad:
            offenders[str(f.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}, f"core/ must stay numpy-only: {offenders}"


@pytest.mark.slow
def test_headless_pipeline_does_not_load_qt_at_runtime() -> None:
    """Importing the CLI and every headless package must not drag Qt in transitively."""
    code = (
        "import sys, importlib, pkgutil, fundus_review\n"
        "for m in pkgutil.walk_packages(fundus_review.__path__, 'fundus_review.'):\n"
        "    if '.gui' in m.name or m.name.endswith('__main__'):\n"
        "        continue\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_import_contracts_of_pyproject_hold() -> None:
    """The import-linter contracts in pyproject.toml: layers, Qt only in gui/, only the store
    touches SQLAlchemy and the schema, numpy-only core/, no circles (lazy imports count)."""
    # The CLI entry point (not use_cases.lint_imports) because it first sets up the config
    # readers; --no-cache so a stale cache never hides a new import.
    code = (
        "import sys; sys.argv = ['lint-imports', '--no-cache']; "
        "from importlinter.cli import lint_imports_command; lint_imports_command()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[out.find("Broken contracts") :]


def test_package_top_holds_only_subpackages_and_three_helpers() -> None:
    # A newcomer finds a capability's package in one guess only if nothing else piles up here.
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py", "atomic.py", "errors.py", "paths.py"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(
        [
            "app",
            "cli",
            "core",
            "data",
            "exchange",
            "gui",
            "inference",
            "report",
            "review",
            "store",
            "training",
            "views",
        ]
    )
