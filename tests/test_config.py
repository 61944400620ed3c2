from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def test_pipelines_yaml_resolves_and_holds_the_papers_constants(monkeypatch):
    monkeypatch.setenv("HUMR_DATA", "/somewhere")
    cfg = OmegaConf.load(ROOT / "pipelines.yaml")
    assert cfg.paths.stores == "/somewhere/stores"
    assert cfg.body.models == "/somewhere/raw/body_models/synthetic"
    assert cfg.sampling.samples_per_joint == 150 and cfg.model.flow_blocks == 8
    assert cfg.model.soft_clamp == 2.0 and list(cfg.losses.mmd_kernel_scales) == [0.05, 0.2, 0.9]
    weights = OmegaConf.to_container(cfg.loss_weights)
    assert weights == {"nll": 0.1, "betas": 5e-4, "keypoints_2d": 1e-2, "orth": 0.1,
                       "camera": 1.0, "mmd": 5e-2, "mask": 0.1,
                       "keypoints_2d_samples": 0.0}  # Table S2 only: off in the paper
