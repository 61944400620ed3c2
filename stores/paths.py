"""Where a store lives: the one rule from a dataset name to its Zarr group under `paths.stores`."""
from __future__ import annotations

from pathlib import Path


def store_path(stores_root: str | Path, name: str) -> Path:
    """`<stores_root>/<name>.zarr`, the store of dataset split `name`."""
    return Path(stores_root) / f"{name}.zarr"


def resolve_store(entry: str | Path, stores_root: str | Path) -> Path:
    """A store given by path (a `.zarr` name or an existing path), else by dataset name."""
    path = Path(entry)
    if path.suffix == ".zarr" or path.exists():
        return path
    return store_path(stores_root, str(entry))
