"""Dataset readers: each turns a dataset's own files into normalised `LabelRows`."""
from . import bedlam, emdb
from .bedlam import read_bedlam
from .emdb import read_emdb

READERS = {"bedlam": read_bedlam, "emdb": read_emdb}
MASK_RULES = {"bedlam": bedlam.MASK_RULE, "emdb": emdb.MASK_RULE}

__all__ = ["MASK_RULES", "READERS", "read_bedlam", "read_emdb"]
