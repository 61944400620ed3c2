"""AGORA and 3DPW readers, end to end on synthetic datasets in their layouts."""
import pickle
import re
import shutil

import cv2
import numpy as np
import pytest

from body.cameras import box_from_keypoints, perspective_projection
from body.joints import SMPL_TO_COCO17, SMPLX_TO_COCO17
from body.models import load_smpl, load_smplx
from body.detector import CropRequest
from synthetic.detector import SyntheticDetector
from preprocess.readers import FORMATS, read_3dpw, read_agora
from preprocess.readers.body import posed_body
from preprocess.readers.threedpw import world_to_camera
from synthetic.agora_layout import MASK_SUFFIX, write_agora_like
from synthetic.bedlam_layout import LABEL_KEYS
from synthetic.people import pose_people
from synthetic.sidecar import sidecar_path
from synthetic.threedpw_layout import FITS_PATH, SMPL_TO_OP18, write_3dpw_like
from stores.masks import union_mask

AGORA_CFG = {"sequences_per_folder": 1, "frames_per_sequence": 3, "occluder_p": 0.7}


@pytest.fixture(scope="module")
def agora_root(tmp_path_factory, body_models):
    return write_agora_like(tmp_path_factory.mktemp("agora"), body_models, AGORA_CFG, seed=3)


@pytest.fixture(scope="module")
def agora_rows(agora_root, body_models):
    return read_agora(agora_root, body_models, train_fraction=1.0)


@pytest.fixture(scope="module")
def pw3d(tmp_path_factory, body_models):
    root = tmp_path_factory.mktemp("3dpw")
    return root, write_3dpw_like(root, body_models, seed=1, sequences=2, frames=8)


@pytest.fixture(scope="module")
def pw3d_test_rows(pw3d, body_models):
    return read_3dpw(pw3d[0], body_models)


def _labels(root, folder="agora-bfh"):
    with np.load(root / "processed_labels" / f"{folder}.npz") as f:
        return {k: f[k] for k in f.files}


def _sequence(path):
    with path.open("rb") as f:
        return pickle.load(f, encoding="latin1")


def test_registry():
    assert FORMATS["agora"].read is read_agora and FORMATS["3dpw"].read is read_3dpw
    assert FORMATS["agora"].mask_rule == {"background_value": 76}
    assert FORMATS["3dpw"].mask_rule == {}
    assert FORMATS["3dpw"].label_files == ("sequenceFiles/*/*.pkl",)


# ---------------------------------------------------------------- AGORA


def test_agora_layout(agora_root):
    for folder in ("agora-bfh", "agora-body"):
        lab = _labels(agora_root, folder)
        assert set(lab) == set(LABEL_KEYS)
        n = len(lab["imgname"])
        assert n >= 3
        shapes = {"center": (n, 2), "scale": (n,), "pose_cam": (n, 165), "shape": (n, 10),
                  "trans_cam": (n, 3), "gtkps": (n, 127, 3), "cam_int": (n, 3, 3),
                  "cam_ext": (n, 4, 4)}
        for key, shape in shapes.items():
            assert lab[key].shape == shape and lab[key].dtype == np.float32, key
        for name in np.unique(lab["imgname"]):
            kind = folder.removeprefix("agora-")
            assert re.fullmatch(rf"ag_trainset_synthetic_{kind}_seq\d{{3}}_cam00_\d{{5}}_640x360"
                                r"\.png", name)
            assert cv2.imread(str(agora_root / "images" / name)).shape == (360, 640, 3)
            assert sidecar_path(agora_root / "images" / name).exists()
            colour = cv2.imread(str(agora_root / "masks" / (name[:-4] + MASK_SUFFIX)))
            assert colour.shape == (360, 640, 3)
            gray = cv2.imread(str(agora_root / "masks" / (name[:-4] + MASK_SUFFIX)),
                              cv2.IMREAD_GRAYSCALE)
            assert set(np.unique(gray)) == {76, 255}  # red background, white people


