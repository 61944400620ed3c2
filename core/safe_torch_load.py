"""Code-free reading of torch checkpoint files: `torch.load(weights_only=True)`, one-line refusals.

torch's weights-only unpickler rebuilds tensors and plain containers and refuses every other
global; the caller may allow a few more (`extra_globals`: callables, or (stand-in,
"module.name") pairs). A file that needs anything else, or cannot be read at all (truncated, not
a torch file), raises the caller's user-error class with one line naming the file and the global
or the reason, never torch's advice to load it unsafely.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from core.errors import BadFileError


def load_weights_only(path: str | Path, extra_globals: Iterable = (),
                      error: type[Exception] = BadFileError,
                      allow_list: str = "torch's weights-only loading") -> Any:
    """The object in the torch file `path` (on the CPU); `error` in one line when the file
    pickles a global outside torch's allow-list and `extra_globals` (`allow_list` names them in
    the message), or when it is unreadable."""
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL (\S+)", text)
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        what = (f"it pickles {found.group(1)}" if found else
                detail.group(1).strip() if detail else text.strip().splitlines()[-1])
        raise error(f"{path}: refusing to load: {what}, which is not on the allow-list of "
                    f"{allow_list} (no code from checkpoints runs)") from None
    except Exception as err:  # a damaged file fails anywhere in torch's readers
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise error(f"{path}: unreadable checkpoint (truncated or not a torch file): "
                    f"{reason}") from None
