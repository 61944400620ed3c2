"""Deterministic random streams keyed by names, never by Python's salted `hash`.

Two key digests, kept because changing either would change every stream drawn from it:
`stable_seed` / `rng_for` (BLAKE2b, 64 bits; data order, augmentation, heatmap sampling, the
synthetic layouts, training steps) and `rng_for_text` (SHA-256, 128 bits; the simulated
detector's per-crop stream).
"""
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


def rng_for_text(text: str) -> np.random.Generator:
    """A numpy Generator seeded by the first 128 bits (little-endian) of SHA-256(`text`)."""
    digest = hashlib.sha256(text.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))
