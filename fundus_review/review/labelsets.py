"""Label sets: the structures experts draw (name, title, colour, default tool).

The shipped set lives in ``resources/label_sets/default.toml``. Structures a user adds in the app
are kept in a small JSON file in the user's data folder, so they survive restarts and apply to
every database; structures that only exist in a database (imported masks of another lab, another
reviewer's additions) are shown too, with a stable generated colour (``LabelSet.with_names``).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fundus_review.atomic import atomic_write_text
from fundus_review.errors import FundusReviewError
from fundus_review.paths import REPO_ROOT, data_home

TOOLS = ("ellipse", "polygon", "brush", "point")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
USER_FILE_VERSION = 1


class LabelSetError(FundusReviewError):
    """A label-set file or a new structure is not usable."""


@dataclass(frozen=True)
class StructureDef:
    name: str
    title: str
    color: tuple[int, int, int]
    tool: str = "polygon"
    point_radius: float = 0.0
    origin: str = "default"  # "default" | "user" | "database"

    @property
    def hex_color(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass(frozen=True)
class LabelSet:
    structures: tuple[StructureDef, ...]

    def names(self) -> list[str]:
        return [s.name for s in self.structures]

    def get(self, name: str) -> StructureDef | None:
        return next((s for s in self.structures if s.name == name), None)

    def __getitem__(self, name: str) -> StructureDef:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __len__(self) -> int:
        return len(self.structures)

    def with_names(self, names: list[str] | set[str] | tuple[str, ...]) -> LabelSet:
        """This set plus an entry for every unknown name (e.g. structures found in a database)."""
        extra = [
            StructureDef(n, n.replace("_", " ").capitalize(), generated_color(n), origin="database")
            for n in sorted(set(names))
            if self.get(n) is None
        ]
        return LabelSet(self.structures + tuple(extra))


def normalize_structure_name(text: str) -> str:
    """'Optic Disc ' -> 'optic_disc'. Raises LabelSetError for names unusable as folder names."""
    name = re.sub(r"[\s]+", "_", str(text).strip().lower())
    if not _NAME.match(name):
        raise LabelSetError(
            f"structure name {text!r}: use 1-64 lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit (it becomes a folder name in mask exports)"
        )
    return name


def generated_color(name: str) -> tuple[int, int, int]:
    """A stable, saturated colour derived from the name (same on every machine)."""
    hue = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and _COLOR.match(value):
        return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(c, int) and 0 <= c <= 255 for c in value)
    ):
        return int(value[0]), int(value[1]), int(value[2])
    raise LabelSetError(f"{where}: colour must be '#rrggbb' or [r, g, b], got {value!r}")


def _structure(entry: Any, where: str, origin: str) -> StructureDef:
    if not isinstance(entry, dict) or "name" not in entry:
        raise LabelSetError(f"{where}: every structure needs at least a 'name'")
    name = normalize_structure_name(entry["name"])
    tool = entry.get("tool", "polygon")
    if tool not in TOOLS:
        raise LabelSetError(
            f"{where}: structure {name!r}: tool must be one of {TOOLS}, got {tool!r}"
        )
    radius = entry.get("point_radius", 0)
    if not isinstance(radius, int | float) or radius < 0:
        raise LabelSetError(f"{where}: structure {name!r}: point_radius must be a number >= 0")
    color = parse_color(entry["color"], f"{where}: {name}") if "color" in entry else None
    return StructureDef(
        name=name,
        title=str(entry.get("title") or name.replace("_", " ").capitalize()),
        color=color or generated_color(name),
        tool=tool,
        point_radius=float(radius),
        origin=origin,
    )


def default_label_set_path() -> Path:
    return REPO_ROOT / "resources" / "label_sets" / "default.toml"


def user_label_set_path() -> Path:
    return data_home() / "label_sets" / "user.json"


def read_label_set_file(path: str | Path, origin: str = "default") -> list[StructureDef]:
    """Structures of a ``.toml`` or ``.json`` label-set file ({"structures": [...]})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelSetError(f"{path}: label-set file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelSetError(f"{path}: cannot read the label-set file ({exc})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise LabelSetError(f"{path}: not a valid label-set file ({exc})") from None
    entries = data.get("structures") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LabelSetError(f"{path}: expected a list 'structures'")
    out: list[StructureDef] = []
    for i, entry in enumerate(entries):
        sd = _structure(entry, f"{path} (structure {i + 1})", origin)
        if any(o.name == sd.name for o in out):
            raise LabelSetError(f"{path}: structure {sd.name!r} is listed twice")
        out.append(sd)
    return out


def load_label_set(path: str | Path | None = None, user_path: str | Path | None = None) -> LabelSet:
    """The shipped (or given) label set followed by the user's own structures.

    A user structure with a shipped name is ignored (the shipped definition wins, so colours stay
    consistent between colleagues). A broken user file raises LabelSetError naming it.
    """
    base = read_label_set_file(path or default_label_set_path(), "default")
    user_file = Path(user_path) if user_path is not None else user_label_set_path()
    user = read_label_set_file(user_file, "user") if user_file.is_file() else []
    known = {s.name for s in base}
    return LabelSet(tuple(base + [u for u in user if u.name not in known]))


def add_user_structure(
    name: str,
    title: str | None = None,
    color: str | tuple[int, int, int] | None = None,
    tool: str = "polygon",
    point_radius: float = 0.0,
    *,
    label_set: LabelSet | None = None,
    user_path: str | Path | None = None,
) -> StructureDef:
    """Add (or redefine) a user structure and persist it atomically; returns its definition."""
    user_file = Path(user_path) if user_path is not None else user_label_set_path()
    entry: dict[str, Any] = {"name": name, "tool": tool, "point_radius": point_radius}
    if title:
        entry["title"] = title
    if color is not None:
        entry["color"] = color if isinstance(color, str) else list(color)
    sd = _structure(entry, "new structure", "user")
    current = label_set if label_set is not None else load_label_set(user_path=user_file)
    existing = current.get(sd.name)
    if existing is not None and existing.origin == "default":
        raise LabelSetError(f"structure {sd.name!r} already exists in the shipped label set")
    users = read_label_set_file(user_file, "user") if user_file.is_file() else []
    users = [u for u in users if u.name != sd.name] + [sd]
    payload = {
        "version": USER_FILE_VERSION,
        "structures": [
            {**{k: v for k, v in asdict(u).items() if k != "origin"}, "color": u.hex_color}
            for u in users
        ],
    }
    atomic_write_text(user_file, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return replace(sd, origin="user")
