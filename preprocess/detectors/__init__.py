"""2D pose detector backends (docs/method.md §2): `make_detector(name, **options)`.

Backends: `synthetic` (a simulated, uncertain ViTPose that reads the synthetic world's scene
side-car files, docs/synthetic_world.md).
"""
from __future__ import annotations

from typing import Callable

from body.detector import CropRequest, Detector
from synthetic.detector import SyntheticDetector
from preprocess.detectors.vitpose import ViTPoseDetector

DETECTORS: dict[str, Callable[..., Detector]] = {
    "synthetic": SyntheticDetector,
    "vitpose": ViTPoseDetector,
}


def make_detector(name: str, **options) -> Detector:
    """The detector backend `name`, built with its keyword options."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise ValueError(f"unknown detector backend {name!r}; known backends: {known}") from None
    return factory(**options)


__all__ = ["CropRequest", "DETECTORS", "Detector", "SyntheticDetector", "ViTPoseDetector",
           "make_detector"]
