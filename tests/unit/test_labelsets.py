"""labelsets: the shipped structures, user-added structures that persist, and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fundus_review.review.labelsets import (
    LabelSetError,
    add_user_structure,
    default_label_set_path,
    generated_color,
    load_label_set,
    normalize_structure_name,
    read_label_set_file,
)

SHIPPED = [
    "optic_disc", "optic_cup", "macula_fovea", "hemorrhage", "microaneurysm",
    "hard_exudate", "soft_exudate", "other",
]  # fmt: skip


def test_shipped_set_has_the_clinical_structures_with_colours_and_tools(tmp_path: Path) -> None:
    ls = load_label_set(user_path=tmp_path / "none.json")
    assert ls.names() == SHIPPED
    assert ls["optic_disc"].tool == "ellipse" and ls["optic_disc"].color == (255, 230, 0)
    assert ls["macula_fovea"].tool == "point"
    assert ls["hemorrhage"].hex_color == "#ff2828"
    assert len({s.color for s in ls.structures}) == len(SHIPPED)  # all distinguishable
    assert default_label_set_path().is_file()


def test_user_structures_persist_across_loads(tmp_path: Path) -> None:
    user = tmp_path / "home" / "user.json"
    sd = add_user_structure("Drusen", color="#00ff80", tool="brush", user_path=user)
    assert sd.name == "drusen" and sd.origin == "user" and sd.color == (0, 255, 128)
    add_user_structure("laser scar", tool="polygon", user_path=user)
    again = load_label_set(user_path=user)
    assert again.names() == [*SHIPPED, "drusen", "laser_scar"]
    assert again["drusen"].tool == "brush" and again["laser_scar"].origin == "user"
    # Redefining a user structure replaces it, never duplicates it.
    add_user_structure("drusen", color="#102030", user_path=user)
    assert load_label_set(user_path=user)["drusen"].color == (16, 32, 48)
    assert json.loads(user.read_text())["version"] == 1


def test_shipped_names_cannot_be_redefined_and_bad_input_is_explained(tmp_path: Path) -> None:
    user = tmp_path / "user.json"
    with pytest.raises(LabelSetError, match="already exists"):
        add_user_structure("Optic Disc", user_path=user)
    with pytest.raises(LabelSetError, match="lower-case letters"):
        add_user_structure("../etc", user_path=user)
    with pytest.raises(LabelSetError, match="tool must be one of"):
        add_user_structure("scar", tool="lasso", user_path=user)
    with pytest.raises(LabelSetError, match="colour"):
        add_user_structure("scar", color="red", user_path=user)
    assert not user.exists()


def test_broken_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("structures = 3\n")
    with pytest.raises(LabelSetError, match="bad.toml"):
        read_label_set_file(bad)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"structures": [{"name": "a"}, {"name": "A"}]}))
    with pytest.raises(LabelSetError, match="listed twice"):
        read_label_set_file(dup)


def test_database_only_structures_get_stable_generated_colours(tmp_path: Path) -> None:
    ls = load_label_set(user_path=tmp_path / "none.json").with_names(["optic_disc", "vessels"])
    assert ls.names()[-1] == "vessels" and ls["vessels"].origin == "database"
    assert ls["vessels"].color == generated_color("vessels") == generated_color("vessels")
    assert normalize_structure_name("  Hard  Exudate ") == "hard_exudate"
