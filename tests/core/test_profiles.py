"""The profile rule (core/profiles.py) and the input-file hash cache (core/file_hashes.py)."""
import hashlib
import os

import pytest

from core.file_hashes import HashCache
from core.profiles import is_real, load_config_for, profile_given


def _profile(overrides, names):
    return load_config_for(overrides, lambda cfg: names).profile


@pytest.mark.parametrize("names, expected", [
    (["bedlam"], "paper"), (["emdb"], "paper"), (["3dpw-test"], "paper"), (["real"], "paper"),
    (["synthetic-train", "agora"], "paper"),        # one real dataset is enough
    (["synthetic"], "synthetic"), (["synthetic-test"], "synthetic"),
    (["no-such-name"], "synthetic"),                # the command itself reports unknown names
])
def test_a_real_dataset_selects_the_paper_profile(names, expected, capsys):
    assert _profile([], names) == expected
    notice = capsys.readouterr().err
    assert ("profile=paper" in notice) == (expected == "paper")


def test_a_given_profile_always_wins():
    assert _profile(["profile=synthetic"], ["bedlam"]) == "synthetic"
    assert _profile(["profile=paper"], ["synthetic-test"]) == "paper"
    assert profile_given([" profile =synthetic"]) and not profile_given(["train.run=profile"])


def test_real_means_outside_the_synthetic_world(tmp_path):
    world = f"synthetic.root={tmp_path}/synthetic"
    cfg = load_config_for([world, f"real_data_root={tmp_path}/real"], lambda c: [])
    assert is_real(cfg, "bedlam") and not is_real(cfg, "synthetic-train")
    # a real entry pointed into the generated world is synthetic data
    inside = load_config_for([world, f"real_data_root={tmp_path}/synthetic/x"], lambda c: [])
    assert not is_real(inside, "bedlam")


def test_the_paper_profile_names_vitpose_and_the_real_body_models(tmp_path):
    cfg = load_config_for([f"real_data_root={tmp_path}"], lambda c: ["bedlam"])
    assert cfg.precompute.detector.name == "vitpose"
    assert cfg.precompute.detector.options.checkpoint == \
        f"{tmp_path}/checkpoints/vitpose-h-multi-coco.pth"
    assert cfg.body.models == f"{tmp_path}/body_models"
    assert list(cfg.train.stores) == ["bedlam", "agora", "3dpw-train"]


def test_file_hash_is_sha256_and_cached_by_size_and_mtime(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"a" * 3_000_000)  # several read blocks
    cache_file = tmp_path / "cache" / "hashes.json"
    cache = HashCache(cache_file)
    assert cache.hash(path) == hashlib.sha256(b"a" * 3_000_000).hexdigest()
    cache.save()
    stat = path.stat()
    path.write_bytes(b"b" * 3_000_000)  # same size; the old mtime put back: the cache answers
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert HashCache(cache_file).hash(path) == hashlib.sha256(b"a" * 3_000_000).hexdigest()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    assert HashCache(cache_file).hash(path) == hashlib.sha256(b"b" * 3_000_000).hexdigest()


def test_directory_hash_covers_every_file(tmp_path):
    (tmp_path / "ckpt" / "sub").mkdir(parents=True)
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    (tmp_path / "ckpt" / "sub" / "model.safetensors").write_bytes(b"1")
    cache = HashCache(None)
    before = cache.hash_tree(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "sub" / "model.safetensors").write_bytes(b"2")
    assert HashCache(None).hash_tree(tmp_path / "ckpt") != before
