"""Dataset readers: each turns a dataset's own files into normalised `LabelRows`."""
from . import agora, bedlam, emdb, threedpw
from .agora import read_agora
from .bedlam import read_bedlam
from .emdb import read_emdb
from .threedpw import read_3dpw

READERS = {"bedlam": read_bedlam, "emdb": read_emdb, "agora": read_agora, "3dpw": read_3dpw}
MASK_RULES = {"bedlam": bedlam.MASK_RULE, "emdb": emdb.MASK_RULE, "agora": agora.MASK_RULE,
              "3dpw": threedpw.MASK_RULE}

__all__ = ["MASK_RULES", "READERS", "read_3dpw", "read_agora", "read_bedlam", "read_emdb"]