def test_agora_reader_reproduces_gtkps_and_pads_betas(agora_root, agora_rows, body_models):
    lab = np.concatenate([_labels(agora_root, f)["gtkps"] for f in ("agora-bfh", "agora-body")])
    shape = np.concatenate([_labels(agora_root, f)["shape"] for f in ("agora-bfh", "agora-body")])
    n = len(lab)
    assert len(agora_rows) == n and agora_rows.body_model == "smplx"
    assert agora_rows.betas.shape == (n, 11) and (agora_rows.betas[:, 10] == 0).all()
    np.testing.assert_array_equal(agora_rows.betas[:, :10], shape)
    model = load_smplx(body_models)
    _, joints = posed_body(model, agora_rows.pose, agora_rows.betas, agora_rows.transl)
    uv = perspective_projection(joints, agora_rows.cam_int)
    assert np.abs(uv - lab[..., :2]).max() < 0.05
    np.testing.assert_allclose(agora_rows.kp2d_coco, lab[:, list(SMPLX_TO_COCO17), :2])
    assert (agora_rows.image_size == [640, 360]).all() and (agora_rows.gender == "neutral").all()
    for image, mask in zip(agora_rows.image, agora_rows.mask):
        assert image.startswith("images/") and (agora_root / image).exists()
        assert mask == "masks/" + image[7:-4] + MASK_SUFFIX and (agora_root / mask).exists()
    assert 0 < agora_rows.object_occluded.sum() < n


def test_agora_masks_decode_to_the_rendered_people(agora_root, agora_rows):
    mask = union_mask(cv2.imread(str(agora_root / agora_rows.mask[0]), cv2.IMREAD_GRAYSCALE),
                      **FORMATS["agora"].mask_rule)
    with np.load(sidecar_path(agora_root / agora_rows.image[0])) as scene:
        np.testing.assert_array_equal(mask, scene["person_map"] >= 0)


def test_agora_paths_and_fraction_are_arguments(agora_root, agora_rows, body_models, tmp_path):
    """The reference release's tree: annotations/, training_images/images/, env_masks/images/."""
    (tmp_path / "training_images").mkdir()
    (tmp_path / "env_masks").mkdir()
    (tmp_path / "annotations").symlink_to(agora_root / "processed_labels")
    (tmp_path / "training_images" / "images").symlink_to(agora_root / "images")
    (tmp_path / "env_masks" / "images").symlink_to(agora_root / "masks")
    rows = read_agora(tmp_path, body_models, train_fraction=1.0, files=["agora-body.npz"],
                      label_dir="annotations", image_dir="training_images/images",
                      mask_dir="env_masks/images")
    body = np.array([s.startswith("agora-body.npz:") for s in agora_rows.source])
    np.testing.assert_array_equal(rows.object_occluded, agora_rows.object_occluded[body])
    np.testing.assert_array_equal(rows.kp2d_coco, agora_rows.kp2d_coco[body])
    assert all((tmp_path / m).exists() for m in rows.mask)
    half = read_agora(agora_root, body_models, train_fraction=0.5, files=["agora-bfh"])
    n_bfh = len(_labels(agora_root)["imgname"])
    assert len(half) == int(n_bfh * 0.5)
    assert (half.source == agora_rows.source[: len(half)]).all()


def test_agora_bad_files_name_file_and_key(agora_root, body_models, tmp_path):
    lab = _labels(agora_root)
    (tmp_path / "processed_labels").mkdir()
    path = tmp_path / "processed_labels" / "agora-bfh.npz"
    np.savez(path, **{k: v for k, v in lab.items() if k != "trans_cam"})
    with pytest.raises(KeyError, match=r"agora-bfh\.npz.*'trans_cam'"):
        read_agora(tmp_path, body_models, files=["agora-bfh"])
    np.savez(path, **{**lab, "shape": np.zeros((len(lab["shape"]), 12), np.float32)})
    with pytest.raises(ValueError, match=r"agora-bfh\.npz: key 'shape'"):
        read_agora(tmp_path, body_models, files=["agora-bfh"])
    np.savez(path, **{**lab, "cam_int": lab["cam_int"][:, :2]})
    with pytest.raises(ValueError, match=r"agora-bfh\.npz: key 'cam_int'"):
        read_agora(tmp_path, body_models, files=["agora-bfh"])
    np.savez(path, **lab)
    with pytest.raises(FileNotFoundError, match=r"agora-body\.npz"):  # default: both files
        read_agora(tmp_path, body_models)


# ---------------------------------------------------------------- 3DPW


