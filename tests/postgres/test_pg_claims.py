"""Work claims on PostgreSQL: two analyze runs at once, each with its own connections, share
the images (no image computed twice, every image computed), and the claim primitives behave as
on SQLite (``INSERT ... ON CONFLICT DO NOTHING``, conditional takeover, server clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit import test_work_claims as on_sqlite


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


@pytest.mark.slow
def test_two_concurrent_runs_split_the_images_on_postgresql(
    pg_url: str, tmp_path: Path, monkeypatch
) -> None:
    on_sqlite.two_runs_split_the_images(tmp_path, pg_url, monkeypatch)


def test_claim_primitives_on_postgresql(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    on_sqlite.claim_primitives(tmp_path, pg_url)
