import pytest
import torch

from core.config import load_config
from train.data import TrainingExample, TrainingTargets
from train.inputs import ModelInput
from train.model import ProbabilisticHMR
from train.losses import rotation_mode_loss
from train.objective import training_forward

TINY = ["model.flow_hidden=32", "model.flow_blocks=2", "model.regressor_hidden=32",
        "model.backbone_options.out_features=16", "model.pose_mlp=[51,32,16]"]


@pytest.fixture(scope="module")
def model_and_inputs(body_models):
    cfg = load_config([f"body.models={body_models}", *TINY])
    torch.manual_seed(0)
    model = ProbabilisticHMR(cfg, cfg.body.models)
    g = torch.Generator().manual_seed(1)
    b = 3
    inputs = ModelInput(image=torch.randn(b, 3, 64, 64, generator=g),
                        det_kp=torch.rand(b, 17, 3, generator=g), bbox_cond=torch.rand(b, 3),
                        center=torch.tensor([[320.0, 180.0]]).expand(b, 2),
                        scale=torch.full((b,), 1.5), focal=torch.full((b,), 900.0),
                        img_size=torch.tensor([[640.0, 360.0]]).expand(b, 2))
    return cfg, model, inputs


def test_posterior_mode_samples_and_log_prob_are_the_flows(model_and_inputs):
    _, model, inputs = model_and_inputs
    model.eval()
    with torch.no_grad():
        posterior = model(inputs)
        hyp = posterior.hypotheses(4, torch.Generator().manual_seed(5))
        samples = posterior.sample(4, torch.Generator().manual_seed(5))
        mode = posterior.mode()
        cond = model.conditions(inputs)
        log_prob = posterior.log_prob(samples[:, 0])
        by_hand = model.flow.log_prob(samples[:, 0].flatten(1), cond)
    assert hyp.pose6d.shape == (3, 5, 22, 6) and hyp.samples.pose6d.shape == (3, 4, 22, 6)
    torch.testing.assert_close(hyp.mode.pose6d, mode)  # slot 0 is the mode (z = 0)
    torch.testing.assert_close(hyp.samples.pose6d, samples)  # then the same latents' samples
    assert hyp.mode.coco2d.shape == (3, 17, 2) and hyp.samples.body2d.shape == (3, 4, 24, 2)
    torch.testing.assert_close(hyp.mode.joints3d, hyp.joints3d[:, 0])
    torch.testing.assert_close(log_prob, by_hand)


def test_training_nll_draws_latents_then_noise_then_dropout(model_and_inputs):
    """The objective's noised-ground-truth log-density: ε is the global stream's draw right
    after the flow's latents (the order the model drew them in before), scaled by nll_noise."""
    cfg, model, inputs = model_and_inputs
    model.train()
    b, n = 3, 4
    gt = torch.eye(3)[:2].flatten().expand(b, 22, 6).clone()
    zeros = torch.zeros(b, 17, 2)
    targets = TrainingTargets(*([zeros] * 2), gt, *([zeros] * 11))
    torch.manual_seed(11)
    _, log_prob = training_forward(model, TrainingExample(inputs, targets), n, cfg)
    torch.manual_seed(11)
    with torch.no_grad():
        cond = model.conditions(inputs)
        torch.randn(b, n, 132)  # the flow's latents
        noise = torch.randn(b, 22, 6)
        expected = model.flow.log_prob((gt + cfg.losses.nll_noise * noise).flatten(1), cond)
    torch.testing.assert_close(log_prob.detach(), expected, rtol=0, atol=0)


def test_the_mode_orientation_loss_reaches_the_flow_through_a_detached_orientation(
        model_and_inputs):
    """With `losses.detach_orientation=mode` the mode's 2D loss cannot turn the mode, but the
    mode-orientation term (ProHMR's) still trains where z = 0 lands: its gradient reaches the
    flow, and its value is that of the mode's own global orientation."""
    cfg, model, inputs = model_and_inputs
    model.train()
    b = 3
    gt = torch.eye(3)[:2].flatten().expand(b, 22, 6).clone()
    zeros = torch.zeros(b, 17, 2)
    targets = TrainingTargets(*([zeros] * 2), gt, *([zeros] * 11))
    cut = cfg.copy()
    cut.losses.detach_orientation = "mode"
    torch.manual_seed(3)
    out, _ = training_forward(model, TrainingExample(inputs, targets), 2, cut)
    torch.testing.assert_close(out.mode_root6d, out.pose6d[:, 0, 0])
    params = list(model.flow.parameters())
    through_cut = torch.autograd.grad(out.pose6d[:, 0, 0].sum(), params, allow_unused=True,
                                      retain_graph=True)
    assert all(g is None or not g.any() for g in through_cut)  # the other terms' path is cut
    loss = rotation_mode_loss(out.mode_root6d, gt[:, 0])
    direct = torch.autograd.grad(loss, params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in direct)


def test_the_mode_3d_keypoint_loss_compares_the_modes_body_with_the_ground_truths(
        model_and_inputs):
    """ProHMR's 3D keypoint term on the mode: with the mode's own pose and shape as the ground
    truth it is 0 (the prediction's camera translation and the target's body frame agree once
    both are centred on the pelvis); a ground truth with one knee bent costs more than 0."""
    from scipy.spatial.transform import Rotation

    from body.rotations import matrix_to_rot6d
    from train.objective import loss_terms

    cfg, model, inputs = model_and_inputs
    cfg = cfg.copy()
    for name in cfg.loss_weights:
        cfg.loss_weights[name] = 0.0
    cfg.loss_weights.keypoints_3d_mode = 0.05  # the only term loss_terms computes
    model.eval()  # no dropout: the head's shape is the same in both passes
    with torch.no_grad():
        posterior = model(inputs)
        mode, (betas, _) = posterior.mode(), posterior.shape_camera()
    zeros = torch.zeros(3, 17, 2)

    def term(gt_pose):
        targets = TrainingTargets(zeros, zeros, gt_pose, betas, *([zeros] * 10))
        out, log_prob = training_forward(model, TrainingExample(inputs, targets), 2, cfg)
        return loss_terms(out, log_prob, targets, cfg)["keypoints_3d_mode"].item()

    assert term(mode) < 1e-5
    bent = mode.clone()
    knee = matrix_to_rot6d(torch.from_numpy(Rotation.from_rotvec([1.0, 0, 0]).as_matrix()))
    bent[:, 4] = knee.float()  # left knee (SMPL-X joint 4)
    assert term(bent) > 0.05
