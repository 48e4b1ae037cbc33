"""Writes docs/screenshots/proposals*.png: the Annotate tab with proposed disc and cup on a
real DRISHTI-GS1 photograph (../shared/data), before and after accepting them.

    DISPLAY=:95 QT_QPA_PLATFORM=xcb .venv/bin/python docs/screenshots/make_proposals_screenshot.py \
        [--data ../shared/data/drishti_gs1_train] [--image drishtiGS_004.jpg]

Uses a throw-away database and settings in a temporary folder, the reviewer "Dr. Rao", and
hides the reference reviewer's imported masks (H) so only the proposals are drawn.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=here.parents[2] / "shared/data/drishti_gs1_train")
    ap.add_argument("--image", default="drishtiGS_004.jpg")
    ap.add_argument("--out", type=Path, default=here)
    ap.add_argument("--zoom", type=float, default=2.5, help="view this many disc sizes (0: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shot-"))
    os.environ["FUNDUS_REVIEW_HOME"] = str(tmp / "home")
    os.environ["FUNDUS_REVIEW_CACHE"] = str(tmp / "cache")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui.annotate.proposals import proposal_tool
    from fundus_review.gui.main_window import MainWindow
    from fundus_review.gui.settings import SETTINGS_SCHEMA

    app = QApplication.instance() or QApplication([])
    settings = QSettings(str(tmp / "settings.ini"), QSettings.IniFormat)
    settings.setValue("schema", SETTINGS_SCHEMA)
    settings.setValue("annotate/reviewer", "Dr. Rao")
    win = MainWindow(db=tmp / "shot.db", dataset=args.data, settings=settings)
    win.resize(1600, 1000)
    win.show()

    def wait(cond, secs: float = 120.0) -> None:  # noqa: ANN001
        end = time.monotonic() + secs
        while not cond():
            app.processEvents()
            time.sleep(0.02)
            if time.monotonic() > end:
                raise TimeoutError("the window did not get there in time")

    wait(lambda: win.browser.model.rowCount() > 0 and win.photo is not None)
    wait(lambda: not win._registering)
    state = win.browser.model.state
    rows = [state.row_at(r) for r in range(win.browser.model.rowCount())]
    image_id = next(r.image_id for r in rows if r.name == args.image)
    win.browser.select_image(image_id)
    wait(lambda: win.photo is not None and win.photo[0].image_id == image_id)
    win.show_annotation()
    wait(lambda: win.annot.image_id == image_id)
    win.annot.set_others_visible(False)
    tool = proposal_tool(win.annot)
    done: list[bool] = []
    tool.finished.connect(done.append)
    tool.propose()
    wait(lambda: bool(done))
    disc = [r for r in win.annot.regions if r.structure == "optic_disc" and r.proposed]
    if disc and args.zoom:
        ys, xs = disc[0].mask().nonzero()
        cx, cy, half = xs.mean(), ys.mean(), args.zoom * max(np.ptp(xs), np.ptp(ys)) / 2
        win.viewer.view.setRange(xRange=(cx - half, cx + half), yRange=(cy - half, cy + half))
    for _ in range(30):
        app.processEvents()
        time.sleep(0.03)
    win.grab().save(str(args.out / "proposals.png"))
    tool.accept()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.03)
    win.grab().save(str(args.out / "proposals_accepted.png"))
    print(f"wrote {args.out / 'proposals.png'} and proposals_accepted.png")
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
