import math

import pytest
import torch
from omegaconf import OmegaConf

from core.config import load_config
from core.errors import ConfigError
from train.objective import total
from train.schedule import learning_rate, loss_weights


def _t(**kw):
    return OmegaConf.create({"lr": 1e-3, "lr_schedule": "cosine", "warmup_steps": 10,
                             "iterations": 110, **kw})


def test_constant_is_the_rate_at_every_step():
    t = _t(lr_schedule="constant")
    assert {learning_rate(s, t) for s in (0, 5, 50, 109)} == {1e-3}


def test_cosine_warms_up_linearly_then_halves_at_mid_span_and_ends_at_zero():
    t = _t()
    assert learning_rate(0, t) == pytest.approx(1e-4)         # 1/10 of the warm-up
    assert learning_rate(9, t) == pytest.approx(1e-3)         # warm-up done
    assert learning_rate(10, t) == pytest.approx(1e-3)        # the cosine starts at the peak
    assert learning_rate(60, t) == pytest.approx(0.5e-3)      # half-way through 100 steps
    assert learning_rate(35, t) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(110, t) == pytest.approx(0.0, abs=1e-12)
    rates = [learning_rate(s, t) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))       # never rises after the warm-up


def test_unknown_schedule_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="train.lr_schedule"):
        load_config(["train.lr_schedule=linear"])


def test_the_2d_warm_up_ramps_only_the_mode_2d_weight_and_defaults_to_the_paper():
    cfg = load_config(["train.keypoints_2d_warmup=4"])
    paper = {k: float(v) for k, v in cfg.loss_weights.items()}
    assert loss_weights(0, load_config()) == paper                 # default 0: no ramp
    assert loss_weights(0, cfg)["keypoints_2d"] == 0.0
    assert loss_weights(1, cfg)["keypoints_2d"] == pytest.approx(paper["keypoints_2d"] / 4)
    assert loss_weights(3, cfg)["keypoints_2d"] == pytest.approx(paper["keypoints_2d"] * 3 / 4)
    assert loss_weights(4, cfg) == paper and loss_weights(99, cfg) == paper
    assert {k: v for k, v in loss_weights(1, cfg).items() if k != "keypoints_2d"} == \
        {k: v for k, v in paper.items() if k != "keypoints_2d"}
    terms = {"nll": torch.tensor(-2.0), "keypoints_2d": torch.tensor(3.0)}
    expected = paper["nll"] * -2.0 + paper["keypoints_2d"] * 3.0 / 2
    assert float(total(terms, cfg, step=2)) == pytest.approx(expected)
    constant = paper["nll"] * -2.0 + paper["keypoints_2d"] * 3.0
    assert float(total(terms, cfg)) == pytest.approx(constant)


def test_a_negative_2d_warm_up_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="train.keypoints_2d_warmup"):
        load_config(["train.keypoints_2d_warmup=-1"])
