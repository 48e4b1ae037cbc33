"""A scripted review of the demo set in the real review window: seconds and user actions per image.

    .venv/bin/python bench/review_flow.py [--n 60] [--images 60] [--modes ellipse,box,polygon,proposals]
                                          [--home DIR] [--vertices 12]

Builds the demo database once (`fundus-review demo --no-gui` without report and trust checks,
in --home, reused by later runs), then for each mode opens a MainWindow (offscreen unless
DISPLAY is set) on a fresh copy of that database, as reviewer "bench", and reviews every image
with real key and mouse events (QTest), as a reviewer who knows where the disc and cup are (the
demo's exact masks) would:

  Ctrl+E once (open the drawing tools), then per image:
  ellipse   1 (optic disc), drag its box;  2 (optic cup), drag its box            (default tools)
  box       1, G, drag a box around the disc (GrabCut);  2, G, drag one around the cup
  polygon   1, P, click --vertices points on the disc's outline, Return;  the same for the cup
  proposals Shift+P (the shipped segmenter proposes disc and cup); a proposal with Dice below
            --threshold against the exact mask (or none) is clicked (selects it) and deleted;
            A accepts the rest; each deleted/missing one is drawn as in "ellipse"
  and then  Alt+Y (verdict on the shown heatmap), Ctrl+Return (done, next image).

Per image it measures the wall time from the moment the image is ready (photo, regions and
heatmap shown) to the moment the next one is ready, split into "acting" (the events being handled,
GrabCut included) and "waiting" (loading the next image); it counts keys and mouse gestures (a
click or a drag is one gesture). At the end it checks what is stored (two regions, "done" and a
verdict per image) and the regions' IoU with the exact masks. Times are of the machine, not of a
person: a reviewer adds the time to look and aim.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REVIEWER = "bench"
STRUCTURES = (("optic_disc", "1"), ("optic_cup", "2"))


@dataclass
class Tally:
    keys: int = 0
    gestures: int = 0
    fallbacks: int = 0  # box mode: GrabCut found nothing; proposals: a proposal redrawn
    accepted: dict[str, int] = field(default_factory=dict)  # proposals mode: per structure
    proposing: list[float] = field(default_factory=list)  # proposals mode: Shift+P to shown
    acting: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)


def wait_until(cond, timeout: float = 60.0, what=None) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError(f"the window did not get there in time: {what() if what else ''}")
        QApplication.processEvents()
        time.sleep(0.002)


class Reviewer:
    """Real key and mouse events on the window; counts them."""

    def __init__(self, win, tally: Tally) -> None:  # noqa: ANN001
        self.win, self.t = win, tally

    def key(self, key, modifier=None) -> None:  # noqa: ANN001
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        QTest.keyClick(self.win.focusWidget() or self.win, key, modifier or Qt.NoModifier)
        self.t.keys += 1

    def _at(self, x: float, y: float):  # noqa: ANN202
        from PySide6.QtCore import QPointF

        v = self.win.viewer
        return v.mapFromScene(v.view.mapViewToScene(QPointF(x, y)))

    def drag(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        vp = self.win.viewer.viewport()
        QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, self._at(*a))
        for t in np.linspace(0, 1, 6)[1:]:
            QTest.mouseMove(vp, self._at(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t))
        QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, self._at(*b))
        self.t.gestures += 1

    def close_message(self) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        from PySide6.QtWidgets import QApplication, QMessageBox

        for box in self.win.findChildren(QMessageBox):
            if box.isVisible():
                QTest.keyClick(box, Qt.Key_Return)
                self.t.keys += 1
        wait_until(lambda: not any(b.isVisible() for b in self.win.findChildren(QMessageBox)), 5)
        self.win.activateWindow()
        with warnings.catch_warnings():  # deprecated, but offscreen has no window manager
            warnings.simplefilter("ignore", DeprecationWarning)
            QApplication.setActiveWindow(self.win)

    def click(self, x: float, y: float) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        QTest.mouseClick(self.win.viewer.viewport(), Qt.LeftButton, Qt.NoModifier, self._at(x, y))
        self.t.gestures += 1


def outline_points(mask: np.ndarray, n: int) -> list[tuple[float, float]]:
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea).reshape(-1, 2)
    idx = np.linspace(0, len(c), n, endpoint=False).astype(int)
    return [(float(x) + 0.5, float(y) + 0.5) for x, y in c[idx]]


def _ellipse_by_hand(r: Reviewer, mask: np.ndarray, key: str) -> None:
    rows, cols = np.nonzero(mask)
    r.key(key)
    r.drag((cols.min(), rows.min()), (cols.max() + 1.0, rows.max() + 1.0))


def review_with_proposals(r: Reviewer, masks: dict[str, np.ndarray], threshold: float) -> None:
    """Shift+P; delete every proposal below the threshold, A for the rest; draw the others."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui.annotate.proposals import proposal_tool
    from fundus_review.inference.segment_post import dice

    c, tool = r.win.annot, proposal_tool(r.win.annot)
    t0 = time.perf_counter()
    r.key(Qt.Key_P, Qt.ShiftModifier)
    wait_until(lambda: not tool.busy, 60, lambda: r.win.annot_errors[-3:])
    QApplication.processEvents()  # the proposals' regions reach the controller
    r.t.proposing.append(time.perf_counter() - t0)
    proposed = {x.structure: x for x in c.regions if x.proposed and c.own(x)}
    redraw = []
    for structure, key in STRUCTURES:
        got = proposed.get(structure)
        if got is not None and (dice(got.mask(), masks[structure]) or 0.0) >= threshold:
            r.t.accepted[structure] = r.t.accepted.get(structure, 0) + 1
            continue
        redraw.append((structure, key))
        r.t.fallbacks += 1
        if got is None:
            continue
        # a pixel of this proposal that no newer region covers (the cup lies inside the disc)
        others = [x.mask() for x in proposed.values() if x.id > got.id]
        free = got.mask() & ~np.logical_or.reduce(others) if others else got.mask()
        rows, cols = np.nonzero(free)
        mid = len(rows) // 2
        r.click(cols[mid] + 0.5, rows[mid] + 0.5)
        if c.selected_id != got.id:
            raise RuntimeError(f"the click selected {c.selected_id}, not the {structure} proposal")
        r.key(Qt.Key_Delete)
    if any(x.proposed for x in c.regions if c.own(x)):
        r.key(Qt.Key_A)
    for i, (structure, key) in enumerate(redraw):
        if i:
            r.key(Qt.Key_Escape)  # deselect: the cup is drawn inside the selected disc
        _ellipse_by_hand(r, masks[structure], key)
    r.key(Qt.Key_Y, Qt.AltModifier)


