import math

import pytest
from omegaconf import OmegaConf

from core.config import load_config
from core.errors import ConfigError
from train.schedule import learning_rate


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
