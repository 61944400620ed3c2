"""SHA-256 of input files (label files, body models, detector checkpoints), streamed and cached.

A file's hash is cached by (resolved path, size, mtime in ns) in a JSON file (the store
fingerprint's `paths.hash_cache`), so a rerun does not read gigabytes again; a file rewritten in
place gets a new mtime and is hashed again. The cache is replaced whole (temporary file + rename):
two runs that write it at once lose at most an entry, never the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

BLOCK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


class HashCache:
    """`hash(path)`: the file's SHA-256 hex digest, from the cache when (size, mtime) match;
    `hash_tree(path)`: a file's hash, or one over every file of a directory (relative names and
    their hashes). `save()` writes the cache back when it changed."""

    def __init__(self, cache_file: str | Path | None) -> None:
        self.path = Path(cache_file) if cache_file else None
        self.entries: dict[str, list] = {}
        self.changed = False
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):  # a damaged cache is only a slower run
                self.entries = {}

    def hash(self, path: str | Path) -> str:
        real = Path(path).resolve()
        stat = real.stat()
        key, stamp = str(real), [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(key)
        if entry is not None and entry[:2] == stamp:
            return entry[2]
        digest = _sha256(real)
        self.entries[key] = stamp + [digest]
        self.changed = True
        return digest

    def hash_tree(self, path: str | Path) -> str:
        path = Path(path)
        if not path.is_dir():
            return self.hash(path)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        text = repr([(str(p.relative_to(path)), self.hash(p)) for p in files])
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
        tmp.replace(self.path)
        self.changed = False
