"""The demo (`python -m infer`): a synthetic image with the synthetic detector, a photo-like image
with a tiny random ViTPose; the npz's ranking, log-likelihoods and meshes against independent
oracles; the model input against the test examples' own."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from body.cameras import xyxy_to_box
from body.models import load_smplx
from body.rotations import axis_angle_to_matrix
from core.config import load_config
from core.errors import UsageError
from eval import examples
from infer.__main__ import main
from infer.run import Boxes, detect, find_boxes, model_inputs, read_rgb
from stores.store import Store
from train import trainer
from train.checkpoint import latest_checkpoint, run_dir
from train.inputs import IMAGENET_STD
from train.model import load_model

from tests.eval.test_eval import TINY

N = 12


@pytest.fixture(scope="module")
def trained(precomputed, body_models, tmp_path_factory):
    stores, _ = precomputed
    root = tmp_path_factory.mktemp("infer")
    overrides = [f"paths.stores={stores}", f"body.models={body_models}",
                 f"paths.runs={root / 'runs'}", f"paths.reports={root / 'reports'}", *TINY]
    cfg = load_config(overrides)
    trainer.fit(cfg)
    return cfg, overrides


@pytest.fixture(scope="module")
def test_store(precomputed):
    stores, _ = precomputed
    path = Path(stores) / "synthetic-test.zarr"
    store = Store(path)
    return path, store, Path(store.attrs["root"])


@pytest.fixture(scope="module")
def synthetic_run(trained, test_store, tmp_path_factory):
    """`python -m infer <a synthetic test image>`: boxes from its scene side-car."""
    _, overrides = trained
    _, store, root = test_store
    image = root / store.labels().image[0]
    out = tmp_path_factory.mktemp("infer_out") / "synthetic"
    assert main([str(image), "--hypotheses", str(N), "--out", str(out), *overrides]) == 0
    with np.load(out / "hypotheses.npz") as f:
        return image, out, dict(f)


def test_synthetic_image_writes_the_figures_and_a_ranked_npz(synthetic_run, trained):
    image, out, res = synthetic_run
    for name in ("overlay.png", "side_view.png"):
        assert (out / name).stat().st_size > 5000
    p = len(res["box_scale"])
    assert p >= 1
    ll = res["log_likelihood"]
    assert ll.shape == (p, N) and np.isfinite(ll).all()
    assert (np.diff(ll, axis=1) <= 0).all()  # highest first
    assert sorted(res["draw_slot"][0].tolist()) == list(range(N))
    assert res["draw_slot"][np.arange(p), res["mode_rank"]].tolist() == [0] * p
    assert res["vertices"].shape[:2] == (p, N) and res["body_pose"].shape == (p, N, 21, 3)
    assert res["betas"].shape == (p, 11) and res["transl"].shape == (p, 3)


def test_npz_vertices_are_smplx_of_its_parameters(synthetic_run, body_models):
    _, _, res = synthetic_run
    smplx = load_smplx(body_models, num_betas=11)
    p = 0
    rot = axis_angle_to_matrix(torch.from_numpy(np.concatenate(
        [res["global_orient"][p][:, None], res["body_pose"][p]], 1)).double()).float()
    out = smplx(betas=torch.from_numpy(res["betas"][p]).expand(N, -1), global_orient=rot[:, :1],
                body_pose=rot[:, 1:])
    verts = out.vertices.numpy() + res["transl"][p]
    np.testing.assert_allclose(verts, res["vertices"][p], atol=2e-4)
    np.testing.assert_allclose(out.joints.numpy() + res["transl"][p], res["joints"][p], atol=2e-4)


def test_log_likelihood_is_the_flows_exact_density(synthetic_run, trained):
    """Oracle from the other direction: the mode is x = f⁻¹(0 | c), so log p(x) =
    log N(0; 0, I) − log|det ∂x/∂z| from the inverse pass; and the batched `log_prob` of the
    npz's poses equals the one-pose-at-a-time density."""
    image, _, res = synthetic_run
    cfg, _ = trained
    model, used, _ = load_model(cfg, latest_checkpoint(run_dir(cfg)))
    model.eval()
    boxes = Boxes(res["box_center"], res["box_scale"], "npz")
    inputs = model_inputs(used, read_rgb(image), res["detector_keypoints"], boxes,
                          float(res["focal"]))
    with torch.no_grad():
        posterior = model(inputs)
        c = posterior.condition
        x, log_det = model.flow.inverse(torch.zeros(len(c), 132), c)
        oracle = -0.5 * 132 * math.log(2 * math.pi) - log_det
        p = np.arange(len(c))
        mode = torch.from_numpy(res["pose6d"][p, res["mode_rank"]])
        np.testing.assert_allclose(mode.reshape(len(c), -1), x, atol=1e-5)
        np.testing.assert_allclose(res["log_likelihood"][p, res["mode_rank"]], oracle,
                                   rtol=1e-4, atol=1e-3)
        poses = torch.from_numpy(res["pose6d"])
        one_by_one = torch.stack([posterior.log_prob(poses[:, k]) for k in range(N)], 1)
        torch.testing.assert_close(posterior.log_prob(poses), one_by_one, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(res["log_likelihood"], one_by_one, rtol=1e-5, atol=1e-4)


def test_detector_and_model_input_are_stage_ones_and_the_test_examples(trained, test_store):
    """For a store row's own box: the demo's detector keypoints are the store's, bit for bit,
    and its model input is the test example's (image up to the context cache's codec)."""
    cfg, _ = trained
    path, store, root = test_store
    labels = store.labels()
    row = 1
    image = root / labels.image[row]
    boxes = Boxes(labels.center[row:row + 1].astype(np.float64),
                  labels.scale[row:row + 1].astype(np.float64), "store")
    rgb = read_rgb(image)
    det = detect(cfg, rgb, image, boxes)
    np.testing.assert_array_equal(det, store.read("detector/keypoints")[row:row + 1])
    focal = float(labels.cam_int[row, 0, 0])
    ours = model_inputs(cfg, rgb, det, boxes, focal)
    theirs = examples.TestExamples(path, cfg.model.crop_size, cfg.train.context_factor)[row].inputs
    for name, a, b in zip(ours._fields, ours, theirs):
        if name == "image":
            # the test examples read the JPEG context cache (≈ 4 grey levels mean error): in the
            # normalised image, less than 6 grey levels on average
            grey = 6 / 255 / float(IMAGENET_STD.min())
            assert (a[0] - b).abs().mean() < grey
        else:
            torch.testing.assert_close(a[0], b, rtol=0, atol=0, msg=name)


def test_box_rules(tmp_path):
    image = tmp_path / "photo.png"
    c, s = xyxy_to_box(np.array([10.0, 20.0, 110.0, 220.0]), 1.2)
    boxes = find_boxes(image, 400, 300, "10,20,110,220")
    np.testing.assert_allclose(boxes.center[0], [60, 120])
    np.testing.assert_allclose(boxes.scale[0], 200 * 1.2 / 200)
    np.testing.assert_allclose(boxes.center[0], c)
    whole = find_boxes(image, 400, 300)
    assert whole.source == "image"
    np.testing.assert_allclose(whole.center[0], [200, 150])
    np.testing.assert_allclose(whole.scale[0], 2.0)
    with pytest.raises(UsageError, match="x0,y0,x1,y1"):
        find_boxes(image, 400, 300, "1,2,3")
    with pytest.raises(FileNotFoundError, match="label file not found"):
        find_boxes(image, 400, 300, labels=tmp_path / "none.npz")


def test_vitpose_backend_on_a_photo_like_image(trained, tmp_path):
    """A smooth colour image written by the test, a tiny random ViTPose (Hugging Face layout),
    no box: the whole image is the box."""
    from tests.preprocess.test_vitpose import tiny_model

    _, overrides = trained
    tiny_model(simple=True).save_pretrained(tmp_path / "vitpose")
    h, w = 180, 240
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    photo = np.stack([120 + 100 * np.sin(6 * xx), 90 + 80 * yy, 160 - 90 * xx * yy], -1)
    photo[60:150, 100:140] = (200, 150, 120)  # a person-sized blob
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo.astype(np.uint8)[:, :, ::-1])
    out = tmp_path / "out"
    assert main([str(tmp_path / "photo.jpg"), "--hypotheses", "5", "--out", str(out), *overrides,
                 "precompute.detector.name=vitpose",
                 f"precompute.detector.options.checkpoint={tmp_path / 'vitpose'}"]) == 0
    with np.load(out / "hypotheses.npz") as f:
        res = dict(f)
    np.testing.assert_allclose(res["box_center"], [[w / 2, h / 2]])
    np.testing.assert_allclose(res["box_scale"], [w / 200])
    np.testing.assert_allclose(res["focal"], math.hypot(w, h), rtol=1e-6)
    assert res["log_likelihood"].shape == (1, 5) and (np.diff(res["log_likelihood"]) <= 0).all()
    assert res["detector_keypoints"].shape == (1, 17, 3)
    assert (out / "overlay.png").is_file() and (out / "side_view.png").is_file()


def test_missing_image_is_one_line(trained, tmp_path, capsys):
    from core.cli import run_cli

    _, overrides = trained
    assert run_cli(main, [str(tmp_path / "none.jpg"), *overrides]) == 2
    assert "image not found" in capsys.readouterr().err
