"""Persistent settings (QSettings) with a schema version: a changed layout never breaks start-up."""

from __future__ import annotations

from PySide6.QtCore import QSettings

SETTINGS_SCHEMA = 1
ORG, APP = "fundus-review", "fundus-review"


def open_settings(settings: QSettings | None = None) -> QSettings:
    """The app's settings; stale ones (another schema version) are cleared, not misread."""
    s = settings if settings is not None else QSettings(ORG, APP)
    try:
        version = int(s.value("schema", 0))
    except (TypeError, ValueError):
        version = 0
    if version != SETTINGS_SCHEMA:
        s.clear()
        s.setValue("schema", SETTINGS_SCHEMA)
    return s


def get_str(s: QSettings, key: str) -> str | None:
    value = s.value(key)
    return str(value) if value not in (None, "") else None
