"""Tests of core/fixed_math.py against the C library (math) as an independent oracle."""
import math

import numpy as np
import torch

from core import fixed_math

ULP = np.finfo(np.float64).eps


def test_exp_is_within_two_ulp_and_handles_the_ends():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-40, 3, 20_000), rng.uniform(-700, 700, 2_000),
                        [0.0, 1.0, -0.5 * math.log(2)]])
    expected = np.array([math.exp(v) for v in x])
    got = fixed_math.exp(x)
    assert got.dtype == np.float64 and got[-3] == 1.0
    assert (np.abs(got - expected) <= 2 * ULP * expected).all()
    tiny = fixed_math.exp(np.array([-740.0, -1e4, -np.inf]))
    np.testing.assert_array_equal(tiny, [math.exp(-740.0), 0.0, 0.0])


def test_log_is_within_two_ulp_and_numpy_and_torch_agree_bit_for_bit():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(1e-10, 3, 20_000), 10.0 ** rng.uniform(-300, 300, 2_000),
                        [1.0, 0.5, 2.0, math.sqrt(0.5)]])
    expected = np.array([math.log(v) for v in x])
    got = fixed_math.log(x)
    assert (np.abs(got - expected) <= 2 * ULP * np.maximum(np.abs(expected), 1.0)).all()
    assert got[-4] == 0.0 and got[-3] == -got[-2] == math.log(0.5)
    as_torch = fixed_math.log(torch.from_numpy(x))
    assert as_torch.dtype == torch.float64 and as_torch.numpy().tobytes() == got.tobytes()


def test_cos_sin_of_turns():
    rng = np.random.default_rng(2)
    turns = np.concatenate([rng.uniform(0, 1, 20_000), [0.0, 0.125, 0.25, 0.5, 0.75]])
    cos, sin = fixed_math.cos_sin_turns(turns)
    angle = [2 * math.pi * t for t in turns]
    assert np.abs(cos - [math.cos(a) for a in angle]).max() < 4 * ULP
    assert np.abs(sin - [math.sin(a) for a in angle]).max() < 4 * ULP
    np.testing.assert_array_equal(cos[-5:][[0, 2, 3, 4]], [1, 0, -1, 0])
    np.testing.assert_array_equal(sin[-5:][[0, 2, 3, 4]], [0, 1, 0, -1])
    assert abs(cos[-4] - math.sqrt(0.5)) <= ULP and abs(sin[-4] - math.sqrt(0.5)) <= ULP


def test_results_do_not_depend_on_the_array_shape():
    x = np.random.default_rng(3).uniform(-20, 2, 4097)
    whole = fixed_math.exp(x)
    assert all(fixed_math.exp(x[i:i + 1])[0] == whole[i] for i in range(0, 4097, 97))
    assert fixed_math.exp(x[::-3]).tobytes() == whole[::-3].tobytes()
