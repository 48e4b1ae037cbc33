"""Listing a dataset folder: which files are photographs, with the `stat` fields the store keeps.

`list_images` walks and stats in this process (the CLI, tests). `list_images_in_child` runs the
very same function in a child interpreter and reads its result back as one compact blob: the
review window lists on a worker thread, and 100,000 `stat`s plus their sort are Python work that
shares the GIL with the UI thread (UI waits of up to 0.6 s measured at 100,000 images, beside the
row loading on a loaded 2-core machine). Decoding the blob is a few short C calls (one `decode`,
one `split`, one `array.frombytes`); the records are then built in Python loops, which let other
threads run between their steps.
"""

from __future__ import annotations

import heapq
import os
import struct
import subprocess
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fundus_review.data.images import IMAGE_EXTENSIONS
from fundus_review.errors import DatasetError

__all__ = ["FileStat", "Listing", "list_images", "list_images_in_child"]

MASKS_DIR_NAME = "masks"

# Photographs in formats we do not decode: worth telling the user, unlike a stray notes.txt.
_UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {".gif", ".webp", ".heic", ".heif", ".dcm", ".dicom", ".jp2", ".j2k", ".ppm", ".pgm"}
    | {".dng", ".nef", ".cr2", ".raw"}
)
_SKIPPED_DIRS = frozenset({"__macosx", "$recycle.bin", "@eadir"})

# The blob: a header of four byte lengths, then the rel paths (NUL-separated, file system
# encoding), the stats (int64, 4 per file), the problems (path NUL reason NUL ...). NUL cannot
# occur in a POSIX or Windows file name, and surrogateescape round-trips undecodable names.
_HEADER = struct.Struct("<4q")
_MAGIC = b"FRLIST1\n"


class FileStat(NamedTuple):
    """The `os.stat_result` fields a file's stamp is made of (`app.identify.file_stamp`)."""

    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_ino: int


@dataclass
class Listing:
    """Photographs under a root, sorted by path parts, and the files skipped with a reason."""

    rel_paths: list[str]  # POSIX, relative to the root
    stats: list[FileStat]  # one per rel path
    problems: list[tuple[str, str]]  # (full path, reason), sorted


def list_images(root: str | os.PathLike[str]) -> Listing:
    """Every photograph under `root`, recursively; hidden entries and the root's masks/ skipped.

    os.scandir and plain strings: pathlib objects per entry cost more than the file system does.
    """
    found: list[tuple[str, FileStat]] = []
    problems: list[tuple[str, str]] = []
    pending = [(str(root), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            problems.append((folder, f"cannot list folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():  # a symlink to a folder is not followed (cycles)
                    if not entry.is_symlink() and _wanted_dir(name, at_root=not prefix):
                        pending.append((entry.path, f"{prefix}{name}/"))
                    continue
            except OSError as exc:  # a link to itself: neither file nor folder
                problems.append(
                    (entry.path, f"cannot read ({exc.strerror or exc}); fix or remove this link")
                )
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                try:
                    st = entry.stat()
                except OSError as exc:
                    problems.append((entry.path, f"cannot read file ({exc.strerror or exc})"))
                    continue
                if st.st_size == 0:
                    problems.append((entry.path, "empty file (0 bytes)"))
                    continue
                stat = FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                found.append((prefix + name, stat))
            elif ext in _UNSUPPORTED_IMAGE_EXTENSIONS:
                problems.append(
                    (entry.path, f"unsupported image format {ext}; convert it to PNG, JPEG or TIFF")
                )
    found = _sorted_in_slices(found, key=lambda f: f[0].split("/"))
    problems.sort()
    return Listing([rel for rel, _ in found], [st for _, st in found], problems)


def _sorted_in_slices(items: list, key, size: int = 4096) -> list:
    """``sorted(items, key=key)`` (stable, the same order) without holding the GIL for long.

    One ``list.sort`` of 100,000 records compares keys in C for a few hundred milliseconds on a
    loaded machine, and no other Python thread runs meanwhile. Sorting slices and merging them in
    Python (``heapq.merge``, stable across slices in their order) lets other threads in between
    (a listing in this process, e.g. the CLI's, beside a progress display).
    """
    if len(items) <= size:
        return sorted(items, key=key)
    slices = [sorted(items[i : i + size], key=key) for i in range(0, len(items), size)]
    return list(heapq.merge(*slices, key=key))


def _wanted_dir(name: str, at_root: bool) -> bool:
    low = name.lower()
    return low not in _SKIPPED_DIRS and not (at_root and low == MASKS_DIR_NAME)


# --- the child process -----------------------------------------------------------------------


def encode_listing(listing: Listing) -> bytes:
    """The listing as one blob (see `_HEADER`); `decode_listing` reverses it exactly."""
    paths = "\0".join(listing.rel_paths).encode("utf-8", "surrogateescape")
    stats = array("q", [v for st in listing.stats for v in st]).tobytes()
    problems = "\0".join(s for pair in listing.problems for s in pair)
    problems_b = problems.encode("utf-8", "surrogateescape")
    n = len(listing.rel_paths)
    return (
        _MAGIC
        + _HEADER.pack(n, len(paths), len(stats), len(problems_b))
        + paths
        + stats
        + problems_b
    )


def decode_listing(blob: bytes) -> Listing:
    """The listing `encode_listing` wrote; ValueError when `blob` is not one, or is cut short."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _HEADER.size:
        raise ValueError("not a folder listing")
    at = len(_MAGIC)
    n, n_paths, n_stats, n_problems = _HEADER.unpack_from(blob, at)
    at += _HEADER.size
    if len(blob) != at + n_paths + n_stats + n_problems or n_stats != 32 * n:
        raise ValueError("truncated folder listing")
    rel_paths = blob[at : at + n_paths].decode("utf-8", "surrogateescape").split("\0") if n else []
    flat = array("q")
    flat.frombytes(blob[at + n_paths : at + n_paths + n_stats])
    # A Python loop rather than one C call over 100,000 items: other threads run between steps.
    stats = [FileStat(*flat[i : i + 4]) for i in range(0, len(flat), 4)]
    texts = blob[at + n_paths + n_stats :].decode("utf-8", "surrogateescape").split("\0")
    problems = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    if len(rel_paths) != n:
        raise ValueError("folder listing: path count does not match")
    return Listing(rel_paths, stats, problems)


def list_images_in_child(root: str | os.PathLike[str]) -> Listing:
    """`list_images(root)` run in a child interpreter (see the module docstring).

    A child that cannot start, crashes or returns garbage raises `DatasetError` saying so (the
    database is untouched: nothing was recorded yet).
    """
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    # The child must import this very checkout, whatever the installed package points at.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-c", _CHILD, os.fspath(root)]
    try:
        done = subprocess.run(cmd, capture_output=True, env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot start the folder listing ({exc})") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise DatasetError(
            f"{root}: listing the folder failed (helper process exit {done.returncode}: "
            f"{detail[0]})"
        )
    try:
        return decode_listing(done.stdout)
    except ValueError as exc:
        raise DatasetError(f"{root}: listing the folder failed ({exc})") from exc


# Lowers its priority before any import: the listing is background work, and on a busy machine
# the window waiting for it must keep the CPU (start-up and imports included). On an idle machine
# it runs at full speed anyway.
_CHILD = (
    "import os, sys\n"
    "if hasattr(os, 'nice'): os.nice(10)\n"
    "from fundus_review.data.listing import _main\n"
    "sys.exit(_main(sys.argv[1:]))\n"
)


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m fundus_review.data.listing ROOT", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(encode_listing(list_images(argv[0])))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
