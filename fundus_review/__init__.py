"""fundus_review: check whether a fundus-image classifier looks where it should."""

__version__ = "0.1.0"
