"""Reading what a listed image is: its pixel size and content hash (the slow half of opening).

`importing.register_dataset` lists a folder into the database in well under a second; the rows it
adds have no size or hash yet (NULL). `identify_images` fills them in, in chunks that are each one
transaction, so a background pass can be cancelled or killed at any point without losing what
it already read. Anything that needs an image's size or hash calls it first for that image: it
costs one `stat` when the file has not changed since it was last read (git's rule: same size,
mtime, ctime and inode means same bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from fundus_review.data.images import file_sha256, image_size
from fundus_review.data.listing import FileStat
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo, repo_import
from fundus_review.store.db import Database

CHUNK = 200  # images per transaction: small enough that a cancel or a reader never waits long

Progress = Callable[[int, int], None]  # (done, total)


def file_stamp(st: os.stat_result | FileStat) -> str:
    # FileStat (a listing's) and os.stat_result (a fresh stat) must give the same stamp.
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def identify_images(
    db: Database,
    image_ids: Iterable[int],
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[tuple[str, str]]:
    """Make sure each image's width, height and sha256 describe the file now on disk.

    Files never read, or changed since they were read, are read (header + hash); the others cost
    a `stat`. A file that cannot be read is reported as (path, reason); a row that was never read
    successfully is then removed (it carries no results), while a row with results is kept as it
    was. Returns the problems; stops between chunks when `cancel()` is true.
    """
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    problems: list[tuple[str, str]] = []
    done = 0
    for start in range(0, len(ids), CHUNK):
        if cancel is not None and cancel():
            break
        chunk = ids[start : start + CHUNK]
        problems += _identify_chunk(db, chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, len(ids))
    return problems


def _identify_chunk(db: Database, ids: list[int]) -> list[tuple[str, str]]:
    with db.session(read_only=True) as s:
        rows = repo_import.image_files_to_check(s, ids)
    read: list[tuple[int, int, int, str, str]] = []
    failed: list[int] = []
    problems: list[tuple[str, str]] = []
    for image_id, root, rel_path, sha, stamp in rows:
        path = Path(root) / rel_path
        try:
            # stat before reading: a file rewritten during the read then looks changed next time.
            now = file_stamp(os.stat(path))
            if sha is not None and stamp == now:
                continue
            width, height = image_size(path)
            read.append((image_id, width, height, file_sha256(path), now))
        except FundusReviewError as exc:
            problems.append((str(path), str(getattr(exc, "reason", exc))))
            failed.append(image_id)
        except OSError as exc:
            problems.append((str(path), f"cannot read file: {exc.strerror or exc}"))
            failed.append(image_id)
    if read or failed:
        with db.session() as s:
            for image_id, width, height, sha, stamp in read:
                repo.set_image_identity(s, image_id, width, height, sha, stamp)
            repo.forget_unread_images(s, failed)
    return problems
