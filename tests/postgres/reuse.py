"""Run an existing SQLite test module's tests again against PostgreSQL."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def reused(module: ModuleType, *, replaced: set[str]) -> dict[str, Any]:
    """The module's ``test_*`` functions and its fixtures except ``replaced`` (by name).

    Put into a test module's globals, pytest collects them there, and their fixture requests
    (``db``, ``db_path``) resolve to that module's PostgreSQL versions instead of SQLite files.
    """
    out: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name in replaced or not callable(value):
            continue
        is_fixture = hasattr(value, "_fixture_function_marker")  # pytest >= 8.4
        if name.startswith("test_") or is_fixture:
            out[name] = value
    return out
