import json
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from body.cameras import perspective_projection
from body.models import load_smplx
from core.config import load_config
from body.detector import CropRequest
from synthetic.detector import SyntheticDetector
from preprocess.readers import FORMATS, read_bedlam, read_emdb
from preprocess.readers.body import posed_body
from synthetic import world
from tests.conftest import SMALL_WORLD
from synthetic.bedlam_layout import LABEL_KEYS
from synthetic.emdb_layout import MIN_WALKER_DEPTH, _straight_path, crossing_path
from synthetic.poses import (
    LIMITS_HIGH, LIMITS_LOW, sample_body_euler, sample_body_pose,
)
from synthetic.sidecar import VISIBLE


def _world(tmp_path_factory, body_models, name, workers):
    root = tmp_path_factory.mktemp(name) / "synthetic"
    cfg = load_config(SMALL_WORLD + [f"synthetic.root={root}"])
    return world.generate_world(cfg.synthetic, body_models, workers=workers)


@pytest.fixture(scope="module")
def train_rows(small_world, body_models):
    return read_bedlam(small_world / "bedlam", body_models, train_fraction=1.0)


def test_bedlam_layout(small_world):
    root = small_world / "bedlam"
    with np.load(root / "processed_labels" / "synthetic_a.npz") as f:
        labels = {k: f[k] for k in f.files}
    assert set(labels) == set(LABEL_KEYS)
    n = len(labels["imgname"])
    assert n >= 4
    shapes = {"center": (n, 2), "scale": (n,), "pose_cam": (n, 165), "pose_world": (n, 165),
              "shape": (n, 11), "trans_cam": (n, 3), "gtkps": (n, 127, 3), "cam_int": (n, 3, 3),
              "cam_ext": (n, 4, 4)}
    for key, shape in shapes.items():
        assert labels[key].shape == shape, key
        assert labels[key].dtype == np.float32 and np.isfinite(labels[key]).all(), key
    assert (labels["gtkps"][..., 2] == 1).all()
    assert (labels["scale"] > 0).all() and (labels["pose_cam"][:, 66:] == 0).all()
    for name in np.unique(labels["imgname"]):
        assert re.fullmatch(r"seq_\d{6}/seq_\d{6}_\d{4}\.png", name)
        image = cv2.imread(str(root / "images" / "synthetic_a" / "png" / name))
        assert image.shape == (360, 640, 3)
        mask = cv2.imread(str(root / "images" / "synthetic_a" / "masks" / (name[:-4] + "_env.png")),
                          cv2.IMREAD_UNCHANGED)
        assert mask.shape == (360, 640) and set(np.unique(mask)) <= {0, 255}


def test_bedlam_labels_follow_the_cam_ext_rule(small_world, body_models):
    """camera-frame body = SMPL-X(pose_cam, transl=trans_cam) + cam_ext[:3, 3] projects onto
    gtkps, and the world-frame pose seen through cam_ext is the same body."""
    with np.load(small_world / "bedlam" / "processed_labels" / "synthetic_a.npz") as f:
        lab = {k: f[k] for k in f.files}
    model = load_smplx(body_models)
    pose = lab["pose_cam"][:, :66].reshape(-1, 22, 3)
    transl = lab["trans_cam"] + lab["cam_ext"][:, :3, 3]
    verts, joints = posed_body(model, pose, lab["shape"], transl)
    uv = perspective_projection(joints, lab["cam_int"])
    assert np.abs(uv - lab["gtkps"][..., :2]).max() < 0.05
    world_pose = lab["pose_world"][:, :66].reshape(-1, 22, 3)
    verts_w, _ = posed_body(model, world_pose, lab["shape"], lab["trans_world"])
    ext = lab["cam_ext"]
    verts_c = np.einsum("nij,nvj->nvi", ext[:, :3, :3], verts_w) + ext[:, None, :3, 3]
    assert np.abs(verts_c - verts).max() < 1e-3


def test_reader_rows_and_object_occlusion(train_rows, small_world):
    with np.load(small_world / "bedlam" / "processed_labels" / "synthetic_a.npz") as f:
        n = len(f["imgname"])
    assert len(train_rows) == n and train_rows.body_model == "smplx"
    assert train_rows.pose.shape == (n, 22, 3) and train_rows.kp2d_coco.shape == (n, 17, 2)
    assert (train_rows.image_size == [640, 360]).all()
    assert 0 < train_rows.object_occluded.sum() < n


def test_train_fraction_keeps_the_first_rows(small_world, body_models, train_rows):
    rows = read_bedlam(small_world / "bedlam", body_models, train_fraction=0.5)
    assert len(rows) == len(train_rows) // 2
    assert (rows.source == train_rows.source[: len(rows)]).all()