def review_image(
    r: Reviewer, masks: dict[str, np.ndarray], mode: str, vertices: int, threshold: float
) -> None:
    from PySide6.QtCore import Qt

    if mode == "proposals":
        return review_with_proposals(r, masks, threshold)
    for structure, key in STRUCTURES:
        m = masks[structure]
        rows, cols = np.nonzero(m)
        box = (cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0)
        r.key(key)
        if mode == "ellipse":
            r.drag(box[:2], box[2:])
        elif mode == "box":
            r.key(Qt.Key_G)
            pad = 0.15 * (box[2] - box[0])
            before, errors = len(r.win.annot.regions), len(r.win.annot_errors)
            r.drag((box[0] - pad, box[1] - pad), (box[2] + pad, box[3] + pad))
            wait_until(lambda b=before, e=errors: len(r.win.annot.regions) > b
                       or len(r.win.annot_errors) > e)  # fmt: skip
            if len(r.win.annot.regions) == before:  # GrabCut found nothing: say OK, draw it
                r.t.fallbacks += 1
                r.close_message()
                _ellipse_by_hand(r, m, key)
        else:
            r.key(Qt.Key_P)
            for p in outline_points(m, vertices):
                r.click(*p)
            r.key(Qt.Key_Return)
        if structure != STRUCTURES[-1][0]:
            r.key(Qt.Key_Escape)  # deselect: the cup is drawn inside the selected disc
    r.key(Qt.Key_Y, Qt.AltModifier)


