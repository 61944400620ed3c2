"""`python -m preprocess precompute <real dataset name>` end to end.

A tiny synthetic world written with real_data_root's layout (docs/real_data.md: bedlam/, agora/,
3dpw/, emdb/ and body_models/) stands in for the downloaded datasets; the real entries of
pipelines.yaml (bedlam, agora, 3dpw-train, 3dpw-test, emdb) read it through `real_data_root=…`.
Broken inputs fail before any work, naming the file or key; pickles are read only from inside
the configured dataset root, and as data only.
"""
import contextlib
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from dask.distributed import LocalCluster

from core.config import load_config
from preprocess import __main__ as cli
from preprocess import precompute as precompute_module
from preprocess.readers import read_3dpw, read_emdb
from synthetic import world
from stores.schema import KEPT
from stores.store import Store
from stores.verify import verify

REAL = ["bedlam", "agora", "3dpw-train", "3dpw-test", "emdb"]
DIRECTORIES = {"bedlam": "bedlam", "agora": "agora", "3dpw-train": "3dpw", "3dpw-test": "3dpw",
               "emdb": "emdb"}
TINY_WORLD = [
    "synthetic.bedlam.folders=[part_a]", "synthetic.bedlam.sequences_per_folder=2",
    "synthetic.bedlam.frames_per_sequence=3",
    "synthetic.emdb.subjects=1", "synthetic.emdb.sequences_per_subject=2",
    "synthetic.emdb.frames_per_sequence=8",
    "synthetic.agora.sequences_per_folder=1", "synthetic.agora.frames_per_sequence=2",
    "synthetic.threedpw.sequences_per_split=1", "synthetic.threedpw.frames_per_sequence=6",
]
FITS = "datasets.3dpw-train.smplx_fits=smplx_fits/train.npz"  # as docs/real_data.md says


@pytest.fixture(scope="module")
def real_root(tmp_path_factory, body_models):
    """<tmp>/real laid out as real_data_root: the four datasets and the body models."""
    root = tmp_path_factory.mktemp("real_data") / "real"
    cfg = load_config(TINY_WORLD + [f"synthetic.root={root}"])
    world.generate_world(cfg.synthetic, body_models, workers=2)
    shutil.copytree(body_models, root / "body_models")
    return root


@pytest.fixture(scope="module")
def scheduler():
    """One in-process Dask cluster for every run of the module (`cluster.address=…`)."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _overrides(real_root, data_root, scheduler):
    # profile=synthetic: the synthetic detector reads the fake tree's side-cars (a real name
    # alone selects the paper profile's ViTPose, tests/test_card_commands.py)
    return ["profile=synthetic", f"real_data_root={real_root}",
            f"body.models={real_root}/body_models", f"data_root={data_root}",
            "precompute.chunk_rows=16", f"cluster.address={scheduler}"]


def _cli(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["precompute", *args])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def stores(real_root, scheduler, tmp_path_factory):
    """Every real name precomputed through the CLI, one command per name."""
    data_root = tmp_path_factory.mktemp("data")
    outputs = {}
    for name in REAL:
        code, out = _cli(name, *_overrides(real_root, data_root, scheduler), FITS)
        assert code == 0, out
        outputs[name] = out
    return data_root / "stores", outputs


def _sequences(directory):
    out = {}
    for path in sorted(directory.glob("*.pkl")):
        with path.open("rb") as f:
            out[path.stem] = pickle.load(f, encoding="latin1")
    return out


def _expected_rows(root: Path) -> dict[str, int]:
    """Row counts computed from the files themselves, by each dataset's rule."""
    with np.load(root / "bedlam/processed_labels/part_a.npz") as f:
        bedlam = int(len(f["imgname"]) * 0.8)  # datasets.bedlam.train_fraction
    agora = 0
    for name in ("agora-bfh", "agora-body"):
        with np.load(root / f"agora/processed_labels/{name}.npz") as f:
            agora += len(f["imgname"])
    pw3d = {split: sum(int(v.sum()) for seq in _sequences(
        root / "3dpw/sequenceFiles" / split).values() for v in seq["campose_valid"])
        for split in ("train", "test")}
    emdb = 0
    for path in root.glob("emdb/P*/*/P*_data.pkl"):
        with path.open("rb") as f:
            data = pickle.load(f)
        emdb += int(np.sum(data["good_frames_mask"])) if data["emdb1"] else 0
    return {"bedlam": bedlam, "agora": agora, "3dpw-train": pw3d["train"],
            "3dpw-test": pw3d["test"], "emdb": emdb}


def test_real_names_precompute_to_complete_stores(stores, real_root):
    path, outputs = stores
    expected = _expected_rows(real_root)
    kinds = {"bedlam": "smplx", "agora": "smplx", "3dpw-train": "smplx", "3dpw-test": "smpl",
             "emdb": "smpl"}
    splits = {"bedlam": "train", "agora": "train", "3dpw-train": "train", "3dpw-test": "test",
              "emdb": "test"}
    for name in REAL:
        report = verify(path / f"{name}.zarr")
        assert report.complete, str(report)
        assert "COMPLETE" in outputs[name]
        store = Store(path / f"{name}.zarr")
        assert store.n_rows == expected[name] > 0, name
        attrs = store.attrs
        assert attrs["dataset"] == name and attrs["split"] == splits[name]
        assert attrs["root"] == str((real_root / DIRECTORIES[name]).resolve())
        assert attrs["source_files"]  # the label files are hashed
        labels = store.labels()
        assert labels.body_model == kinds[name], name
        assert all((Path(attrs["root"]) / image).exists() for image in labels.image)
        reasons = store.read("status/reason")
        if splits[name] == "test":
            assert (reasons == KEPT).all(), name  # no filter on test splits
        else:
            assert (reasons == KEPT).mean() > 0.5, name
        kps = store.read("detector/keypoints")
        assert np.isfinite(kps[reasons == KEPT]).all()
    assert not (Path(__file__).resolve().parents[2] / "data" / "stores" / "bedlam.zarr").exists()


