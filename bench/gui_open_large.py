"""How long the review application takes to open a 10,000-image dataset.

    .venv/bin/python bench/gui_open_large.py [--n 10000] [--dir FOLDER] [--keep]

Writes N small JPEGs in two class folders (once; reused with --dir), then measures, in a real
MainWindow (offscreen unless DISPLAY is set):
  first open   new database: list the folder off the UI thread until the list shows N rows, then
               the first screen of thumbnails, then the background read (size + content hash)
  reopen       the same database and dataset in a new window, until the list shows N rows
  thumbnails   after reopen, until every row on the first screen has its thumbnail
  rescan       the background re-registration that follows every open (new or changed files)
and the longest gap of a 10 ms UI-thread timer during each phase once the window is shown (what a
user feels as a freeze; building the window comes before it and is reported on its own).
The target is "about a second" until the reviewer sees the list, first open or not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(root: Path, n: int) -> None:
    from PIL import Image

    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == str(n):
        return
    shutil.rmtree(root, ignore_errors=True)
    for label in ("glaucoma", "normal"):
        (root / label).mkdir(parents=True)
    yy, xx = np.mgrid[0:96, 0:128]
    retina = (xx - 64) ** 2 + (yy - 48) ** 2 <= 44**2
    t0 = time.perf_counter()
    for i in range(n):
        img = np.zeros((96, 128, 3), np.uint8)
        img[retina] = (170 + i % 60, 80, 30)
        cx = 30 + (i * 7) % 70
        img[(xx - cx) ** 2 + (yy - 48) ** 2 <= 36] = 250
        label = "glaucoma" if i % 2 else "normal"
        Image.fromarray(img).save(root / label / f"img_{i:05d}.jpg", quality=85)
    marker.write_text(str(n))
    print(f"wrote {n} images to {root} in {time.perf_counter() - t0:.1f} s")


class GapMeter:
    """A 10 ms timer on the UI thread; its longest gap is the longest the UI was frozen."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.last = time.perf_counter()
        self.worst = 0.0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def reset(self) -> None:
        self.last, self.worst = time.perf_counter(), 0.0


def wait_until(app, cond, timeout: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"condition not met in {timeout} s")
        time.sleep(0.002)
    return time.perf_counter() - t0


def visible_rows_have_thumbnails(win) -> bool:
    lst, model = win.browser.list, win.browser.model
    top = lst.indexAt(lst.viewport().rect().topLeft())
    if not top.isValid():
        return False
    row, seen = top.row(), 0
    while row < model.rowCount():
        idx = model.index(row)
        if not lst.visualRect(idx).intersects(lst.viewport().rect()):
            break
        if model.state.row_at(row).image_id not in model.thumbs:
            return False
        row, seen = row + 1, seen + 1
    return seen > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = args.dir or Path(tempfile.mkdtemp(prefix="fr-bench-"))
    os.environ["FUNDUS_REVIEW_CACHE"] = str(work / "cache")
    os.environ["FUNDUS_REVIEW_HOME"] = str(work / "home")
    data, db = work / "data", work / "bench.db"
    write_images(data, args.n)
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    shutil.rmtree(work / "cache", ignore_errors=True)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = QSettings(str(work / "settings.ini"), QSettings.IniFormat)
    gaps = GapMeter()

    def open_once() -> dict[str, float]:
        """Build and show a window on the dataset; times from the constructor's start."""
        t0 = time.perf_counter()
        win = MainWindow(db=db, dataset=data, settings=settings)
        registered: list[int] = []
        win.registered.connect(registered.append)
        win.show()
        out = {"built": time.perf_counter() - t0}
        gaps.reset()  # the constructor itself runs before the window is on screen
        wait_until(app, lambda: win.browser.model.rowCount() == args.n, 600)
        out["rows"] = time.perf_counter() - t0
        wait_until(app, lambda: visible_rows_have_thumbnails(win), 120)
        out["thumbs"], out["gap_open"] = time.perf_counter() - t0, gaps.worst
        gaps.reset()
        wait_until(app, lambda: bool(registered), 600)
        out["read"], out["gap_read"] = time.perf_counter() - t0, gaps.worst
        wait_until(app, lambda: win.tasks.pool.activeThreadCount() == 0, 600)
        win.close()
        return out

    first, again = open_once(), open_once()
    print(f"\n{args.n} images, platform {app.platformName()}, {os.cpu_count()} CPU(s)")
    for name, m, read in (
        ("first open (new database)", first, "background read (size + hash) done"),
        ("reopen", again, "background re-scan finished"),
    ):
        print(f"{name}: window built and shown {m['built']:7.2f} s")
        print(f"  ... the list shows all rows:        {m['rows']:7.2f} s")
        print(
            f"  ... the first screen of thumbnails:  {m['thumbs']:7.2f} s"
            f"   (UI max gap {m['gap_open']:.2f} s)"
        )
        print(f"  ... {read}: {m['read']:7.2f} s   (UI max gap {m['gap_read']:.2f} s)")
    print(
        f"=> on first open the list appears {first['read'] / first['rows']:.1f}x sooner than if"
        " opening waited for every file to be read"
    )
    if args.dir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