def reference_masks(db, image_id: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    from fundus_review.review.editor import load_regions

    regions = [x for x in load_regions(db, image_id) if x.reviewer == "reference"]
    return {s: next(x for x in regions if x.structure == s).mask() for s, _ in STRUCTURES}


def run_mode(
    mode: str,
    data: Path,
    db_file: Path,
    bundle: Path,
    images: int,
    vertices: int,
    threshold: float,
) -> dict:
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui.main_window import MainWindow
    from fundus_review.gui.settings import SETTINGS_SCHEMA
    from fundus_review.review.editor import Editor, load_regions

    tmp = Path(tempfile.mkdtemp(prefix=f"review_flow_{mode}_"))
    db_copy = tmp / "review.db"
    shutil.copy(db_file, db_copy)
    settings = QSettings(str(tmp / "settings.ini"), QSettings.IniFormat)
    settings.setValue("schema", SETTINGS_SCHEMA)
    settings.setValue("annotate/reviewer", REVIEWER)
    win = MainWindow(db=db_copy, dataset=data, model=bundle, settings=settings)
    win.resize(1500, 950)
    win.show()
    win.annot_errors = []
    win.annot.error.connect(win.annot_errors.append)
    wait_until(lambda: win.browser.model.rowCount() > 0 and win.photo is not None, 120)
    wait_until(lambda: not win._registering and win.tasks.pool.activeThreadCount() == 0, 120)
    n = min(images, win.browser.model.rowCount())
    tally = Tally()
    r = Reviewer(win, tally)
    r.key(Qt.Key_E, Qt.ControlModifier)
    done_ids: list[int] = []

    def ready() -> bool:
        cur = win.browser.current_id()
        return (
            cur is not None
            and win.annot.image_id == cur
            and win.annot.heatmap_id is not None
            and win.photo is not None
            and win.photo[0].image_id == cur
        )

    t_ready = time.perf_counter()
    wait_until(ready)
    for i in range(n):
        start = time.perf_counter()
        if i:
            tally.waiting.append(start - t_ready)
        image_id = win.browser.current_id()
        review_image(r, reference_masks(win.session.db, image_id), mode, vertices, threshold)
        r.key(Qt.Key_Return, Qt.ControlModifier)
        QApplication.processEvents()
        tally.acting.append(time.perf_counter() - start)
        done_ids.append(image_id)
        if (i + 1) % 10 == 0:
            print(f"  {mode}: {i + 1}/{n} images", file=sys.stderr)
        t_ready = time.perf_counter()
        if i < n - 1:
            wait_until(lambda left=image_id: win.browser.current_id() != left and ready(),
                       what=lambda: (win.browser.current_id(), win.annot.image_id,
                                     win.annot.heatmap_id, win.annot_errors[-3:],
                                     win.status_text.text()))  # fmt: skip
    wait_until(lambda: win.tasks.pool.activeThreadCount() == 0, 120)
    db = win.session.db
    ious, problems = [], []
    for image_id in done_ids:
        ed = Editor(db, image_id, REVIEWER)
        mine = [x for x in load_regions(db, image_id) if x.reviewer == REVIEWER]
        if any(x.proposed for x in mine):  # an unreviewed proposal left: not reviewed
            problems.append(image_id)
            continue
        if ed.review_status()[0] != "done" or sorted(x.structure for x in mine) != sorted(
            s for s, _ in STRUCTURES
        ):
            problems.append(image_id)
            continue
        ref = reference_masks(db, image_id)
        for x in mine:
            a, b = x.mask(), ref[x.structure]
            ious.append((a & b).sum() / max((a | b).sum(), 1))
    errors = list(win.annot_errors)
    win.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"mode": mode, "n": n, "tally": tally, "ious": ious, "problems": problems,
            "errors": errors}  # fmt: skip


