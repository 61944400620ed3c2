"""The issue-15 diagnostics' own math: the camera inversion and the motion generator's limits."""
import numpy as np
import torch

from benchmarks.diagnosis.common import translation_to_camera
from benchmarks.diagnosis.lift import motion_euler
from body.cameras import weak_perspective_to_translation
from synthetic.poses import LIMITS_HIGH, LIMITS_LOW


def test_translation_to_camera_inverts_the_cliff_conversion():
    g = torch.Generator().manual_seed(0)
    b = 8
    batch = {"img_size": torch.tensor([[640.0, 360.0]]).expand(b, 2),
             "center": torch.rand(b, 2, generator=g) * 200 + 100,
             "scale": torch.rand(b, generator=g) + 0.5, "focal": torch.full((b,), 640.0)}
    cam = torch.stack([torch.rand(b, generator=g) + 0.5, torch.rand(b, generator=g) - 0.5,
                       torch.rand(b, generator=g) - 0.5], 1).double()
    batch = {k: v.double() for k, v in batch.items()}
    transl = weak_perspective_to_translation(cam, batch["center"], batch["scale"],
                                             batch["img_size"][:, 0], batch["img_size"][:, 1],
                                             batch["focal"])
    torch.testing.assert_close(translation_to_camera(transl, batch), cam)


def test_motion_poses_stay_within_the_joint_limits_and_move():
    euler = motion_euler(np.random.default_rng(0), 200)
    assert (euler >= LIMITS_LOW).all() and (euler <= LIMITS_HIGH).all()
    # the hips (joints 1, 2) flex over a wide range: the motions are not the rest pose plus noise
    assert np.ptp(euler[:, 0, 0]) > 1.5
