"""Drawing expert regions and reviewing heatmaps in the review application (issue 6).

Public pieces: ``AnnotationController`` (the tools on a pyqtgraph ViewBox), ``AnnotationPanel``
(its side panel), ``install_actions`` (keyboard shortcuts on the main window) and
``ensure_reviewer``/``ask_reviewer`` (who is drawing). See each module's docstring.

Wiring into a window that shows a photo in a pyqtgraph ViewBox (image pixel (i, j) at
[j, j+1) x [i, i+1), like ``gui.viewer.ImageViewer.view``)::

    reviewer = ensure_reviewer(window, settings, db)            # asked once, then remembered
    ctl = AnnotationController(viewer.view, db, reviewer=reviewer, parent=window)
    panel = AnnotationPanel(ctl, settings)                      # put it in a dock or a tab
    actions = install_actions(ctl, window)                      # window-wide shortcuts, F1 help
    ctl.stored.connect(<re-score, refresh rows>)                # an edit/undo/redo was committed
    ctl.error.connect(<show the message>); ctl.message.connect(<status bar>)
    ctl.set_image(image_id, (height, width))                   # whenever another image is shown
    ctl.set_heatmap(annotating.heatmap_id_for(db, run_id, image_id))  # the heatmap judged
    ctl.set_database(other_db)                                 # when another database is opened
    ctl.set_enabled(False); ctl.set_outlines_visible(False)    # while the host draws regions
    ctl.shutdown()                                             # when the window closes

The review app does exactly this in ``gui/window_annotate.py``.

Exports are resolved lazily: tools that walk the package tree (the architecture test imports
every package to list its modules) must not pull Qt in by importing this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TOOL_NAMES": "controller",
    "AnnotationController": "controller",
    "AnnotationPanel": "panel",
    "install_actions": "actions",
    "set_actions_enabled": "actions",
    "ask_reviewer": "reviewer",
    "ensure_reviewer": "reviewer",
    "saved_reviewer": "reviewer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