def test_emdb_layout_and_reader(small_world, body_models):
    root = small_world / "emdb"
    paths = sorted(root.glob("P*/*/P*_data.pkl"))
    assert len(paths) == 2
    with paths[1].open("rb") as f:
        data = pickle.load(f)
    n = data["n_frames"]
    assert data["smpl"]["poses_body"].shape == (n, 69) and data["smpl"]["betas"].shape == (10,)
    assert data["camera"]["extrinsics"].shape == (n, 4, 4) and data["kp2d"].shape == (n, 24, 2)
    assert data["good_frames_mask"].dtype == bool and data["bboxes"]["bboxes"].shape == (n, 4)
    assert (paths[1].parent / "images" / "00000.jpg").exists()
    rows = read_emdb(root, body_models, subset="all")
    n_good = 0
    for path in paths:
        with path.open("rb") as f:
            d = pickle.load(f)
        n_good += int(d["good_frames_mask"].sum())
        seq = str(path.parent.relative_to(root))
        mine = np.array([s.startswith(seq + ":") for s in rows.source])
        frames = [int(s.split(":")[1]) for s in rows.source[mine]]
        assert (d["good_frames_mask"][frames]).all()
        np.testing.assert_allclose(rows.kp2d_body[mine], d["kp2d"][frames], atol=1e-4)
    assert len(rows) == n_good and rows.body_model == "smpl" and rows.pose.shape[1] == 24
    emdb1 = read_emdb(root, body_models)  # sequence P0/00 is flagged emdb2 only
    assert 0 < len(emdb1) < len(rows)


def test_emdb_reader_projects_its_own_camera_frame_body(small_world, body_models):
    rows = read_emdb(small_world / "emdb", body_models, subset="all")
    from body.models import load_smpl

    model = load_smpl(body_models, str(rows.gender[0]))
    same = rows.gender == rows.gender[0]
    _, joints = posed_body(model, rows.pose[same], rows.betas[same], rows.transl[same])
    uv = perspective_projection(joints[:, :24], rows.cam_int[same])
    assert np.abs(uv - rows.kp2d_body[same]).max() < 0.05


def test_generation_is_deterministic_across_worker_counts(
        small_world, tmp_path_factory, body_models):
    other = _world(tmp_path_factory, body_models, "world1", workers=1)
    for rel in ("bedlam/processed_labels/synthetic_a.npz",):
        with np.load(small_world / rel) as a, np.load(other / rel) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    for rel in ("bedlam/images/synthetic_a/png/seq_000002/seq_000002_0003.png",
                "emdb/P0/01_synthetic/images/00004.jpg"):
        np.testing.assert_array_equal(cv2.imread(str(small_world / rel)),
                                      cv2.imread(str(other / rel)))
    with (small_world / "emdb/P0/01_synthetic/P0_01_synthetic_data.pkl").open("rb") as f:
        a = pickle.load(f)
    with (other / "emdb/P0/01_synthetic/P0_01_synthetic_data.pkl").open("rb") as f:
        b = pickle.load(f)
    np.testing.assert_array_equal(a["smpl"]["poses_body"], b["smpl"]["poses_body"])
    for rel in ("agora/processed_labels/agora-body.npz", "3dpw/smplx_fits/train.npz"):
        with np.load(small_world / rel) as a, np.load(other / rel) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    for rel in ("3dpw/sequenceFiles/test/synthetic_test_00.pkl",
                "3dpw/sequenceFiles/train/synthetic_train_00.pkl"):
        assert (small_world / rel).read_bytes() == (other / rel).read_bytes()