def test_rerun_of_a_real_name_resumes(stores, real_root, scheduler):
    path, _ = stores
    code, out = _cli("agora", *_overrides(real_root, path.parent, scheduler))
    assert code == 0 and "(0 run now)" in out


def _broken_root(real_root, tmp_path, dataset):
    """A real_data_root whose `dataset` is a private copy (to break), the rest linked."""
    root = tmp_path / "real"
    root.mkdir()
    for entry in real_root.iterdir():
        if entry.name == dataset:
            shutil.copytree(entry, root / entry.name)
        else:
            (root / entry.name).symlink_to(entry)
    return root


def _drop_key_npz(path, key):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != key}
    np.savez(path, **arrays)


def _drop_key_pickle(path, key, encoding="ASCII"):
    with path.open("rb") as f:
        data = pickle.load(f, encoding=encoding)
    del data[key]
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=2)


def _break_bedlam(root):
    path = root / "bedlam/processed_labels/part_a.npz"
    _drop_key_npz(path, "gtkps")
    return KeyError, [str(path), "'gtkps'"]


def _break_agora_masks(root):
    shutil.rmtree(root / "agora/masks")
    return FileNotFoundError, ["AGORA mask directory", str(root / "agora/masks")]


def _break_3dpw_pickle(root):
    path = root / "3dpw/sequenceFiles/test/synthetic_test_00.pkl"
    _drop_key_pickle(path, "cam_poses", "latin1")
    return KeyError, [str(path), "'cam_poses'"]


def _break_3dpw_images(root):
    path = root / "3dpw/imageFiles/synthetic_train_00"
    shutil.rmtree(path)
    return FileNotFoundError, ["synthetic_train_00.pkl", str(path)]


def _break_3dpw_fits(root):
    path = root / "3dpw/smplx_fits/train.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "synthetic_train_00/betas"}
    np.savez(path, **arrays)
    return KeyError, [str(path), "'synthetic_train_00/betas'"]


def _break_emdb(root):
    path = next(root.glob("emdb/P0/01_synthetic/P0_01_synthetic_data.pkl"))
    with path.open("rb") as f:
        data = pickle.load(f)
    del data["camera"]["extrinsics"]
    with path.open("wb") as f:
        pickle.dump(data, f)
    return KeyError, [str(path), "'camera.extrinsics'"]


BROKEN = {  # name → (dataset directory, how to break it)
    "bedlam": ("bedlam", _break_bedlam),
    "agora": ("agora", _break_agora_masks),
    "3dpw-test": ("3dpw", _break_3dpw_pickle),
    "3dpw-train": ("3dpw", _break_3dpw_images),
    "3dpw-train-fits": ("3dpw", _break_3dpw_fits),
    "emdb": ("emdb", _break_emdb),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_missing_file_or_key_fails_before_work_naming_it(case, real_root, scheduler, tmp_path,
                                                         monkeypatch):
    directory, breaker = BROKEN[case]
    root = _broken_root(real_root, tmp_path, directory)
    error, needles = breaker(root)

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(precompute_module, "dask_client", no_work)
    name = case.removesuffix("-fits")
    with pytest.raises(error) as info:
        _cli(name, *_overrides(root, tmp_path / "data", scheduler), FITS)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    assert not (tmp_path / "data" / "stores" / f"{name}.zarr").exists()


# ---------------------------------------------------------------- pickles: inside the root only


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickles_are_read_only_from_inside_the_dataset_root(real_root, body_models, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    source = real_root / "3dpw/sequenceFiles/test/synthetic_test_00.pkl"
    shutil.copy(source, outside / "elsewhere.pkl")
    root = tmp_path / "3dpw"
    (root / "sequenceFiles/test").mkdir(parents=True)
    (root / "imageFiles").mkdir()
    (root / "imageFiles/elsewhere").symlink_to(real_root / "3dpw/imageFiles/synthetic_test_00")
    link = root / "sequenceFiles/test/elsewhere.pkl"
    link.symlink_to(outside / "elsewhere.pkl")
    with pytest.raises(ValueError, match="outside the dataset root"):
        read_3dpw(root, body_models)
    link.unlink()
    shutil.copy(outside / "elsewhere.pkl", link)  # the same file inside the root reads
    assert len(read_3dpw(root, body_models)) > 0
    # the whole dataset root may itself be a link (e.g. to a big disk): it is resolved once
    (tmp_path / "linked").symlink_to(root)
    assert len(read_3dpw(tmp_path / "linked", body_models)) > 0


def test_pickles_are_read_as_data_only(real_root, body_models, tmp_path):
    marker = tmp_path / "pwned"
    source = real_root / "emdb/P0/01_synthetic"
    root = tmp_path / "emdb"
    shutil.copytree(source, root / "P0/01_synthetic")
    path = root / "P0/01_synthetic/P0_01_synthetic_data.pkl"
    with path.open("rb") as f:
        data = pickle.load(f)
    data["name"] = _Payload(marker)
    with path.open("wb") as f:
        pickle.dump(data, f)
    with pytest.raises(pickle.UnpicklingError, match=r"P0_01_synthetic_data\.pkl.*posix\.mkdir"):
        read_emdb(root, body_models)
    assert not marker.exists()
