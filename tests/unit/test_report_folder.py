"""report.folder: the report folder is replaced as one unit, never emptied of foreign files,
and what a killed run left beside it is cleaned up by the next one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fundus_review.errors import FundusReviewError
from fundus_review.report.folder import check_target, clean_leftovers, staged_folder


def _report(folder: Path, text: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"report.html": f"<p>{text}</p>", "scores.csv": f"run\n{text}\n"}
    for name, content in files.items():
        (folder / name).write_text(content)
    return files


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def _dead_pid() -> int:
    """The pid of a process that has exited (so its leftovers count as abandoned)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_the_new_report_replaces_the_earlier_one_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "report"
    _report(out, "first")
    (out / "report.pdf").write_text("first pdf")  # the new run writes no PDF: it must not stay
    with staged_folder(out) as stage:
        assert stage.parent == tmp_path and not (out / "x").exists()
        second = _report(stage, "second")
        assert _contents(out)["report.html"] == "<p>first</p>"  # untouched until complete
    assert _contents(out) == second
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_failure_while_writing_keeps_the_earlier_report_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    first = _report(out, "first")
    with pytest.raises(RuntimeError, match="disk full"), staged_folder(out) as stage:
        _report(stage, "second")
        (stage / "report.pdf.part").write_text("half")
        raise RuntimeError("disk full")
    assert _contents(out) == first
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_new_folder_is_created_with_its_parents(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "report"
    with staged_folder(out) as stage:
        written = _report(stage, "only")
    assert _contents(out) == written


def test_stale_staging_folders_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "report"
    first = _report(out, "first")
    stale = tmp_path / f"report.tmp-{_dead_pid()}-0badc0de"
    _report(stale, "killed half way")
    (stale / "report.pdf.part").write_text("half")
    live = tmp_path / "report.tmp-1-0123abcd"  # pid 1 never exits: a run still going
    live.mkdir()
    other = tmp_path / f"elsewhere.tmp-{_dead_pid()}-0badc0de"  # another folder's: not ours
    other.mkdir()
    clean_leftovers(out.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report", live.name, other.name])
    assert _contents(out) == first


def test_a_report_set_aside_by_a_killed_swap_comes_back(tmp_path: Path) -> None:
    # Killed between "earlier report aside" and "new one in": the earlier one is put back.
    aside = tmp_path / f"report.old-{_dead_pid()}-0badc0de"
    first = _report(aside, "first")
    clean_leftovers((tmp_path / "report").resolve())
    assert _contents(tmp_path / "report") == first
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_leftovers_are_cleaned_by_the_next_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    _report(out, "first")
    _report(tmp_path / f"report.tmp-{_dead_pid()}-0badc0de", "killed")
    _report(tmp_path / f"report.old-{_dead_pid()}-0badc0de", "older")
    with staged_folder(out) as stage:
        second = _report(stage, "second")
    assert _contents(out) == second
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_folder_with_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "documents"
    _report(out, "first")
    (out / "thesis.docx").write_text("years of work")
    with pytest.raises(FundusReviewError, match=r"not part of a report \(thesis.docx\)"):
        check_target(out)
    with pytest.raises(FundusReviewError, match="thesis.docx"), staged_folder(out):
        pytest.fail("must not start")
    assert (out / "thesis.docx").read_text() == "years of work"
    assert [p.name for p in tmp_path.iterdir()] == ["documents"]


def test_earlier_leftovers_and_finder_clutter_do_not_count_as_foreign(tmp_path: Path) -> None:
    out = tmp_path / "report"
    _report(out, "first")
    (out / "report.pdf.part").write_text("from an older version, killed")
    (out / ".DS_Store").write_text("")
    assert check_target(out) == out.resolve()


def test_a_file_the_filesystem_root_and_the_current_folder_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "report").write_text("a file")
    with pytest.raises(FundusReviewError, match="is a file"):
        check_target(tmp_path / "report")
    with pytest.raises(FundusReviewError, match="folder of its own"):
        check_target(Path("/"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FundusReviewError, match="folder of its own"):
        check_target(Path("."))
    with pytest.raises(FundusReviewError, match="folder of its own"):
        check_target(tmp_path.parent)


def test_a_link_to_a_report_folder_replaces_the_folder_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _report(real, "first")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with staged_folder(link) as stage:
        second = _report(stage, "second")
    assert link.is_symlink() and _contents(real) == second
