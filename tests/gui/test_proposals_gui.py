"""The Annotate tab's proposed disc and cup: Shift+P proposes on a worker thread, the proposals
are drawn dash-dotted with a label and are no expert regions; A accepts them; Ctrl+Z undoes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from fundus_review.app.importing import register_dataset
from fundus_review.app.proposals import DEFAULT_SEGMENTER
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.gui.annotate.proposals import proposal_tool
from fundus_review.inference.segmenter import CARD_FILE
from fundus_review.store import open_database, repo
from tests.gui.test_annotate import Window

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEFAULT_SEGMENTER / CARD_FILE).is_file(), reason="the shipped segmenter is not built"
    ),
]


@pytest.fixture
def demo_win(qtbot, tmp_path: Path, isolated, settings):  # noqa: ANN001
    data = write_demo_dataset(tmp_path / "demo", n=2, seed=5, size=(384, 384), lesions=False)
    db = open_database(tmp_path / "p.db")
    reg = register_dataset(db, data)
    image_id = reg.image_ids[sorted(reg.image_ids)[0]]
    w = Window(db, image_id, "Dr. Rao", shape=(384, 384), settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.fit((384, 384))
    w.db, w.image_id = db, image_id
    yield w
    proposal_tool(w.c).wait()
    w.c.detach()
    db.close()


def test_propose_then_accept_by_key_and_undo(qtbot, demo_win) -> None:  # noqa: ANN001
    w = demo_win
    tool = proposal_tool(w.c)
    with qtbot.waitSignal(tool.finished, timeout=60000) as got:
        qtbot.keyClick(w, Qt.Key_P, Qt.ShiftModifier)
    assert got.args == [True], w.errors
    proposed = [r for r in w.c.regions if r.proposed]
    assert {r.structure for r in proposed} >= {"optic_disc"}
    assert all(r.source.startswith("proposed:segmenter-disc-cup") for r in proposed)
    # drawn distinctly: dash-dotted outline and a "proposed" label; listed as unreviewed
    for r in proposed:
        assert w.c.outlines.items[r.id].opts["pen"].style() == Qt.DashDotLine
        assert w.c.outlines.labels[r.id].toPlainText().startswith("proposed")
    texts = [w.panel.region_list.item(i).text() for i in range(w.panel.region_list.count())]
    assert all("proposed (unreviewed)" in t for t in texts)
    with w.db.session() as s:  # not an expert region yet
        assert repo.structure_mask(s, w.image_id, "optic_disc", w.c.editor.reviewer_id) is None

    qtbot.keyClick(w, Qt.Key_A)
    assert not any(r.proposed for r in w.c.regions)
    assert all(r.source.startswith("accepted-proposal:") for r in w.c.regions)
    assert w.c.outlines.labels == {}
    with w.db.session() as s:
        assert repo.structure_mask(s, w.image_id, "optic_disc", w.c.editor.reviewer_id).any()

    w.c.undo_group.undo()  # accepting is one undoable edit
    assert {r.id for r in w.c.regions if r.proposed} == {r.id for r in proposed}
    w.c.undo_group.undo()  # and so is proposing
    assert w.c.regions == []
    assert w.errors == []
