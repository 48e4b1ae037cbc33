"""The fixed words of the review: region kinds, review statuses and verdicts.

Plain tuples, so the schema (which checks stored values against them) and the window (which
offers them as choices) share one definition without the window importing the database.
"""

from __future__ import annotations

ANNOTATION_KINDS = ("mask", "ellipse", "polygon", "brush", "point")
REVIEW_STATUSES = ("unreviewed", "in_progress", "done", "flagged")
VERDICTS = ("yes", "partly", "no")

__all__ = ["ANNOTATION_KINDS", "REVIEW_STATUSES", "VERDICTS"]