def test_3dpw_layout(pw3d):
    root, results = pw3d
    assert sorted({r.split for r in results.values()}) == ["test", "train"]
    assert any(len(r.genders) == 2 for r in results.values())
    assert any(len(r.genders) == 1 for r in results.values())
    for result in results.values():
        assert result.path == root / "sequenceFiles" / result.split / f"{result.name}.pkl"
        assert result.path.read_bytes()[:2] == b"\x80\x02"  # pickle protocol 2
        data = _sequence(result.path)
        n, actors = len(data["cam_poses"]), len(result.genders)
        assert n == 8 and data["sequence"] == result.name
        assert data["cam_poses"].shape == (n, 4, 4) and data["cam_intrinsics"].shape == (3, 3)
        np.testing.assert_array_equal(data["img_frame_ids"], np.arange(n))
        assert not np.allclose(data["cam_poses"][0], data["cam_poses"][-1])  # a moving camera
        for key, shape in {"poses": (n, 72), "trans": (n, 3), "betas": (10,),
                           "poses2d": (n, 3, 18), "jointPositions": (n, 72),
                           "campose_valid": (n,)}.items():
            assert len(data[key]) == actors, key
            assert all(np.shape(v) == shape for v in data[key]), key
        assert all(v.dtype == bool for v in data["campose_valid"])
        assert data["genders"] == [g[0] for g in result.genders]
        for i in data["img_frame_ids"]:
            image = root / "imageFiles" / result.name / f"image_{i:05d}.jpg"
            assert cv2.imread(str(image)).shape == (640, 360, 3)
            assert sidecar_path(image).exists()


def test_3dpw_rows_keep_campose_valid_frames_only(pw3d, pw3d_test_rows):
    root, results = pw3d
    rows = pw3d_test_rows
    assert rows.body_model == "smpl" and rows.pose.shape[1:] == (24, 3)
    assert rows.betas.shape[1] == 10 and (rows.mask == "").all()
    assert not rows.object_occluded.any() and set(rows.gender) <= {"male", "female"}
    total, invalid = 0, 0
    for result in results.values():
        if result.split != "test":
            continue
        data = _sequence(result.path)
        for actor, valid in enumerate(data["campose_valid"]):
            total += int(valid.sum())
            invalid += int((~valid).sum())
            mine = [s for s in rows.source if s.startswith(f"{result.name}:{actor}:")]
            frames = [int(s.split(":")[2]) for s in mine]
            assert frames == list(np.flatnonzero(valid))
    assert len(rows) == total and invalid > 0
    assert (rows.image_size == [360, 640]).all()
    assert all((root / image).exists() for image in rows.image)


def test_3dpw_drops_frames_whose_2d_pose_is_all_zeros(pw3d, body_models, tmp_path):
    """The official 3DPW evaluation keeps a frame only when campose_valid holds AND its poses2d
    is not all zeros; a frame with one non-zero entry (or a NaN) stays."""
    root, results = pw3d
    result = next(r for r in results.values() if r.split == "test")
    data = _sequence(result.path)
    valid = np.asarray(data["campose_valid"][0], bool)
    zeroed, partly, with_nan = np.flatnonzero(valid)[:3]
    poses2d = [p.copy() for p in data["poses2d"]]
    poses2d[0][zeroed] = 0.0
    poses2d[0][partly] = 0.0
    poses2d[0][partly, 2, 5] = 0.3
    poses2d[0][with_nan] = 0.0
    poses2d[0][with_nan, 0, 0] = np.nan
    seq = tmp_path / "sequenceFiles" / "test" / result.path.name
    seq.parent.mkdir(parents=True)
    with seq.open("wb") as f:
        pickle.dump({**data, "poses2d": poses2d}, f, protocol=2)
    (tmp_path / "imageFiles").mkdir()
    (tmp_path / "imageFiles" / result.name).symlink_to(root / "imageFiles" / result.name)
    rows = read_3dpw(tmp_path, body_models)
    frames = [int(s.split(":")[2]) for s in rows.source if s.startswith(f"{result.name}:0:")]
    assert frames == [f for f in np.flatnonzero(valid) if f != zeroed]
    other = [s for s in rows.source if s.startswith(f"{result.name}:1:")]
    assert len(other) == sum(np.asarray(v, bool).sum() for v in data["campose_valid"][1:])


