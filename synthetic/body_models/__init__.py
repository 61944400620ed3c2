"""A SYNTHETIC body model in the exact SMPL / SMPL-X file layouts (not SMPL, not SMPL-X)."""
from .files import SYNTHETIC_NOTE, write_chumpy_pickle, write_synthetic_body_models

__all__ = ["SYNTHETIC_NOTE", "write_chumpy_pickle", "write_synthetic_body_models"]
