"""Shared test setup: no hub downloads, Qt offscreen, paths to the shared real data."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The user's own trusted-code allow-list must not change what the tests see.
os.environ.setdefault("FUNDUS_REVIEW_CONFIG", tempfile.mkdtemp(prefix="fundus-review-config-"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_trust_leaks():  # noqa: ANN202 - a fixture
    """A module one test allowed (--trust-code, grant) is not allowed in the next."""
    yield
    trust = sys.modules.get("fundus_review.inference.trust")
    if trust is not None:
        trust.revoke_all()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real fundus images with expert masks (../shared/data); tests skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


# Markers by where a test lives and what it imports, so the quick loop while developing is
# `pytest -m "not slow and not e2e and not gui"` (under a minute); `slow` itself is set by hand on tests over ~3 s here.
_TORCH_IMPORT = re.compile(
    r"^\s*(import torch|from torch|from fundus_review\.(inference|training)|"
    r"from fundus_review\.app\.analyze|from tests\.unit\.cam_models)",
    re.MULTILINE,
)
_FOLDER_MARKERS = {
    "gui": "gui",
    "e2e": "e2e",
    "reliability": "reliability",
    "postgres": "postgres",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    torch_files: dict[Path, bool] = {}
    for item in items:
        path = Path(item.path)
        folder = path.parent.name
        if folder in _FOLDER_MARKERS:
            item.add_marker(_FOLDER_MARKERS[folder])
        if path not in torch_files:
            torch_files[path] = bool(_TORCH_IMPORT.search(path.read_text(encoding="utf-8")))
        if torch_files[path]:
            item.add_marker("torch")
