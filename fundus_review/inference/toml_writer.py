"""A small TOML writer for model cards (tomllib reads TOML but the stdlib cannot write it).

Supports what cards hold: strings, booleans, integers, floats (incl. inf/nan), dates, lists of
those, nested tables and lists of tables (written inline). `None` values are skipped: TOML
has no null.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: object) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (\" \\ \n \uXXXX ...) are all valid TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _value(value.item())
    raise TypeError(f"cannot write a {type(value).__name__} to TOML: {value!r}")


def _table(doc: Mapping, prefix: str, out: list[str]) -> None:
    # TOML requires a table's plain keys before its sub-tables.
    subtables = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            subtables.append((key, value))
        else:
            out.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables:
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        out.append("")
        out.append(f"[{name}]")
        _table(value, name, out)


def dump_toml(doc: Mapping) -> str:
    out: list[str] = []
    _table(doc, "", out)
    return "\n".join(out) + "\n"
