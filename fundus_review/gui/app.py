"""Start the review application (`fundus-review gui`)."""

from __future__ import annotations

import sys
from pathlib import Path


def run_app(
    dataset: str | Path | None = None,
    db: str | Path | None = None,
    model: str | Path | None = None,
    argv: list[str] | None = None,
) -> int:
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui import refcount_guard
    from fundus_review.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    refcount_guard.install(app)  # PySide6 6.12.0's emit() leaks True: long sessions abort
    app.setApplicationName("fundus-review")
    app.setOrganizationName("fundus-review")
    window = MainWindow(db=db, dataset=dataset, model=model)
    window.show()
    return int(app.exec())
