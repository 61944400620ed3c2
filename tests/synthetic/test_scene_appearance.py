"""The synthetic people show which way they face, as real heads do (face in front, hair behind):
the image of a body turned away from the camera holds far more hair than one facing it."""
import numpy as np
import torch

from body.models import load_smplx
from body.joints import SMPLX_TO_COCO17
from synthetic.scene import HAIR, BodyTopology, Person, person_colors, render_scene, skin_parts


def _hair_pixels(body_models, heading: float) -> int:
    model = load_smplx(body_models)
    topology = BodyTopology.from_model(model, SMPLX_TO_COCO17)
    # upright in the camera frame (y down): a half turn about x, then the heading about y
    flip = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
    c, s = np.cos(heading), np.sin(heading)
    turn = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)
    out = model(global_orient=(turn @ flip)[None, None], transl=torch.tensor([[0, 0, 3.0]]))
    colors = person_colors(np.random.default_rng(0), 55, skin_parts(55))
    person = Person(out.vertices[0].detach().numpy(), out.joints[0].detach().numpy(), topology,
                    colors)
    k = np.array([[500.0, 0, 160], [0, 500, 240], [0, 0, 1]])
    scene = render_scene([person], [], k, 320, 480, np.random.default_rng(0))
    hair = (scene.raster.mesh == 0) & np.isin(
        topology.face_color[np.clip(scene.raster.face, 0, None)], [HAIR])
    return int(hair.sum())


def test_hair_covers_the_back_and_top_of_the_head_only(body_models):
    topology = BodyTopology.from_model(load_smplx(body_models), SMPLX_TO_COCO17)
    hair = topology.face_color == HAIR
    assert hair.any() and (topology.face_part[hair] == 15).all()
    assert ((topology.face_part == 15) & ~hair).any()  # the face stays skin


def test_a_body_turned_away_shows_more_hair_than_one_facing_the_camera(body_models):
    facing, away = _hair_pixels(body_models, 0.0), _hair_pixels(body_models, np.pi)
    assert away > 2 * max(facing, 1)
