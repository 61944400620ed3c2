"""No code runs from a data file: crafted body models, dataset pickles and checkpoints whose
unpickling would create a marker directory are refused, the marker never appears, and the error
names the file and the forbidden `module.name`; legitimate files still load."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from body.__main__ import main as body_main
from body.models import load_smpl, load_smplx, load_smplx2smpl, read_model_file, smplx_path
from core.cli import run_cli
from core.config import load_config
from core.safe_pickle import UnsafePickleError, load_pickle
from train.model import load_model
from preprocess.readers.files import load_dataset_pickle
from train.checkpoint import CheckpointError, read_checkpoint, resume_point, save_checkpoint
from train.checkpoints_external import load_reference_checkpoint

FORBIDDEN = "posix.mkdir"  # what os.mkdir pickles as on Linux


class Payload:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture
def root(body_models, tmp_path):
    """A writable copy of the synthetic body-model root."""
    return shutil.copytree(body_models, tmp_path / "body_models")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload_ran"
    yield path
    assert not path.exists(), "the payload ran"


def _poison_pickle(path, marker, key):
    data = load_pickle(path, encoding="latin1") if path.exists() else {}
    data[key] = Payload(marker)
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=2)


def test_crafted_smpl_pickle_is_refused_naming_file_and_class(root, marker):
    path = root / "smpl/SMPL_NEUTRAL.pkl"
    with path.open("wb") as f:
        pickle.dump({"v_template": Payload(marker)}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=rf"SMPL_NEUTRAL\.pkl.*{FORBIDDEN}"):
        load_smpl(root)


def test_body_convert_refuses_a_crafted_pickle_in_one_line(root, marker, tmp_path, capsys):
    src, dst = root / "smpl/SMPL_MALE.pkl", tmp_path / "out.npz"
    assert body_main(["convert", str(src), str(dst)]) == 0  # the legitimate chumpy pickle
    assert read_model_file(dst)["v_template"].shape == (6890, 3)
    dst.unlink()
    capsys.readouterr()
    with src.open("wb") as f:
        pickle.dump({"f": np.zeros(3), "J": Payload(marker)}, f, protocol=2)
    assert run_cli(body_main, ["convert", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "SMPL_MALE.pkl" in err and FORBIDDEN in err
    assert not dst.exists()


def test_crafted_object_array_in_smplx_npz_names_file_key_and_class(root, marker):
    path = smplx_path(root)
    data = dict(np.load(path))
    data["evil"] = np.array([Payload(marker)], dtype=object)
    np.savez(path, **data)
    with pytest.raises(UnsafePickleError,
                       match=rf"SMPLX_NEUTRAL\.npz \(key 'evil'\).*{FORBIDDEN}"):
        load_smplx(root)


def test_a_pickle_named_npz_is_refused(root, marker):
    path = smplx_path(root)
    with path.open("wb") as f:
        pickle.dump({"v_template": Payload(marker)}, f)
    with pytest.raises(ValueError, match=r"SMPLX_NEUTRAL\.npz: not a readable \.npz"):
        load_smplx(root)


def test_official_style_object_arrays_read_and_smplx_never_unpickles(root, monkeypatch):
    """The official SMPL-X .npz holds dicts as object arrays (`part2num`): they read as data,
    and smplx, handed the data, never calls np.load(allow_pickle=True) on the file."""
    path = smplx_path(root)
    data = dict(np.load(path))
    np.savez(path, **data, part2num=np.array({"head": 15}, dtype=object))
    assert read_model_file(path)["part2num"].item() == {"head": 15}
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    model = load_smplx(root)
    assert calls and not any(calls)  # our reads only, all without pickles
    assert model.v_template.shape == (10475, 3)
    np.testing.assert_allclose(model.v_template.numpy(), data["v_template"], atol=1e-6)


def test_crafted_smplx2smpl_is_refused(root, marker):
    path = root / "smplx2smpl.pkl"
    with path.open("wb") as f:
        pickle.dump({"matrix": Payload(marker)}, f)
    with pytest.raises(UnsafePickleError, match=rf"smplx2smpl\.pkl.*{FORBIDDEN}"):
        load_smplx2smpl(root)


def test_upstream_smplx2smpl_with_sparse_matrix_still_loads(root):
    matrix = load_smplx2smpl(root)  # csr_matrix inside, as scipy pickles it
    assert matrix.shape == (6890, 10475)
    assert torch.allclose(torch.sparse.sum(matrix, 1).to_dense(), torch.ones(6890))


def test_old_scipy_module_paths_resolve(tmp_path):
    """Pickles from old scipy name `scipy.sparse.csc.csc_matrix`; it reads as today's class."""
    import scipy.sparse

    blob = pickle.dumps({"J": scipy.sparse.csc_matrix(np.eye(3))}, protocol=2)
    blob = blob.replace(b"scipy.sparse._csc", b"scipy.sparse.csc")
    (tmp_path / "old.pkl").write_bytes(blob)
    loaded = load_pickle(tmp_path / "old.pkl")["J"]
    assert scipy.sparse.issparse(loaded) and np.array_equal(loaded.toarray(), np.eye(3))


def test_crafted_dataset_pickle_is_refused(tmp_path, marker):
    root = tmp_path / "3dpw"
    (root / "sequenceFiles/test").mkdir(parents=True)
    path = root / "sequenceFiles/test/seq.pkl"
    with path.open("wb") as f:
        pickle.dump({"poses": [np.zeros(3)], "sequence": Payload(marker)}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match=rf"seq\.pkl.*{FORBIDDEN}"):
        load_dataset_pickle(path, root, encoding="latin1")


def _crafted_checkpoint(path, marker):
    torch.save({"model": {}, "step": 6, "next_example": 0, "config": {}, "optimizer": {},
                "rng": Payload(marker)}, path)


def test_crafted_checkpoint_via_eval_ckpt_is_refused(body_models, tmp_path, marker):
    cfg = load_config([f"body.models={body_models}"])
    path = tmp_path / "step_00000006.pt"
    _crafted_checkpoint(path, marker)
    with pytest.raises(CheckpointError, match=rf"step_00000006\.pt: .*{FORBIDDEN}"):
        load_model(cfg, path)


def test_crafted_checkpoint_on_resume_is_skipped_not_run(tmp_path, marker, capsys):
    run = tmp_path / "run"
    model = torch.nn.Linear(2, 2)
    save_checkpoint(run, model, torch.optim.AdamW(model.parameters()), None, 2, 8,
                    load_config([]))
    _crafted_checkpoint(run / "checkpoints/step_00000006.pt", marker)
    (run / "checkpoints/latest").write_text("step_00000006.pt\n")
    path, state = resume_point(run, overwrite=False)
    assert path.name == "step_00000002.pt" and state["step"] == 2
    err = capsys.readouterr().err
    assert "step_00000006.pt" in err and FORBIDDEN in err


def test_crafted_reference_ckpt_is_refused(body_models, tmp_path, marker):
    cfg = load_config([f"body.models={body_models}"])
    path = tmp_path / "humr_best.ckpt"
    torch.save({"state_dict": {"model.flow.x": torch.zeros(1)},
                "hyper_parameters": {"TRAINING": Payload(marker)}}, path)
    with pytest.raises(CheckpointError, match=rf"humr_best\.ckpt: .*{FORBIDDEN}"):
        load_model(cfg, path)
    with pytest.raises(CheckpointError, match=FORBIDDEN):
        load_reference_checkpoint(torch.nn.Linear(1, 1), path)


def test_our_checkpoint_reads_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    np.random.seed(7)
    state = np.random.get_state()
    path = save_checkpoint(tmp_path, model, torch.optim.AdamW(model.parameters()), None, 1, 4,
                           load_config([]))
    loaded = read_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    assert np.array_equal(loaded["rng"]["numpy"][1], state[1])
    assert loaded["config"]["train"]["overwrite_run"] is False
