"""House rules that keep the pipeline headless: Qt only in gui/, torch never in core/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fundus_review"
QT_MODULES = {"PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6", "qtpy", "superqt"}


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _python_files(exclude: str | None = None) -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    if exclude:
        files = [f for f in files if exclude not in f.relative_to(PACKAGE).parts]
    return files


def test_qt_is_imported_only_inside_gui() -> None:
    offenders = {
        str(f.relative_to(PACKAGE)): sorted(_imported_top_modules(f) & QT_MODULES)
        for f in _python_files(exclude="gui")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"Qt imported outside fundus_review/gui: {offenders}"


def test_core_is_numpy_only() -> None:
    allowed_third_party = {"numpy"}
    stdlib = set(sys.stdlib_module_names)
    offenders = {}
    for f in sorted((PACKAGE / "core").rglob("*.py")):
        third = {m for m in _imported_top_modules(f) if m not in stdlib and m != "fundus_review"}
        bad = third - allowed_third_party
        if bad:
            offenders[str(f.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}, f"core/ must stay numpy-only: {offenders}"


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
