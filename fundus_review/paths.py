"""Where the app keeps its own files when the user does not say (XDG conventions)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_home() -> Path:
    """User data folder: $FUNDUS_REVIEW_HOME, else $XDG_DATA_HOME/fundus_review, else ~/.local/share."""
    explicit = os.environ.get("FUNDUS_REVIEW_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "fundus_review"


def default_db() -> Path:
    return data_home() / "fundus_review.db"


def config_home() -> Path:
    """User settings folder (the trusted-code allow-list): $FUNDUS_REVIEW_CONFIG, else
    $XDG_CONFIG_HOME/fundus_review, else ~/.config/fundus_review."""
    explicit = os.environ.get("FUNDUS_REVIEW_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "fundus_review"


def cache_dir() -> Path:
    """Disposable caches (field-of-view masks, thumbnails): safe to delete at any time."""
    explicit = os.environ.get("FUNDUS_REVIEW_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fundus_review"


def shipped_models_dir() -> Path:
    """The `models/` folder of shipped bundles (repository checkout / editable install)."""
    return REPO_ROOT / "models"
