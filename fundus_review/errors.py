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