def test_detector_confidence_follows_rendered_visibility(small_world, train_rows):
    """Visible joints get confident peaks; occluded or truncated ones low, broad heatmaps."""
    root = small_world / "bedlam"
    detector = SyntheticDetector()
    requests = [CropRequest(root / img, c, float(s))
                for img, c, s in zip(train_rows.image, train_rows.center, train_rows.scale)]
    heat = detector(np.zeros((len(requests), 256, 192, 3), np.uint8), requests)
    conf = heat.reshape(len(requests), 17, -1).max(-1)
    states = []
    for i, img in enumerate(train_rows.image):
        scene = np.load(root / (img[:-4] + ".synthetic_scene.npz"))
        person = np.argmin(np.abs(scene["coco_xy"] - train_rows.kp2d_coco[i]).sum((1, 2)))
        states.append(scene["coco_state"][person])
    states = np.array(states)
    visible, hidden = conf[states == VISIBLE], conf[states != VISIBLE]
    assert len(visible) > 100 and len(hidden) > 20
    assert np.median(visible) > 0.8 and np.mean(visible > 0.5) > 0.85
    assert np.median(hidden) < 0.5 and np.mean(hidden < 0.5) > 0.85


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, body_models,
                                                                   monkeypatch):
    cfg = load_config(SMALL_WORLD + [f"synthetic.root={tmp_path / 'synthetic'}"])

    def broken(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(world, "write_labels", broken)  # dies after the images, before labels
    with pytest.raises(RuntimeError):
        world.generate_world(cfg.synthetic, body_models, workers=1)
    assert not (tmp_path / "synthetic").exists()
    assert not world.is_complete(tmp_path / "synthetic")


def test_poses_respect_joint_limits():
    from scipy.spatial.transform import Rotation

    euler = sample_body_euler(np.random.default_rng(0), 500)
    assert (euler >= LIMITS_LOW).all() and (euler <= LIMITS_HIGH).all()
    assert euler.std(0).min() > 0.01  # every degree of freedom varies
    aa = sample_body_pose(np.random.default_rng(0), 500)
    expected = Rotation.from_euler("XYZ", euler.reshape(-1, 3)).as_matrix()
    np.testing.assert_allclose(Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix(), expected,
                               atol=1e-9)
    knees = euler[:, 3, 0]  # joint 4, left knee: flexion only one way
    assert knees.min() >= 0


def test_people_stand_upright_in_the_image(train_rows):
    head, ankles = train_rows.kp2d_coco[:, 0, 1], train_rows.kp2d_coco[:, 15:17, 1].mean(1)
    assert np.mean(head < ankles) > 0.9  # image y grows downwards


def test_config_is_plain(small_world):
    info = world.manifest(small_world)
    assert OmegaConf.create(info["config"]).bedlam.sequences_per_folder == 4
    assert info["synthetic"] is True


def test_a_world_of_an_older_generator_is_not_current(small_world, tmp_path):
    info = world.manifest(small_world)
    assert world.is_current(small_world, info["config"])
    assert not world.is_current(small_world, {**info["config"], "seed": 99})
    old = tmp_path / "old"
    old.mkdir()
    (old / "MANIFEST.json").write_text(json.dumps({**info, "generator": world.GENERATOR - 1}))
    assert world.is_complete(old) and not world.is_current(old, info["config"])


def test_agora_and_3dpw_layouts_read_through_their_dataset_entries(small_world, body_models):
    """synthetic-agora, synthetic-3dpw-train (SMPL-X fits) and -test read what the world wrote."""
    cfg = load_config(SMALL_WORLD + [f"synthetic.root={small_world}"])
    info = world.manifest(small_world)
    assert info["3dpw_sequences"] == {"train": 1, "test": 1}
    assert sum(info["agora_rows"].values()) >= 4
    text = world.summary(small_world)
    assert f"{sum(info['agora_rows'].values())} AGORA-layout rows" in text
    assert "3DPW-layout sequences 1 train, 1 test" in text
    assert cfg.dataset_groups["synthetic"] == ["synthetic-train", "synthetic-test"]
    layouts = list(cfg.dataset_groups["synthetic-layouts"])
    assert {"synthetic-agora", "synthetic-3dpw-train", "synthetic-3dpw-test"} <= set(layouts)
    rows = {}
    for name in ("synthetic-agora", "synthetic-3dpw-train", "synthetic-3dpw-test"):
        entry = cfg.datasets[name]
        args = {k: v for k, v in OmegaConf.to_container(entry).items()
                if k not in ("format", "split", "root", "protocol")}
        rows[name] = FORMATS[entry.format].read(entry.root, body_models, **args)
        assert len(rows[name]) > 0
        assert all((Path(entry.root) / i).exists() for i in rows[name].image)
    assert len(rows["synthetic-agora"]) == sum(info["agora_rows"].values())
    assert rows["synthetic-agora"].body_model == "smplx"
    assert rows["synthetic-3dpw-train"].body_model == "smplx"  # through the SMPL-X fits
    assert rows["synthetic-3dpw-test"].body_model == "smpl"


def test_a_directory_the_generator_did_not_write_is_never_replaced(tmp_path, body_models):
    real = tmp_path / "real"
    (real / "bedlam").mkdir(parents=True)
    (real / "bedlam" / "labels.npz").write_bytes(b"downloaded")
    cfg = load_config(SMALL_WORLD + [f"synthetic.root={real}"])
    with pytest.raises(FileExistsError, match="not written by the synthetic generator"):
        world.generate_world(cfg.synthetic, body_models, workers=1)
    with pytest.raises(FileExistsError, match="SYNTHETIC.txt"):
        world.ensure_body_models(real)
    assert (real / "bedlam" / "labels.npz").read_bytes() == b"downloaded"


@pytest.mark.parametrize("front_p", [0.0, 1.0])
def test_the_second_person_crosses_the_subjects_line_of_sight(front_p):
    """Where the second person's image path passes the subject's (u − u_s changes sign), its
    pelvis pixel is the subject's and it is nearer (front_p 1) or farther (front_p 0)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        subject = _straight_path(rng, 40, (2.5, 6.0))
        walker = crossing_path(rng, subject, front_p)
        gap = walker[:, 0] - subject[:, 0]
        k = int(np.flatnonzero(np.sign(gap[:-1]) != np.sign(gap[1:]))[0])
        w = gap[k] / (gap[k] - gap[k + 1])           # the crossing between frames k and k + 1
        at = (1 - w) * walker[k] + w * walker[k + 1]
        subj = (1 - w) * subject[k] + w * subject[k + 1]
        assert 0.3 * 39 - 1 <= k <= 0.7 * 39
        assert at[:2] == pytest.approx(subj[:2], abs=1e-9)
        gap_z = subj[2] - at[2] if front_p else at[2] - subj[2]
        assert 0.49 <= gap_z <= 2.01 or at[2] == pytest.approx(MIN_WALKER_DEPTH, abs=0.02)
        assert walker[:, 2].min() >= MIN_WALKER_DEPTH
