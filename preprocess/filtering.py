"""The wrong-person filter of the training sets (docs/method.md §2)."""
from __future__ import annotations

import numpy as np

from stores.schema import (
    FILTER_FAR_FROM_GROUND_TRUTH, FILTER_FEW_CONFIDENT_JOINTS, FILTER_JOINT_OUTSIDE_IMAGE, KEPT,
)

from .settings import FilterSettings


def filter_reasons(keypoints: np.ndarray, ground_truth: np.ndarray, scale: np.ndarray,
                   image_size: np.ndarray, cfg: FilterSettings) -> np.ndarray:
    """(N,) reason codes for detector keypoints (N, 17, 3) against ground-truth COCO joints
    (N, 17, 2): drop a row when the mean over the 17 joints of ‖GT − detector‖/scale counted on
    joints with conf > `mean_error_conf` reaches `max_mean_error_per_scale`; when fewer than
    `min_visible_joints` joints have conf > `visible_conf`; or when a detector joint lies more than
    `max_outside_image_px` outside the image. In float64, the joints summed one by one in order,
    so a row's decision does not depend on the batch or the CPU's vector width."""
    conf = keypoints[..., 2]
    diff = np.asarray(ground_truth, np.float64) - np.asarray(keypoints[..., :2], np.float64)
    error = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1]) \
        / np.asarray(scale, np.float64)[:, None]
    counted = np.where(conf > cfg.mean_error_conf, error, 0.0)
    total = np.zeros(len(keypoints))
    for j in range(keypoints.shape[1]):
        total = total + counted[:, j]
    mean_error = total / keypoints.shape[1]
    margin = cfg.max_outside_image_px
    xy = keypoints[..., :2]
    outside = ((xy < -margin) | (xy > image_size[:, None, :] + margin)).any((1, 2))
    reasons = np.full(len(keypoints), KEPT, np.uint8)
    reasons[outside] = FILTER_JOINT_OUTSIDE_IMAGE
    reasons[(conf > cfg.visible_conf).sum(1) < cfg.min_visible_joints] = \
        FILTER_FEW_CONFIDENT_JOINTS
    reasons[mean_error >= cfg.max_mean_error_per_scale] = FILTER_FAR_FROM_GROUND_TRUTH
    return reasons
