"""core/durable.py: crash-safe writes."""
import numpy as np

from core.durable import fsync_path, save_npz_replacing


def test_save_npz_replacing_swaps_in_the_whole_new_file(tmp_path):
    path = tmp_path / "labels.npz"
    save_npz_replacing(path, {"a": np.arange(3)})
    assert save_npz_replacing(path, {"b": np.ones(2)}) == path
    with np.load(path) as data:
        assert list(data) == ["b"] and data["b"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["labels.npz"]  # no temporary left
    fsync_path(path)
    fsync_path(tmp_path)
