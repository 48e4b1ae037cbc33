"""The report folder is written as one unit: a reader never sees files of two runs together.

Every file is written into a staging folder next to the target (``<out>.tmp-<pid>-<token>``,
same volume, so renames are atomic). Only when all of them are complete, the earlier report is
renamed aside (``<out>.old-<pid>-<token>``), the staging folder renamed into its place and the
earlier one deleted. A run killed while writing leaves only its staging folder, and one killed
between the two renames leaves the earlier report aside: the next run deletes the first and puts
the second back before it starts. Because the whole folder is replaced, a folder holding
anything besides report files is refused instead of emptied.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fundus_review.errors import FundusReviewError
from fundus_review.report.files import REPORT_FILES

# What a report folder may hold: the report's files, the ".part" files an older version of
# this writer left when it was killed, and what file browsers drop into any folder they show.
_REPORT_NAMES = frozenset(REPORT_FILES.values())
_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_LEFTOVER = re.compile(r"^(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def _is_report_file(name: str) -> bool:
    return name in _REPORT_NAMES or name in _CLUTTER or name.removesuffix(".part") in _REPORT_NAMES


def check_target(out: Path) -> Path:
    """The folder the report will replace (absolute, links resolved); FundusReviewError when it
    is a file, the current folder or above it, or holds anything that is not a report file."""
    target = Path(out).expanduser().resolve()
    # Replacing the current folder (or one above it) would pull the floor from under the caller.
    if target.parent == target or _holds_cwd(target):
        raise FundusReviewError(
            f"{out}: write the report into a folder of its own, e.g. {out}/report"
        )
    if target.exists() and not target.is_dir():
        raise FundusReviewError(f"{out} is a file; the report needs a folder")
    if target.is_dir():
        try:
            names = [p.name for p in target.iterdir()]
        except OSError as exc:
            raise FundusReviewError(f"cannot read the report folder {out}: {exc}") from exc
        foreign = sorted(n for n in names if not _is_report_file(n))
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise FundusReviewError(
                f"{out} holds files that are not part of a report ({listed}); the report replaces "
                "its folder as a whole, so choose a new or empty folder or an earlier report's"
            )
    return target


def _holds_cwd(target: Path) -> bool:
    try:
        return Path.cwd().resolve().is_relative_to(target)
    except OSError:  # the current folder was deleted: it lies inside nothing
        return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # no side-effect-free check there; a live writer would only fail
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_leftovers(target: Path) -> None:
    """Delete what killed earlier runs left next to ``target``; an earlier report they had set
    aside and not replaced goes back into place. Folders of runs still going are kept. Best
    effort: what cannot be removed now is tried again by the next run."""
    try:
        _clean(target)
    except OSError:
        pass


def _clean(target: Path) -> None:
    if not target.parent.is_dir():
        return
    olds: list[Path] = []
    for p in target.parent.iterdir():
        m = _LEFTOVER.match(p.name)
        if m is None or m["name"] != target.name or not p.is_dir() or _alive(int(m["pid"])):
            continue
        if m["kind"] == "tmp":  # never complete: its run died before the swap
            shutil.rmtree(p, ignore_errors=True)
        else:
            olds.append(p)
    if olds and not target.exists():
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        newest.rename(target)
        olds.remove(newest)
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends normally it becomes ``out`` (replacing
    an earlier report as one unit), and when it raises it is deleted and ``out`` is untouched."""
    target = Path(out).expanduser().resolve()
    clean_leftovers(target)
    target = check_target(out)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    stage = target.parent / f"{target.name}.tmp-{token}"
    try:
        stage.mkdir(parents=True)
    except OSError as exc:
        raise FundusReviewError(f"cannot write the report next to {out}: {exc}") from exc
    try:
        yield stage
        _swap(stage, out, target.parent / f"{target.name}.old-{token}")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap(stage: Path, out: Path, aside: Path) -> None:
    target = check_target(out)  # again: files may have been added while the report was computed
    if not target.exists():
        stage.rename(target)
        return
    try:
        target.rename(aside)
    except OSError as exc:
        raise FundusReviewError(
            f"{out}: cannot replace the earlier report ({exc}); close its files and try again"
        ) from exc
    try:
        stage.rename(target)
    except BaseException:
        aside.rename(target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
