"""Training augmentation (docs/method.md §5): box scale jitter, truncation crop, photometric noise.

No rotation and no flip. Every function draws from the numpy Generator it is given (the example's
own stream, `core.seeding.rng_for(seed, "example", k)`), so an example's augmentation depends only
on its counter k. The constants come from `pipelines.yaml` `train:` through `Augmentation`.

Box augmentation changes only the MODEL crop: the detector's 2D pose condition and the heatmap
samples keep the original box (docs/method.md §5), which is `train/data.py`'s business.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from core.seeding import rng_for


@dataclass(frozen=True)
class ScaleJitter:
    """Box side factor clip(1 + std·N(0, 1), min, max)."""

    std: float = 0.25
    min: float = 0.75
    max: float = 1.25


@dataclass(frozen=True)
class Augmentation:
    """The augmentation constants of `pipelines.yaml` `train:` (paper values as defaults)."""

    scale_jitter: ScaleJitter = ScaleJitter()
    truncation_p: float = 0.2
    photometric_p: float = 0.3

    @classmethod
    def from_config(cls, train) -> Augmentation:
        """From the `train:` section (or anything with the same attributes)."""
        j = train.scale_jitter
        return cls(ScaleJitter(float(j.std), float(j.min), float(j.max)),
                   float(train.truncation_p), float(train.photometric_p))

    @classmethod
    def disabled(cls) -> Augmentation:
        """No box and no photometric augmentation (the model crop is the labelled box)."""
        return cls(ScaleJitter(0.0, 1.0, 1.0), 0.0, 0.0)


def augment_box(rng: np.random.Generator, center, scale, cfg) -> tuple[np.ndarray, float]:
    """(center' (2,) px, scale') of the augmented model-crop box.

    Scale jitter: the side b = 200·scale is multiplied by clip(1 + std·N(0, 1), min, max). Then,
    with probability `truncation_p`, the truncation crop: a square of half that side, centred
    horizontally on the box and at a uniformly random height such that it lies inside the
    (jittered) box. Every augmented box lies inside the box of side max(1, jitter max)·b, so
    inside the context crop (stores/context_cache.py) when context_factor ≥ jitter max.
    `cfg` has `scale_jitter.{std, min, max}` and `truncation_p` (`Augmentation` or `train:`).
    """
    j = cfg.scale_jitter
    factor = float(np.clip(1.0 + j.std * rng.standard_normal(), j.min, j.max))
    center = np.array(center, dtype=np.float64)
    scale = float(scale) * factor
    if rng.random() < cfg.truncation_p:
        side = 200.0 * scale
        center[1] += rng.uniform(-side / 4, side / 4)
        scale /= 2
    return center, scale


# Ranges of the photometric ops' parameters (docs/method.md names the ops, not their strengths;
# these follow common albumentations-style settings). Candidates for `pipelines.yaml` `train:`.
PHOTOMETRIC_RANGES = {"contrast": (0.7, 1.3), "brightness": (-30.0, 30.0),
                      "blur_sigma": (0.5, 1.5), "noise_sigma": (2.0, 8.0),
                      "jpeg_quality": (30, 90)}


def _brightness_contrast(rng: np.random.Generator):
    contrast = rng.uniform(*PHOTOMETRIC_RANGES["contrast"])
    brightness = rng.uniform(*PHOTOMETRIC_RANGES["brightness"])
    lut = np.clip((np.arange(256) - 128.0) * contrast + 128.0 + brightness, 0, 255)
    lut = lut.astype(np.uint8)
    return lambda image: cv2.LUT(image, lut)


def _blur(rng: np.random.Generator):
    sigma = rng.uniform(*PHOTOMETRIC_RANGES["blur_sigma"])
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma)


_NOISE_BANK: np.ndarray | None = None


def _noise_bank() -> np.ndarray:
    """2^20 fixed N(0, 1) values (per process, the same everywhere): a noise image is a window of
    it at a random offset — 20× cheaper than drawing 150 k normals per example."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        rng = rng_for("photometric", "noise-bank")
        _NOISE_BANK = rng.standard_normal(1 << 20, dtype=np.float32)
    return _NOISE_BANK


def _noise(rng: np.random.Generator):
    sigma = rng.uniform(*PHOTOMETRIC_RANGES["noise_sigma"])
    seed = int(rng.integers(2**63))

    def apply(image: np.ndarray) -> np.ndarray:
        bank = _noise_bank()
        if image.size <= bank.size:
            start = seed % (bank.size - image.size + 1)
            noise = bank[start:start + image.size].reshape(image.shape)
        else:
            noise = rng_for("photometric", seed).standard_normal(image.shape, dtype=np.float32)
        return cv2.addWeighted(image, 1.0, noise, sigma, 0.0, dtype=cv2.CV_8U)
    return apply


def _jpeg(rng: np.random.Generator):
    low, high = PHOTOMETRIC_RANGES["jpeg_quality"]
    quality = int(rng.integers(low, high + 1))

    def apply(image: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    return apply


PHOTOMETRIC_OPS = (_brightness_contrast, _blur, _noise, _jpeg)


def draw_photometric(rng: np.random.Generator, p: float = 0.3) -> list[Callable]:
    """The photometric augmentation of one example, drawn but not applied: with probability p, a
    random non-empty subset (each op with probability ½) of brightness/contrast, Gaussian blur,
    Gaussian noise and JPEG compression, in that order, parameters drawn; else []. Each op maps an
    (H, W, 3) uint8 RGB image to a new one."""
    if rng.random() >= p:
        return []
    chosen = rng.random(len(PHOTOMETRIC_OPS)) < 0.5
    if not chosen.any():
        chosen[rng.integers(len(PHOTOMETRIC_OPS))] = True
    return [draw(rng) for draw, on in zip(PHOTOMETRIC_OPS, chosen) if on]


def photometric(rng: np.random.Generator, image: np.ndarray, p: float = 0.3) -> np.ndarray:
    """`draw_photometric(rng, p)` applied to an (H, W, 3) uint8 RGB image (returned as is when
    nothing applies)."""
    for op in draw_photometric(rng, p):
        image = op(image)
    return image
