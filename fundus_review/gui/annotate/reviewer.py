"""Who is drawing: asked once, remembered in the settings, changeable at any time."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QInputDialog, QWidget

from fundus_review.review.editor import known_reviewers
from fundus_review.store.db import Database

SETTINGS_KEY = "annotate/reviewer"


def clean_name(text: str | None) -> str | None:
    name = " ".join(str(text or "").split())
    return name or None


def saved_reviewer(settings: QSettings) -> str | None:
    return clean_name(settings.value(SETTINGS_KEY))


def ask_reviewer(
    parent: QWidget | None,
    settings: QSettings,
    db: Database | None = None,
    current: str | None = None,
) -> str | None:
    """Ask for the reviewer's name (known names offered); saves and returns it, None if cancelled."""
    names = known_reviewers(db) if db is not None else []
    current = current or saved_reviewer(settings)
    if current and current not in names:
        names.insert(0, current)
    index = names.index(current) if current in names else 0
    text, ok = QInputDialog.getItem(
        parent,
        "Reviewer",
        "Your name as it should appear on your regions and verdicts\n"
        "(other reviewers' regions stay read-only for you):",
        names,
        index,
        True,
    )
    name = clean_name(text) if ok else None
    if name:
        settings.setValue(SETTINGS_KEY, name)
    return name


def ensure_reviewer(
    parent: QWidget | None, settings: QSettings, db: Database | None = None
) -> str | None:
    """The saved reviewer, asking only the first time."""
    return saved_reviewer(settings) or ask_reviewer(parent, settings, db)
