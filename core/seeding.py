"""Deterministic random streams keyed by names, never by Python's salted `hash`."""
from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*keys: object) -> int:
    """A 64-bit seed that depends only on the printed `keys`."""
    digest = hashlib.blake2b("\x1f".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng_for(*keys: object) -> np.random.Generator:
    """A numpy Generator for the stream named by `keys` (e.g. seed, dataset, row)."""
    return np.random.default_rng(stable_seed(*keys))
