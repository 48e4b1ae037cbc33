"""The seeded image sample of the costly trust checks (randomisation, faithfulness).

An image is in the sample of size n when its key (the image's content hash) is among the n
smallest values of sha256(seed:key). This depends on neither the order images are listed in nor
on which other images exist: adding images to a dataset only swaps in images that rank better,
and every check run with the same seed uses the same images, so their results pair up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DEFAULT_SAMPLE = 50


def rank_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{int(seed)}:{key}".encode()).hexdigest()


def seeded_sample(keys: Iterable[str], n: int | None, seed: int = 0) -> list[str]:
    """The ``n`` keys of smallest rank (all when ``n`` is None or larger), in rank order;
    duplicate keys count once."""
    unique = sorted(set(keys), key=lambda k: rank_key(seed, k))
    if n is not None and n < 0:
        raise ValueError(f"sample size must be >= 0, got {n}")
    return unique if n is None else unique[:n]