def test_3dpw_reader_reproduces_poses2d_and_boxes(pw3d, pw3d_test_rows, body_models):
    root, _ = pw3d
    rows = pw3d_test_rows
    for gender in np.unique(rows.gender):
        sel = np.flatnonzero(rows.gender == gender)
        _, joints = posed_body(load_smpl(body_models, gender), rows.pose[sel], rows.betas[sel],
                               rows.transl[sel])
        uv = perspective_projection(joints, rows.cam_int[sel])
        for k, i in enumerate(sel):
            seq, actor, frame = rows.source[i].split(":")
            data = _sequence(root / "sequenceFiles" / "test" / f"{seq}.pkl")
            written = data["poses2d"][int(actor)][int(frame)].T[:, :2]  # (18, 2)
            assert np.abs(uv[k, list(SMPL_TO_OP18)] - written).max() < 0.05
        center, scale = box_from_keypoints(uv, 1.2)
        np.testing.assert_allclose(rows.center[sel], center, atol=1e-3)
        np.testing.assert_allclose(rows.scale[sel], scale, rtol=1e-5)
        np.testing.assert_allclose(rows.kp2d_coco[sel], uv[:, list(SMPL_TO_COCO17)], atol=1e-3)
        np.testing.assert_allclose(rows.kp2d_body[sel], uv[:, :24], atol=1e-3)


def test_3dpw_pelvis_offset_gives_the_generators_camera_frame_body(pw3d, pw3d_test_rows,
                                                                   body_models):
    """The reader's camera-frame vertices are the vertices the generator rendered."""
    _, results = pw3d
    rows = pw3d_test_rows
    checked = 0
    for result in results.values():
        if result.split != "test":
            continue
        for actor, (gender, params) in enumerate(zip(result.genders, result.camera)):
            model = load_smpl(body_models, gender)
            generated, _ = pose_people(model, params)
            mine = np.flatnonzero([s.startswith(f"{result.name}:{actor}:") for s in rows.source])
            frames = [int(s.split(":")[2]) for s in rows.source[mine]]
            verts, _ = posed_body(model, rows.pose[mine], rows.betas[mine], rows.transl[mine])
            assert np.abs(verts - generated[frames]).max() < 1e-3
            checked += len(mine)
    assert checked == len(rows)


def test_3dpw_smplx_fits_give_smplx_rows(pw3d, body_models):
    root, _ = pw3d
    smpl = read_3dpw(root, body_models, sequences="train")
    rows = read_3dpw(root, body_models, sequences="train", smplx_fits=FITS_PATH)
    assert rows.body_model == "smplx" and rows.pose.shape[1:] == (22, 3)
    assert rows.betas.shape[1] == 11 and (rows.gender == "neutral").all()
    assert (rows.source == smpl.source).all()
    model = load_smplx(body_models)
    verts, joints = posed_body(model, rows.pose, rows.betas, rows.transl)
    world = {k: [] for k in ("pose", "betas", "transl", "ext")}
    with np.load(root / FITS_PATH) as fits:  # world frame → camera frame by cam_poses
        for source in rows.source:
            seq, actor, frame = source.split(":")
            a, f = int(actor), int(frame)
            world["ext"].append(_sequence(root / "sequenceFiles" / "train" / f"{seq}.pkl")[
                "cam_poses"][f])
            world["pose"].append(fits[f"{seq}/pose"][a, f].reshape(22, 3))
            world["betas"].append(fits[f"{seq}/betas"][a])
            world["transl"].append(fits[f"{seq}/transl"][a, f])
    world = {k: np.stack(v) for k, v in world.items()}
    verts_w, _ = posed_body(model, world["pose"], world["betas"], world["transl"])
    ext = world["ext"]
    expected = np.einsum("nij,nvj->nvi", ext[:, :3, :3], verts_w) + ext[:, None, :3, 3]
    assert np.abs(expected - verts).max() < 1e-3
    # the fits' pelvis is the SMPL actor's pelvis
    pelvis = perspective_projection(joints[:, :1], rows.cam_int)[:, 0]
    np.testing.assert_allclose(pelvis, smpl.kp2d_body[:, 0], atol=0.05)
    np.testing.assert_allclose(rows.kp2d_coco, perspective_projection(
        joints[:, list(SMPLX_TO_COCO17)], rows.cam_int), atol=1e-3)


