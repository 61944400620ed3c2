"""BEDLAM `closeup` scenes: frames and masks stored rotated, turned 90° clockwise on load
(stores/images.py, docs/formats.md), their labels already in the turned frame."""
import shutil

import cv2
import numpy as np
import pytest

from core.config import load_config
from preprocess.precompute import precompute
from preprocess.readers import read_bedlam
from stores.context_cache import build_context_cache, open_context_cache
from stores.images import is_turned, read_image
from stores.schema import KEPT
from stores.store import Store

CLOSEUP = "20221019_3_250_highbmihand_closeup_suburb_d"  # a BEDLAM scene folder name


def test_a_closeup_frame_is_turned_clockwise(tmp_path):
    """A 1280 × 720 PNG with a marked top-left corner: turned, the frame is 720 × 1280 and the
    mark sits at the top right (np.rot90 with k=-1 is the clockwise oracle)."""
    stored = np.zeros((720, 1280, 3), np.uint8)
    stored[:10, :20] = (0, 0, 255)  # BGR red, top-left corner
    stored[-5:, -5:] = (0, 255, 0)  # green, bottom-right
    name = f"images/{CLOSEUP}/png/seq_000000/seq_000000_0000.png"
    plain = "images/20221010_3_1000_batch01hand/png/seq_000000/seq_000000_0000.png"
    for rel in (name, plain):
        (tmp_path / rel).parent.mkdir(parents=True)
        cv2.imwrite(str(tmp_path / rel), stored)
    turned = read_image(tmp_path, name)
    assert turned.shape == (1280, 720, 3)
    np.testing.assert_array_equal(turned, np.rot90(stored, k=-1))
    assert (turned[:20, -10:] == (0, 0, 255)).all() and (turned[-5:, :5] == (0, 255, 0)).all()
    gray = read_image(tmp_path, name, cv2.IMREAD_GRAYSCALE)
    assert gray.shape == (1280, 720) and gray[0, -1] > 0 and gray[0, 0] == 0
    np.testing.assert_array_equal(read_image(tmp_path, plain), stored)  # other scenes as stored
    assert read_image(tmp_path, "images/missing.png") is None
    assert not is_turned(plain) and is_turned(name)


@pytest.fixture(scope="module")
def closeup_root(small_world, tmp_path_factory):
    """The small world's BEDLAM tree as a closeup scene: every frame and mask stored turned 90°
    counter-clockwise (as BEDLAM stores them), labels and side-cars unchanged."""
    src = small_world / "bedlam"
    root = tmp_path_factory.mktemp("closeup") / "bedlam"
    (root / "processed_labels").mkdir(parents=True)
    shutil.copy(src / "processed_labels/synthetic_a.npz",
                root / f"processed_labels/{CLOSEUP}.npz")
    for path in (src / "images/synthetic_a").rglob("*"):
        if not path.is_file():
            continue
        out = root / "images" / CLOSEUP / path.relative_to(src / "images/synthetic_a")
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(out), cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE))
        else:
            shutil.copy(path, out)
    return root


def test_closeup_labels_see_the_turned_frame(small_world, closeup_root, body_models):
    plain = read_bedlam(small_world / "bedlam", body_models, train_fraction=1.0)
    turned = read_bedlam(closeup_root, body_models, train_fraction=1.0)
    stored = cv2.imread(str(closeup_root / turned.image[0]))
    assert stored.shape[:2] == tuple(plain.image_size[0])  # stored: (H, W) = the frame's (W, H)
    np.testing.assert_array_equal(turned.image_size, plain.image_size)
    np.testing.assert_array_equal(turned.object_occluded, plain.object_occluded)
    assert plain.object_occluded.any()  # the occlusion flags read the masks: turned right


def test_closeup_context_crops_equal_the_unrotated_ones(precomputed, closeup_root, body_models,
                                                        tmp_path):
    """Stage one and the context cache on the closeup copy cut exactly the pixels and mask of the
    original frames (test split: no filter, every row kept)."""
    stores, _ = precomputed
    original = tmp_path / "synthetic-train.zarr"
    shutil.copytree(stores / "synthetic-train.zarr", original)
    cfg = load_config([f"datasets.synthetic-train.root={closeup_root}",
                       "datasets.synthetic-train.split=test", f"body.models={body_models}",
                       f"paths.stores={tmp_path / 'closeup'}", "precompute.chunk_rows=8",
                       "cluster.workers=1"])
    summary = precompute(cfg, "synthetic-train")
    build_context_cache(original, workers=1)
    build_context_cache(summary["store"], workers=1)
    ours, theirs = open_context_cache(summary["store"]), open_context_cache(original)
    kept = np.flatnonzero(Store(original).read("status/reason") == KEPT)
    assert (Store(summary["store"]).read("status/reason") == KEPT).all() and len(kept) > 0
    for row in kept:
        context = ours.context(row)
        np.testing.assert_array_equal(context, theirs.context(row))
    assert any(ours.context(row)[..., 3].any() for row in kept)  # the masks are in
