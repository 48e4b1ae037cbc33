"""User-facing errors: each message names the file or bundle and what is wrong."""

from __future__ import annotations


class FundusReviewError(Exception):
    """Base class of every error meant to be shown to a user (CLI or GUI) as is."""


class ImageLoadError(FundusReviewError):
    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BundleError(FundusReviewError):
    """A model bundle is missing, malformed, or does not match its weights."""


class DatasetError(FundusReviewError):
    """A dataset folder, labels CSV or masks folder cannot be used."""


class StoreError(FundusReviewError):
    """The database cannot be opened, migrated or written."""


class WriteError(FundusReviewError, OSError):
    """A file could not be written (read-only folder, full disk); any earlier file is intact.

    Also an OSError, so code that already catches those (caches) keeps working.
    """

    def __init__(self, path: object, reason: str, errno: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        OSError.__init__(self, errno, reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