def test_world_to_camera_accounts_for_the_pelvis_offset(body_models):
    """With a far-off root joint (the synthetic body's J0 is only mm from the origin, SMPL's is
    ~0.2 m), the camera-frame body equals the world-frame body seen through the extrinsic."""
    import torch
    from scipy.spatial.transform import Rotation

    model = load_smpl(body_models, "female")
    with torch.no_grad():
        model.v_template += torch.tensor([0.05, -0.3, 0.1])
    rng = np.random.default_rng(0)
    n = 4
    pose = rng.normal(0, 0.3, (n, 24, 3))
    betas, trans = rng.normal(0, 1, (n, 10)), rng.normal(0, 1, (n, 3))
    ext = np.tile(np.eye(4), (n, 1, 1))
    ext[:, :3, :3] = Rotation.random(n, random_state=1).as_matrix()
    ext[:, :3, 3] = rng.normal(0, 1, (n, 3)) + [0, 0, 8]
    verts_w, _ = posed_body(model, pose, betas, trans)
    expected = np.einsum("nij,nvj->nvi", ext[:, :3, :3], verts_w) + ext[:, None, :3, 3]
    orient, transl = world_to_camera(model, pose[:, 0], trans, betas, ext)
    cam_pose = np.concatenate([orient[:, None], pose[:, 1:]], 1)
    verts, _ = posed_body(model, cam_pose, betas, transl)
    assert np.abs(verts - expected).max() < 1e-4
    naive = np.einsum("nij,nj->ni", ext[:, :3, :3], trans) + ext[:, :3, 3]  # no J0
    verts_naive, _ = posed_body(model, cam_pose, betas, naive)
    assert np.abs(verts_naive - expected).max() > 0.1


def test_3dpw_synthetic_detector_runs_on_the_images(pw3d, pw3d_test_rows):
    root, _ = pw3d
    rows = pw3d_test_rows
    requests = [CropRequest(root / img, c, float(s))
                for img, c, s in zip(rows.image, rows.center, rows.scale)]
    heat = SyntheticDetector()(np.zeros((len(rows), 256, 192, 3), np.uint8), requests)
    assert heat.shape == (len(rows), 17, 64, 48)
    assert np.median(heat.reshape(len(rows), 17, -1).max(-1)) > 0.5


def test_3dpw_bad_input_names_file_and_key(pw3d, body_models, tmp_path):
    root, results = pw3d
    source = next(r for r in results.values() if r.split == "test").path
    data = _sequence(source)
    bad_dir = tmp_path / "sequenceFiles" / "test"
    bad_dir.mkdir(parents=True)
    bad = bad_dir / "broken.pkl"

    def write(d):
        with bad.open("wb") as f:
            pickle.dump(d, f, protocol=2)

    write({k: v for k, v in data.items() if k != "cam_poses"})
    with pytest.raises(KeyError, match=r"broken\.pkl.*'cam_poses'"):
        read_3dpw(tmp_path, body_models)
    write({**data, "poses": [p[:, :69] for p in data["poses"]]})
    with pytest.raises(ValueError, match=r"broken\.pkl: key 'poses' of actor 0"):
        read_3dpw(tmp_path, body_models)
    write({**data, "campose_valid": data["campose_valid"][:1] + data["campose_valid"]})
    with pytest.raises(ValueError, match=r"broken\.pkl: key 'campose_valid' lists"):
        read_3dpw(tmp_path, body_models)
    write({**data, "genders": ["x"] * len(data["genders"])})
    with pytest.raises(ValueError, match=r"broken\.pkl: key 'genders'"):
        read_3dpw(tmp_path, body_models)
    with pytest.raises(FileNotFoundError, match="sequenceFiles/validation"):
        read_3dpw(tmp_path, body_models, sequences="validation")
    with pytest.raises(ValueError, match="split"):
        read_3dpw(root, body_models, sequences="test", smplx_fits=FITS_PATH)
    with pytest.raises(ValueError, match="split"):
        read_3dpw(root, body_models, sequences="val")


def test_3dpw_bad_fits_name_file_and_key(pw3d, body_models, tmp_path):
    root, results = pw3d
    with np.load(root / FITS_PATH) as f:
        fits = {k: f[k] for k in f.files}
    name = next(r.name for r in results.values() if r.split == "train")
    path = tmp_path / "fits.npz"
    np.savez(path, **{k: v for k, v in fits.items() if k != f"{name}/transl"})
    with pytest.raises(KeyError, match=rf"fits\.npz.*'{name}/transl'"):
        read_3dpw(root, body_models, sequences="train", smplx_fits=path)
    np.savez(path, **{**fits, f"{name}/betas": fits[f"{name}/betas"][:, :10]})
    with pytest.raises(ValueError, match=rf"fits\.npz: key '{name}/betas'"):
        read_3dpw(root, body_models, sequences="train", smplx_fits=path)
    shutil.copy(root / FITS_PATH, path)
    assert len(read_3dpw(root, body_models, sequences="train", smplx_fits=path)) > 0
