"""The viewer on a full-size fundus photograph: only the screen's part is uploaded, aligned."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF

from fundus_review.gui.viewer import ImageViewer
from fundus_review.views.overlays import Overlays


def _shown_value(item, x: float, y: float):
    """The uploaded pixel that the view shows at original coordinates (x, y)."""
    p = item.mapFromView(QPointF(x, y))
    return item.image[int(p.y()), int(p.x())]


def test_large_photo_and_heatmap_are_uploaded_per_screen_and_stay_aligned(qtbot):
    h, w = 2848, 4288
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = (xx // 16) % 256  # a value that tells where a pixel came from
    rgb[..., 1] = (yy // 16) % 256
    heat = ((xx // 16) % 256 / 255.0).astype(np.float32)
    v = ImageViewer()
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    qtbot.waitExposed(v)
    v.set_photo(rgb)
    v.set_overlays(Overlays(1, 1, heatmap=heat))
    v.fit()
    # Fitted: a coarse level, far fewer pixels than the 12 megapixels of the photo.
    assert v.photo_layer.window.k >= 2
    assert v.photo.image.size < rgb.size / 10
    assert v.heat_layer.window.k == v.photo_layer.window.k
    # Zoomed into the disc region: full resolution, but only around what is visible.
    v.view.setRange(xRange=(3000, 3200), yRange=(1400, 1540), padding=0)
    assert v.photo_layer.window.k == 0 and v.heat_layer.window.k == 0
    assert v.photo.image.shape[0] < 600 and v.photo.image.shape[1] < 600
    assert v.photo.image.flags.c_contiguous and v.photo.image.dtype == np.uint8
    for x, y in ((3010.5, 1405.5), (3190.5, 1530.5), (3100.5, 1470.5)):
        shown = _shown_value(v.photo, x, y)
        assert tuple(shown[:2]) == (int(x) // 16 % 256, int(y) // 16 % 256)
        assert _shown_value(v.heat, x, y) == heat[int(y), int(x)]
    # The hover read-out reads the full-resolution heatmap, not the upload.
    assert v.overlays.heatmap is heat
