"""Dataset readers: each turns a dataset's own files into normalised `LabelRows`."""
from .bedlam import read_bedlam
from .emdb import read_emdb

READERS = {"bedlam": read_bedlam, "emdb": read_emdb}

__all__ = ["READERS", "read_bedlam", "read_emdb"]
