"""The fixed words of the review: region kinds, review statuses and verdicts.

Plain tuples, so the schema (which checks stored values against them) and the window (which
offers them as choices) share one definition without the window importing the database.
"""

from __future__ import annotations

from collections.abc import Sequence

ANNOTATION_KINDS = ("mask", "ellipse", "polygon", "brush", "point")
REVIEW_STATUSES = ("unreviewed", "in_progress", "done", "flagged")
VERDICTS = ("yes", "partly", "no")

# Where a region came from (``Annotation.source``). A segmenter's proposal is stored as
# "proposed:<segmenter>" and is NOT an expert region until the reviewer accepts it (source
# "accepted-proposal:<segmenter>") or edits it ("edited-proposal:<segmenter>"); every consumer of
# expert regions (scores, report, CDR, exports, the viewer's outlines) leaves unreviewed
# proposals out.
PROPOSED_PREFIX = "proposed:"
ACCEPTED_PREFIX = "accepted-proposal:"
EDITED_PREFIX = "edited-proposal:"
PROVENANCES = ("drawn", "imported", "accepted-proposal", "edited-proposal", "proposed", "other")


def provenance(source: str) -> str:
    """The provenance class of a region's ``source``: one of ``PROVENANCES``."""
    if source == "drawn":
        return "drawn"
    if source.startswith(("import:", "labelme:")):
        return "imported"
    for prefix in (ACCEPTED_PREFIX, EDITED_PREFIX, PROPOSED_PREFIX):
        if source.startswith(prefix):
            return prefix[:-1]
    return "other"


def is_unreviewed_proposal(source: str) -> bool:
    return source.startswith(PROPOSED_PREFIX)


def proposal_model(source: str) -> str | None:
    """The segmenter named in a proposal's source (proposed, accepted or edited), else None."""
    for prefix in (PROPOSED_PREFIX, ACCEPTED_PREFIX, EDITED_PREFIX):
        if source.startswith(prefix):
            return source[len(prefix) :]
    return None


# A multi-label head (card `score = "multilabel"`, one sigmoid per label) predicts every label
# whose probability reaches this.
MULTILABEL_THRESHOLD = 0.5


def predicted_labels(probs: Sequence[float], classes: Sequence[str]) -> list[str]:
    """A multi-label prediction: the labels with p >= 0.5, most probable first."""
    order = sorted(range(len(classes)), key=lambda k: -float(probs[k]))
    return [classes[k] for k in order if float(probs[k]) >= MULTILABEL_THRESHOLD]


__all__ = [
    "ACCEPTED_PREFIX",
    "MULTILABEL_THRESHOLD",
    "ANNOTATION_KINDS",
    "EDITED_PREFIX",
    "PROPOSED_PREFIX",
    "PROVENANCES",
    "REVIEW_STATUSES",
    "VERDICTS",
    "is_unreviewed_proposal",
    "predicted_labels",
    "proposal_model",
    "provenance",
]
