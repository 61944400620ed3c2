"""One writer per store: `<name>.zarr.lock` beside the store, naming its holder.

The lock file is made complete in a private file and hard-linked into place (`link` fails when
the name exists, atomically, also on NFS), so it never exists half written. A lock whose holder
process is gone from this host is stale: it is taken over with a one-line notice, under an
exclusive `flock` of the store's folder and after re-reading it, so that two processes never both
take over one stale lock. A holder on another host is never presumed dead.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .schema import StoreError


class StoreLock:
    """`with StoreLock(store_path):` — hold the store's lock for the block, else StoreError."""

    def __init__(self, store_path: str | Path) -> None:
        store = Path(store_path)
        self.store = store
        self.path = store.with_name(store.name + ".lock")
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "process_start": _process_start(os.getpid()),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._bytes = json.dumps(self.holder).encode()

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._try_link():
                return self
            if not self._take_over_if_stale():
                break
        raise StoreError(f"{self.store} is being written by another precompute: {self.path} "
                         f"is held by {_describe(self._read())}; wait for it to finish (or, if "
                         "that process is gone, remove the lock file)")

    def __exit__(self, *exc) -> None:
        if self._read_bytes() == self._bytes:
            self.path.unlink(missing_ok=True)

    def _try_link(self) -> bool:
        private = self.path.with_name(f"{self.path.name}.{self.holder['host']}.{os.getpid()}")
        private.write_bytes(self._bytes)
        try:
            os.link(private, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            private.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> bool:
        """Remove the lock when its holder is dead (True: retry), under the folder's flock."""
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = self._read_bytes()
            if raw is None:
                return True  # released meanwhile
            holder = _parse(raw)
            if not _is_dead(holder):
                return False
            print(f"taking over the stale lock {self.path} of {_describe(holder)}",
                  file=sys.stderr)
            self.path.unlink()
            return True
        finally:
            os.close(fd)  # releases the flock

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _read(self) -> dict:
        raw = self._read_bytes()
        return {} if raw is None else _parse(raw)


def _parse(raw: bytes) -> dict:
    try:
        holder = json.loads(raw)
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
            f"{holder.get('started', '?')}")


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_dead(holder: dict) -> bool:
    """Whether the holder process is known to be gone: same host, and no such process (or the
    pid now belongs to a process started at another time)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = holder.get("process_start")
    return start is not None and _process_start(holder["pid"]) not in (None, start)