def smart_costs(photo: Path, repeats: int = 3) -> list[str]:
    """Median seconds of the smart tools' worker steps on a real photo, as is and 4x larger."""
    import cv2

    from fundus_review.data.images import load_image
    from fundus_review.data.masks_io import load_mask
    from fundus_review.review.grabcut import GrabCutError, box_region
    from fundus_review.review.livewire import LiveWire

    cv2.setNumThreads(1)
    small = load_image(photo)
    disc_file = photo.parents[1] / "masks" / "optic_disc" / f"{photo.stem}.png"
    if disc_file.is_file():  # the box goes around the optic disc
        rows, cols = np.nonzero(load_mask(disc_file, small.shape[:2]))
        disc = (cols.min() - 10, rows.min() - 10, cols.max() + 11, rows.max() + 11)
    else:
        h, w = small.shape[:2]
        disc = (w * 0.45, h * 0.45, w * 0.55, h * 0.58)
    lines = []
    for f in (1, 4):
        rgb = small if f == 1 else cv2.resize(small, None, fx=f, fy=f)
        h, w = rgb.shape[:2]
        box = tuple(v * f for v in disc)
        times: dict[str, list[float]] = {"prepare": [], "anchor": [], "path": [], "grabcut": []}
        for _ in range(repeats):
            t = time.perf_counter()
            wire = LiveWire(rgb)
            times["prepare"].append(time.perf_counter() - t)
            t = time.perf_counter()
            wire.set_anchor(w * 0.5, h * 0.5)
            times["anchor"].append(time.perf_counter() - t)
            t = time.perf_counter()
            wire.path_to(w * 0.6, h * 0.6)
            times["path"].append(time.perf_counter() - t)
            t = time.perf_counter()
            with contextlib.suppress(GrabCutError):
                box_region(rgb, box)
            times["grabcut"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        lines.append(
            f"  {photo.name} x{f} ({w}x{h}): scissors prepare {med['prepare']:.3f} s, "
            f"anchor (cost map) {med['anchor']:.3f} s, path to the mouse "
            f"{med['path'] * 1000:.2f} ms; GrabCut box around the disc "
            f"({box[2] - box[0]:.0f}x{box[3] - box[1]:.0f} px) "
            f"{med['grabcut']:.3f} s"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="demo set size (built once in --home)")
    ap.add_argument("--images", type=int, default=60, help="review the first N images")
    ap.add_argument("--modes", default="ellipse,box,polygon,proposals")
    ap.add_argument("--vertices", type=int, default=12, help="polygon mode: clicks per outline")
    ap.add_argument("--threshold", type=float, default=0.85,
                    help="proposals mode: the Dice a proposal needs to be accepted as is")  # fmt: skip
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "fr_review_flow")
    ap.add_argument("--photo", type=Path,
                    default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "idrid_seg"
                    / "images" / "IDRiD_01.jpg", help="real photo for the smart tools' costs")  # fmt: skip
    ap.add_argument("--rebuild", action="store_true", help="rebuild the demo database")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["FUNDUS_REVIEW_HOME"] = str(args.home / "app_home")
    os.environ.setdefault("FUNDUS_REVIEW_CACHE", str(args.home / "cache"))
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from fundus_review.cli.demo import demo_bundles, demo_paths, run_demo

    t0 = time.perf_counter()
    data, db = demo_paths(args.home)[:2]
    if not db.is_file() or args.rebuild:
        run_demo(args.n, home=args.home, quiet=True, report=False, trust_sample=0)
    print(f"demo database ready in {time.perf_counter() - t0:.1f} s: {db}", file=sys.stderr)
    app = QApplication.instance() or QApplication([])
    pg.setConfigOption("mouseRateLimit", -1)  # synthetic mouse moves come faster than 100/s
    results = []
    for mode in args.modes.split(","):
        res = run_mode(mode, data, db, demo_bundles()[0], args.images, args.vertices,
                       args.threshold)  # fmt: skip
        results.append(res)
        print(f"{mode}: reviewed {res['n']} images", file=sys.stderr)
    del app
    print(f"\nscripted review of the demo set ({args.images} images max), reviewer {REVIEWER!r}, "
          f"{os.cpu_count()} CPUs, QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}")  # fmt: skip
    head = ("mode", "images", "keys/img", "mouse/img", "actions/img", "act s/img", "wait s/img",
            "total s/img", "IoU mean [min]", "fallbacks", "failed")  # fmt: skip
    print("  ".join(f"{h:>14}" for h in head))
    bad = 0
    for res in results:
        t, n = res["tally"], res["n"]
        act, wait = statistics.median(t.acting), statistics.median(t.waiting or [0.0])
        total = (sum(t.acting) + sum(t.waiting)) / n
        iou = f"{np.mean(res['ious']):.3f} [{np.min(res['ious']):.3f}]" if res["ious"] else "-"
        cells = (res["mode"], n, f"{t.keys / n:.1f}", f"{t.gestures / n:.1f}",
                 f"{(t.keys + t.gestures) / n:.1f}", f"{act:.3f}", f"{wait:.3f}", f"{total:.3f}",
                 iou, t.fallbacks, len(res["problems"]))  # fmt: skip
        print("  ".join(f"{c!s:>14}" for c in cells))
        bad += len(res["problems"])
        if t.proposing:
            acc = ", ".join(f"{k} {v}/{n}" for k, v in sorted(t.accepted.items())) or "none"
            print(f"    {res['mode']}: accepted as proposed: {acc}; Shift+P to proposals shown "
                  f"{statistics.median(t.proposing):.2f} s (median)")  # fmt: skip
        for e in sorted(set(res["errors"]))[:5]:
            print(f"    {res['mode']}: message shown: {e}")
    if args.photo.is_file():
        print("smart tools' worker steps (medians of 3, one OpenCV thread):")
        print("\n".join(smart_costs(args.photo)))
    print("keys/img and mouse/img include the one Ctrl+E of the whole run spread over the images; "
          "act/wait: medians; total: mean wall time per image")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
