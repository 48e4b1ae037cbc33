"""The error every part of the CAM engine raises.

Its own module because the method records (cam_methods.py) import the formulas and the single
pass that raise it, so it cannot live in either without an import circle.
"""

from __future__ import annotations

from fundus_review.errors import FundusReviewError


class CamError(FundusReviewError):
    """A CAM cannot be computed for this model, layer, batch or target."""
