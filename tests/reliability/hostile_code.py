"""A module a bundle's card names (`tests.reliability.hostile_code:make`).

Importing it writes the file named by $FUNDUS_REVIEW_TEST_MARKER, so a test can tell whether a
bundle managed to run it.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

_MARKER = os.environ.get("FUNDUS_REVIEW_TEST_MARKER")
if _MARKER:
    Path(_MARKER).write_text("imported", encoding="utf-8")


def make(num_classes: int = 2) -> nn.Module:
    """A tiny working classifier (so the trusted path can be checked end to end)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )
