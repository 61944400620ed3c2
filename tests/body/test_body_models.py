import pickle
import shutil

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch
from scipy.spatial.transform import Rotation
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from body.legacy_pickle import load_legacy_pickle
from body.models import (
    load_h36m_regressor, load_smpl, load_smplx, load_smplx2smpl, read_model_file, smpl_path,
    smplx_path,
)
from body.rotations import axis_angle_to_matrix
from synthetic.body_models import SYNTHETIC_NOTE, write_chumpy_pickle


def _random_aa(n_rows, n_joints, seed, scale=0.6):
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.normal(scale=scale, size=(n_rows, n_joints, 3)), dtype=torch.float32)


def test_official_smpl_pickle_needs_chumpy_and_loader_reads_it_without(body_models):
    path = smpl_path(body_models, "neutral")
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        with path.open("rb") as f:
            pickle.load(f, encoding="latin1")
    data = load_legacy_pickle(path)
    assert isinstance(data["v_template"], np.ndarray) and data["v_template"].shape == (6890, 3)
    assert data["shapedirs"].shape == (6890, 3, 10)
    assert data["posedirs"].shape == (6890, 3, 207)
    assert scipy.sparse.issparse(data["J_regressor"]) and data["J_regressor"].shape == (24, 6890)
    assert data["weights"].shape == (6890, 24)
    assert data["synthetic"] == SYNTHETIC_NOTE


def test_chumpy_loader_round_trip_on_hand_made_pickle(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.eye(2)}
    write_chumpy_pickle(tmp_path / "x.pkl", {**arrays, "c": "text"}, chumpy_keys=("a",))
    loaded = load_legacy_pickle(tmp_path / "x.pkl")
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    np.testing.assert_array_equal(loaded["b"], arrays["b"])
    assert loaded["c"] == "text"


def test_smplx_file_layout(body_models):
    path = smplx_path(body_models, "neutral")
    assert path.suffix == ".npz"
    data = read_model_file(path)
    assert data["v_template"].shape == (10475, 3)
    assert data["shapedirs"].shape == (10475, 3, 400)
    assert data["posedirs"].shape == (10475, 3, 486)
    assert data["J_regressor"].shape == (55, 10475)
    assert data["kintree_table"].shape == (2, 55)
    assert data["lmk_faces_idx"].max() < len(data["f"])
    assert data["f"].max() == 10474 and data["f"].min() == 0
    np.testing.assert_allclose(data["weights"].sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(data["J_regressor"].sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("gender", ["neutral", "male", "female"])
def test_smplx_layer_matches_smplx_create(body_models, gender):
    """Our rotation-matrix Layer equals smplx's own axis-angle model read by smplx.create."""
    ours = load_smplx(body_models, gender)
    ref = smplx.create(str(body_models), model_type="smplx", gender=gender, ext="npz",
                       num_betas=11, use_pca=False, flat_hand_mean=True, batch_size=4)
    aa = _random_aa(4, 22, seed=1)
    betas = torch.randn(4, 11)
    rot = axis_angle_to_matrix(aa)
    out = ours(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:])
    exp = ref(betas=betas, global_orient=aa[:, 0], body_pose=aa[:, 1:].reshape(4, -1))
    assert out.vertices.shape == (4, 10475, 3)
    torch.testing.assert_close(out.vertices, exp.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, exp.joints, atol=1e-5, rtol=0)


@pytest.mark.parametrize("gender", ["neutral", "male", "female"])
def test_smpl_layer_matches_smplx_on_clean_copy(body_models, gender):
    ours = load_smpl(body_models, gender)
    clean = {k: (v.toarray() if scipy.sparse.issparse(v) else v)
             for k, v in load_legacy_pickle(smpl_path(body_models, gender)).items()}
    ref = smplx.SMPL(model_path=str(body_models), data_struct=Struct(**clean), batch_size=3)
    aa = _random_aa(3, 24, seed=2)
    betas = torch.randn(3, 10)
    rot = axis_angle_to_matrix(aa)
    out = ours(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:])
    exp = ref(betas=betas, global_orient=aa[:, 0], body_pose=aa[:, 1:].reshape(3, -1))
    assert out.vertices.shape == (3, 6890, 3) and out.joints.shape == (3, 45, 3)
    torch.testing.assert_close(out.vertices, exp.vertices, atol=1e-5, rtol=0)


def test_genders_differ_and_shape_directions_mean_something(body_models):
    neutral, male, female = (load_smpl(body_models, g) for g in ("neutral", "male", "female"))
    height = {}
    for name, model in (("n", neutral), ("m", male), ("f", female)):
        v = model(betas=torch.zeros(1, 10)).vertices[0]
        height[name] = (v[:, 1].max() - v[:, 1].min()).item()
    assert height["m"] > height["n"] > height["f"]
    model = load_smplx(body_models)
    base = model(betas=torch.zeros(1, 11)).vertices[0]
    taller = model(betas=torch.tensor([[2.0] + [0.0] * 10])).vertices[0]
    wider = model(betas=torch.tensor([[0.0, 2.0] + [0.0] * 9])).vertices[0]
    assert (taller[:, 1].max() - taller[:, 1].min()) > 1.05 * (base[:, 1].max() - base[:, 1].min())
    girth = lambda v: (v[:, [0, 2]] - v[:, [0, 2]].mean(0)).norm(dim=1).mean()  # noqa: E731
    assert girth(wider) > 1.05 * girth(base)
    # the 11th beta is a shape direction, not an expression direction (docs/formats.md gotcha)
    eleventh = model(betas=torch.tensor([[0.0] * 10 + [2.0]])).vertices[0]
    assert (eleventh - base).abs().max() > 1e-3


def test_extra_joint_vertices_sit_where_their_names_say(body_models):
    model = load_smplx(body_models)
    v = model(betas=torch.zeros(1, 11)).vertices[0].numpy()
    ids = SMPLX_VERTEX_IDS["smplx"]
    nose, leye, reye, lear, rear = (v[ids[k]] for k in ("nose", "leye", "reye", "lear", "rear"))
    head = v[v[:, 1] > 0.55]
    assert abs(nose[0]) < 0.02 and nose[2] > head[:, 2].max() - 0.02  # front of the face
    assert leye[0] > 0.01 > -0.01 > reye[0]  # left is +x in the SMPL frame
    assert lear[0] > 0.06 and rear[0] < -0.06
    assert v[ids["LHeel"]][2] < v[ids["LBigToe"]][2] - 0.15  # heel behind the toes
    assert abs(v[ids["LBigToe"]][0]) < abs(v[ids["LSmallToe"]][0])  # big toe inside
    assert v[ids["lthumb"]][0] > 0.7 and v[ids["rthumb"]][0] < -0.7


def test_elbow_rotation_moves_its_wrist_only(body_models):
    model = load_smplx(body_models)
    rot = torch.eye(3).expand(1, 21, 3, 3).clone()
    bent = rot.clone()
    bent[0, 17] = torch.tensor(Rotation.from_rotvec([0, 0, 1.2]).as_matrix(), dtype=torch.float32)
    j0 = model(body_pose=rot).joints[0]
    j1 = model(body_pose=bent).joints[0]
    assert (j1[20] - j0[20]).norm() > 0.1  # left wrist moves
    assert (j1[21] - j0[21]).norm() < 1e-6  # right wrist stays
    assert (j1[18] - j0[18]).norm() < 1e-6  # the elbow itself stays


def test_num_betas_beyond_ten_needs_the_full_shape_space(body_models, tmp_path):
    data = read_model_file(smplx_path(body_models))
    data["shapedirs"] = data["shapedirs"][:, :, :20]
    (tmp_path / "smplx").mkdir()
    np.savez(tmp_path / "smplx" / "SMPLX_NEUTRAL.npz", **data)
    with pytest.raises(ValueError, match="shapedirs.*expression"):
        load_smplx(tmp_path, num_betas=11)
    assert load_smplx(tmp_path, num_betas=10).num_betas == 10


def test_missing_file_and_key_are_named(body_models, tmp_path):
    with pytest.raises(FileNotFoundError, match="SMPL_MALE.pkl"):
        load_smpl(tmp_path, "male")
    data = read_model_file(smplx_path(body_models))
    del data["lmk_bary_coords"]
    (tmp_path / "smplx").mkdir()
    np.savez(tmp_path / "smplx" / "SMPLX_NEUTRAL.npz", **data)
    with pytest.raises(KeyError, match="SMPLX_NEUTRAL.npz.*lmk_bary_coords"):
        load_smplx(tmp_path)
    with pytest.raises(ValueError, match="gender"):
        load_smpl(body_models, "other")


def test_smplx2smpl_maps_templates_and_reads_both_layouts(body_models, tmp_path):
    matrix = load_smplx2smpl(body_models)
    assert matrix.shape == (6890, 10475) and matrix.is_sparse and matrix.is_coalesced()
    torch.testing.assert_close(torch.sparse.sum(matrix, 1).to_dense(), torch.ones(6890),
                               atol=1e-5, rtol=0)
    smplx_v = load_smplx(body_models)(betas=torch.zeros(1, 11)).vertices[0]
    smpl_v = load_smpl(body_models)(betas=torch.zeros(1, 10)).vertices[0]
    assert (matrix @ smplx_v - smpl_v).norm(dim=1).max() < 0.02
    dense = tmp_path / "smplx2smpl.pkl"
    with dense.open("wb") as f:
        pickle.dump({"matrix": matrix.to_dense().numpy()}, f)
    from_dense = load_smplx2smpl(tmp_path)  # the dense layout: the same entries, the same order
    assert torch.equal(from_dense.indices(), matrix.indices())
    assert torch.equal(from_dense.values(), matrix.values())
    assert torch.equal(matrix.indices(), matrix.to_dense().to_sparse().indices())
    shutil.copy(body_models / "J_regressor_h36m.npy", tmp_path)
    reg = load_h36m_regressor(tmp_path)
    assert reg.shape == (17, 6890)
    torch.testing.assert_close(reg.sum(1), torch.ones(17), atol=1e-5, rtol=0)
    h36m = reg @ smpl_v
    assert h36m[10, 1] > h36m[8, 1] > h36m[0, 1] > h36m[3, 1]  # head top > thorax > pelvis > ankle
