"""store.repo_import: listing a folder inserts its images in one statement, and survives a race."""

from __future__ import annotations

from sqlalchemy import event

from fundus_review.store import repo, repo_import
from fundus_review.store.db import open_database


def test_listed_images_go_in_with_one_executemany(tmp_path):
    db = open_database(tmp_path / "x.db")
    inserts: list[tuple[bool, int]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT INTO IMAGES"):
            inserts.append((executemany, len(parameters) if executemany else 1))

    with db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "ds")
        rels = [f"img{i:04d}.png" for i in range(500)]
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            states = repo_import.insert_listed_images(s, ds.id, rels)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
    assert inserts == [(True, 500)]  # not 500 single inserts (seconds for a real clinic folder)
    assert sorted(st[1] for st in states) == rels
    assert all(st[2] is None and st[3] is None for st in states)  # size and hash still unread
    db.close()


def test_images_another_writer_inserted_first_are_kept_and_the_rest_added(tmp_path):
    db = open_database(tmp_path / "x.db")
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "ds")
        theirs = repo.upsert_image(s, ds, "b.png", 10, 8, "a" * 64)
        theirs_id = theirs.id
    with db.session() as s:
        states = repo_import.insert_listed_images(s, ds.id, ["a.png", "b.png", "c.png"])
    by_rel = {rel: (i, sha) for i, rel, sha, _stamp in states}
    assert sorted(by_rel) == ["a.png", "b.png", "c.png"]
    assert by_rel["b.png"] == (theirs_id, "a" * 64)  # the other writer's row, untouched
    with db.session(read_only=True) as s:
        assert [img.rel_path for img in repo.dataset_images(s, ds)] == ["a.png", "b.png", "c.png"]
    db.close()
