"""exp, log, cos and sin from IEEE-754 basic operations only, so their bits never depend on the CPU.

numpy and torch evaluate these functions with kernels chosen by instruction set (numpy's
AVX-512 / AVX2 / baseline loops, torch's Sleef vectors or libm), which may differ in the last
bit. Stage one promises bit-identical output on every x86 machine (stores/README.md), so the
values it writes never pass through them: here each function is a range reduction and a fixed
polynomial evaluated with +, −, ×, ÷, frexp, ldexp and rint, which IEEE-754 rounds exactly, in
an order that does not depend on the array's size or layout. Accuracy is a few ulp of float64.

`exp` and `cos_sin_turns` take numpy arrays; `log` takes numpy arrays or torch tensors.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

# ln 2 split (fdlibm's constants): LN2_HI ends in 21 zero bits, so k·LN2_HI is exact here.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_SQRT_HALF = 0.70710678118654752440
_EXP_TERMS = [1.0 / math.factorial(n) for n in range(14)]         # e^r, |r| ≤ ln2/2
_ATANH_TERMS = [1.0 / (2 * k + 1) for k in range(12)]             # atanh(s)/s in s², |s| ≤ 0.172
_SIN_TERMS = [(-1) ** k / math.factorial(2 * k + 1) for k in range(10)]  # sin(r)/r in r²
_COS_TERMS = [(-1) ** k / math.factorial(2 * k) for k in range(10)]      # cos(r) in r², |r| ≤ π/4


def _horner(terms: list[float], x):
    """Σ terms[n]·xⁿ, highest power first."""
    acc = terms[-1] + 0 * x
    for c in reversed(terms[:-1]):
        acc = acc * x + c
    return acc


def exp(x: np.ndarray) -> np.ndarray:
    """float64 eˣ: x = k·ln2 + r, eʳ by its Taylor polynomial, then ·2ᵏ."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1100.0, 709.0)
    k = np.rint(x * _INV_LN2)
    r = (x - k * LN2_HI) - k * LN2_LO
    return np.ldexp(_horner(_EXP_TERMS, r), k.astype(np.int32))


def log(x: Array) -> Array:
    """float64 natural log of positive x (numpy or torch): x = m·2ᵉ with m in [√½, √2),
    log m = 2·atanh((m − 1)/(m + 1)) by its series."""
    if isinstance(x, torch.Tensor):
        m, e = torch.frexp(x.double())
        e, where = e.double(), torch.where
    else:
        m, e = np.frexp(np.asarray(x, dtype=np.float64))
        e, where = e.astype(np.float64), np.where
    low = m < _SQRT_HALF
    m, e = where(low, m * 2, m), where(low, e - 1, e)
    s = (m - 1) / (m + 1)
    return e * LN2_HI + (2 * s * _horner(_ATANH_TERMS, s * s) + e * LN2_LO)


def cos_sin_turns(turns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (cos, sin) of the angle 2π·turns: quadrant q = rint(4·turns), |r| ≤ π/4."""
    turns = np.asarray(turns, dtype=np.float64)
    q = np.rint(4 * turns)
    r = (turns - q * 0.25) * (2 * math.pi)
    z = r * r
    c, s = _horner(_COS_TERMS, z), r * _horner(_SIN_TERMS, z)
    quadrant = q.astype(np.int64) % 4
    cos = np.choose(quadrant, [c, -s, -c, s])
    sin = np.choose(quadrant, [s, c, -s, -c])
    return cos, sin
